#!/usr/bin/env bash
# Per-request and per-token energy on the GPU machine (issue #11), on a workload not written
# for wattlens (scripts/requests_check.py): the truth (each request kind alone in a loop,
# measured by the energy counter without wattlens), then the same requests mixed at random
# under `wattlens run` and `wattlens run --light`, each with Zeus windows in the same run,
# then a continuous-batching loop, then the profiler's overhead (bare, light and full runs of
# one loop, interleaved). Writes outputs, traces and reports to $OUT (or /tmp/requests-check).
#
#   bash scripts/requests-check.sh [BIN_DIR]      (default .gpu-bundle/bin)
#
# Zeus travels as wheels (scripts/fetch-wheels.sh puts them in .whl/); without them the Zeus
# columns say why they are missing.
set -u
bin=$(cd "${1:-.gpu-bundle/bin}" && pwd)
out=${OUT:-/tmp/requests-check}
mkdir -p "$out"
export PATH="$bin:$PATH" PYTHONUNBUFFERED=1
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -d "$d" ] && export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"
done
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl >"$out/req.pip.txt" 2>&1 && export PYTHONPATH=/tmp/site
fi
py="python3 scripts/requests_check.py"
log="$out/req.log"
: >"$log"
step() { echo "== $*" >>"$log"; "$@" >>"$log" 2>&1; }

for kind in short long; do
  step $py truth --kind "$kind" --seconds "${TRUTH_S:-6}"
done
n=${MIX_REQUESTS:-60}
step $py mix --requests "$n"
step wattlens run --no-report -o "$out/req.full.wlt" -- $py mix --requests "$n" --zeus "$out/req.full.zeus.json"
step wattlens run --light --no-report -o "$out/req.light.wlt" -- $py mix --requests "$n" --zeus "$out/req.light.zeus.json"
step $py batched
step wattlens run --no-report -o "$out/req.batched.wlt" -- $py batched
# Overhead: the short kind's loop bare, light and full, interleaved twice.
for rep in 1 2; do
  step $py truth --kind short --seconds 4
  step wattlens run --light --no-report -o "$out/ovh.light$rep.wlt" -- $py truth --kind short --seconds 4
  step wattlens run --no-report -o "$out/ovh.full$rep.wlt" -- $py truth --kind short --seconds 4
done
for t in full light batched; do
  wattlens report "$out/req.$t.wlt" >"$out/req.$t.txt" 2>&1
done
grep -h '^{' "$log" >"$out/req.lines.json"
