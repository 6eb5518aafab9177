#!/usr/bin/env bash
# Regenerate the LLVM IR fixtures of wattlens-passes from CUDA C with clang-19: the hard
# fixtures in passes/tests/fixtures/cuda/ and every kernel the kernels crate ships.
set -euo pipefail
cd "$(dirname "$0")/.."
out=passes/tests/fixtures
flags=(-x cuda --cuda-device-only -nocudainc -nocudalib --cuda-gpu-arch=sm_90 -O3 -S -emit-llvm
       -fno-discard-value-names -Xclang -target-feature -Xclang +ptx80)
for src in passes/tests/fixtures/cuda/*.cu kernels/cuda/*.cu; do
  name=$(basename "$src" .cu)
  clang-19 "${flags[@]}" "$src" -o "$out/$name.ll"
  # Keep fixtures independent of where the repository lives.
  sed -i -e "s|$(pwd)/||g" "$out/$name.ll"
done
echo "regenerated: $(ls $out/*.ll | wc -l) fixtures in $out"
