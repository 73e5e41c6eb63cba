#!/usr/bin/env python3
"""Check that Otto's keys and attestations work with the tools other people use.

Usage: python3 .ci/attest-check.py [DEMO_DIR]
(otto-node from $OTTO_BIN_DIR when set, else from the release build)

It creates a virtualenv under target/attest-venv (reused when present) and installs the
pinned verifiers into it (securesystemslib, cryptography, in-toto, in-toto-attestation:
the versions docs/attestations.md tells readers to install). Then:

1. `cargo run -p otto-handoff --example export_attestation` writes a deterministic
   attestation and its node's public key; the script re-runs itself inside the virtualenv
   to verify them with securesystemslib and check every field of the statement.
2. On the work directory of `otto-testnet demo` (DEMO_DIR, or a new demo run when it is
   not given): every key file of both node homes loads in `openssl pkey` and in Python
   `cryptography` and matches what `otto-node key show` prints; then every shell block of
   docs/attestations.md marked `<!-- attest-check: run -->` runs, in order, on the demo's
   export (securesystemslib, in-toto, openssl), and again on tampered copies and with a
   wrong key, where each must fail.

It exits non-zero on any failure.
"""

import base64
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "target" / "attest-venv"
DOC = ROOT / "docs" / "attestations.md"
# Pinned; docs/attestations.md must tell readers to install exactly these.
REQUIREMENTS = [
    "securesystemslib[crypto]==1.6.0",
    "cryptography==51.0.1",
    "in-toto==3.1.0",
    "in-toto-attestation==0.9.3",
]
MARKER = "<!-- attest-check: run -->"

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://otto.dev/attestation/receipt/v1"
HEX64 = re.compile(r"^[0-9a-f]{64}$")


class CheckFailed(Exception):
    pass


def expect(condition, what):
    if not condition:
        raise CheckFailed(what)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--verify":
        return verify(Path(sys.argv[2]))
    if len(sys.argv) == 3 and sys.argv[1] == "--load-keys":
        return load_keys(Path(sys.argv[2]))
    if len(sys.argv) > 2 or (len(sys.argv) == 2 and sys.argv[1].startswith("-")):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        + REQUIREMENTS,
        check=True,
    )
    doc = DOC.read_text()
    for requirement in REQUIREMENTS:
        if f'"{requirement}"' not in doc:
            print(f"attest-check: FAIL: docs/attestations.md does not pin {requirement}", file=sys.stderr)
            return 1
    status = example(python)
    if status != 0:
        return status
    if len(sys.argv) == 2:
        return demo(python, Path(sys.argv[1]).resolve())
    with tempfile.TemporaryDirectory(prefix="otto-attest-demo-") as work:
        subprocess.run(
            ["cargo", "run", "-q", "--release", "--bin", "otto-testnet", "--", "demo", "--dir", work],
            check=True,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        return demo(python, Path(work))


def example(python):
    """Part 1: the deterministic example attestation."""
    with tempfile.TemporaryDirectory(prefix="otto-attest-") as out:
        subprocess.run(
            [
                "cargo",
                "run",
                "-q",
                "-p",
                "otto-handoff",
                "--example",
                "export_attestation",
                "--",
                out,
            ],
            check=True,
            cwd=ROOT,
        )
        return subprocess.run([str(python), str(Path(__file__).resolve()), "--verify", out]).returncode


def otto_node():
    """otto-node from $OTTO_BIN_DIR, else the release build, built if it is not yet (the
    demo builds it too)."""
    if os.environ.get("OTTO_BIN_DIR"):
        return (Path(os.environ["OTTO_BIN_DIR"]) / "otto-node").resolve()
    subprocess.run(["cargo", "build", "-q", "--release", "--bin", "otto-node"], check=True, cwd=ROOT)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return (ROOT / target / "release" / "otto-node").resolve()


def doc_blocks():
    """The shell blocks of docs/attestations.md marked to run, in order, dedented."""
    lines = DOC.read_text().splitlines()
    blocks = []
    for i, line in enumerate(lines):
        if line.strip() != MARKER:
            continue
        fence = lines[i + 1]
        indent = len(fence) - len(fence.lstrip())
        if fence.strip() != "```sh":
            raise CheckFailed(f"docs/attestations.md:{i + 2}: {MARKER} is not followed by ```sh")
        body = []
        for text in lines[i + 2:]:
            if text.strip() == "```" and len(text) - len(text.lstrip()) == indent:
                break
            body.append(text[indent:])
        blocks.append((i + 3, "\n".join(body) + "\n"))
    return blocks


def run_block(block, cwd, env):
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )


