#!/usr/bin/env bash
# Issue #15 on a machine of two or more GPUs: a tensor-parallel model of our own
# (scripts/tp_infer.py, NCCL all-reduces, a request per NVTX range) under torchrun, balanced and
# with the last rank sleeping before every all-reduce. Each case runs bare (each GPU's counter
# energy over the request loop, read by pynvml: the A/B truth of the imbalance) and under
# `wattlens run`; scripts/multi_gpu_summary.py prints each GPU's closure, the classes of the
# NCCL kernels, the load-imbalance finding against the A/B, and whether outputs match.
#
#   bash scripts/multi-gpu-check.sh [BIN_DIR]      (default .gpu-bundle/bin)
#
# Environment: NPROC (ranks, 2), IMBALANCE_MS (the slow rank's sleep, 0.5), REQUESTS (24),
# OUT (/tmp/multi-gpu-check).
set -u
bin=$(cd "${1:-.gpu-bundle/bin}" && pwd)
out=${OUT:-/tmp/multi-gpu-check}
mkdir -p "$out"
export PATH="$bin:$PATH" PYTHONUNBUFFERED=1
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=index,name,uuid,power.limit --format=csv >"$out/gpus.txt" 2>&1
tp=(torchrun --nproc-per-node "${NPROC:-2}" scripts/tp_infer.py --requests "${REQUESTS:-24}")
for case in balanced imbalanced; do
  ms=0
  [ "$case" = imbalanced ] && ms=${IMBALANCE_MS:-0.5}
  timeout 240 "${tp[@]}" --imbalance-ms "$ms" --energy-out "$out/$case.bare.json" \
    >"$out/$case.bare.out" 2>"$out/$case.bare.err" || echo "$case bare failed: $(tail -1 "$out/$case.bare.err")"
  timeout 300 wattlens run --no-report -o "$out/$case.wlt" -- "${tp[@]}" --imbalance-ms "$ms" \
    >"$out/$case.run.out" 2>"$out/$case.run.err" || echo "$case run failed: $(tail -1 "$out/$case.run.err")"
  wattlens report --json "$out/$case.wlt" >"$out/$case.json" 2>>"$out/$case.run.err"
  wattlens report "$out/$case.wlt" >"$out/$case.txt" 2>&1
done
python3 scripts/multi_gpu_summary.py "$out"
