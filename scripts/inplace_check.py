#!/usr/bin/env python3
"""A loop that updates a tensor in place: every replay of its kernels must be undone, or the
result is wrong. Prints one JSON line with the iterations, whether the tensor holds exactly
what they add up to, and a checksum.

    python3 scripts/inplace_check.py [--iters N]
"""
import argparse
import hashlib
import json
import time

import torch


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--iters", type=int, default=40_000)
    a = p.parse_args()
    dev = torch.device("cuda")
    x = torch.zeros(1 << 22, device=dev)
    w = torch.randn(1024, 1024, device=dev, generator=torch.Generator(device=dev).manual_seed(0))
    y = torch.zeros(1024, 1024, device=dev)
    t0 = time.perf_counter()
    for i in range(a.iters):
        x.add_(1.0)  # in place: a replay that is not undone adds again
        y.addmm_(w, w, beta=0.5, alpha=1e-3)  # in place, reads what it writes
        if i % 50 == 49:
            torch.cuda.synchronize()
    torch.cuda.synchronize()
    loop_s = time.perf_counter() - t0
    exact = bool((x == float(a.iters)).all().item())
    digest = hashlib.sha256(y.cpu().numpy().tobytes()).hexdigest()
    print(json.dumps({"iters": a.iters, "loop_s": loop_s, "exact": exact, "checksum": digest}),
          flush=True)


if __name__ == "__main__":
    main()
