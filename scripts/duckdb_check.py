#!/usr/bin/env python3
"""Read `wattlens export --parquet DIR` with DuckDB and check that it reproduces each run's
per-op totals from `wattlens report --json`, and their sum across the runs.

    python3 scripts/duckdb_check.py DIR RUN=REPORT.json [RUN=REPORT.json ...]

Prints the merged per-op table (the README's query) and exits 1 on any difference.
"""
import json
import re
import sys

import duckdb

QUERY = """
SELECT op_class,
       count(DISTINCT run)                AS runs,
       sum(launches)                      AS launches,
       sum(busy_ns) / 1e6                 AS busy_ms,
       sum(dynamic_mj) / 1000             AS dynamic_j,
       sum(static_mj) / 1000              AS static_j,
       sum(dynamic_mj + static_mj) / 1000 AS joules
FROM '{dir}/ops/*.parquet'
GROUP BY op_class
ORDER BY joules DESC
"""


def main():
    folder, runs = sys.argv[1], dict(a.split("=", 1) for a in sys.argv[2:])
    per_run = duckdb.sql(
        f"SELECT run, device, op_class, launches, busy_ns, dynamic_mj, static_mj "
        f"FROM '{folder}/ops/*.parquet'").fetchall()
    # The JSON names an op class by its variant (GatherScatter), the tables by its label
    # (gather/scatter).
    def norm(name):
        return re.sub(r"[^a-z0-9]", "", name.lower())

    got = {(r[0], r[1], norm(r[2])): r[3:] for r in per_run}
    bad, merged = 0, {}
    for run, path in runs.items():
        report = json.load(open(path))
        for d in report["devices"]:
            for o in (d.get("attribution") or {}).get("ops", []):
                label = norm(o["op_class"])
                want = (o["launches"], o["busy_ns"], o["dynamic"]["mj"], o["static_share"]["mj"])
                key = (run, d["index"], label)
                if got.get(key) != want:
                    print(f"{key}: Parquet {got.get(key)} against the report's {want}")
                    bad += 1
                m = merged.setdefault(label, [0.0, 0.0])
                m[0] += want[2]
                m[1] += want[3]
    rows = duckdb.sql(QUERY.format(dir=folder)).fetchall()
    print("op_class        runs  launches    busy_ms   dynamic_j   static_j     joules")
    for r in rows:
        print(f"{r[0]:<15} {r[1]:>4} {r[2]:>9} {r[3]:>10.2f} {r[4]:>11.3f} {r[5]:>10.3f} {r[6]:>10.3f}")
        want = merged.get(norm(r[0]))
        if want is None or abs(r[4] * 1000 - want[0]) > 1e-9 * max(1.0, abs(want[0])) \
                or abs(r[5] * 1000 - want[1]) > 1e-9 * max(1.0, abs(want[1])):
            print(f"  merged {r[0]}: DuckDB {r[4] * 1000}, {r[5] * 1000} mJ against {want}")
            bad += 1
    if len(rows) != len(merged):
        print(f"{len(rows)} op classes in DuckDB against {len(merged)} in the reports")
        bad += 1
    print(f"duckdb: {len(got)} per-run op rows, {len(rows)} merged; {bad} differences")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
