#!/usr/bin/env python3
"""Summarise interleaved A/B runs of `wattlens demo` for the waste detector's real-GPU check.

Usage: waste_ab.py DIR   (DIR/<switch>/<clean|waste>-<k>/{report.json,stdout.txt})

For each run, the energy the run cost is the counter energy of its session minus the idle
power over the session's idle padding (window - work time), so runs of different lengths
compare on the energy their work took (dynamic + idle over the work), less idle power over the device
idle time wattlens' own content hashing caused. The difference between
a waste run and its clean partner is compared with what the detector priced for the planted
kind (findings of that kind in the waste run minus those in the clean run).
"""
import json
import os
import re
import statistics
import sys

# The finding kinds each switch plants (a no-cache decoder recomputes its prefix and pads every
# step's rows), and the idle cause that marks a planted idle gap.
PLANTED = {
    "no-kv-cache": (("Recomputation", "PaddingCompute"), None),
    "reupload-weights": (("RedundantTransfer",), None),
    "dead-kernel": (("DeadWrite",), None),
    "duplicate-layernorm": (("Recomputation",), None),
    "padding-heavy": (("PaddingCompute",), None),
    "sync-every-kernel": (("IdleGap",), "idle after a host synchronisation"),
}


def run_summary(d):
    with open(os.path.join(d, "report.json")) as f:
        r = json.load(f)
    with open(os.path.join(d, "stdout.txt")) as f:
        out = f.read()
    m = re.search(r"generated \d+ tokens in ([0-9.]+) s", out)
    work_s = float(m.group(1)) if m else 0.0
    dev = r["devices"][0]
    a = dev["attribution"]
    c = a["closure"]
    idle_mw = a["idle_power"]["mw"]
    window_s = c["window_ns"] * 1e-9
    waste = dev.get("waste") or {}
    # Idle time wattlens' own content hashing caused is not the program's: take it out too.
    profiler_idle_s = waste.get("profiler_idle_ns", 0) * 1e-9
    # Kernels replayed alone (`--measure-alone`) ran inside the work time; their energy is the
    # profiler's, not the program's: their idle power over their time, and their dynamic
    # energy (the signature's dynamic power over the burst). A waste run may meet more
    # signatures than its clean partner (new shapes), so neither cancels.
    alone_s = sum(s.get("alone_ns", 0) for s in a["signatures"]) * 1e-9
    alone_mj = sum(
        s["dynamic_power"]["mw"] * s.get("alone_ns", 0) * 1e-9 for s in a["signatures"]
    )
    cost_mj = c["counter_mj"] - alone_mj - idle_mw * (
        max(window_s - work_s, 0.0) + profiler_idle_s + alone_s
    )
    findings = waste.get("findings", [])
    # Host pauses (idle gaps over 100 us: read-backs, host work, scheduling jitter) vary from
    # run to run by more than a small waste costs; the second measure leaves them out.
    # A gap a synchronisation ended in comes as two touching intervals (the part the wait
    # caused, and the rest), so merge them first.
    merged = []
    for a, b in sorted(
        (a, b)
        for f in findings
        if f["kind"] == "IdleGap"
        for a, b in f.get("idle_intervals", [])
    ):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    pauses_s = sum((b - a) * 1e-9 for a, b in merged if b - a > 100_000)
    return cost_mj, work_s, findings, idle_mw, cost_mj - idle_mw * pauses_s


def priced_time(findings, kinds, what):
    return sum(
        f["time_ns"]
        for f in findings
        if f["kind"] in kinds and (what is None or f["what"] == what)
    ) * 1e-9


def priced_saved(findings, kinds, what):
    """How much sooner the detector says the run would end without the findings, s."""
    return sum(
        f.get("run_saved_ns") or 0
        for f in findings
        if f["kind"] in kinds and (what is None or f["what"] == what)
    ) * 1e-9


