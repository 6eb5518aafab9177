#!/usr/bin/env bash
# Wall-clock cost of `wattlens run` on the PyTorch script, against the same script run bare and
# under torch.profiler, interleaved so that clocks and temperature drift hit every mode alike.
#   scripts/run-overhead.sh WATTLENS OUT_DIR [REPEATS] [STEPS] [BATCH] [MODES]
# MODES (comma-separated, default all): bare, wattlens, wattlens-nvtx (NVTX ranges but no
# launch tagging), wattlens-light (`wattlens run --light`: ranges and sensors only), nvtx-cupti (NVTX routed through CUPTI's callbacks, the earlier design),
# wattlens-kernels (kernel records only, no copies, memsets or syncs),
# wattlens-activity (CUPTI activity records only), kinds:A+B[/HOOKS] (only these activity
# kinds, of kernel, memcpy, memset, sync; HOOKS all, nvtx or none; sync is timed by callbacks,
# so none leaves it out, and naming it with none is refused), env:VAR=VALUE (wattlens
# with one setting, such as env:WATTLENS_POWER=off), bin:PATH (another build of wattlens, at
# PATH, with its injection library beside it: two builds compared on one machine), torch-profiler, nsys (Nsight Systems tracing CUDA and NVTX,
# where `nsys` is installed).
# GPU_TIMES=1 also times each step's forward on the GPU (CUDA events; gpu_ms_median in runs.tsv).
# PIN_CPUS=LIST runs every mode under `taskset -c LIST` (such as the GPU's NUMA node).
# STEP_TIMES=1 keeps each run's step times (steps.MODE.I.tsv) for finding periodic stalls.
# PROBE=1 (implies STEP_TIMES=1) also samples how the host schedules the script's main thread
# during each run (scripts/sched_probe.py, probe.MODE.I.tsv) and prints its context switches
# over the loop, per mode.
# The host's CPU model and clock source go to machine.txt.
# Each run's stderr is kept as err.MODE.I.log (for wattlens, its closing lines: the CPU time
# of its own threads and of the program's busiest ones).
# Prints, per mode, the medians of three wall times and their slowdown against the bare run:
#   command: the whole command (for wattlens, with its reading of the sensors after the
#            program and the trace it then completes);
#   process: the profiled program's own process, start to exit;
#   loop:    the script's inference loop;
#   step:    the median time of one step of that loop;
#   peak:    the most common step time (0.02 ms bins), the host's fast state: some machines
#            have slow stretches, whole seconds at up to twice the step time, in bare runs too.
set -euo pipefail
wattlens=$1 out=$2 repeats=${3:-3} steps=${4:-2000} batch=${5:-8}
[ -z "${PROBE:-}" ] || STEP_TIMES=1
modes=${6:-bare,wattlens,wattlens-nvtx,wattlens-activity,torch-profiler}
mkdir -p "$out"
: >"$out/runs.tsv"
# Which host this ran on: the launch-bound cost differs between machines by more than 3%.
{ lscpu 2>/dev/null | grep -E 'Model name|^CPU\(s\)|Thread\(s\) per core'
  echo "clock source: $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null)"
} >"$out/machine.txt" || true
for i in $(seq 1 "$repeats"); do
  for mode in ${modes//,/ }; do
    cmd=(python3 scripts/torch_infer.py --steps "$steps" --batch "$batch")
    run=("$wattlens" run --no-report -o "$out/run.wlt" --)
    case $mode in
      bare) ;;
      wattlens) cmd=("${run[@]}" "${cmd[@]}") ;;
      wattlens-nvtx) cmd=(env WATTLENS_HOOKS=nvtx "${run[@]}" "${cmd[@]}") ;;
      wattlens-light) cmd=("$wattlens" run --light --no-report -o "$out/run.wlt" -- "${cmd[@]}") ;;
      nvtx-cupti)
        cupti=$(ls /usr/local/cuda/extras/CUPTI/lib64/libcupti.so* /usr/local/cuda/targets/*/lib/libcupti.so* 2>/dev/null | head -n 1 || true)
        cmd=(env "NVTX_INJECTION64_PATH=$cupti" "${run[@]}" "${cmd[@]}") ;;
      wattlens-kernels) cmd=(env WATTLENS_KINDS=kernel "${run[@]}" "${cmd[@]}") ;;
      kinds:*)
        spec=${mode#kinds:} hooks=all
        case $spec in */*) hooks=${spec#*/} spec=${spec%%/*} ;; esac
        cmd=(env "WATTLENS_KINDS=${spec//+/,}" "WATTLENS_HOOKS=$hooks" "${run[@]}" "${cmd[@]}") ;;
      wattlens-activity)
        cmd=(env WATTLENS_HOOKS=none NVTX_INJECTION64_PATH=/nonexistent "${run[@]}" "${cmd[@]}") ;;
      env:*) cmd=(env "${mode#env:}" "${run[@]}" "${cmd[@]}") ;;
      bin:*) cmd=("${mode#bin:}" "${run[@]:1}" "${cmd[@]}") ;;
      torch-profiler) cmd+=(--torch-profiler) ;;
      nsys) cmd=(nsys profile -t cuda,nvtx -s none --cpuctxsw none -o "$out/nsys" -f true "${cmd[@]}") ;;
      *) echo "unknown mode $mode" >&2; exit 2 ;;
    esac
    tag=${mode//[^A-Za-z0-9_.-]/_}.$i
    [ -z "${STEP_TIMES:-}" ] || cmd+=(--step-times "$out/steps.$tag.tsv")
    probe=
    if [ -n "${PROBE:-}" ]; then
      python3 scripts/sched_probe.py torch_infer.py "$out/probe.$tag.tsv" 5 &
      probe=$!
    fi
    [ -z "${GPU_TIMES:-}" ] || cmd+=(--gpu-times)
    [ -z "${PIN_CPUS:-}" ] || cmd=(taskset -c "$PIN_CPUS" "${cmd[@]}")
    t0=$(date +%s%N)
    line=$("${cmd[@]}" 2>"$out/last.err" | tail -n 1)
    t1=$(date +%s%N)
    [ -z "$probe" ] || wait "$probe" || true
    cat "$out/last.err" >>"$out/stderr.log"
    cp "$out/last.err" "$out/err.${mode//[^A-Za-z0-9_.-]/_}.$i.log"
    command_us=$(( (t1 - t0) / 1000 ))
    process_s=$(sed -n 's/^wattlens: .* ran for \([0-9.]*\) s$/\1/p' "$out/last.err" | tail -n 1)
    [ -n "$process_s" ] || process_s=$(python3 -c "print($command_us / 1e6)")
    printf '%s\t%s\t%s\t%s\t%s\n' "$mode" "$i" "$command_us" "$process_s" "$line" >>"$out/runs.tsv"
  done
done
python3 - "$out/runs.tsv" <<'PY'
import json, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
by = {}
for mode, _i, command_us, process_s, line in rows:
    out = json.loads(line)
    by.setdefault(mode, []).append((int(command_us) / 1e6, float(process_s), out["loop_s"],
                                    out.get("step_ms_median", 0.0) / 1e3,
                                    out.get("step_ms_peak", 0.0) / 1e3,
                                    out.get("stall_s", 0.0)))
med = {m: [statistics.median(r[k] for r in v) for k in range(6)] for m, v in by.items()}
base = med["bare"]
for m, vals in med.items():
    cells = "  ".join(f"{name} {v:7.4f} s ({(v / b - 1) * 100:+6.2f}%)"
                      for name, v, b in zip(("command", "process", "loop", "step", "peak"), vals, base))
    print(f"{m:17s} runs {len(by[m])}  {cells}  stalls {vals[5]:.4f} s")
PY
[ -z "${PROBE:-}" ] || python3 scripts/sched_probe.py --summary "$out"
