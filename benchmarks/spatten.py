"""SpAtten on its released GPT-2 traces: what pruning and progressive quantization save, and the
simulated speedups, beside the traces' own counts and SpAtten's published figures.

The DRAM reductions from token + local value pruning are the simulator's key and value traffic,
dense over pruned at the same widths; they must equal the trace's own sum L / sum keys and sum L /
sum V exactly (they count the same fetches), and this script exits 1 if they do not. The
published figures (SpAtten, HPCA 2021: 3.8x DRAM from token + local value pruning on GPT-2, 5.1x
from progressive quantization, a 3x end-to-end gain from the parallel top-k engine) are printed
as peers, not as targets.

    python benchmarks/spatten.py [--trace gpt2-small-wikitext2] [--topk expected|draws]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from fractions import Fraction

from mapper import arch as archs
from sim import spatten as sp


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trace", default="gpt2-small-wikitext2", help=", ".join(sp.TRACES))
    ap.add_argument("--topk", choices=("expected", "draws"), default="expected")
    args = ap.parse_args()

    t0 = time.perf_counter()
    reqs = sp.trace(args.trace)
    sum_l = sum(r.context for r in reqs)
    sum_k = sum(r.keys for r in reqs)
    sum_v = sum(r.values for r in reqs)
    requant = sum(r.requant for r in reqs) / len(reqs)
    print(
        f"trace {args.trace}: {len(reqs)} requests (iteration x layer x head), LSB refetch in {requant:.1%}"
    )
    print(
        f"  the trace's own counts: sum L / sum keys = {sum_l / sum_k:.2f}x, "
        f"sum L / sum V = {sum_l / sum_v:.2f}x"
    )

    status = 0
    for name in ("spatten", "spatten_eighth"):
        arch = archs.preset(name)
        t = time.perf_counter()
        runs = sp.compare(reqs, arch, topk=args.topk)
        elapsed = time.perf_counter() - t
        s = sp.savings(runs)
        p, d = runs["pruned"], runs["dense"]
        print(f"\n{name} ({3 * len(reqs)} requests simulated in {elapsed:.2f} s, top-k {args.topk}):")
        print(sp.describe(runs))
        exact_k = Fraction(d.dram_bits["keys"], p.dram_bits["keys"]) == Fraction(sum_l, sum_k)
        exact_v = Fraction(d.dram_bits["values"], p.dram_bits["values"]) == Fraction(sum_l, sum_v)
        print(
            f"  DRAM keys {s['dram_keys']:.4f}x vs the trace's {sum_l / sum_k:.4f}x: "
            f"{'equal' if exact_k else 'DIFFERENT'}; values {s['dram_values']:.4f}x vs "
            f"{sum_l / sum_v:.4f}x: {'equal' if exact_v else 'DIFFERENT'}"
        )
        heads = Fraction(d.context, sum_l)  # head pruning: head-layers the dense run adds back
        if heads != 1:
            exact_k = Fraction(d.dram_bits["keys"], p.dram_bits["keys"]) == heads * Fraction(sum_l, sum_k)
            exact_v = Fraction(d.dram_bits["values"], p.dram_bits["values"]) == heads * Fraction(sum_l, sum_v)
            print(
                f"  with head pruning: the dense run has {float(heads):.4f}x the head-layers; keys "
                f"{float(heads) * sum_l / sum_k:.4f}x, values {float(heads) * sum_l / sum_v:.4f}x expected: "
                f"{'equal' if exact_k and exact_v else 'DIFFERENT'}"
            )
        if not (exact_k and exact_v):
            status = 1
        fp32 = sp.simulate(sp.dense(reqs, quantization=False, word_bits=32), arch, topk=args.topk)
        print(
            f"  progressive quantization against 32-bit keys and values (the paper's baseline for its "
            f"5.1x, we read): {fp32.dram_bytes / d.dram_bytes:.2f}x"
        )
        print(
            f"  DRAM: token + local value pruning {s['dram_pruning']:.2f}x (SpAtten, GPT-2: 3.8x), "
            f"progressive quantization {s['dram_quantization']:.2f}x (SpAtten: 5.1x over all its benchmarks)"
        )
        narrow = tuple(dataclasses.replace(e, parallelism=1) for e in arch.topk_engines)
        one = sp.simulate(reqs, arch.replace(topk_engines=narrow), topk=args.topk)
        print(
            f"  speedup: pruning {s['speedup_pruning']:.2f}x, "
            f"pruning + quantization {s['speedup_total']:.2f}x; the 16-wide top-k engine "
            f"over a 1-wide one {one.cycles / p.cycles:.2f}x (SpAtten: 3x end to end)"
        )
    print(f"\ntotal {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
