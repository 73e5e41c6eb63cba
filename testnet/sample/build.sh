#!/bin/sh
# "Builds" the shop: stamps the version into the program and packs it under dist/.
set -eu
version=$(cat VERSION)
mkdir -p dist
sed "s/@VERSION@/$version/" shop.sh > dist/shop
chmod +x dist/shop
echo "$version" > dist/VERSION
echo "built shop $version"
