#!/bin/sh
# The health check of an environment: healthy once the deployed shop has had two seconds
# to warm up and answers with its version.
set -eu
env=$1
at=$(cat "deployed/$env/.deployed_at" 2>/dev/null) || { echo "not deployed yet"; exit 1; }
if [ $(( $(date +%s) - at )) -lt 2 ]; then
  echo "warming up"
  exit 1
fi
"deployed/$env/shop" health-check
