#!/bin/sh
# Tests the built shop: it must greet with the version it was built from.
set -eu
version=$(cat VERSION)
out=$(./dist/shop tester)
case "$out" in
  "shop $version: hello, tester") echo "ok: $out" ;;
  *) echo "unexpected output: $out" >&2; exit 1 ;;
esac
