"""The attention variants in plain NumPy, written from their papers' equations, not from the
cascades: the independent references ``einsum.library``'s variant cascades are checked against.

Each function takes ``q (P, E)``, ``k (M, E)``, ``v (M, F)`` (and what the variant adds) in
float64 and returns the output the cascade names. Top-k selections keep the lower index on ties.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "agent",
    "aaren",
    "alibi",
    "decode",
    "document_mask",
    "landmark",
    "lightning2",
    "linear_decay",
    "recycled",
    "routing",
    "seer",
    "sigmoid",
    "sliding_window",
    "softcap",
]

F64 = NDArray[np.float64]


def _arrays(*xs: ArrayLike) -> list[F64]:
    return [np.asarray(x, dtype=np.float64) for x in xs]


def _masked_softmax_av(s: F64, allowed: NDArray[np.bool_], v: F64) -> F64:
    """Row softmax of ``s`` over the allowed entries (the others weigh 0), times ``v``; a row with
    no allowed entry is NaN (0 / 0, as the cascades give)."""
    out = np.zeros((s.shape[0], v.shape[1]))
    for p in range(s.shape[0]):
        idx = np.flatnonzero(allowed[p])
        if idx.size == 0:
            out[p] = np.nan
            continue
        row = s[p, idx]
        w = np.exp(row - row.max())
        out[p] = (w / w.sum()) @ v[idx]
    return out


def _topk(scores: F64, k: int) -> NDArray[np.bool_]:
    order = np.argsort(-scores, kind="stable")
    keep = np.zeros(scores.shape, bool)
    keep[order[:k]] = True
    return keep


def sigmoid(q: ArrayLike, k: ArrayLike, v: ArrayLike) -> F64:
    """FlashSigmoid: ``sigma(q . k / sqrt(E) - log M) v``, summed over keys, no normaliser."""
    q, k, v = _arrays(q, k, v)
    z = q @ k.T / np.sqrt(q.shape[1]) - np.log(k.shape[0])
    out: F64 = (1.0 / (1.0 + np.exp(-z))) @ v
    return out


def alibi(q: ArrayLike, k: ArrayLike, v: ArrayLike, slope: float = 0.0625) -> F64:
    """Causal softmax attention with ALiBi's linear bias ``-slope (p - m)``."""
    q, k, v = _arrays(q, k, v)
    p_idx, m_idx = np.arange(q.shape[0])[:, None], np.arange(k.shape[0])[None, :]
    s = q @ k.T / np.sqrt(q.shape[1]) - slope * (p_idx - m_idx)
    return _masked_softmax_av(s, p_idx >= m_idx, v)


def softcap(q: ArrayLike, k: ArrayLike, v: ArrayLike, cap: float = 50.0) -> F64:
    """Softmax attention on soft-capped logits ``cap tanh(s / cap)`` (Gemma 2)."""
    q, k, v = _arrays(q, k, v)
    s = cap * np.tanh(q @ k.T / np.sqrt(q.shape[1]) / cap)
    return _masked_softmax_av(s, np.ones(s.shape, bool), v)


def sliding_window(q: ArrayLike, k: ArrayLike, v: ArrayLike, window: int = 16) -> F64:
    """Causal softmax attention over the last ``window`` keys of each query (``p - window < m <= p``)."""
    q, k, v = _arrays(q, k, v)
    allowed = np.array([[p - window < m <= p for m in range(k.shape[0])] for p in range(q.shape[0])])
    return _masked_softmax_av(q @ k.T / np.sqrt(q.shape[1]), allowed, v)


def document_mask(q: ArrayLike, k: ArrayLike, v: ArrayLike, doc_q: ArrayLike, doc_k: ArrayLike) -> F64:
    """Softmax attention within documents: query ``p`` sees key ``m`` iff their ids are equal."""
    q, k, v = _arrays(q, k, v)
    allowed = np.asarray(doc_q)[:, None] == np.asarray(doc_k)[None, :]
    return _masked_softmax_av(q @ k.T / np.sqrt(q.shape[1]), allowed, v)


def decode(q: ArrayLike, k: ArrayLike, v: ArrayLike) -> F64:
    """Causal attention aligned bottom-right: the ``P`` queries are the last ``P`` of ``M``
    positions, so query ``p`` sees keys ``0 .. M - P + p``."""
    q, k, v = _arrays(q, k, v)
    n_q, n_k = q.shape[0], k.shape[0]
    allowed = np.array([[m <= n_k - n_q + p for m in range(n_k)] for p in range(n_q)])
    return _masked_softmax_av(q @ k.T / np.sqrt(q.shape[1]), allowed, v)


def linear_decay(q: ArrayLike, k: ArrayLike, v: ArrayLike, lam: float = 0.95) -> F64:
    """Causal linear attention with decay, as a recurrence (the RNN form): the state
    ``S = lam S + k_m v_m^T`` and ``o_m = q_m S`` (self-attention: query ``p`` at position ``p``)."""
    q, k, v = _arrays(q, k, v)
    state = np.zeros((q.shape[1], v.shape[1]))
    out = np.zeros((q.shape[0], v.shape[1]))
    for t in range(q.shape[0]):
        if t < k.shape[0]:
            state = lam * state + np.outer(k[t], v[t])
        else:
            state = lam * state
        out[t] = q[t] @ state
    return out


