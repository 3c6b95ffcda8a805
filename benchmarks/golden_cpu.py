"""golden.attention on the CPU against torch's scaled_dot_product_attention, in the same run.

One multi-head attention, B = 1, H = 8, P = M = 2048, E = F = 64, float32 (``--causal`` for the
causal mask, ``--cascade`` for the 2- or 3-pass kernel). Both sides use every core (Numba's and
torch's thread pools). The two are timed alternately, ``--repeat`` rounds, and the median of each
is kept; the first call of each (compilation, thread start-up) is not timed. Outputs are checked
against each other before timing. Target: ratio_vs_sdpa (SDPA time / ours) >= 0.8.

    pip install -e ".[bench]"
    python benchmarks/golden_cpu.py [--json] [--repeat N] [--causal] [--cascade NAME]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numba
import numpy as np

import golden


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--json", action="store_true", help='print one line {"ours_s", "sdpa_s", "ratio_vs_sdpa"}'
    )
    parser.add_argument("--repeat", type=int, default=15, help="timed rounds (median kept)")
    parser.add_argument("--causal", action="store_true")
    parser.add_argument("--cascade", default="attention_1pass")
    parser.add_argument("--shape", default="1,8,2048,2048,64,64", help="B,H,P,M,E,F")
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        raise SystemExit('benchmarks/golden_cpu.py needs torch: pip install -e ".[bench]"') from None

    b, h, p, m, e, f = (int(x) for x in args.shape.split(","))
    rng = np.random.default_rng(0)
    q = rng.standard_normal((b, h, p, e), dtype=np.float32)
    k = rng.standard_normal((b, h, m, e), dtype=np.float32)
    v = rng.standard_normal((b, h, m, f), dtype=np.float32)
    tq, tk, tv = (torch.from_numpy(a) for a in (q, k, v))

    def ours() -> np.ndarray:
        return golden.attention(q, k, v, cascade=args.cascade, causal=args.causal)

    def sdpa() -> np.ndarray:
        with torch.no_grad():
            return torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=args.causal).numpy()

    diff = float(np.abs(ours() - sdpa()).max())
    if not diff < 1e-4:
        raise SystemExit(f"outputs disagree: max |ours - sdpa| = {diff:.3g}")
    ours_t, sdpa_t = [], []
    for _ in range(args.repeat):
        for fn, times in ((ours, ours_t), (sdpa, sdpa_t)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    ours_s, sdpa_s = statistics.median(ours_t), statistics.median(sdpa_t)
    flops = 4 * b * h * p * m * e * (0.5 if args.causal else 1.0)
    row = {"ours_s": ours_s, "sdpa_s": sdpa_s, "ratio_vs_sdpa": sdpa_s / ours_s}
    if args.json:
        print(json.dumps(row))
        return
    print(
        f"attention B={b} H={h} P={p} M={m} E={e} F={f} float32, {args.cascade}"
        f"{', causal' if args.causal else ''}; threads: numba {numba.get_num_threads()}, "
        f"torch {torch.get_num_threads()}; median of {args.repeat}"
    )
    print(f"  golden.attention (cpu): {ours_s * 1e3:8.2f} ms  {flops / ours_s / 1e9:7.1f} GFLOP/s")
    print(f"  torch SDPA (cpu)      : {sdpa_s * 1e3:8.2f} ms  {flops / sdpa_s / 1e9:7.1f} GFLOP/s")
    print(f"  ratio_vs_sdpa (SDPA time / ours, >= 0.8 wanted): {sdpa_s / ours_s:.2f}   max |diff| {diff:.1e}")


if __name__ == "__main__":
    main()
