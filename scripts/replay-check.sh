#!/usr/bin/env bash
# Kernel replay on the GPU machine, on programs not written for wattlens: each runs bare, under
# `wattlens run --replay`, and under plain `wattlens run`. Writes every output and report to
# $OUT (or /tmp/replay-check) and prints a summary table last:
#   measured shares of kernel and op-class busy time, the replay closure, what replay cost,
#   whether the program's output is bit-identical, and what plain runs leave in `unknown`.
#
#   bash scripts/replay-check.sh [BIN_DIR]      (default .gpu-bundle/bin)
set -u
bin=$(cd "${1:-.gpu-bundle/bin}" && pwd)
out=${OUT:-/tmp/replay-check}
mkdir -p "$out"
export PATH="$bin:$PATH"
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -d "$d" ] && export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"
done
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu --format=csv >"$out/gpu.txt" 2>&1
nvcc -O2 -o /tmp/cublas_app tests/data/cublas_app.cu -lcublas >"$out/nvcc.txt" 2>&1

programs=(
  "hf|python3 scripts/hf_generate.py --iters ${HF_ITERS:-12}"
  "hf64|python3 scripts/hf_generate.py --iters ${HF64_ITERS:-4} --batch 64"
  "hf256|python3 scripts/hf_generate.py --iters ${HF256_ITERS:-3} --batch 256 --prompt 256 --new-tokens 16"
  "torch|python3 scripts/torch_infer.py --steps ${TORCH_STEPS:-1500} --checksum"
  "cublas|/tmp/cublas_app ${CUBLAS_STEPS:-6000}"
  "inplace|python3 scripts/inplace_check.py"
)
for entry in "${programs[@]}"; do
  name=${entry%%|*}; cmd=${entry#*|}
  [ -n "${ONLY:-}" ] && [[ ",$ONLY," != *",$name,"* ]] && continue
  echo "== $name: $cmd" >&2
  timeout 300 $cmd >"$out/$name.bare.out" 2>"$out/$name.bare.err"
  for mode in replay plain; do
    [ "$mode" = plain ] && [ -n "${NO_PLAIN:-}" ] && continue
    flags=(--no-report -o "$out/$name.$mode.wlt")
    [ "$mode" = replay ] && flags+=(--replay ${REPLAY_ARGS:-})
    timeout 300 wattlens run "${flags[@]}" -- $cmd >"$out/$name.$mode.out" 2>"$out/$name.$mode.err"
    wattlens report --json "$out/$name.$mode.wlt" >"$out/$name.$mode.json" 2>>"$out/$name.$mode.err"
    wattlens report "$out/$name.$mode.wlt" >"$out/$name.$mode.txt" 2>&1
  done
done
python3 scripts/replay_summary.py "$out"
