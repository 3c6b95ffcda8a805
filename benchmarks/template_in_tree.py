"""The template's schedules at the FuseMax artifact's points, costed again in the preset's tree
(mapper.as_tree): FuseMax's and FLAT's fused kernel (as_tree.fused), the Unfused baseline's three
kernels (as_tree.kernels). Per point, whether the tree's latency and DRAM bytes equal the
template's, the ratio of their energies, and the time each takes; or the typed error for what the
tree does not state yet.

    python benchmarks/template_in_tree.py [--arch fusemax|flat|unfused] [--cascade NAME]
        [--accounting physical|fusemax-artifact] [--systolic] [--json]

The cascade defaults to the artifact's: attention_1pass on FuseMax, attention_3pass on the others.
With ``--accounting fusemax-artifact`` both sides keep the artifact's books (the tree through
``Accounting.bookkeeping``: ``mapper.as_tree.Bookkeeping``). With ``--systolic`` both charge the 2D
array's systolic fill and drain (the tree's 2D compute units ``systolic``).
"""

from __future__ import annotations

import argparse
import json
import time

import einsum
import mapper
import sim
from mapper import as_tree
from mapper.errors import ScheduleError
from mapper.search import SearchOptions, search


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", choices=("fusemax", "flat", "unfused"), default="fusemax")
    ap.add_argument("--cascade", default=None, help="a library cascade (default: the artifact's)")
    ap.add_argument("--accounting", choices=tuple(sim.ACCOUNTINGS), default="physical")
    ap.add_argument("--systolic", action="store_true", help="charge the 2D array's systolic fill and drain")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    arch = mapper.preset(args.arch)
    c = einsum.library.get(
        args.cascade or ("attention_1pass" if args.arch == "fusemax" else "attention_3pass")
    )
    rows = []
    for model in ("BERT", "TrXL", "T5", "XLM"):
        for seq in ("1K", "4K", "16K", "64K", "256K", "1M"):
            w = sim.workload(model, seq, batch=64)
            t0 = time.perf_counter()
            opts = SearchOptions(
                sizes=w.sizes, fusion="fused", fuse=args.arch != "unfused", systolic=args.systolic
            )
            s = search(c, arch, opts)
            report = sim.evaluate(c, s, arch, w, accounting=args.accounting, systolic=args.systolic)
            t1 = time.perf_counter()
            row: dict[str, object] = {"model": model, "seq": seq, "instances": w.instances}
            state = as_tree.kernels if args.arch == "unfused" else as_tree.fused
            try:
                book = sim.accounting(args.accounting).bookkeeping(c)
                r = state(
                    c, s, arch, w.for_cascade(c).sizes, w.instances, bookkeeping=book, systolic=args.systolic
                ).evaluate()
            except ScheduleError as exc:
                row["not_stated"] = str(exc).split(":", 1)[1].strip()
            else:
                words = r.dram_words if isinstance(r, as_tree.KernelsResult) else r.scalar_accesses("DRAM")
                row.update(
                    latency_equal=r.cycles == report.latency_cycles,
                    latency_rel=r.cycles / report.latency_cycles - 1,
                    dram_equal=words * arch.word_bytes == report.traffic_bytes,
                    energy_ratio=r.energy_pj / report.energy_pj,
                )
            row.update(template_s=t1 - t0, tree_s=time.perf_counter() - t1)
            rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    stated = [r for r in rows if "not_stated" not in r]
    for r in rows:
        head = f"{r['model']:5} {r['seq']:>4}  {r['instances']:5} instances  "
        if "not_stated" in r:
            print(head + f"not stated: {r['not_stated']}")
        else:
            latency = "equal" if r["latency_equal"] else f"{float(r['latency_rel']):+.1e}"  # type: ignore[arg-type]
            print(
                head + f"latency {latency}, DRAM {'equal' if r['dram_equal'] else 'DIFFERENT'}, "
                f"energy x{r['energy_ratio']:.4f}  "
                f"(template {r['template_s']:.2f} s, tree {r['tree_s']:.2f} s)"
            )
    exact = sum(1 for r in stated if r["latency_equal"] and r["dram_equal"])
    dram = sum(1 for r in stated if r["dram_equal"])
    worst = max((abs(float(r["energy_ratio"]) - 1) for r in stated), default=0.0)  # type: ignore[arg-type]
    off = max((abs(float(r["latency_rel"])) for r in stated), default=0.0)  # type: ignore[arg-type]
    print(
        f"{len(stated)} of {len(rows)} points stated in the tree; DRAM bytes equal at {dram}, latency equal "
        f"at {exact} and within {off:.1e} at all; energy within {worst:.2%}"
    )
    return 0 if dram == len(stated) else 1


if __name__ == "__main__":
    raise SystemExit(main())
