"""The attention variants' compiled kernels (golden.compile) against torch, measured in the
same run: torch eager written from the same equations, FlexAttention (torch.compile) where the
variant fits its score and mask functions, and SDPA for plain softmax; on the CPU, or with
``--device cuda`` the numba.cuda kernels against torch on the same GPU (ours timed from host
arrays to host arrays, copies included; torch's on device tensors). Ratios are peer time / our
time (above 1: ours is faster). Needs ``pip install -e ".[bench]"``.

    python benchmarks/variants.py [--seq 2048] [--heads 8] [--dim 64] [--repeat 5] [--json]
                                  [--device cpu|cuda] [--only NAME ...] [--narrow]

``--narrow`` keeps every CPU core's loops at 256-bit vectors (the kernels before long key rows
took 512-bit ones; golden._compile.WIDE_KEYS), for a before-and-after on the same machine.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
from golden_gpu import median_time  # the same timing loop (benchmarks/ is the script's folder)

import einsum
import golden


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--only", nargs="*", help="variants to run (default: all)")
    ap.add_argument("--narrow", action="store_true", help="256-bit vectors in every CPU core")
    args = ap.parse_args()
    try:
        import torch
        import torch.nn.functional as tf
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    except ImportError:
        print('benchmarks/variants.py needs torch: pip install -e ".[bench]"', file=sys.stderr)
        return 2
    n, h, d = args.seq, args.heads, args.dim
    if args.narrow:
        from golden import _compile as kernels

        kernels.WIDE_KEYS = 1 << 62
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((1, h, n, d), dtype=np.float32) for _ in range(3))
    dev = args.device
    if dev == "cuda" and not torch.cuda.is_available():
        print("benchmarks/variants.py --device cuda needs a GPU torch can see", file=sys.stderr)
        return 2
    torch.set_default_device(dev)
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    tq, tk, tv = (torch.from_numpy(x).to(dev) for x in (q, k, v))
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
        lambda b, hh, qi, ki: (qi >= ki) & (qi - ki < 16), None, None, n, n, device=dev
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
    lam = 0.95

    def masked(allowed: Any) -> Any:
        return eager_softmax(torch.where(allowed, scores(), torch.tensor(-math.inf)))

    def lightning() -> Any:  # Lightning Attention-2's Algorithm 1, blocks of 64 (torch, eager)
        b = 64
        idx = torch.arange(b, dtype=torch.float32)
        dm = torch.where(idx[:, None] >= idx[None, :], lam ** (idx[:, None] - idx[None, :]), 0.0)
        kv = torch.zeros(1, h, d, d)
        out = torch.empty_like(tq)
        for t in range(0, n, b):
            qi, ki, vi = tq[:, :, t : t + b], tk[:, :, t : t + b], tv[:, :, t : t + b]
            o = ((qi @ ki.transpose(-1, -2)) * dm) @ vi + (qi * (lam ** (idx + 1))[:, None]) @ kv
            kv = lam**b * kv + (ki * (lam ** (b - 1 - idx))[:, None]).transpose(-1, -2) @ vi
            out[:, :, t : t + b] = o
        return out

    def aaren() -> Any:  # every prefix's softmax attention of one query, as one masked matrix
        s = (tk @ tq[:, :, 0, :, None])[..., 0] * scale
        return torch.softmax(torch.where(causal, s[:, :, None, :], -math.inf), dim=-1) @ tv

    def agent() -> Any:
        ag = tq.reshape(1, h, n // 64, 64, d).mean(3)
        va = torch.softmax(ag @ tk.transpose(-1, -2) * scale, -1) @ tv
        return torch.softmax(tq @ ag.transpose(-1, -2) * scale, -1) @ va

    def seer() -> Any:
        pq, pk = (x.reshape(1, h, n // 64, 64, d).mean(3) for x in (tq, tk))
        top = torch.topk(pq @ pk.transpose(-1, -2), 2, dim=-1).indices
        blocks = torch.zeros(1, h, n // 64, n // 64, dtype=torch.bool).scatter_(-1, top, True)
        return masked(blocks.repeat_interleave(64, 2).repeat_interleave(64, 3))

    cent = rng.standard_normal((4, d), dtype=np.float32)
    tc = torch.from_numpy(cent).to(dev)

    def routing() -> Any:
        cq, ck = (tq @ tc.T).argmax(-1), (tk @ tc.T).argmax(-1)
        return masked((cq[..., :, None] == ck[..., None, :]) | (i == j))

    lk = rng.standard_normal((n // 64, d), dtype=np.float32)
    tl = torch.from_numpy(lk).to(dev)

    def landmark() -> Any:
        ls = tq @ tl.T * scale
        sel = torch.zeros_like(ls, dtype=torch.bool).scatter_(-1, torch.topk(ls, 2, dim=-1).indices, True)
        gn = torch.softmax(torch.where(sel, ls, -math.inf), -1)
        bn = torch.softmax(scores().reshape(1, h, n, n // 64, 64), -1)
        return ((gn[..., None] * bn).reshape(1, h, n, n)) @ tv

    mass = rng.random(n).astype(np.float32)
    keep = torch.zeros(n, dtype=torch.bool)
    keep[torch.topk(torch.from_numpy(mass).to(dev), 8).indices] = True
    keep[-4:] = True
    docs = (np.arange(n) // 256).astype(np.float32)
    td = torch.from_numpy(docs).to(dev)
    eager.update(
        {
            "document_mask_attention": lambda: masked(td[:, None] == td[None, :]),
            "attention_decode": lambda: (
                torch.softmax((tq[:, :, -1:] @ tk.transpose(-1, -2)) * scale, dim=-1) @ tv
            ),
            "lightning_attention2": lightning,
            "aaren": aaren,
            "agent_attention": agent,
            "seer_attention": seer,
            "routing_attention": routing,
            "landmark_attention": landmark,
            "recycled_attention": lambda: masked(keep[None, :].expand(n, n)),
        }
    )
    inputs = {
        "document_mask_attention": {"DQ": docs, "DK": docs},
        "attention_decode": {"Q": q[:, :, -1:]},
        "aaren": {"Q": q[:, :, 0]},
        "routing_attention": {"C": cent},
        "landmark_attention": {"LK": lk},
        "recycled_attention": {"PA": mass},
    }
    docmask = create_block_mask(lambda b, hh, qi, ki: td[qi] == td[ki], None, None, n, n, device=dev)
    flexes.update({"document_mask_attention": lambda: flex(tq, tk, tv, block_mask=docmask)})
    rows = []
    for name, peer in eager.items():
        if args.only and name not in args.only:
            continue
        c = einsum.library.get(name)
        fn = golden.compile(c, backend="cuda" if args.device == "cuda" else "cpu")
        x = {"Q": q, "K": k, "V": v, **inputs.get(name, {})}
        sizes = {"M0": 64, "P0": 64}
        sizes = {r: sizes[r] for r in ("M0", "P0") if r in c.ranks}
        ours = median_time(lambda fn=fn, c=c, x=x, sizes=sizes: fn(x, sizes)[c.outputs[0]], sync, args.repeat)
        check = fn(x, sizes)[c.outputs[0]]
        want = peer().reshape(check.shape)
        err = float(np.abs(check - want.cpu().numpy()).max())
        row: dict[str, Any] = {
            "variant": name,
            "template": fn.template,
            "ours_ms": ours * 1e3,
            "max_abs_diff_vs_eager": err,
        }
        row["eager_ms"] = median_time(peer, sync, args.repeat) * 1e3
        fx = flexes.get(name)
        row["flex_ms"] = median_time(fx, sync, args.repeat) * 1e3 if fx is not None else None
        if name == "attention_3pass":
            row["sdpa_ms"] = (
                median_time(lambda: tf.scaled_dot_product_attention(tq, tk, tv), sync, args.repeat) * 1e3
            )
            hand = golden.attention(q, k, v, backend=args.device)
            row["handwritten_1pass_ms"] = (
                median_time(lambda: golden.attention(q, k, v, backend=args.device), sync, args.repeat) * 1e3
            )
            del hand
        rows.append(row)
        if not args.json:
            parts = [
                f"{name:26s} ours {row['ours_ms']:8.3g} ms",
                f"eager {row['eager_ms']:8.3g} ms ({row['eager_ms'] / row['ours_ms']:.2f}x)",
            ]
            if row["flex_ms"] is not None:
                parts.append(f"flex {row['flex_ms']:8.3g} ms ({row['flex_ms'] / row['ours_ms']:.2f}x)")
            else:
                parts.append("flex: does not fit")
            if "sdpa_ms" in row:
                parts.append(f"sdpa {row['sdpa_ms']:.3g} ms ({row['sdpa_ms'] / row['ours_ms']:.2f}x)")
                parts.append(f"hand-written 1-pass {row['handwritten_1pass_ms']:.3g} ms")
            print("; ".join(parts) + f"; |diff| {err:.1e}", flush=True)
    from golden._blas import backend

    if args.json:
        print(
            json.dumps(
                {"shape": [1, h, n, d], "threads": torch.get_num_threads(), "blas": backend(), "rows": rows}
            )
        )
    elif dev == "cpu":
        print(f"(our CPU kernels' products on {backend()}; EINFORGE_BLAS picks, docs/variants.md)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
