#!/usr/bin/env bash
# The audit's real-GPU check (issue #12): `scripts/hf_generate.py` with a KV cache, without one,
# and reloading its weights before every call, each run
#   - bare (tokens' checksum and wall time, no wattlens),
#   - under `wattlens run` (J per `generate` request: the A/B of cached against uncached),
#   - under `wattlens run --audit` (the findings, and the audit's slowdown),
# then scripts/audit_check.py prints the table and writes OUT/audit-check.json. Run from the
# repository root on a GPU machine with the bundle built:
#   bash scripts/audit-check.sh OUT [generate.py flags...]
set -u
out=$1; shift
bin=${WATTLENS:-.gpu-bundle/bin/wattlens}
mkdir -p "$out"
args=(--nvtx --iters "${ITERS:-3}" --batch "${BATCH:-8}" --prompt "${PROMPT:-32}" --new-tokens "${NEW:-32}" "$@")
for case in cache nocache reload; do
  case $case in cache) extra=() ;; nocache) extra=(--no-cache) ;; reload) extra=(--reload) ;; esac
  python3 scripts/hf_generate.py "${args[@]}" "${extra[@]}" > "$out/$case.bare.out" 2> "$out/$case.bare.err"
  "$bin" run -o "$out/$case.plain.wlt" --format json -- python3 scripts/hf_generate.py "${args[@]}" "${extra[@]}" \
    > "$out/$case.plain.json" 2> "$out/$case.plain.err" || echo "$case plain failed: $(tail -1 "$out/$case.plain.err")"
  "$bin" run --audit -o "$out/$case.audit.wlt" --format json -- python3 scripts/hf_generate.py "${args[@]}" "${extra[@]}" \
    > "$out/$case.audit.json" 2> "$out/$case.audit.err" || echo "$case audit failed: $(tail -1 "$out/$case.audit.err")"
done
python3 scripts/audit_check.py "$out"
