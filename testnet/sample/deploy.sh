#!/bin/sh
# "Deploys" the built shop (in DIST, default dist/) to an environment: copies it under
# deployed/ENV/ and notes
# when. A real deploy would use $DEPLOY_TOKEN against $TARGET_HOST; the token is a file
# in $OTTO_SECRETS_DIR when the environment lists it, and the log shows it masked.
set -eu
env=$1
dist=${2:-dist}
mkdir -p "deployed/$env"
cp "$dist/shop" "$dist/VERSION" "deployed/$env/"
date +%s > "deployed/$env/.deployed_at"
if [ -f "${OTTO_SECRETS_DIR:-/nonexistent}/DEPLOY_TOKEN" ]; then
  echo "authenticating to ${TARGET_HOST:-?} with token $(cat "$OTTO_SECRETS_DIR/DEPLOY_TOKEN")"
fi
echo "deployed shop $(cat "$dist/VERSION") to $env (${TARGET_HOST:-?})"
