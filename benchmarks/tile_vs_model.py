"""The attention tile's RTL against the golden model and the spatial model over a grid of
configurations: array sizes, sequence lengths, E and F, FuseMax's interleaving on and off, several
seeds (data and DRAM randomness). Each configuration of the hardware (array, E, F, interleaving)
is built once for the longest sequence and runs every sequence length on that build.

A row passes when every seed's output is bit-exact against ``golden.fixed.attention_1pass`` and
``sim.evaluate``'s cycles are within 1% of the measured ones. Rows are printed as they finish and
written to ``--json`` after each (a long run that stops leaves what it measured).

    python benchmarks/tile_vs_model.py [--arrays 4,8,16] [--seqs 64,128,256,512]
        [--ef 8x8,16x16,64x64,8x64,64x8] [--seeds 5] [--interleave on,off] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from einforge.rtlflow.tile import TOLERANCE, run_attention


def _ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arrays", default="4,8,16")
    ap.add_argument("--seqs", default="64,128,256,512")
    ap.add_argument("--ef", default="8x8,16x16,64x64,8x64,64x8", help="E x F pairs")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--interleave", default="on,off")
    ap.add_argument("--sim", default="verilator")
    ap.add_argument("--json", help="write the rows here (after each row)")
    ap.add_argument(
        "--resume", action="store_true", help="keep the rows already in --json and run the others"
    )
    args = ap.parse_args()
    pairs = [tuple(int(x) for x in p.split("x")) for p in args.ef.split(",") if p]
    seqs = _ints(args.seqs)
    modes = [m == "on" for m in args.interleave.split(",") if m]
    configs = [(a, e, f, il) for a in _ints(args.arrays) for (e, f) in pairs for il in modes]
    configs.sort(key=lambda c: c[0] ** 2 * (c[1] + c[2]))  # the cheap ones first
    rows: list[dict[str, Any]] = []
    if args.resume and args.json and Path(args.json).exists():
        rows = json.loads(Path(args.json).read_text(encoding="utf-8"))
    done = {(r["array"], r["seq"], r["e"], r["f"], r["interleave"]) for r in rows}
    print("| array | seq | E | F | interleave | seeds | mismatches | model error (min .. max) | "
          "measured cycles (seed 1) | build s | simulate s (all seeds) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    t0 = time.perf_counter()
    for array, e, f, il in configs:
        top = max(s for s in seqs)
        for seq in seqs:
            if seq % array or seq // array < 2 or (array, seq, e, f, il) in done:
                continue
            results = []
            for seed in range(1, args.seeds + 1):
                print(f"[{time.perf_counter() - t0:7.0f} s] array {array} seq {seq} E {e} F {f} "
                      f"interleave {il} seed {seed}", file=sys.stderr, flush=True)  # fmt: skip
                results.append(
                    run_attention(
                        array=array,
                        seq=seq,
                        e=e,
                        f=f,
                        interleave=il,
                        seed=seed,
                        max_seq=top,
                        sim_name=args.sim,
                    )  # fmt: skip
                )
            errors = [r["model_error"] for r in results]
            row = {
                "array": array, "seq": seq, "e": e, "f": f, "interleave": il, "seeds": len(results),
                "mismatches": sum(r["mismatches"] for r in results),
                "error_min": min(errors), "error_max": max(errors),
                "measured_cycles": [r["measured_cycles"] for r in results],
                "model_cycles": [r["model_cycles"] for r in results],
                "build_seconds": results[0]["build_seconds"],
                "simulate_seconds": round(sum(r["simulate_seconds"] for r in results), 1),
                "explanations": sorted({r["explanation"] for r in results}),
            }  # fmt: skip
            row["passed"] = row["mismatches"] == 0 and max(abs(x) for x in errors) <= TOLERANCE
            rows.append(row)
            print(
                f"| {array}x{array} | {seq} | {e} | {f} | {'on' if il else 'off'} | {row['seeds']} | "
                f"{row['mismatches']} | {row['error_min']:+.3%} .. {row['error_max']:+.3%} | "
                f"{row['measured_cycles'][0]} | {row['build_seconds']} | {row['simulate_seconds']} |",
                flush=True,
            )
            if args.json:
                Path(args.json).write_text(json.dumps(rows, indent=1), encoding="utf-8")
    bad = [r for r in rows if not r["passed"]]
    print(f"\n{len(rows) - len(bad)} of {len(rows)} rows pass ({time.perf_counter() - t0:.0f} s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
