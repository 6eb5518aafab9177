#!/usr/bin/env python3
"""Summarise scripts/multi-gpu-check.sh's runs (issue #15): per GPU, the closure against its own
counter; the op class of every NCCL kernel; the load-imbalance finding of the imbalanced run on
each GPU against the A/B (that GPU's counter energy over the request loop, imbalanced less
balanced, bare runs); whether each run's checksum matches its bare run's.

Usage: multi_gpu_summary.py DIR
"""
import json
import os
import re
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def checksum(path):
    try:
        with open(path) as f:
            found = re.findall(r"^checksum (\w+)", f.read(), re.M)
    except OSError:
        return None
    return found[-1] if found else None


def gpu_lines(case, report):
    """Print, per GPU of one report: closure, NCCL kernels' classes, load-imbalance findings."""
    for dev in report.get("devices", []):
        a = dev.get("attribution") or {}
        c = a.get("closure") or {}
        counter = c.get("counter_mj") or 0.0
        residual = c.get("residual_mj") or 0.0
        nccl = [s for s in a.get("signatures", []) if "nccl" in s["name"].lower()]
        classes = sorted({s.get("op_class") for s in nccl})
        imbalance = [
            f["energy"] for f in (dev.get("waste") or {}).get("findings", [])
            if f["kind"] == "LoadImbalance"
        ]
        j = sum(e["mj"] for e in imbalance) / 1000.0
        lo = sum(e["low_mj"] for e in imbalance) / 1000.0
        hi = sum(e["high_mj"] for e in imbalance) / 1000.0
        print(
            f"{case:10} GPU {dev.get('index')} ({dev.get('name')}): closure "
            f"{100.0 * residual / counter if counter else float('nan'):+.2f}% of "
            f"{counter / 1000.0:.1f} J; {len(nccl)} NCCL signatures, classes {classes}; "
            f"load imbalance {j:.2f} J [{lo:.2f}, {hi:.2f}]"
        )


def main():
    d = sys.argv[1]
    for case in ("balanced", "imbalanced"):
        r = load(os.path.join(d, f"{case}.json"))
        if r is None:
            print(f"{case}: no report")
            continue
        gpu_lines(case, r)
        bare = checksum(os.path.join(d, f"{case}.bare.out"))
        run = checksum(os.path.join(d, f"{case}.run.out"))
        same = "no checksum printed" if bare is None or run is None else bare == run
        print(f"{case:10} output identical to the bare run: {same}")
    bal = load(os.path.join(d, "balanced.bare.json"))
    imb = load(os.path.join(d, "imbalanced.bare.json"))
    if not bal or not imb:
        print("A/B: missing a bare run")
        return
    print(f"A/B (bare runs, the slow rank sleeping {imb['imbalance_ms']} ms before each all-reduce):")
    for b, i in zip(bal["ranks"], imb["ranks"]):
        ab = (i["energy_mj"] - b["energy_mj"]) / 1000.0
        print(
            f"  rank {b['rank']} ({b['uuid']}): {b['energy_mj'] / 1000.0:.1f} J in {b['seconds']:.2f} s "
            f"balanced, {i['energy_mj'] / 1000.0:.1f} J in {i['seconds']:.2f} s imbalanced: "
            f"+{ab:.2f} J"
        )


if __name__ == "__main__":
    main()
