#!/usr/bin/env bash
# `wattlens compare` on the GPU machine, on a user's own precision variants
# (scripts/variants_bench.py): fp16, bf16 and weight-only int8 as three commands, twice (the
# two verdicts' intervals should overlap); the same command given as two variants, three times
# (each A/A ratio's interval should hold 1); and the three as NVTX ranges of one program. The
# variants are recorded with kernel replay, so that the difference table's op classes resolve.
# Writes each comparison's report (.txt) and log (.err) to $OUT (or /tmp/compare-check).
#
#   bash scripts/compare-check.sh [BIN_DIR]      (default .gpu-bundle/bin)
#
# Environment: REPEATS (3), COOL (cool-down limit, s; 3), STEPS (steps of work per run; 300).
set -u
bin=$(cd "${1:-.gpu-bundle/bin}" && pwd)
out=${OUT:-/tmp/compare-check}
work=$(mktemp -d)
mkdir -p "$out"
export PATH="$bin:$PATH" PYTHONUNBUFFERED=1
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
b="python3 scripts/variants_bench.py --steps ${STEPS:-300}"
common=(--repeats "${REPEATS:-3}" --warmup 1 --cooldown-s "${COOL:-3}")
metric=(--metric 'max error ([0-9.e+-]+)')
for k in 1 2; do
  timeout 280 wattlens compare "${common[@]}" "${metric[@]}" --replay --kernel 'elementwise|nvjet|gemm' \
    --out-dir "$work/v$k" \
    --variant fp16="$b --dtype fp16" --variant bf16="$b --dtype bf16" \
    --variant int8="$b --dtype int8" >"$out/variants$k.txt" 2>"$out/variants$k.err"
  echo "variants $k: exit $?"
done
for k in 1 2 3; do
  timeout 120 wattlens compare "${common[@]}" --out-dir "$work/aa$k" \
    --variant a="$b --dtype fp16" --variant b="$b --dtype fp16" \
    >"$out/aa$k.txt" 2>"$out/aa$k.err"
  echo "A/A $k: exit $?"
done
timeout 90 wattlens compare --repeats 2 --warmup 0 --cooldown-s "${COOL:-3}" \
  --out-dir "$work/ranges" --ranges fp16,bf16,int8 -- $b --ranges \
  >"$out/ranges.txt" 2>"$out/ranges.err"
echo "ranges: exit $?"
grep -h "^verdict" "$out"/*.txt