def priced(findings, kinds, what):
    return sum(
        f["energy"]["mj"]
        for f in findings
        if f["kind"] in kinds and (what is None or f["what"] == what)
    )


def mean_ci(xs):
    """(low, mean, high): the mean of xs and its two-sided 95% t interval."""
    n = len(xs)
    # Student t quantiles (0.975) by degrees of freedom; between entries the smaller df's (the
    # wider interval) is used.
    t = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
         10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042}
    df = n - 1
    q = t[max(k for k in t if k <= df)]
    mean = statistics.fmean(xs)
    half = q * statistics.stdev(xs) / n ** 0.5
    return mean - half, mean, mean + half


def main(root):
    for switch in sorted(os.listdir(root)):
        base = os.path.join(root, switch)
        if switch not in PLANTED or not os.path.isdir(base):
            continue
        kind, what = PLANTED[switch]
        ks = sorted({n.split("-")[1] for n in os.listdir(base) if "-" in n})
        diffs, prices, lines, quiet = [], [], [], []
        for k in ks:
            try:
                cc, cw, cf, _, cq = run_summary(os.path.join(base, f"clean-{k}"))
                wc, ww, wf, idle_mw, wq = run_summary(os.path.join(base, f"waste-{k}"))
            except (OSError, KeyError, ValueError, json.JSONDecodeError) as e:
                lines.append(f"  pair {k}: unreadable ({e})")
                continue
            d = wc - cc
            p = priced(wf, kind, what) - priced(cf, kind, what)
            diffs.append(d)
            quiet.append(wq - cq)
            prices.append(p)
            lines.append(
                f"  pair {k}: clean {cc/1e3:.2f} J ({cw:.2f} s), waste {wc/1e3:.2f} J ({ww:.2f} s): "
                f"difference {d/1e3:.3f} J ({(wq - cq)/1e3:.3f} J without host pauses), detector {p/1e3:.3f} J "
                f"(waste run {priced(wf, kind, what)/1e3:.3f} J, clean run {priced(cf, kind, what)/1e3:.3f} J); "
                f"work {1e3*(ww-cw):+.0f} ms, detector time {1e3*(priced_time(wf, kind, what)-priced_time(cf, kind, what)):.0f} ms, "
                f"detector run saves {1e3*(priced_saved(wf, kind, what)-priced_saved(cf, kind, what)):.0f} ms, "
                f"idle power {idle_mw/1e3:.1f} W"
            )
        print(f"{switch} -> {' + '.join(kind)}{' / ' + what if what else ''}")
        for l in lines:
            print(l)
        if diffs:
            md, mp = statistics.median(diffs), statistics.median(prices)
            sd = statistics.stdev(diffs) if len(diffs) > 1 else float("nan")
            rel = (mp - md) / md if md else float("nan")
            print(
                f"  median difference {md/1e3:.3f} J (sd {sd/1e3:.3f} J over {len(diffs)} pairs), "
                f"median detector {mp/1e3:.3f} J, detector/difference - 1 = {rel*100:+.1f}%"
            )
            mq = statistics.median(quiet)
            sq = statistics.stdev(quiet) if len(quiet) > 1 else float("nan")
            relq = (mp - mq) / mq if mq else float("nan")
            print(
                f"  without host pauses: median difference {mq/1e3:.3f} J (sd {sq/1e3:.3f} J), "
                f"detector/difference - 1 = {relq*100:+.1f}%"
            )
            for name, xs in (("difference", diffs), ("without host pauses", quiet)):
                if len(xs) > 2:
                    lo, mean, hi = mean_ci(xs)
                    print(
                        f"  {name}: mean {mean/1e3:.3f} J, 95% CI [{lo/1e3:.3f}, {hi/1e3:.3f}] J; "
                        f"detector {mp/1e3:.3f} J is {(mp/mean - 1)*100:+.1f}% of the mean"
                    )


if __name__ == "__main__":
    main(sys.argv[1])
