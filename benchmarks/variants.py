"""The attention variants' compiled CPU kernels (golden.compile) against torch, measured in the
same run: torch eager written from the same equations, FlexAttention on the CPU (torch.compile)
where the variant fits its score and mask functions, and SDPA for plain softmax. Ratios are
peer time / our time (above 1: ours is faster). Needs ``pip install -e ".[bench]"``.

    python benchmarks/variants.py [--seq 2048] [--heads 8] [--dim 64] [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import einsum
import golden


def _time(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm-up (and compilation)
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    try:
        import torch
        import torch.nn.functional as tf
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    except ImportError:
        print('benchmarks/variants.py needs torch: pip install -e ".[bench]"', file=sys.stderr)
        return 2
    n, h, d = args.seq, args.heads, args.dim
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((1, h, n, d), dtype=np.float32) for _ in range(3))
    tq, tk, tv = (torch.from_numpy(x) for x in (q, k, v))
    scale = 1 / math.sqrt(d)
    i = torch.arange(n)[:, None]
    j = torch.arange(n)[None, :]
    causal = i >= j
    flex = torch.compile(flex_attention)

    def eager_softmax(s: Any) -> Any:
        return torch.softmax(s, dim=-1) @ tv

    def scores() -> Any:
        return (tq @ tk.transpose(-1, -2)) * scale

    eager: dict[str, Callable[[], Any]] = {
        "attention_3pass": lambda: eager_softmax(scores()),
        "alibi_attention": lambda: eager_softmax(
            torch.where(causal, scores() - 0.0625 * (i - j), torch.tensor(-math.inf))
        ),
        "softcap_attention": lambda: eager_softmax(50 * torch.tanh(scores() / 50)),
        "sliding_window_attention": lambda: eager_softmax(
            torch.where(causal & (i - j < 16), scores(), torch.tensor(-math.inf))
        ),
        "sigmoid_attention": lambda: torch.sigmoid(scores() - math.log(n)) @ tv,
        "linear_attention_decay": lambda: (
            (
                torch.where(causal, torch.tensor(0.95) ** (i - j).float(), torch.tensor(0.0))
                * (tq @ tk.transpose(-1, -2))
            )
            @ tv
        ),
    }
    window = create_block_mask(
        lambda b, hh, qi, ki: (qi >= ki) & (qi - ki < 16), None, None, n, n, device="cpu"
    )
    flexes: dict[str, Callable[[], Any] | None] = {
        "attention_3pass": lambda: flex(tq, tk, tv),
        "alibi_attention": lambda: flex(
            tq,
            tk,
            tv,
            score_mod=lambda s, b, hh, qi, ki: torch.where(qi >= ki, s - 0.0625 * (qi - ki), -float("inf")),
        ),
        "softcap_attention": lambda: flex(
            tq, tk, tv, score_mod=lambda s, b, hh, qi, ki: 50 * torch.tanh(s / 50)
        ),
        "sliding_window_attention": lambda: flex(tq, tk, tv, block_mask=window),
        "sigmoid_attention": None,  # FlexAttention's normaliser is softmax
        "linear_attention_decay": None,
    }
    rows = []
    for name, peer in eager.items():
        c = einsum.library.get(name)
        fn = golden.compile(c)
        ours = _time(lambda fn=fn, c=c: fn({"Q": q, "K": k, "V": v})[c.outputs[0]], args.repeat)
        check = fn({"Q": q, "K": k, "V": v})[c.outputs[0]]
        err = float(np.abs(check - peer().numpy()).max())
        row: dict[str, Any] = {
            "variant": name,
            "template": fn.template,
            "ours_ms": ours * 1e3,
            "max_abs_diff_vs_eager": err,
        }
        row["eager_ms"] = _time(peer, args.repeat) * 1e3
        fx = flexes[name]
        row["flex_ms"] = _time(fx, args.repeat) * 1e3 if fx is not None else None
        if name == "attention_3pass":
            row["sdpa_ms"] = _time(lambda: tf.scaled_dot_product_attention(tq, tk, tv), args.repeat) * 1e3
            row["handwritten_1pass_ms"] = _time(lambda: golden.attention(q, k, v), args.repeat) * 1e3
        rows.append(row)
        if not args.json:
            parts = [
                f"{name:26s} ours {row['ours_ms']:8.1f} ms",
                f"eager {row['eager_ms']:8.1f} ms ({row['eager_ms'] / row['ours_ms']:.2f}x)",
            ]
            if row["flex_ms"] is not None:
                parts.append(f"flex {row['flex_ms']:8.1f} ms ({row['flex_ms'] / row['ours_ms']:.2f}x)")
            else:
                parts.append("flex: does not fit")
            if "sdpa_ms" in row:
                parts.append(f"sdpa {row['sdpa_ms']:.1f} ms ({row['sdpa_ms'] / row['ours_ms']:.2f}x)")
                parts.append(f"hand-written 1-pass {row['handwritten_1pass_ms']:.1f} ms")
            print("; ".join(parts) + f"; |diff| {err:.1e}", flush=True)
    if args.json:
        print(json.dumps({"shape": [1, h, n, d], "threads": torch.get_num_threads(), "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