def lightning2(q: ArrayLike, k: ArrayLike, v: ArrayLike, block: int, lam: float = 0.95) -> F64:
    """Lightning Attention-2's result, ``(M / block, block, F)``: causal linear attention with
    decay on the same positions (:func:`linear_decay` reshaped into blocks)."""
    q, k, v = _arrays(q, k, v)
    return linear_decay(q, k, v, lam).reshape(q.shape[0] // block, block, v.shape[1])


def aaren(q: ArrayLike, k: ArrayLike, v: ArrayLike) -> F64:
    """Aaren's many-to-many output: ``o_m`` is the softmax attention of the one query ``q (E,)``
    over keys ``0 .. m``, by the associative combine of (max, sum exp, sum exp v) in a scan."""
    q, k, v = _arrays(q, k, v)
    s = k @ q / np.sqrt(q.shape[0])

    def combine(a: tuple[float, float, F64], b: tuple[float, float, F64]) -> tuple[float, float, F64]:
        mx = max(a[0], b[0])
        ea, eb = np.exp(a[0] - mx), np.exp(b[0] - mx)
        return mx, a[1] * ea + b[1] * eb, a[2] * ea + b[2] * eb

    out = np.zeros((k.shape[0], v.shape[1]))
    acc = (s[0], 1.0, v[0].copy())
    out[0] = acc[2] / acc[1]
    for m in range(1, k.shape[0]):
        acc = combine(acc, (s[m], 1.0, v[m]))
        out[m] = acc[2] / acc[1]
    return out


def agent(q: ArrayLike, k: ArrayLike, v: ArrayLike, block: int) -> F64:
    """Agent attention: agents ``A = mean`` of each block of ``block`` queries;
    ``V_A = softmax(A K^T / sqrt(E)) V``; ``O = softmax(Q A^T / sqrt(E)) V_A``."""
    q, k, v = _arrays(q, k, v)
    agents = q.reshape(-1, block, q.shape[1]).mean(axis=1)
    scale = 1 / np.sqrt(q.shape[1])
    va = _masked_softmax_av(agents @ k.T * scale, np.ones((len(agents), k.shape[0]), bool), v)
    return _masked_softmax_av(q @ agents.T * scale, np.ones((q.shape[0], len(agents)), bool), va)


def seer(q: ArrayLike, k: ArrayLike, v: ArrayLike, block_q: int, block_k: int, kb: int = 2) -> F64:
    """SeerAttention's block-sparse attention, ``(P / block_q, block_q, F)``: average-pool Q and
    K per block, score block pairs, keep each query block's ``kb`` best key blocks, attend."""
    q, k, v = _arrays(q, k, v)
    pq = q.reshape(-1, block_q, q.shape[1]).mean(axis=1)
    pk = k.reshape(-1, block_k, k.shape[1]).mean(axis=1)
    gate = pq @ pk.T
    allowed = np.zeros((q.shape[0], k.shape[0]), bool)
    for b in range(len(pq)):
        for j in np.flatnonzero(_topk(gate[b], kb)):
            allowed[b * block_q : (b + 1) * block_q, j * block_k : (j + 1) * block_k] = True
    out = _masked_softmax_av(q @ k.T / np.sqrt(q.shape[1]), allowed, v)
    return out.reshape(len(pq), block_q, v.shape[1])


def routing(q: ArrayLike, k: ArrayLike, v: ArrayLike, centroids: ArrayLike) -> F64:
    """Routing attention: each query and key belongs to its nearest centroid (largest dot
    product, the lower index on ties); a query attends to the keys of its cluster and to the key at
    its own position."""
    q, k, v, c = _arrays(q, k, v, centroids)
    cq, ck = np.argmax(q @ c.T, axis=1), np.argmax(k @ c.T, axis=1)
    allowed = (cq[:, None] == ck[None, :]) | np.eye(q.shape[0], k.shape[0], dtype=bool)
    return _masked_softmax_av(q @ k.T / np.sqrt(q.shape[1]), allowed, v)


def landmark(q: ArrayLike, k: ArrayLike, v: ArrayLike, landmarks: ArrayLike, block: int, kb: int = 2) -> F64:
    """Landmark attention with block retrieval: the ``kb`` blocks whose landmark keys score best;
    the weight of key ``j`` of block ``b`` is ``softmax_b(q . l_b) x softmax_j(q . k_bj)``."""
    q, k, v, lk = _arrays(q, k, v, landmarks)
    scale = 1 / np.sqrt(q.shape[1])
    out = np.zeros((q.shape[0], v.shape[1]))
    for p in range(q.shape[0]):
        ls = lk @ q[p] * scale
        chosen = np.flatnonzero(_topk(ls, kb))
        g = np.exp(ls[chosen] - ls[chosen].max())
        g /= g.sum()
        for gb, b in zip(g, chosen, strict=True):
            kk, vv = k[b * block : (b + 1) * block], v[b * block : (b + 1) * block]
            w = np.exp(kk @ q[p] * scale - (kk @ q[p] * scale).max())
            out[p] += gb * (w / w.sum()) @ vv
    return out


def recycled(q: ArrayLike, k: ArrayLike, v: ArrayLike, mass: ArrayLike, kr: int = 8, recent: int = 4) -> F64:
    """Recycled attention's in-between step: attend to the ``kr`` keys with the largest attention
    mass of the last full step and to the ``recent`` last keys."""
    q, k, v = _arrays(q, k, v)
    keep = _topk(np.asarray(mass, dtype=np.float64), kr)
    keep[max(0, k.shape[0] - recent) :] = True
    allowed = np.broadcast_to(keep, (q.shape[0], k.shape[0]))
    return _masked_softmax_av(q @ k.T / np.sqrt(q.shape[1]), allowed, v)
