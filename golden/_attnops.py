"""Scalar operators of the attention cascades, shared by the CPU (``numba.njit``) and GPU
(``numba.cuda.jit``) kernels so that both targets compute the same thing.

Each is ``register_jitable``: plain Python when called from Python (and under numba's CUDA
simulator), inlined into whichever kernel calls it when compiled. Names follow the 1-pass cascade
(``einsum.library.source("attention_1pass")``): RM running max, PRM = exp(RM_old - RM_new) the
correction of earlier partial sums, RD running denominator, RNV running numerator.
"""

from __future__ import annotations

import math

from numba.extending import register_jitable

__all__ = ["finish", "online_max", "running_sum", "visible_keys"]


@register_jitable(inline="always")
def visible_keys(p, m0, nk, causal):  # type: ignore[no-untyped-def]
    """How many of the keys ``m0 .. m0 + nk - 1`` query ``p`` sees: all of them, or with
    ``causal`` the keys ``m <= p`` (top-left aligned, as ``torch``'s ``is_causal``)."""
    if not causal:
        return nk
    c = p - m0 + 1
    if c < 0:
        return 0
    if c > nk:
        return nk
    return c


@register_jitable(inline="always")
def online_max(rm, lm):  # type: ignore[no-untyped-def]
    """``RM[m1 + 1] = max(RM[m1], LM[m1])`` and ``PRM = exp(RM[m1] - RM[m1 + 1])``.

    ``rm = -inf`` (nothing seen yet) gives ``PRM = 0`` (the running sums are still zero); ``lm``
    is the finite maximum of at least one visible score."""
    new = lm if lm > rm else rm
    if rm == -math.inf:
        return new, new - new  # 0 in the operands' precision
    return new, math.exp(rm - new)


@register_jitable(inline="always")
def running_sum(run, prm, part):  # type: ignore[no-untyped-def]
    """``RD[m1 + 1] = RD[m1] * PRM[m1] + SLD[m1]`` (and the same for RNV with SLNV)."""
    return run * prm + part


@register_jitable(inline="always")
def finish(rnv, rd):  # type: ignore[no-untyped-def]
    """``AV = RNV[M1] / RD[M1]``."""
    return rnv / rd
