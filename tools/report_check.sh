#!/usr/bin/env bash
# Opens a report.html in headless Chromium (Debian's package: apt-get install chromium), writes a
# screenshot and fails if the page logs anything to its console (errors included).
#
# Usage: tools/report_check.sh REPORT.html SCREENSHOT.png [WIDTH,HEIGHT]   (default 1400,2200)
set -euo pipefail
html=$(realpath "$1")
shot=$(realpath -m "$2")
size="${3:-1400,2200}"
profile=$(mktemp -d)
log=$(mktemp)
trap 'rm -rf "$profile" "$log"' EXIT
# the flags keep Chromium off the network (this machine has none) and out of the sandbox (root)
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --enable-logging=stderr --v=0 --hide-scrollbars \
  --window-size="$size" --screenshot="$shot" "file://$html" 2>"$log" >/dev/null
if grep -q "CONSOLE" "$log"; then
  echo "console messages in $html:" >&2
  grep "CONSOLE" "$log" >&2
  exit 1
fi
test -s "$shot"
echo "no console messages; screenshot $shot"
