"""Direct NumPy formulas used as independent checks of the cascades."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from golden.errors import EvaluationError

__all__ = ["softmax_attention"]


def softmax_attention(
    q: ArrayLike, k: ArrayLike, v: ArrayLike, *, causal: bool = False, causal_alignment: str = "top-left"
) -> NDArray[np.float64]:
    """``softmax(q k^T / sqrt(E)) v`` in float64, written directly (no cascade involved).

    Args:
        q: queries ``(P, E)``; k: keys ``(M, E)``; v: values ``(M, F)``.
        causal: query ``p`` sees keys ``0 .. p`` only, or ``0 .. p + M - P`` with
            ``causal_alignment="bottom-right"``.
    """
    q64, k64, v64 = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    ok = q64.ndim == k64.ndim == v64.ndim == 2 and q64.shape[1] == k64.shape[1]
    if not ok or k64.shape[0] != v64.shape[0] or k64.shape[0] == 0:
        raise EvaluationError(
            f"softmax_attention: expected q (P, E), k (M, E), v (M, F) with M > 0; got "
            f"{q64.shape}, {k64.shape}, {v64.shape}"
        )
    s = q64 @ k64.T / np.sqrt(q64.shape[1])
    if causal:
        offset = s.shape[1] - s.shape[0] if causal_alignment == "bottom-right" else 0
        s = np.where(np.tril(np.ones(s.shape, dtype=bool), k=offset), s, -np.inf)
    s = s - s.max(axis=1, keepdims=True)
    w = np.exp(s)
    out: NDArray[np.float64] = (w / w.sum(axis=1, keepdims=True)) @ v64
    return out
