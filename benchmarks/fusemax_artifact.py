"""einforge's model against the FuseMax artifact's results, point by point, for all five configurations.

For each configuration and each quantity (latency, energy, DRAM traffic) prints the ratio
ours / artifact at every (model, length) point and its range in the artifact's accounting
(``--accounting``, default ``fusemax-artifact``), the artifact's energy beyond ours per score
element, then the headline means; then the same headlines under physical accounting, which is
what the hardware would spend. The artifact's data come from ``sim.artifact_results()`` (see
``sim/fusemax_artifact/README.md``).

    python benchmarks/fusemax_artifact.py [--json] [--points] [--accounting physical]
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
    parser.add_argument(
        "--accounting", choices=tuple(sim.ACCOUNTINGS), default="fusemax-artifact", help="for the ratios"
    )
    args = parser.parse_args()
    art = sim.artifact_results()
    t0 = time.perf_counter()
    ours = {(r["config"], r["model"], r["seq"]): r["report"] for r in sim.compare(accounting=args.accounting)}
    sweep_s = time.perf_counter() - t0
    physical = (
        ours
        if args.accounting == "physical"
        else {(r["config"], r["model"], r["seq"]): r["report"] for r in sim.compare()}
    )
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
            if src == "physical":
                return float(getattr(physical[(c, *p)], FIELDS[field]))
            return (
                float(getattr(ours[(c, *p)], FIELDS[field])) if src == "ours" else art[(c, *p)][FIELDS[field]]
            )

        return statistics.mean(val(num, p) / val(den, p) for p in points)

    configs = {c.name: c for c in sim.CONFIGS}
    ours_e2e = {
        (acct, c, m, s): sim.run_config(configs[c], sim.workload(m, s), end_to_end=True, accounting=acct)
        for acct in {args.accounting, "physical"}
        for c in ("FuseMax", "FLAT")
        for m, s in points
    }

    def e2e_ratio(src: str, num: str, den: str, field: str) -> float:
        def val(c: str, p: tuple[str, int]) -> float:
            if src in ("ours", "physical"):
                acct = args.accounting if src == "ours" else "physical"
                return float(getattr(ours_e2e[(acct, c, *p)], FIELDS[field]))
            return art[(c, *p)][FIELDS[field]] + art[(f"end-to-end {c}", *p)][FIELDS[field]]

        return statistics.mean(val(num, p) / val(den, p) for p in points)

    # the artifact's energy beyond ours per score element (batch x heads x P x M), which tells a
    # cost per score from a cost per MAC: XLM has twice the MACs per score of the other models
    extra = {}
    for config in CONFIGS:
        per_score = {}
        for m, s in points:
            w = sim.workload(m, s)
            scores = w.instances * w.sizes["P"] * w.sizes["M"]
            per_score[f"{m} {s}"] = (
                art[(config, m, s)]["energy_pj"] - ours[(config, m, s)].energy_pj
            ) / scores
        extra[config] = per_score

    headline = {
        "speedup_vs_flat": {
            "ours": mean_ratio("ours", "FLAT", "FuseMax", "latency"),
            "artifact": mean_ratio("art", "FLAT", "FuseMax", "latency"),
            "physical": mean_ratio("physical", "FLAT", "FuseMax", "latency"),
        },
        "energy_vs_flat": {
            "ours": mean_ratio("ours", "FuseMax", "FLAT", "energy"),
            "artifact": mean_ratio("art", "FuseMax", "FLAT", "energy"),
            "physical": mean_ratio("physical", "FuseMax", "FLAT", "energy"),
        },
        "end_to_end_speedup_vs_flat": {
            "ours": e2e_ratio("ours", "FLAT", "FuseMax", "latency"),
            "artifact": e2e_ratio("art", "FLAT", "FuseMax", "latency"),
            "physical": e2e_ratio("physical", "FLAT", "FuseMax", "latency"),
        },
        "end_to_end_energy_vs_flat": {
            "ours": e2e_ratio("ours", "FuseMax", "FLAT", "energy"),
            "artifact": e2e_ratio("art", "FuseMax", "FLAT", "energy"),
            "physical": e2e_ratio("physical", "FuseMax", "FLAT", "energy"),
        },
    }
    # where the physical energy goes: per score element at BERT 1K, by component
    w = sim.workload("BERT", 1024)
    scores = w.instances * w.sizes["P"] * w.sizes["M"]
    breakdown = {
        c: {k: v / scores for k, v in physical[(c, "BERT", 1024)].per_component_pj.items()}
        for c in ("FuseMax", "FLAT")
    }
    if args.json:
        out = {
            "accounting": args.accounting,
            "sweep_s": sweep_s,
            "ratios": ratios,
            "extra_pj_per_score": extra,
            "headline": headline,
            "physical_pj_per_score_bert_1k": breakdown,
        }
        print(json.dumps(out, indent=2))
        return
    print(
        f"ours ({args.accounting} accounting) / artifact over {len(points)} points per configuration "
        f"(sweep {sweep_s:.2f} s)"
    )
    print(f"{'configuration':14s} {'quantity':8s} {'min':>7s} {'max':>7s} {'mean':>7s}")
    for config, per_field in ratios.items():
        for field, r in per_field.items():
            v = list(r.values())
            print(f"{config:14s} {field:8s} {min(v):7.4f} {max(v):7.4f} {statistics.mean(v):7.4f}")
            if args.points:
                for p, x in r.items():
                    print(f"    {p:12s} {x:.4f}")
    print("artifact's energy beyond ours, pJ per score element (E = 64 models; XLM, E = 128)")
    for config, per_score in extra.items():
        e64 = [x for p, x in per_score.items() if not p.startswith("XLM")]
        e128 = [x for p, x in per_score.items() if p.startswith("XLM")]
        print(f"{config:14s} {min(e64):7.1f} to {max(e64):7.1f}; XLM {min(e128):7.1f} to {max(e128):7.1f}")
    for name, h in headline.items():
        print(
            f"{name}: ours {h['ours']:.3f}, artifact {h['artifact']:.3f} "
            f"(ratio {h['ours'] / h['artifact']:.4f}); physical accounting {h['physical']:.3f}"
        )
    print("physical accounting, pJ per score element at BERT 1K:")
    for c, parts in breakdown.items():
        top = sorted(parts.items(), key=lambda kv: -kv[1])
        print(
            f"  {c:8s} {sum(parts.values()):8.1f} = "
            + " + ".join(f"{k} {v:.1f}" for k, v in top if v >= 0.05)
        )


if __name__ == "__main__":
    main()
