"""Time the golden interpreter on one BERT-sized attention head.

P = M = 1024, E = F = 64, float64; attention_1pass with M0 = 256 and attention_3pass, each
against a plain NumPy softmax attention (golden.softmax_attention) timed in the same run.
Targets: 1-pass well under 2 s, 3-pass under 1 s.

    python benchmarks/golden_interp.py [--repeat N] [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np

import einsum
import golden


def best_of(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement (best is kept)")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x = {"Q": rng.normal(size=(1024, 64)), "K": rng.normal(size=(1024, 64)), "V": rng.normal(size=(1024, 64))}
    numpy_s = best_of(lambda: golden.softmax_attention(x["Q"], x["K"], x["V"]), args.repeat)
    results: dict[str, float] = {"numpy_softmax_s": numpy_s}
    limits = {"attention_1pass": 2.0, "attention_3pass": 1.0}
    for name, sizes in (("attention_1pass", {"M0": 256}), ("attention_3pass", None)):
        c = einsum.library.get(name)
        out = golden.run(c, x, sizes)["AV"]
        err = float(np.max(np.abs(out - golden.softmax_attention(x["Q"], x["K"], x["V"]))))
        seconds = best_of(lambda c=c, sizes=sizes: golden.run(c, x, sizes), args.repeat)
        results[f"{name}_s"] = seconds
        results[f"{name}_vs_numpy"] = seconds / numpy_s
        results[f"{name}_max_abs_err"] = err
        if not args.json:
            print(
                f"{name:16s} {seconds * 1e3:8.1f} ms  = {seconds / numpy_s:5.2f}x plain NumPy "
                f"softmax attention ({numpy_s * 1e3:.1f} ms)  target < {limits[name]:.0f} s  "
                f"max |err| {err:.1e}"
            )
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
