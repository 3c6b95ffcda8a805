"""Time the FuseMax evaluation sweep: five configurations x four models x six lengths, attention only.

Prints the sweep's wall time (target: under 5 s on a 2-core machine; the artifact's Timeloop sweep
takes about 9 hours), and, as a peer measured in the same run, the engine simulating every tile of
the one point where that is affordable (FuseMax, BERT, 1K) against its steady-state extrapolation.

    python benchmarks/spatial_sweep.py [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import einsum
import mapper
import sim
from mapper.schedule import einsum_facts, layout
from mapper.search import SearchOptions, search
from mapper.timing import kernel_tasks as _tasks
from sim.engine import simulate_kernel
from sim.model import _sizes


def _per_tile_peer() -> tuple[float, float]:
    c = einsum.library.get("attention_1pass")
    arch = mapper.fusemax()
    w = sim.workload("BERT", "1K")
    s = search(c, arch, SearchOptions(fusion="fused", sizes=w.sizes))
    full, tile = _sizes(c, s, w)
    tasks = _tasks(s.kernels[0], {f.name: f for f in einsum_facts(c)}, s, arch, tile, False, layout(c), c)
    kw = {
        "query_tiles": w.instances * 4,
        "steps": 4,
        "lookahead": s.lookahead,
        "interleave": True,
        "dram_cycles_per_tile": 0.0,
    }
    t0 = time.perf_counter()
    simulate_kernel(tasks, **kw, extrapolate=False)
    t1 = time.perf_counter()
    simulate_kernel(tasks, **kw)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    t0 = time.perf_counter()
    rows = list(sim.compare())
    sweep = time.perf_counter() - t0
    by = {(r["config"], r["model"], r["seq"]): r["report"] for r in rows}
    pts = [(m, s) for m in sim.MODELS for s in sim.SEQ_LENGTHS]
    speedup = statistics.mean(by[("FLAT", *p)].latency_s / by[("FuseMax", *p)].latency_s for p in pts)
    energy = statistics.mean(by[("FuseMax", *p)].energy_pj / by[("FLAT", *p)].energy_pj for p in pts)
    full, jumped = _per_tile_peer()
    result = {
        "sweep_s": sweep,
        "evaluations": len(rows),
        "per_tile_bert_1k_s": full,
        "extrapolated_bert_1k_s": jumped,
        "ratio_per_tile_vs_extrapolated": full / jumped,
        "mean_speedup_vs_flat": speedup,
        "mean_energy_vs_flat": energy,
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"sweep: {len(rows)} evaluations in {sweep:.2f} s (artifact: about 9 hours)")
    print(
        f"peer: simulating every tile of FuseMax BERT 1K takes {full:.3f} s, the extrapolating engine "
        f"{jumped * 1e3:.1f} ms ({full / jumped:.0f}x); the 1M points have 4096x more tiles"
    )
    print(f"FuseMax vs FLAT: mean speedup {speedup:.3f}x, mean energy ratio {energy:.3f}")


if __name__ == "__main__":
    main()
