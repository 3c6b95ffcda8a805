"""einforge's model against the FuseMax artifact's results, point by point, for all five configurations.

For each configuration and each quantity (latency, energy, DRAM traffic) prints the ratio
ours / artifact at every (model, length) point and its range, then the headline means. The
artifact's data come from ``sim.artifact_results()`` (see ``sim/fusemax_artifact/README.md``).

    python benchmarks/fusemax_artifact.py [--json] [--points]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import sim

CONFIGS = ("FuseMax", "+Architecture", "+Cascade", "FLAT", "Unfused")
FIELDS = {"latency": "latency_s", "energy": "energy_pj", "traffic": "traffic_bytes"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--points", action="store_true", help="print every point, not only the ranges")
    args = parser.parse_args()
    art = sim.artifact_results()
    t0 = time.perf_counter()
    ours = {(r["config"], r["model"], r["seq"]): r["report"] for r in sim.compare()}
    sweep_s = time.perf_counter() - t0
    points = [(m, s) for m in sim.MODELS for s in sim.SEQ_LENGTHS]
    ratios = {
        config: {
            field: {
                f"{m} {s}": getattr(ours[(config, m, s)], attr) / art[(config, m, s)][attr] for m, s in points
            }
            for field, attr in FIELDS.items()
        }
        for config in CONFIGS
    }

    def mean_ratio(src: str, num: str, den: str, field: str) -> float:
        def val(c: str, p: tuple[str, int]) -> float:
            return (
                float(getattr(ours[(c, *p)], FIELDS[field])) if src == "ours" else art[(c, *p)][FIELDS[field]]
            )

        return statistics.mean(val(num, p) / val(den, p) for p in points)

    configs = {c.name: c for c in sim.CONFIGS}
    ours_e2e = {
        (c, m, s): sim.run_config(configs[c], sim.workload(m, s), end_to_end=True)
        for c in ("FuseMax", "FLAT")
        for m, s in points
    }

    def e2e_ratio(src: str, num: str, den: str, field: str) -> float:
        def val(c: str, p: tuple[str, int]) -> float:
            if src == "ours":
                return float(getattr(ours_e2e[(c, *p)], FIELDS[field]))
            return art[(c, *p)][FIELDS[field]] + art[(f"end-to-end {c}", *p)][FIELDS[field]]

        return statistics.mean(val(num, p) / val(den, p) for p in points)

    headline = {
        "speedup_vs_flat": {
            "ours": mean_ratio("ours", "FLAT", "FuseMax", "latency"),
            "artifact": mean_ratio("art", "FLAT", "FuseMax", "latency"),
        },
        "energy_vs_flat": {
            "ours": mean_ratio("ours", "FuseMax", "FLAT", "energy"),
            "artifact": mean_ratio("art", "FuseMax", "FLAT", "energy"),
        },
        "end_to_end_speedup_vs_flat": {
            "ours": e2e_ratio("ours", "FLAT", "FuseMax", "latency"),
            "artifact": e2e_ratio("art", "FLAT", "FuseMax", "latency"),
        },
        "end_to_end_energy_vs_flat": {
            "ours": e2e_ratio("ours", "FuseMax", "FLAT", "energy"),
            "artifact": e2e_ratio("art", "FuseMax", "FLAT", "energy"),
        },
    }
    if args.json:
        print(json.dumps({"sweep_s": sweep_s, "ratios": ratios, "headline": headline}, indent=2))
        return
    print(f"ours / artifact over {len(points)} points per configuration (sweep {sweep_s:.2f} s)")
    print(f"{'configuration':14s} {'quantity':8s} {'min':>7s} {'max':>7s} {'mean':>7s}")
    for config, per_field in ratios.items():
        for field, r in per_field.items():
            v = list(r.values())
            print(f"{config:14s} {field:8s} {min(v):7.4f} {max(v):7.4f} {statistics.mean(v):7.4f}")
            if args.points:
                for p, x in r.items():
                    print(f"    {p:12s} {x:.4f}")
    for name, h in headline.items():
        print(
            f"{name}: ours {h['ours']:.3f}, artifact {h['artifact']:.3f} "
            f"(ratio {h['ours'] / h['artifact']:.4f})"
        )


if __name__ == "__main__":
    main()
