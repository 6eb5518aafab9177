#!/usr/bin/env python3
"""Summarise `scripts/audit-check.sh OUT`: per case (cache, nocache, reload) the tokens'
checksum bare, under `wattlens run` and under `wattlens run --audit`; the audit's findings in
the timed `generate` requests; the A/B energy of a request without a cache against one with it
(plain runs) beside what the audit priced as recomputation; the audit's slowdown. Writes
OUT/audit-check.json."""
import json
import sys
from pathlib import Path


def split(path):
    """(the program's JSON line, wattlens' JSON report) of a run's stdout."""
    text = Path(path).read_text() if Path(path).exists() else ""
    program, report = None, None
    dec = json.JSONDecoder()
    i = 0
    while i < len(text):
        j = text.find("{", i)
        if j < 0:
            break
        try:
            obj, end = dec.raw_decode(text, j)
        except json.JSONDecodeError:
            i = j + 1
            continue
        if "checksum" in obj:
            program = obj
        elif "devices" in obj:
            report = obj
        i = end
    return program, report


def generate_request(report):
    for d in (report or {}).get("devices", []):
        reqs = ((d.get("attribution") or {}).get("requests") or {}).get("ranges", [])
        for r in reqs:
            if r.get("path") == "generate":
                return r
    return None


def findings(report, region="generate"):
    out = []
    for d in (report or {}).get("devices", []):
        for f in ((d.get("waste") or {}).get("findings") or []):
            if f["kind"] == "IdleGap":
                continue
            out.append({"kind": f["kind"], "what": f["what"], "region": f["region"],
                        "times": f["occurrences"], "mj": f["energy"]["mj"],
                        "low_mj": f["energy"]["low_mj"], "high_mj": f["energy"]["high_mj"],
                        "in_requests": f["region"].startswith(region)})
    return out


def audit_cost(report):
    for d in (report or {}).get("devices", []):
        a = (d.get("waste") or {}).get("audit")
        if a:
            return a
    return None


def main():
    out = Path(sys.argv[1])
    result = {}
    for case in ("cache", "nocache", "reload"):
        bare, _ = split(out / f"{case}.bare.out")
        plain_prog, plain = split(out / f"{case}.plain.json")
        audit_prog, audit = split(out / f"{case}.audit.json")
        req = generate_request(plain)
        result[case] = {
            "checksums_equal": bool(bare and plain_prog and audit_prog)
            and bare["checksum"] == plain_prog["checksum"] == audit_prog["checksum"],
            "bare_loop_s": bare and bare["loop_s"],
            "audit_loop_s": audit_prog and audit_prog["loop_s"],
            "iters": bare and bare["iters"],
            "request_mean_mj": req and req["mean"],
            "request_count": req and req["count"],
            "findings": findings(audit),
            "audit": audit_cost(audit),
        }
    c, n = result["cache"], result["nocache"]
    if c["request_mean_mj"] and n["request_mean_mj"]:
        ab = n["request_mean_mj"]["mj"] - c["request_mean_mj"]["mj"]
        found = sum(f["mj"] for f in n["findings"]
                    if f["kind"] == "Recomputation" and f["in_requests"]) / max(n["iters"] or 1, 1)
        result["prefix_ab"] = {"ab_mj_per_request": ab, "audit_mj_per_request": found,
                               "ratio": found / ab if ab else None}
    for case, r in result.items():
        if case == "prefix_ab":
            continue
        slow = (r["audit_loop_s"] / r["bare_loop_s"]) if r["bare_loop_s"] and r["audit_loop_s"] else None
        print(f"{case}: tokens identical {r['checksums_equal']}; audit slowdown "
              f"{slow and round(slow, 1)}x ({r['audit_loop_s']} s against {r['bare_loop_s']} s)")
        for f in sorted(r["findings"], key=lambda f: -f["mj"])[:8]:
            print(f"  {f['kind']:18s} {f['what'][:48]:48s} x{f['times']:<6d} {f['mj']/1e3:9.3f} J "
                  f"[{f['low_mj']/1e3:.3f}, {f['high_mj']/1e3:.3f}] {'(in generate)' if f['in_requests'] else ''}")
    if "prefix_ab" in result:
        p = result["prefix_ab"]
        print(f"prefix A/B: a request without a cache costs {p['ab_mj_per_request']/1e3:.3f} J more; "
              f"the audit priced {p['audit_mj_per_request']/1e3:.3f} J of recomputation per request "
              f"(ratio {p['ratio'] and round(p['ratio'], 3)})")
    (out / "audit-check.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
