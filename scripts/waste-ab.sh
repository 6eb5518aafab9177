#!/usr/bin/env bash
# The waste detector's real-GPU check: interleaved pairs of `wattlens demo` runs, clean and with
# one planted waste, each reported as JSON; then scripts/waste_ab.py compares the energy
# difference of each pair with what the detector priced. Run on a GPU machine from the
# repository root with the bundle built (bash .gpu-bundle/...): 
#   bash scripts/waste-ab.sh OUTDIR PAIRS STEPS SWITCH...
# KEEP_TRACES=1 keeps each run's demo.wlt (for a second look at a pair that stands out).
# DEMO_ARGS adds arguments to both runs of each pair (e.g. "--decode-matmul register", so a
# cached run decodes with the same matmul kernel as one without a cache; or "--cublas").
# WASTE_ARGS adds arguments to the waste runs only (e.g. "--duplicates 8", so that the small
# duplicated-LayerNorm waste rises above the pairs' noise).
set -u
out=$1 pairs=$2 steps=$3; shift 3
bin=${WATTLENS:-.gpu-bundle/bin/wattlens}
for sw in "$@"; do
  for k in $(seq 1 "$pairs"); do
    # Alternate the order so drift (warm-up, temperature) falls on both sides alike.
    if [ $((k % 2)) -eq 1 ]; then order="clean waste"; else order="waste clean"; fi
    for which in $order; do
      d="$out/$sw/$which-$k"; mkdir -p "$d"
      if [ "$which" = waste ]; then extra="--waste $sw ${WASTE_ARGS:-}"; else extra=""; fi
      "$bin" demo --steps "$steps" $extra ${DEMO_ARGS:-} --out-dir "$d" > "$d/stdout.txt" 2>&1 || echo "run $d failed: $(tail -1 "$d/stdout.txt")"
      "$bin" report "$d/demo.wlt" --json > "$d/report.json" 2>/dev/null
      rm -f "$d/demo.perfetto.json" "$d/demo.pftrace"
      [ -n "${KEEP_TRACES:-}" ] || rm -f "$d/demo.wlt"
    done
  done
done
python3 "$(dirname "$0")/waste_ab.py" "$out"
