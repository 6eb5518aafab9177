#!/usr/bin/env python3
"""Summarise scripts/replay-check.sh's folder: one row per program and mode."""
import json
import os
import re
import sys


def checksum(path):
    """The program's checksum (its JSON line's, or cublas_app's printed one)."""
    try:
        text = open(path).read()
    except OSError:
        return None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                v = json.loads(line)
                c = v.get("checksum")
                if "exact" in v:
                    c = f"{c}:{'exact' if v['exact'] else 'WRONG'}"
                return c
            except ValueError:
                pass
        m = re.search(r"checksum ([0-9a-f]+)", line)
        if m:
            return m.group(1)
    return None


def attribution(path):
    try:
        r = json.load(open(path))
        return r["devices"][0]["attribution"]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def main():
    out = sys.argv[1]
    names = sorted({f.split(".")[0] for f in os.listdir(out) if f.endswith(".bare.out")})
    rows = []
    for n in names:
        bare = checksum(f"{out}/{n}.bare.out")
        for mode in ("replay", "plain"):
            a = attribution(f"{out}/{n}.{mode}.json")
            if a is None:
                if os.path.exists(f"{out}/{n}.{mode}.json"):
                    rows.append(f"{n:8} {mode:6} no attribution (see {n}.{mode}.err)")
                continue
            same = checksum(f"{out}/{n}.{mode}.out")
            m = a.get("measured", {})
            cap = a.get("board_cap_mw")
            highs = [s["dynamic_power"]["high_mw"] for s in a["signatures"]]
            over = sum(1 for h in highs if cap is not None and h > cap + 1e-6)
            busy = sum(s["busy_ns"] for s in a["signatures"] if s["kind"] == "kernel") or 1
            unknown = [s for s in a["signatures"] if s["op_class"] == "Unknown" and s["kind"] == "kernel"]
            unknown_share = sum(s["busy_ns"] for s in unknown) / busy
            r = a.get("replay") or {}
            c = r.get("closure") or {}
            clo = a["closure"]
            rows.append(
                f"{n:8} {mode:6} kernels measured {100*m.get('kernel_busy',0):5.1f}%  ops measured "
                f"{100*m.get('op_busy',0):5.1f}%  closure {100*clo['residual_mj']/max(clo['counter_mj'],1):+.2f}%  "
                f"replayed {r.get('signatures','-')} sigs ({100*r.get('replayed_busy_share',0):.1f}% busy) "
                f"held {r.get('held_ns',0)/1e9:.1f} s  replay closure "
                f"{c.get('ratio',float('nan')):.3f} [{c.get('ratio_low',float('nan')):.3f}, {c.get('ratio_high',float('nan')):.3f}]  "
                f"notes {len(r.get('notes',[]))}  bounds>cap {over}/{len(highs)} (cap {0 if cap is None else cap/1000:.0f} W, "
                f"max {max(highs or [0])/1000:.0f} W)  unknown {100*unknown_share:.1f}% ({len(unknown)} sigs)  "
                f"output {'SAME' if same == bare and bare else 'DIFFERS'} ({bare} / {same})"
            )
            for s in unknown[:10]:
                rows.append(f"    unknown: {s['name'][:150]} ({s['busy_ns']/1e6:.1f} ms)")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
