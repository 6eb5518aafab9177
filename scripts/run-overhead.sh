#!/usr/bin/env bash
# Wall-clock cost of `wattlens run` on the PyTorch script, against the same script run bare and
# under torch.profiler, interleaved so that clocks and temperature drift hit every mode alike.
#   scripts/run-overhead.sh WATTLENS OUT_DIR [REPEATS] [STEPS] [BATCH] [MODES]
# MODES (comma-separated, default all): bare, wattlens, wattlens-nvtx (NVTX ranges but no
# launch tagging), wattlens-activity (CUPTI activity records only), torch-profiler.
# Prints the median whole-process wall time and inference-loop time of each mode, and each
# mode's slowdown against the bare run.
set -euo pipefail
wattlens=$1 out=$2 repeats=${3:-3} steps=${4:-2000} batch=${5:-8}
modes=${6:-bare,wattlens,wattlens-nvtx,wattlens-activity,torch-profiler}
mkdir -p "$out"
: >"$out/runs.tsv"
for i in $(seq 1 "$repeats"); do
  for mode in ${modes//,/ }; do
    cmd=(python3 scripts/torch_infer.py --steps "$steps" --batch "$batch")
    run=("$wattlens" run --no-report -o "$out/run.wlt" --)
    case $mode in
      bare) ;;
      wattlens) cmd=("${run[@]}" "${cmd[@]}") ;;
      wattlens-nvtx) cmd=(env WATTLENS_HOOKS=nvtx "${run[@]}" "${cmd[@]}") ;;
      wattlens-activity)
        cmd=(env WATTLENS_HOOKS=none NVTX_INJECTION64_PATH=/nonexistent "${run[@]}" "${cmd[@]}") ;;
      torch-profiler) cmd+=(--torch-profiler) ;;
      *) echo "unknown mode $mode" >&2; exit 2 ;;
    esac
    t0=$(date +%s%N)
    line=$("${cmd[@]}" 2>>"$out/stderr.log" | tail -n 1)
    t1=$(date +%s%N)
    printf '%s\t%s\t%s\t%s\n' "$mode" "$i" "$(( (t1 - t0) / 1000 ))" "$line" >>"$out/runs.tsv"
  done
done
python3 - "$out/runs.tsv" <<'PY'
import json, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
by = {}
for mode, _i, wall_us, line in rows:
    by.setdefault(mode, []).append((int(wall_us) / 1e6, json.loads(line)["loop_s"]))
med = {m: (statistics.median(w for w, _ in v), statistics.median(l for _, l in v))
       for m, v in by.items()}
bw, bl = med["bare"]
for m, (w, l) in med.items():
    print(f"{m:17s} runs {len(by[m])}  wall {w:7.3f} s ({(w / bw - 1) * 100:+6.2f}%)  "
          f"loop {l:7.3f} s ({(l / bl - 1) * 100:+6.2f}%)")
PY
