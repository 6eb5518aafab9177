#!/usr/bin/env bash
# One pass over everything this project checks on the GPU machine, sized for one device call
# (about 7 minutes): the test bundle, kernel replay on the unmodified programs
# (scripts/replay-check.sh), the light mode's overhead against bare runs
# (scripts/run-overhead.sh) and a bare run of the request mix (scripts/requests_check.py).
# Packs its results into at most 8 files under $OUT.
#
#   bash scripts/gpu-check.sh [BIN_DIR]      (default .gpu-bundle/bin)
#
# Environment: REPLAY_ONLY (programs for replay-check, default all), OVH_REPEATS (3; 0 skips
# the overhead runs), SKIP_MIX (skips the bare request mix), BUNDLE_S and REPLAY_S (time limits of
# the bundle and of replay-check, s; 240 and 300; 0 skips them), AUDIT_S (time limit of scripts/audit-check.sh,
# s; 0, the default, skips it), IDLE_STATES (1 runs scripts/device/idle_states.py first, about
# 50 s: which idle power a launch-bound loop's closure should subtract).
set -u
bin=$(cd "${1:-.gpu-bundle/bin}" && pwd)
out=${OUT:-/tmp/gpu-check}
work=$(mktemp -d)
mkdir -p "$out" "$work/tests" "$work/replay" "$work/overhead"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,power.limit,temperature.gpu --format=csv >"$out/gpu.txt" 2>&1
[ -n "${IDLE_STATES:-}" ] && timeout 90 python3 scripts/device/idle_states.py >"$out/idle-states.json" 2>&1
[ "${BUNDLE_S:-240}" -gt 0 ] && OUT=$work/tests timeout ${BUNDLE_S:-240} bash .gpu-bundle/run \
  >"$out/bundle.txt" 2>&1
[ "${REPLAY_S:-300}" -gt 0 ] && ONLY=${REPLAY_ONLY:-} NO_PLAIN=1 OUT=$work/replay timeout ${REPLAY_S:-300} \
  bash scripts/replay-check.sh "$bin" >"$out/replay-summary.txt" 2>&1
[ "${OVH_REPEATS:-3}" -gt 0 ] && timeout 150 bash scripts/run-overhead.sh "$bin/wattlens" \
  "$work/overhead" "${OVH_REPEATS:-3}" 1000 8 bare,wattlens-light >"$out/overhead.txt" 2>&1
[ -z "${SKIP_MIX:-}" ] && timeout 60 python3 scripts/requests_check.py mix --requests 60 \
  >"$out/mix-bare.json" 2>&1
if [ "${AUDIT_S:-0}" -gt 0 ]; then
  mkdir -p "$work/audit"
  WATTLENS="$bin/wattlens" timeout "$AUDIT_S" bash scripts/audit-check.sh "$work/audit" \
    >"$out/audit-summary.txt" 2>&1
  cp "$work/audit/audit-check.json" "$out/" 2>/dev/null
  rm -f "$work"/audit/*.wlt
fi
rm -f "$work"/replay/*.json
tar czf "$out/tests.tgz" -C "$work/tests" .
(cd "$work" && tar czf - replay overhead $( [ -d audit ] && echo audit ) | split -b 15m - "$out/runs.tgz.")
[ -f "$out/bundle.txt" ] && tail -1 "$out/bundle.txt"
