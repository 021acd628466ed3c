#!/usr/bin/env bash
# Refreshes the vendored copy of Leaflet in the package's static files from npm (the HTML map pages must work
# offline: no CDN). Usage: scripts/vendor-leaflet.sh [VERSION]   (default: the version vendored now)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
dest="$here/src/ogcflow/web/static/vendor/leaflet"
version="${1:-$(cat "$dest/VERSION" 2>/dev/null || echo 1.9.4)}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "leaflet@$version" >/dev/null)
tar -xzf "$work"/leaflet-*.tgz -C "$work"
mkdir -p "$dest"
rm -rf "${dest:?}"/*
cp "$work/package/dist/leaflet.js" "$work/package/dist/leaflet.css" "$work/package/LICENSE" "$dest/"
echo "$version" > "$dest/VERSION"
du -sh "$dest"
