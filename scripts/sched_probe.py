#!/usr/bin/env python3
"""Sample how the host schedules a process's threads, to explain slow stretches of a loop.

Usage: sched_probe.py PATTERN OUT.tsv [PERIOD_MS]
       sched_probe.py --summary DIR

Waits for a Python process whose command line contains PATTERN (not this one), then until it exits
writes one line per sample of its main thread, every PERIOD_MS (default 5):
    t_s  cpu  run_ns  wait_ns  slices  vol_cs  invol_cs  busy_threads  steal  khz
- t_s: time.monotonic() (CLOCK_MONOTONIC, the clock of time.perf_counter() on Linux);
- cpu: the CPU the main thread last ran on;
- run_ns, wait_ns, slices: /proc/PID/schedstat (time on a CPU, time runnable but waiting for
  one, timeslices), cumulative;
- vol_cs, invol_cs: voluntary and involuntary context switches, cumulative;
- busy_threads: the process's other threads that used CPU since the last sample, as
  name@cpu, comma-separated;
- steal: /proc/stat's steal ticks (USER_HZ) of the CPU the main thread last ran on, cumulative:
  time a hypervisor ran something else on that virtual CPU;
- khz: that CPU's current clock from cpufreq, kHz (empty where the host does not expose it).

--summary DIR reads the probe.MODE.I.tsv and steps.MODE.I.tsv pairs that
`PROBE=1 scripts/run-overhead.sh` leaves in DIR and prints, per mode, the main thread's
voluntary and involuntary context switches during the inference loop (median of the runs,
with the range), and the loop's length.
"""
import os
import sys
import time


def find(pattern):
    """The newest Python process whose command line holds `pattern`: the program itself, not
    the `wattlens run`, `env` or `timeout` that started it (their command lines hold it too)."""
    me = os.getpid()
    found = None
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == me:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        python = os.path.basename(cmd.split(" ", 1)[0]).startswith("python")
        if python and pattern in cmd and "sched_probe" not in cmd:
            found = max(found or 0, int(pid))
    return found


def stat(path):
    """(comm, cpu, utime + stime ticks) of one /proc stat file."""
    with open(path) as f:
        line = f.read()
    close = line.rfind(")")
    comm = line[line.find("(") + 1:close]
    rest = line[close + 2:].split()
    # After the name: state is field 3; utime 14, stime 15, processor 39.
    return comm, int(rest[36]), int(rest[11]) + int(rest[12])


def steal_ticks(cpu):
    """Steal ticks of CPU `cpu` from /proc/stat, or -1."""
    with open("/proc/stat") as f:
        for l in f:
            if l.startswith(f"cpu{cpu} "):
                v = l.split()
                return int(v[8]) if len(v) > 8 else -1
    return -1


def khz(cpu):
    try:
        with open(f"/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_cur_freq") as f:
            return f.read().strip()
    except OSError:
        return ""


def main(pattern, out, period_ms=5.0):
    deadline = time.monotonic() + 120
    pid = None
    while pid is None and time.monotonic() < deadline:
        pid = find(pattern)
        time.sleep(0.005)
    if pid is None:
        sys.exit(f"no process matching {pattern!r} appeared in 120 s")
    last_ticks = {}
    with open(out, "w") as f:
        f.write(f"# pid {pid}\n")
        while True:
            t = time.monotonic()
            try:
                _, cpu, _ = stat(f"/proc/{pid}/stat")
                with open(f"/proc/{pid}/schedstat") as s:
                    run_ns, wait_ns, slices = s.read().split()
                vol = invol = 0
                with open(f"/proc/{pid}/status") as s:
                    for l in s:
                        if l.startswith("voluntary_ctxt_switches"):
                            vol = int(l.split()[1])
                        elif l.startswith("nonvoluntary_ctxt_switches"):
                            invol = int(l.split()[1])
                busy = []
                for tid in os.listdir(f"/proc/{pid}/task"):
                    if int(tid) == pid:
                        continue
                    try:
                        comm, tcpu, ticks = stat(f"/proc/{pid}/task/{tid}/stat")
                    except (OSError, IndexError, ValueError):
                        continue
                    if ticks > last_ticks.get(tid, ticks):
                        busy.append(f"{comm}@{tcpu}")
                    last_ticks[tid] = ticks
            except (OSError, IndexError, ValueError):
                break
            f.write(f"{t:.6f}\t{cpu}\t{run_ns}\t{wait_ns}\t{slices}\t{vol}\t{invol}\t"
                    f"{','.join(busy)}\t{steal_ticks(cpu)}\t{khz(cpu)}\n")
            time.sleep(max(0.0, period_ms / 1e3 - (time.monotonic() - t)))


def loop_switches(probe, steps):
    """(voluntary, involuntary switches, loop length s) of the main thread over the loop of
    one run: the samples from the loop's start to its end, on CLOCK_MONOTONIC."""
    with open(steps) as f:
        start = float(f.readline().rsplit(":", 1)[1])
        ends = [float(l.split()[0]) for l in f if l.strip()]
    end = start + (ends[-1] if ends else 0.0)
    inside = []
    with open(probe) as f:
        for l in f:
            if l.startswith("#"):
                continue
            c = l.rstrip("\n").split("\t")
            if start <= float(c[0]) <= end:
                inside.append((int(c[5]), int(c[6])))
    if len(inside) < 2:
        return None
    return inside[-1][0] - inside[0][0], inside[-1][1] - inside[0][1], end - start


def summary(directory):
    import glob
    import statistics

    by = {}
    for probe in sorted(glob.glob(os.path.join(directory, "probe.*.tsv"))):
        name = os.path.basename(probe)[len("probe."):-len(".tsv")]
        mode, _, _ = name.rpartition(".")
        steps = os.path.join(directory, f"steps.{name}.tsv")
        if os.path.exists(steps):
            r = loop_switches(probe, steps)
            if r:
                by.setdefault(mode, []).append(r)
    print("mode\truns\tvoluntary (median, range)\tinvoluntary (median)\tloop s (median)")
    for mode, rows in by.items():
        vol = [r[0] for r in rows]
        print(f"{mode}\t{len(rows)}\t{statistics.median(vol):g} ({min(vol)}-{max(vol)})\t"
              f"{statistics.median(r[1] for r in rows):g}\t{statistics.median(r[2] for r in rows):.3f}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--summary":
        summary(sys.argv[2])
        sys.exit(0)
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 5.0)
