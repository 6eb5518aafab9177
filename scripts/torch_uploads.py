#!/usr/bin/env python3
"""Uploads of the same host tensor, for `wattlens run`'s content digests: what hashing adds to
one copy, and what the waste report makes of repeated uploads.

    python3 scripts/torch_uploads.py [--kib K] [--copies N]

Phase 1 copies the same pageable CPU tensor into one GPU tensor N times back to back (nothing
runs in between: every copy after the first is provably redundant). Phase 2 does it N more
times with a matmul between copies that does not touch the destination (likely waste, which
nothing outside the program can prove). Prints one JSON line: the median host time of one
copy in each phase, µs.
"""
import argparse
import json
import time

import torch


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--kib", type=int, default=4096, help="size of each upload, KiB")
    p.add_argument("--copies", type=int, default=200, help="uploads per phase")
    a = p.parse_args()

    src = torch.randn(a.kib * 256)  # float32: 256 per KiB; pageable host memory
    dst = torch.empty_like(src, device="cuda")
    x = torch.randn(1024, 1024, device="cuda")
    dst.copy_(src)
    torch.cuda.synchronize()

    def timed(between):
        times = []
        for _ in range(a.copies):
            between()
            t = time.perf_counter()
            dst.copy_(src)  # pageable: returns once the copy is done
            times.append(time.perf_counter() - t)
        torch.cuda.synchronize()
        times.sort()
        return 1e6 * times[len(times) // 2]

    back_to_back = timed(lambda: None)
    with_work = timed(lambda: x @ x)
    print(json.dumps({"kib": a.kib, "copies": a.copies,
                      "copy_us_back_to_back": back_to_back,
                      "copy_us_with_work": with_work}), flush=True)


if __name__ == "__main__":
    main()
