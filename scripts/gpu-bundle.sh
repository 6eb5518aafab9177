#!/usr/bin/env bash
# gpu-bundle: build this workspace's test executables and binaries here, and pack them into
# .gpu-bundle/ with a runner script, so they can be run on a machine that has an NVIDIA GPU
# but no Rust toolchain. Run it from the project's root.
#
#   bash scripts/gpu-bundle.sh [cargo selection flags...]     e.g.  -p wattlens-runtime -p wattlens
#
# Then, on the GPU machine, from the project's root:
#   bash .gpu-bundle/run [FILTER]        runs every bundled test executable, GPU tests included
#   .gpu-bundle/bin/NAME ...             runs a bundled binary
# The runner prints one line per executable and closes with 'N passed, N failed'.
# Test executables are run from their own package's folder, as `cargo test` would.
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
out=.gpu-bundle
rm -rf "$out"; mkdir -p "$out/tests" "$out/bin"
grep -qxF "/$out/" .gitignore 2>/dev/null || echo "note: add '/$out/' to .gitignore" >&2

json=$(mktemp)
cargo test --release --no-run --message-format=json-render-diagnostics "$@" >"$json"
cargo build --release --bins --lib --message-format=json-render-diagnostics "$@" >>"$json" 2>/dev/null \
  || cargo build --release --bins --message-format=json-render-diagnostics "$@" >>"$json"

python3 - "$json" "$root" "$out" <<'PY'
import json, os, shutil, sys
path, root, out = sys.argv[1:]
tests, bins = [], set()
for line in open(path):
    line = line.strip()
    if not line.startswith("{"):
        continue
    m = json.loads(line)
    if m.get("reason") != "compiler-artifact" or not m.get("executable"):
        continue  # libraries without an executable are handled below
    pkg_dir = os.path.relpath(os.path.dirname(m["manifest_path"]), root)
    exe = m["executable"]
    if m["profile"].get("test"):
        name = f'{m["target"]["name"]}-{os.path.basename(exe).rsplit("-", 1)[-1]}'
        shutil.copy2(exe, os.path.join(out, "tests", name))
        tests.append((name, pkg_dir))
    elif "bin" in m["target"]["kind"]:
        shutil.copy2(exe, os.path.join(out, "bin", os.path.basename(exe)))
        bins.add(os.path.basename(exe))
for line in open(path):
    # shared libraries (cdylib), e.g. an injection library, go next to the binaries
    line = line.strip()
    if not line.startswith("{"):
        continue
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and "cdylib" in m.get("target", {}).get("kind", []):
        for f in m.get("filenames", []):
            if f.endswith(".so"):
                shutil.copy2(f, os.path.join(out, "bin", os.path.basename(f)))
                bins.add(os.path.basename(f))
with open(os.path.join(out, "tests.list"), "w") as f:
    for name, d in sorted(set(tests)):
        f.write(f"{name}\t{d}\n")
print(f"bundled {len(set(tests))} test executables and {len(bins)} binaries: {', '.join(sorted(bins))}")
PY
rm -f "$json"
strip "$out"/tests/* "$out"/bin/* 2>/dev/null || true

cat >"$out/run" <<'RUN'
#!/usr/bin/env bash
# Runs every bundled test executable: its CPU tests in parallel, then its GPU tests (the ignored
# ones) one at a time.
set -u
here=$(cd "$(dirname "$0")" && pwd); root=$(dirname "$here")
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda/extras/CUPTI/lib64; do
  [ -d "$d" ] && export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"
done
export PATH="$here/bin:$PATH"
filter=${1:-}
# CPU tests that need what the GPU machine lacks (DuckDB from PyPI, Chromium): CI runs them.
skips=(--skip parquet_tables_reproduce_each_runs_per_op_totals --skip the_html_report_is_self_contained)
echo "skipped here, run by CI: ${skips[*]}"
tests=0 failed=0 broken=0
while IFS=$'\t' read -r name dir; do
  log="${OUT:-/tmp}/test-$name.log"
  # The CPU tests first, in parallel as cargo runs them; then the GPU tests (the ignored ones)
  # one at a time, so that no test's power readings include another's work.
  (cd "$root/$dir" || exit 1
   "$here/tests/$name" "${skips[@]}" ${filter:+"$filter"}; cpu=$?
   "$here/tests/$name" --ignored --test-threads=1 "${skips[@]}" ${filter:+"$filter"}; gpu=$?
   [ "$cpu" -eq 0 ] && exit "$gpu"; exit "$cpu") >"$log" 2>&1
  code=$?
  p=$(grep -Eo '[0-9]+ passed' "$log" | awk '{s+=$1} END {print s+0}')
  f=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')
  tests=$((tests+p)); failed=$((failed+f))
  if [ "$code" -eq 0 ]; then echo "ok     $name: $p passed"
  else
    [ "$f" -eq 0 ] && broken=$((broken+1))
    echo "FAILED $name: $p passed, $f failed, exit $code (log: $log)"
    grep -E "^(test .* FAILED|---- |thread .* panicked|error)" "$log" | head -20
  fi
done <"$here/tests.list"
[ "$broken" -gt 0 ] && echo "$broken test executables exited non-zero without a failed test (see their logs)"
echo "$tests passed, $((failed+broken)) failed"
[ "$failed" -eq 0 ] && [ "$broken" -eq 0 ]
RUN
chmod +x "$out/run"
du -sh "$out" | awk '{print "bundle size: " $1 " (keep it well under 64 MiB)"}'
echo "on the GPU machine, from the project root: bash $out/run"