def scratch(demo_dir, base, python):
    """A directory laid out as docs/attestations.md assumes: the demo's export as
    delivery.*, its homes, and the virtualenv as venv."""
    work = Path(tempfile.mkdtemp(prefix="otto-attest-doc-", dir=base))
    for home in ("dev-1", "ops-1"):
        (work / home).symlink_to(demo_dir / home)
    for path in demo_dir.glob("attestations.*"):
        shutil.copy(path, work / ("delivery" + path.name[len("attestations"):]))
    (work / "venv").symlink_to(python.parent.parent)
    return work


def demo(python, demo_dir):
    """Part 2: the demo's homes and export, checked as docs/attestations.md says."""
    try:
        node = otto_node()
        for home in ("dev-1", "ops-1"):
            for key in sorted((demo_dir / home).glob("*.key")):
                which = ["--org"] if key.name == "org.key" else []
                shown = subprocess.run(
                    [str(node), "key", "show", "--home", str(demo_dir / home), "--format", "pem"] + which,
                    check=True, capture_output=True, text=True,
                ).stdout
                pub = subprocess.run(
                    ["openssl", "pkey", "-in", str(key), "-pubout"], capture_output=True, text=True
                )
                expect(pub.returncode == 0, f"openssl pkey -in {key}: {pub.stderr.strip()}")
                if key.name in ("node.key", "org.key"):
                    expect(pub.stdout == shown, f"{key}: openssl says {pub.stdout!r}, key show {shown!r}")
            loaded = subprocess.run([str(python), __file__, "--load-keys", str(demo_dir / home)])
            expect(loaded.returncode == 0, f"cryptography refuses a key file of {home}")

        blocks = doc_blocks()
        expect(len(blocks) == 4, f"{len(blocks)} marked blocks in docs/attestations.md, expected 4")
        env = dict(os.environ, PATH=f"{node.parent}{os.pathsep}{os.environ['PATH']}")
        with tempfile.TemporaryDirectory(prefix="otto-attest-doc-") as base:
            work = scratch(demo_dir, base, python)
            for line, block in blocks:
                done = run_block(block, work, env)
                expect(done.returncode == 0, f"docs/attestations.md:{line} failed:\n{done.stdout}{done.stderr}")
                print(f"docs/attestations.md:{line}: ok\n" + "".join("  " + l + "\n" for l in done.stdout.splitlines()))
            keys_block, sslib_block, intoto_block, openssl_block = (b for _, b in blocks)

            # Each check must be able to fail.
            def tampered(name, change, block, setup=""):
                bad = scratch(demo_dir, base, python)
                run_block(keys_block, bad, env)
                path = bad / name
                path.write_text(change(path.read_text()))
                done = run_block(setup + block, bad, env)
                expect(done.returncode != 0, f"{name}, {change.__doc__}: the check passed")

            def flip_summary(text):
                """a changed byte in the summary's payload"""
                bundle = json.loads(text)
                payload = base64.b64decode(bundle["verification_summary"]["payload"])
                payload = payload.replace(b'"PASSED"', b'"PASSEd"')
                bundle["verification_summary"]["payload"] = base64.b64encode(payload).decode()
                return json.dumps(bundle)

            def flip_receipt(text):
                """a receipt signed by another signature"""
                bundle = json.loads(text)
                sig = bundle["receipts"][-1]["signatures"][0]
                sig["sig"] = bundle["receipts"][0]["signatures"][0]["sig"]
                return json.dumps(bundle)

            def flip_line(text):
                """a changed byte in a statement"""
                lines = text.splitlines()
                first = json.loads(lines[0])
                first["payload"] = base64.b64encode(base64.b64decode(first["payload"]).replace(b"1", b"2", 1)).decode()
                return "\n".join([json.dumps(first)] + lines[1:]) + "\n"

            def flip_vsa(text):
                """a changed byte in the summary"""
                document = json.loads(text)
                document["payload"] = base64.b64encode(base64.b64decode(document["payload"]).replace(b"1", b"2", 1)).decode()
                return json.dumps(document)

            def other_key(text):
                """another node's key"""
                return subprocess.run(
                    [str(node), "key", "show", "--home", str(demo_dir / "ops-1"), "--format", "pem"],
                    check=True, capture_output=True, text=True,
                ).stdout

            tampered("delivery.json", flip_summary, sslib_block)
            tampered("delivery.json", flip_receipt, sslib_block)
            tampered("delivery.intoto.jsonl", flip_line, intoto_block)
            tampered("delivery.vsa.json", flip_vsa, openssl_block)
            tampered("dev-1.pem", other_key, openssl_block)
    except (CheckFailed, OSError, subprocess.CalledProcessError) as err:
        print(f"attest-check: FAIL: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print("the demo's export verifies with the documented commands and keys: ok")
    return 0


def load_keys(home):
    """Runs inside the virtualenv: Python `cryptography` loads every key file of `home`."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    for path in sorted(home.glob("*.key")):
        try:
            key = load_pem_private_key(path.read_bytes(), password=None)
        except ValueError as err:
            print(f"attest-check: FAIL: {path}: {err}", file=sys.stderr)
            return 1
        if not isinstance(key, Ed25519PrivateKey):
            print(f"attest-check: FAIL: {path} is a {type(key).__name__}", file=sys.stderr)
            return 1
        print(f"cryptography loads {path.name} of {home.name}: ok")
    return 0


def verify(out):
    """Runs inside the virtualenv: verify the files in `out`."""
    from importlib.metadata import version

    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import VerificationError
    from securesystemslib.signer import SSlibKey

    try:
        document = json.loads((out / "attestation.json").read_text())
        public_hex = (out / "node.pub").read_text().strip()
        receipt_digest = (out / "receipt.digest").read_text().strip()
        expect(HEX64.match(public_hex), f"node.pub is not 64 hex digits: {public_hex!r}")

        # The node key, as a verifier obtains it out of band; Otto's key id convention.
        keyid = f"ed25519:{public_hex}"
        key = SSlibKey(keyid, "ed25519", "ed25519", {"public": public_hex})

        # Envelope.from_dict rewrites the signature dicts it is given, hence the copies.
        envelope = Envelope.from_dict(copy.deepcopy(document))
        envelope.verify([key], 1)
        expect(envelope.payload_type == PAYLOAD_TYPE, f"payloadType {envelope.payload_type!r}")
        expect(list(envelope.signatures) == [keyid], f"signatures {list(envelope.signatures)}")

        statement = json.loads(envelope.payload)
        expect(statement.get("_type") == STATEMENT_TYPE, f"_type {statement.get('_type')!r}")
        expect(
            statement.get("predicateType") == PREDICATE_TYPE,
            f"predicateType {statement.get('predicateType')!r}",
        )
        subjects = statement.get("subject")
        expect(isinstance(subjects, list) and subjects, "subject is a non-empty list")
        for subject in subjects:
            expect(set(subject) == {"name", "digest"}, f"subject fields {sorted(subject)}")
            expect(set(subject["digest"]) == {"sha256"}, f"subject digest {subject['digest']}")
            expect(HEX64.match(subject["digest"]["sha256"]), f"subject digest {subject['digest']}")
        expect(
            [s["name"] for s in subjects] == ["site.tar", "release-notes.md"],
            f"subject names {[s['name'] for s in subjects]}",
        )

        predicate = statement.get("predicate", {})
        fields = {
            "run", "stage", "attempt", "planDigest", "owner", "outcome",
            "startedAt", "finishedAt", "logDigest", "receipt", "upstream",
        }
        expect(set(predicate) == fields, f"predicate fields {sorted(predicate)}")
        expect(predicate["run"] == "run-0001", f"run {predicate['run']!r}")
        expect(predicate["stage"] == "Deploy", f"stage {predicate['stage']!r}")
        expect(predicate["attempt"] == 1, f"attempt {predicate['attempt']!r}")
        expect(predicate["outcome"] == "success", f"outcome {predicate['outcome']!r}")
        expect(
            predicate["owner"] == {"node": "ops-1", "org": "acme-ops", "key": keyid},
            f"owner {predicate['owner']}",
        )
        expect(predicate["startedAt"] == "2025-01-01T00:00:10Z", f"startedAt {predicate['startedAt']!r}")
        expect(predicate["finishedAt"] == "2025-01-01T00:01:10Z", f"finishedAt {predicate['finishedAt']!r}")
        expect(predicate["receipt"] == {"sha256": receipt_digest}, f"receipt {predicate['receipt']}")
        for name in ("planDigest", "logDigest", "receipt"):
            expect(HEX64.match(predicate[name].get("sha256", "")), f"{name} {predicate[name]}")
        expect(
            len(predicate["upstream"]) == 2
            and all(HEX64.match(d.get("sha256", "")) for d in predicate["upstream"]),
            f"upstream {predicate['upstream']}",
        )

        # The check must be able to fail: a flipped payload byte, or another key under the
        # same key id, must not verify.
        tampered = Envelope(
            bytes([envelope.payload[0] ^ 1]) + envelope.payload[1:],
            envelope.payload_type,
            envelope.signatures,
        )
        other_hex = ("00" if public_hex[:2] != "00" else "01") + public_hex[2:]
        impostor = SSlibKey(keyid, "ed25519", "ed25519", {"public": other_hex})
        for label, env, keys in (
            ("tampered payload", tampered, [key]),
            ("another key", envelope, [impostor]),
        ):
            try:
                env.verify(keys, 1)
            except (VerificationError, ValueError):
                continue
            raise CheckFailed(f"{label} verified")
    except (CheckFailed, VerificationError, KeyError, ValueError, OSError) as err:
        print(f"attest-check: FAIL: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print(f"attestation verifies with securesystemslib {version('securesystemslib')}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
