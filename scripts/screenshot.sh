#!/usr/bin/env bash
# A screenshot of a page the platform serves, taken by headless Chromium with every host
# but the local one unreachable (as on an offline government network).
#   scripts/screenshot.sh http://127.0.0.1:8000/docs docs/images/api-docs.png [1400x1000]
# Needs Debian's chromium (apt-get install -y chromium).
set -euo pipefail
url=$1; out=$2; size=${3:-1400,1000}
browser=$(command -v chromium || command -v chromium-browser) || {
  echo "screenshot: install chromium first (apt-get install -y chromium)" >&2; exit 1; }
profile=$(mktemp -d); trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --host-resolver-rules="MAP * ~NOTFOUND, EXCLUDE 127.0.0.1" \
  --hide-scrollbars --window-size="${size/x/,}" --virtual-time-budget=15000 \
  --screenshot="$(realpath -m "$out")" "$url" 2>/dev/null
echo "screenshot: $out"
