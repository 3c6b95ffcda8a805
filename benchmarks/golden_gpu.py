"""golden.attention's numba.cuda kernel against torch SDPA on the same GPU, float32.

One multi-head attention, B = 1, H = 8, P = M = 2048, E = F = 64 (``--shape``), inputs already on
the device for both (the kernel is timed through ``golden._attn_cuda.launch``; ``golden.attention``
with ``backend="cuda"`` adds the host/device copies, reported separately). Times are medians of
``--repeat`` CUDA-synchronised runs after a warm-up (compilation). Prints our TFLOP/s (4 B H P M E
flops, halved when causal) and its share of the device's FP32 peak (SMs x FP32 lanes per SM x 2 x
clock). Targets: ratio_vs_sdpa >= 1 and >= 40 % of FP32 peak on an H100/H200.

    pip install -e ".[bench,gpu]"
    python benchmarks/golden_gpu.py [--json] [--repeat N] [--causal] [--cascade NAME] [--shape B,H,P,M,E,F]

On an image that already has torch (CUDA), numba-cuda and scipy but no network (the team's GPU
machines), run it from the repository root without installing: ``PYTHONPATH=. python3
benchmarks/golden_gpu.py --json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import numpy as np

import golden

# FP32 lanes per SM by compute capability (CUDA C Programming Guide, arithmetic instructions).
FP32_PER_SM = {
    (7, 0): 64,
    (7, 5): 64,
    (8, 0): 64,
    (8, 6): 128,
    (8, 7): 128,
    (8, 9): 128,
    (9, 0): 128,
    (10, 0): 128,
    (12, 0): 128,
}


def median_time(fn: Callable[[], object], sync: Callable[[], object], repeat: int) -> float:
    """The median over ``repeat`` samples of one call's time. A call shorter than 5 ms is timed
    in batches (each sample runs it enough times to take about 5 ms, as ``timeit``'s autorange),
    so that a decode step's 0.2 ms is not read off one call's timer noise."""
    fn()
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    once = time.perf_counter() - t0
    inner = max(1, min(1000, int(0.005 / max(once, 1e-7))))
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        sync()
        times.append((time.perf_counter() - t0) / inner)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--causal", action="store_true")
    parser.add_argument("--cascade", default="attention_1pass")
    parser.add_argument("--shape", default="1,8,2048,2048,64,64", help="B,H,P,M,E,F")
    args = parser.parse_args()
    from numba import cuda

    if not cuda.is_available():
        raise SystemExit("benchmarks/golden_gpu.py needs a CUDA device (numba.cuda.is_available() is False)")
    try:
        import torch
    except ImportError:
        raise SystemExit('benchmarks/golden_gpu.py needs torch: pip install -e ".[bench,gpu]"') from None
    from golden import _attn_cuda

    b, h, p, m, e, f = (int(x) for x in args.shape.split(","))
    rng = np.random.default_rng(0)
    q = rng.standard_normal((b * h, p, e), dtype=np.float32)
    k = rng.standard_normal((b * h, m, e), dtype=np.float32)
    v = rng.standard_normal((b * h, m, f), dtype=np.float32)
    dq, dk, dv = (cuda.to_device(a) for a in (q, k, v))
    dout = cuda.device_array((b * h, p, f), np.float32)
    scale = np.float32(1 / np.sqrt(e))
    tq, tk, tv = (torch.from_numpy(a.reshape(b, h, *a.shape[1:])).cuda() for a in (q, k, v))

    def ours() -> None:
        _attn_cuda.launch(dq, dk, dv, dout, scale, args.cascade, args.causal)

    def sdpa() -> object:
        with torch.no_grad():
            return torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=args.causal)

    ours()
    cuda.synchronize()
    diff = float(np.abs(dout.copy_to_host().reshape(b, h, p, f) - sdpa().cpu().numpy()).max())
    if not diff < 1e-3:
        raise SystemExit(f"outputs disagree: max |ours - sdpa| = {diff:.3g}")
    ours_s = median_time(ours, cuda.synchronize, args.repeat)
    sdpa_s = median_time(sdpa, torch.cuda.synchronize, args.repeat)
    e2e_s = median_time(
        lambda: golden.attention(q, k, v, cascade=args.cascade, causal=args.causal, backend="cuda"),
        cuda.synchronize,
        max(3, args.repeat // 4),
    )
    dev = cuda.get_current_device()
    cc = dev.compute_capability
    lanes = FP32_PER_SM.get(cc, 128)
    peak = dev.MULTIPROCESSOR_COUNT * lanes * 2 * dev.CLOCK_RATE * 1e3  # CLOCK_RATE is in kHz
    flops = 4 * b * h * p * m * e * (0.5 if args.causal else 1.0)
    row = {
        "device": dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name),
        "ours_s": ours_s,
        "sdpa_s": sdpa_s,
        "ratio_vs_sdpa": sdpa_s / ours_s,
        "ours_tflops": flops / ours_s / 1e12,
        "fp32_peak_tflops": peak / 1e12,
        "share_of_fp32_peak": flops / ours_s / peak,
        "end_to_end_s": e2e_s,
    }
    if args.json:
        print(json.dumps(row))
        return
    print(
        f"{row['device']} (sm_{cc[0]}{cc[1]}, {dev.MULTIPROCESSOR_COUNT} SMs, "
        f"FP32 peak {peak / 1e12:.1f} TFLOP/s)"
    )
    print(
        f"attention B={b} H={h} P={p} M={m} E={e} F={f} float32, {args.cascade}"
        f"{', causal' if args.causal else ''}"
    )
    print(
        f"  numba.cuda kernel : {ours_s * 1e3:8.3f} ms  {row['ours_tflops']:6.2f} TFLOP/s "
        f"({100 * row['share_of_fp32_peak']:.0f} % of FP32 peak)"
    )
    print(f"  torch SDPA        : {sdpa_s * 1e3:8.3f} ms  {flops / sdpa_s / 1e12:6.2f} TFLOP/s")
    print(
        f"  ratio_vs_sdpa (SDPA time / ours, >= 1 wanted): {row['ratio_vs_sdpa']:.2f}   max |diff| {diff:.1e}"
    )
    print(f"  golden.attention(backend='cuda') incl. host<->device copies: {e2e_s * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
