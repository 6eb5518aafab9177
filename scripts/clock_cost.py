#!/usr/bin/env python3
"""What a clock read and a system call cost on this machine: the clock source, then
time.monotonic_ns (a vDSO read where the clock source allows it), a one-byte os.write to
/dev/null (a real system call) and time.thread_time_ns, each in ns per call, three times.

wattlens' injection library stamps every NVTX range and callback with the clock, so a machine
whose clock source forces a system call per read would make `wattlens run` dearer there.
Usage: python3 scripts/clock_cost.py
"""
import os
import time


def per_call_ns(f, n):
    t = time.perf_counter_ns()
    for _ in range(n):
        f()
    return (time.perf_counter_ns() - t) / n


def main():
    base = "/sys/devices/system/clocksource/clocksource0/"
    try:
        with open(base + "current_clocksource") as cur, open(base + "available_clocksource") as av:
            print("clocksource", cur.read().strip(), "available", av.read().strip())
    except OSError as e:
        print(f"clocksource unknown ({e})")
    fd = os.open("/dev/null", os.O_WRONLY)
    for _ in range(3):
        print(
            "monotonic_ns %.0f ns" % per_call_ns(time.monotonic_ns, 200_000),
            "os.write /dev/null %.0f ns" % per_call_ns(lambda: os.write(fd, b"x"), 20_000),
            "thread_time_ns %.0f ns" % per_call_ns(time.thread_time_ns, 20_000),
        )


if __name__ == "__main__":
    main()
