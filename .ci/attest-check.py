#!/usr/bin/env python3
"""Check that an Otto attestation verifies with securesystemslib, the reference DSSE
implementation, and that its in-toto statement has the documented shape.

Usage: python3 .ci/attest-check.py

It creates a virtualenv under target/attest-venv (reused when present), installs
securesystemslib into it, has `cargo run -p otto-handoff --example export_attestation`
write a deterministic attestation and the signing node's public key into a temporary
directory, and then re-runs itself inside the virtualenv to verify them. It exits non-zero
on any failure. docs/attestations.md gives the same steps by hand.
"""

import copy
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "target" / "attest-venv"
REQUIREMENT = "securesystemslib[crypto]>=1.0,<2"

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
    if len(sys.argv) != 1:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            REQUIREMENT,
        ],
        check=True,
    )
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
