#!/usr/bin/env bash
# The browser tests of the node's web UI: headless Debian Chromium driving real nodes.
# Installs Chromium when it is missing (as root), installs playwright-core from the lock
# file, builds the Otto binaries with cargo, and runs `node --test`. Screenshots go to
# $CARGO_TARGET_DIR/ui-shots (default: <workspace>/target/ui-shots).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
workspace="$(dirname "$here")"

chromium="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "ui-tests: installing Debian's chromium"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
  else
    echo "error: $chromium is missing: install Debian's chromium (sudo apt-get install -y chromium) or set CHROMIUM to a Chromium executable" >&2
    exit 1
  fi
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "error: node and npm (Node 20 or newer) are needed" >&2
  exit 1
fi

echo "ui-tests: npm ci"
(cd "$here" && npm ci --no-audit --no-fund)

echo "ui-tests: cargo build --release (otto, otto-node, otto-agent, otto-testnet)"
(cd "$workspace" && cargo build --release --bin otto --bin otto-node --bin otto-agent --bin otto-testnet)

target="${CARGO_TARGET_DIR:-$workspace/target}"
mkdir -p "$target/ui-shots"
echo "ui-tests: node --test (screenshots in $target/ui-shots)"
cd "$here"
# Every test and hook has its own limit; this bounds the whole run as well.
timeout --kill-after=30 1200 node --test --test-concurrency=1 --test-timeout=300000 tests/*.test.mjs
