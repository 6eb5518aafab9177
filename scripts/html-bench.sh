#!/usr/bin/env bash
# The HTML report of a trace of 1 M kernel spans and 100 k power readings (issue #14: "opens
# and draws in under 5 s"): the time `wattlens report --html` takes (reading, attribution,
# waste, the page), the page's size, and headless Chromium opening it, three times (the page's
# own drawing time, from its data-draw-ms, and the browser's whole run).
#
#   bash scripts/html-bench.sh [SPANS]      (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
spans=${1:-1000000}
work=$(mktemp -d)
cargo build --release -q -p wattlens-instrument --example big_trace
cargo build --release -q --bin wattlens
./target/release/examples/big_trace "$work/big.wlt" "$spans"
/usr/bin/time -f "wattlens report --html: %e s wall, %M KB peak" \
  ./target/release/wattlens report "$work/big.wlt" --html "$work/big.html" >/dev/null 2>"$work/report.err"
tail -1 "$work/report.err"
echo "page: $(stat -c %s "$work/big.html") bytes"
for i in 1 2 3; do
  start=$(date +%s.%N)
  dom=$(timeout 60 chromium --headless --no-sandbox --disable-gpu --dump-dom "file://$work/big.html" 2>/dev/null)
  end=$(date +%s.%N)
  echo "chromium run $i: $(echo "$end - $start" | bc) s, $(grep -o 'data-status="[a-z]*" data-draw-ms="[0-9]*"' <<<"$dom")"
done
rm -rf "$work"
