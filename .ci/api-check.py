#!/usr/bin/env python3
"""Check that a real node answers exactly as docs/openapi.yaml says, with schemathesis.

Usage: python3 .ci/api-check.py
(otto, otto-node and otto-agent from $OTTO_BIN_DIR when set, else from the release build)

It creates a virtualenv under target/api-venv (reused when present) with a pinned
schemathesis, makes a node home in a temporary directory with the release otto-node
(built if it is not yet), starts the node, starts one run through the API with the
release `otto` (a stage waiting on an input gate, so the run routes have a real run to
reach through the spec's links), then runs schemathesis with every check, a fixed seed
and a small example budget against the node's API, and stops the node. It exits non-zero
on any failure schemathesis reports. The webhook listener (/hooks/{token}, HTTPS, its own
tests in node/) is left out.
"""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "target" / "api-venv"
REQUIREMENT = "schemathesis==4.32.5"
# Small enough for CI (about a minute on two cores), large enough to reach every
# documented status of every operation.
EXAMPLES = "10"
SEED = "1"
OTTOFILE = """pipeline {
  name = 'api-check'
  stages {
    stage { name = 'Deploy'  gates { enter { input 'Ship it?' } }  steps { sh 'true' } }
  }
}
"""


def main():
    if len(sys.argv) != 1:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", REQUIREMENT],
        check=True,
    )
    if os.environ.get("OTTO_BIN_DIR"):
        bins = Path(os.environ["OTTO_BIN_DIR"]).resolve()
    else:
        subprocess.run(
            ["cargo", "build", "-q", "--release", "--bin", "otto", "--bin", "otto-node", "--bin", "otto-agent"],
            check=True,
            cwd=ROOT,
        )
        bins = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
        bins = (ROOT / bins / "release").resolve()
    with tempfile.TemporaryDirectory(prefix="otto-api-check-") as work:
        work = Path(work)
        home = work / "home"
        env = dict(os.environ, OTTO_HOME=str(home), OTTO_AGENT=str(bins / "otto-agent"))
        env.pop("OTTO_NODE", None)
        subprocess.run(
            [str(bins / "otto-node"), "init", "--org", "acme", "--name", "n1", "--no-run-as"],
            check=True, env=env, stdout=subprocess.DEVNULL,
        )
        log = open(work / "node.log", "wb")
        node = subprocess.Popen([str(bins / "otto-node"), "start"], env=env, stdout=log, stderr=log)
        try:
            addr = wait_for(home / "api.addr", node)
            token = (home / "api.token").read_text().strip()
            project = work / "project"
            project.mkdir()
            (project / "Ottofile").write_text(OTTOFILE)
            seeded = subprocess.run(
                [str(bins / "otto"), "run", "--detach", str(project)], env=env, capture_output=True, text=True
            )
            if seeded.returncode != 0:
                print(f"api-check: FAIL: otto run: {seeded.stderr.strip()}", file=sys.stderr)
                return 1
            print(seeded.stdout.strip())
            started = time.monotonic()
            result = subprocess.run(
                [
                    str(VENV / "bin" / "schemathesis"),
                    "--config-file", str(ROOT / ".ci" / "schemathesis.toml"),
                    "run", str(ROOT / "docs" / "openapi.yaml"),
                    "--url", f"http://{addr}",
                    "--header", f"Authorization: Bearer {token}",
                    "--checks", "all",
                    "--max-examples", EXAMPLES,
                    "--seed", SEED,
                    "--generation-database", "none",
                    "--exclude-path", "/hooks/{token}",
                    "--no-color",
                    "--output-truncate", "true",
                ],
                cwd=work,
            )
            print(f"schemathesis took {time.monotonic() - started:.0f} s")
            if node.poll() is not None:
                print(f"api-check: FAIL: the node exited during the run; its log:\n{(work / 'node.log').read_text()[-4000:]}", file=sys.stderr)
                return 1
            if result.returncode != 0:
                print("api-check: FAIL: schemathesis found failures (above)", file=sys.stderr)
                return 1
        finally:
            node.send_signal(signal.SIGTERM)
            try:
                node.wait(timeout=30)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait()
            log.close()
    print("the node answers as docs/openapi.yaml says: ok")
    return 0


def wait_for(path, node):
    """The text of `path` once the node wrote it; at most 60 s, or until the node exits."""
    for _ in range(600):
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        if node.poll() is not None:
            raise SystemExit(f"api-check: FAIL: the node exited with {node.returncode} before it served")
        time.sleep(0.1)
    raise SystemExit(f"api-check: FAIL: {path} did not appear within 60 s")


if __name__ == "__main__":
    sys.exit(main())
