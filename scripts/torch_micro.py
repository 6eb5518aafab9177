#!/usr/bin/env python3
"""Per-call costs that `wattlens run` adds, measured in tight loops (so that slow machine states,
which last long, hit a whole measurement rather than part of it):

    python3 scripts/torch_micro.py [--calls N] [--repeats R]

Prints one JSON line with the median over R repeats of the wall time, ns, of:
  launch:       one tiny kernel launch (`x.add_(1)` on 16 floats), outside any NVTX range;
  launch_range: the same inside an open NVTX range (the launch is tagged with it);
  range:        one NVTX push and pop pair (`torch.cuda.nvtx`);
  sync:         one launch, then reading one value back (`x[0].item()`: a copy and a host wait),
                over a tenth as many calls.
Run it bare and under `wattlens run` and subtract.
"""
import argparse
import json
import statistics
import time

import torch


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, default=20000)
    p.add_argument("--repeats", type=int, default=7)
    a = p.parse_args()
    x = torch.zeros(16, device="cuda")
    push, pop = torch.cuda.nvtx.range_push, torch.cuda.nvtx.range_pop

    def launch(n):
        for _ in range(n):
            x.add_(1)

    def launch_range(n):
        push("outer")
        for _ in range(n):
            x.add_(1)
        pop()

    def ranges(n):
        for _ in range(n):
            push("r")
            pop()

    def syncs(n):
        for _ in range(n):
            x.add_(1)
            x[0].item()

    def per_call_ns(f, calls):
        f(100)  # warm-up
        torch.cuda.synchronize()
        t = time.perf_counter()
        f(calls)
        torch.cuda.synchronize()
        return (time.perf_counter() - t) / calls * 1e9

    out = {}
    loops = [("launch", launch, a.calls), ("launch_range", launch_range, a.calls),
             ("range", ranges, a.calls), ("sync", syncs, max(a.calls // 10, 1))]
    for name, f, calls in loops:
        out[name] = statistics.median(per_call_ns(f, calls) for _ in range(a.repeats))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
