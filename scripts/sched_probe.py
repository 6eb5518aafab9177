#!/usr/bin/env python3
"""Sample how the host schedules a process's threads, to explain slow stretches of a loop.

Usage: sched_probe.py PATTERN OUT.tsv [PERIOD_MS]

Waits for a process whose command line contains PATTERN (not this one), then until it exits
writes one line per sample of its main thread, every PERIOD_MS (default 5):
    t_s  cpu  run_ns  wait_ns  slices  vol_cs  invol_cs  busy_threads
- t_s: time.monotonic() (CLOCK_MONOTONIC, the clock of time.perf_counter() on Linux);
- cpu: the CPU the main thread last ran on;
- run_ns, wait_ns, slices: /proc/PID/schedstat (time on a CPU, time runnable but waiting for
  one, timeslices), cumulative;
- vol_cs, invol_cs: voluntary and involuntary context switches, cumulative;
- busy_threads: the process's other threads that used CPU since the last sample, as
  name@cpu, comma-separated.
"""
import os
import sys
import time


def find(pattern):
    """The newest process whose command line holds `pattern`: the program itself, not the
    `wattlens run` or `timeout` that started it (their command lines hold it too)."""
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
        if pattern in cmd and "sched_probe" not in cmd:
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
            f.write(f"{t:.6f}\t{cpu}\t{run_ns}\t{wait_ns}\t{slices}\t{vol}\t{invol}\t{','.join(busy)}\n")
            time.sleep(max(0.0, period_ms / 1e3 - (time.monotonic() - t)))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 5.0)
