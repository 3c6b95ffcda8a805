"""SpAtten's four mechanisms in plain NumPy, written from the paper, not from the cascades.

These are the references the library cascades (``einsum.library.get("spatten_...")``) are checked
against with :func:`golden.run`; they follow SpAtten (Wang, Zhang, Han, HPCA 2021,
arXiv 2012.09852) §3 and its Algorithm 2 directly, one layer, head and query at a time:

- :func:`token_pruning`: cumulative token importance ``s[m] += sum_h sum_p A[h, p, m]`` carried
  across layers; after layer ``l`` only the ``keep[l]`` most important surviving tokens stay, and a
  pruned token's K and V are never read again (cascade pruning);
- :func:`head_pruning`: head importance ``s[h] += sum_p sum_f |E[h, p, f]|`` carried across layers,
  the same cascade over heads;
- :func:`local_value_pruning`: per query, only the ``k`` largest probabilities fetch their V row;
  the others are dropped without renormalisation;
- :func:`progressive_quantization`: scores from the MSBs of K; a query whose largest probability
  is under ``tau`` fetches the LSBs and recomputes its row once.

Ties in every selection go to the lower index, as the top-k engine's filter does.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from einsum import Fixed

__all__ = [
    "head_pruning",
    "local_value_pruning",
    "progressive_quantization",
    "topk_mask",
    "token_pruning",
]

F64 = NDArray[np.float64]


def topk_mask(scores: ArrayLike, k: int, alive: ArrayLike | None = None) -> NDArray[np.bool_]:
    """The ``k`` largest of ``scores`` among the ``alive`` ones (all when None), ties to the lower
    index, by a plain scan: repeatedly take the first maximum."""
    s = np.asarray(scores, dtype=np.float64)
    live = np.ones(s.shape, bool) if alive is None else np.asarray(alive, bool).copy()
    keep = np.zeros(s.shape, bool)
    for _ in range(min(int(k), int(live.sum()))):
        best = -1
        for i in range(s.size):
            if live[i] and not keep[i] and (best < 0 or s[i] > s[best]):
                best = i
        keep[best] = True
    return keep


def _softmax_row(scores: F64) -> F64:
    e = np.exp(scores - scores.max())
    out: F64 = e / e.sum()
    return out


def token_pruning(q: ArrayLike, k: ArrayLike, v: ArrayLike, keep: ArrayLike) -> tuple[F64, F64]:
    """Cascade token pruning over layers.

    Args:
        q: ``(L, H, P, E)`` queries of each layer and head.
        k, v: ``(L, H, M, E)`` and ``(L, H, M, F)`` keys and values.
        keep: ``(L,)`` tokens kept for the layers after layer ``l`` (layer 0 sees every token).

    Returns:
        ``(out, alive)``: ``out`` is ``(L, H, P, F)``; ``alive`` is ``(L + 1, M)``, the tokens
        each layer read (row ``l``) and those left after the last (row ``L``), as 0/1.
    """
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    n_layers, n_heads, n_q, _ = q.shape
    n_keys = k.shape[2]
    out = np.zeros((n_layers, n_heads, n_q, v.shape[3]))
    alive = np.ones((n_layers + 1, n_keys), bool)
    importance = np.zeros(n_keys)
    for layer in range(n_layers):
        live = alive[layer]
        idx = np.flatnonzero(live)
        for h in range(n_heads):
            for p in range(n_q):
                s = np.array([q[layer, h, p] @ k[layer, h, m] for m in idx]) / np.sqrt(q.shape[3])
                a = _softmax_row(s)
                out[layer, h, p] = a @ v[layer, h, idx]
                importance[idx] += a
        alive[layer + 1] = topk_mask(importance, int(np.asarray(keep)[layer]), alive=live)
    return out, alive.astype(np.float64)


def head_pruning(q: ArrayLike, k: ArrayLike, v: ArrayLike, keep: ArrayLike) -> tuple[F64, F64]:
    """Cascade head pruning over layers: after layer ``l`` only the ``keep[l]`` surviving heads with
    the largest accumulated ``sum |E|`` run. Shapes as :func:`token_pruning`; ``alive`` is
    ``(L + 1, H)``. A pruned head's output is zero."""
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    n_layers, n_heads, n_q, n_e = q.shape
    out = np.zeros((n_layers, n_heads, n_q, v.shape[3]))
    alive = np.ones((n_layers + 1, n_heads), bool)
    importance = np.zeros(n_heads)
    for layer in range(n_layers):
        for h in np.flatnonzero(alive[layer]):
            for p in range(n_q):
                a = _softmax_row(k[layer, h] @ q[layer, h, p] / np.sqrt(n_e))
                out[layer, h, p] = a @ v[layer, h]
            importance[h] += np.abs(out[layer, h]).sum()
        alive[layer + 1] = topk_mask(importance, int(np.asarray(keep)[layer]), alive=alive[layer])
    return out, alive.astype(np.float64)


def local_value_pruning(q: ArrayLike, k: ArrayLike, v: ArrayLike, kv: int) -> F64:
    """Per query, ``A[p, :] @ V`` over only the ``kv`` largest probabilities (no renormalisation).
    ``q`` is ``(P, E)``, ``k`` ``(M, E)``, ``v`` ``(M, F)``."""
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    out = np.zeros((q.shape[0], v.shape[1]))
    for p in range(q.shape[0]):
        a = _softmax_row(k @ q[p] / np.sqrt(q.shape[1]))
        kept = topk_mask(a, kv)
        out[p] = a[kept] @ v[kept]
    return out


def progressive_quantization(
    q: ArrayLike, k: ArrayLike, v: ArrayLike, *, fmt: Fixed, lsb_bits: int, tau: float
) -> tuple[F64, F64]:
    """Progressive quantization (SpAtten §3.4): Q, K and V are quantised to ``fmt``; the first
    pass uses only the top ``fmt.width - lsb_bits`` bits of each K code; a query whose largest
    probability is under ``tau`` recomputes with the full codes. Returns ``(out, lsb)`` with
    ``lsb[p] = 1`` where the LSBs were fetched."""

    def codes(x: ArrayLike) -> NDArray[np.int64]:
        return np.asarray(fmt.quantize(np.asarray(x, dtype=np.float64)), dtype=np.int64)

    qc, kc, vc = codes(q), codes(k), codes(v)
    k_msb = (kc >> lsb_bits) * (1 << lsb_bits)  # the MSBs, shifted back into place
    ulp = fmt.ulp
    out = np.zeros((qc.shape[0], vc.shape[1]))
    lsb = np.zeros(qc.shape[0])
    for p in range(qc.shape[0]):
        qv = qc[p] * ulp
        a = _softmax_row((k_msb * ulp) @ qv / np.sqrt(qc.shape[1]))
        if a.max() < tau:
            lsb[p] = 1.0
            a = _softmax_row((kc * ulp) @ qv / np.sqrt(qc.shape[1]))
        out[p] = a @ (vc * ulp)
    return out, lsb
