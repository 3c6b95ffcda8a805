"""Bit-true fixed-point golden models: the arithmetic the RTL does, bit for bit.

Values are raw integers (``int64`` arrays) in an :class:`einsum.Fixed` format; ``fmt.quantize``
and ``fmt.to_float`` convert. Every operation rounds and saturates as the format says, in the
order the hardware does, so the RTL's outputs must equal these exactly.

Error bounds against float64, for results that do not saturate (``u = fmt.ulp``; tested by
``tests/golden/test_fixed.py``, exhaustively over every representable input where that is
feasible):

- ``add``, ``sub``, ``max``: exact.
- ``mul``, ``from_acc`` (the wide accumulator rounded back), ``div``: ``u / 2`` with
  ``rounding="nearest"``, ``u`` with ``"truncate"``.
- ``dot`` (MACs into a wide accumulator, rounded once): ``u / 2`` (``u``).
- ``exp`` on ``x <= 0``: :func:`exp_error_bound`, about ``(degree + 3) / 2`` ulp plus the
  polynomial's own error. For ``Fixed(16, 8)`` and degree 3 (FuseMax's exp-as-MACs with 4 MACs)
  the measured worst case over all 32,769 inputs is reported by ``einforge rtl exp-error``.

    >>> import numpy as np
    >>> from einsum import Fixed
    >>> from golden import fixed
    >>> fmt = Fixed(16, 8)
    >>> x = fmt.quantize(np.array([-2.0, -0.5, 0.0]))
    >>> [round(float(v), 4) for v in fmt.to_float(fixed.exp(x, fmt))]
    [0.1367, 0.6094, 1.0]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from einsum import Fixed, exp2_coefficients, log2e_raw
from golden import _fxkernels as _k
from golden.errors import EvaluationError

__all__ = [
    "add",
    "attention_1pass",
    "default_acc_width",
    "div",
    "dot",
    "exp",
    "exp_error_bound",
    "max_",
    "mul",
    "sub",
    "tile1d",
    "tile2d",
    "topk_indices",
]

I64 = NDArray[np.int64]
DEFAULT_EXP_DEGREE = 3


def default_acc_width(fmt: Fixed, terms: int) -> int:
    """An accumulator that holds ``terms`` full-scale products without saturating."""
    return 2 * fmt.width - 1 + max(1, math.ceil(math.log2(max(terms, 2))))


def _raw(name: str, x: ArrayLike, fmt: Fixed) -> I64:
    arr = np.asarray(x)
    if arr.dtype.kind not in "iu":
        raise EvaluationError(
            f"golden.fixed: {name} must hold raw integers (use fmt.quantize), got dtype {arr.dtype}"
        )
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < fmt.min_raw or arr.max() > fmt.max_raw):
        raise EvaluationError(
            f"golden.fixed: {name} has raw values outside {fmt} "
            f"([{fmt.min_raw}, {fmt.max_raw}]); found [{arr.min()}, {arr.max()}]"
        )
    return np.ascontiguousarray(arr)


def _check_exp_format(fmt: Fixed, degree: int) -> NDArray[np.int64]:
    if fmt.width - fmt.frac < 2:
        raise EvaluationError(
            f"golden.fixed: exp needs at least 2 integer bits (sign and the 1 of exp(0)); {fmt} has "
            f"{fmt.width - fmt.frac}"
        )
    return np.array(exp2_coefficients(fmt, degree), dtype=np.int64)


def _binary(op: int, a: ArrayLike, b: ArrayLike, fmt: Fixed) -> I64:
    x, y = np.broadcast_arrays(_raw("a", a, fmt), _raw("b", b, fmt))
    w, f, nearest, sat = fmt.code
    out: I64 = _k.binary_array(op, np.ascontiguousarray(x), np.ascontiguousarray(y), w, f, nearest, sat)
    return out


def add(a: ArrayLike, b: ArrayLike, fmt: Fixed) -> I64:
    """``a + b``, saturated (or wrapped) to the format. Exact otherwise."""
    return _binary(0, a, b, fmt)


def sub(a: ArrayLike, b: ArrayLike, fmt: Fixed) -> I64:
    """``a - b``, saturated (or wrapped) to the format."""
    return _binary(1, a, b, fmt)


def mul(a: ArrayLike, b: ArrayLike, fmt: Fixed) -> I64:
    """``a * b`` rounded back to ``fmt.frac`` fraction bits."""
    return _binary(2, a, b, fmt)


def max_(a: ArrayLike, b: ArrayLike, fmt: Fixed) -> I64:
    """Elementwise maximum."""
    return _binary(3, a, b, fmt)


def div(a: ArrayLike, b: ArrayLike, fmt: Fixed) -> I64:
    """``a / b``: half away from zero (``"nearest"``) or towards zero; ``b == 0`` saturates."""
    return _binary(4, a, b, fmt)


def dot(a: ArrayLike, b: ArrayLike, fmt: Fixed, *, acc_width: int | None = None) -> I64:
    """``sum(a * b, axis=-1)`` as MACs into a wide accumulator, in index order, rounded once."""
    x, y = np.broadcast_arrays(_raw("a", a, fmt), _raw("b", b, fmt))
    if x.ndim == 0 or x.shape[-1] == 0:
        raise EvaluationError(
            f"golden.fixed.dot: need at least one term along the last axis; got shape {x.shape}"
        )
    terms = x.shape[-1]
    acc_width = acc_width or default_acc_width(fmt, terms)
    w, f, nearest, sat = fmt.code
    out: I64 = _k.dot_rows(
        np.ascontiguousarray(x.reshape(-1, terms)),
        np.ascontiguousarray(y.reshape(-1, terms)),
        w,
        f,
        nearest,
        sat,
        acc_width,
    )
    return out.reshape(x.shape[:-1])


def exp(x: ArrayLike, fmt: Fixed, *, degree: int = DEFAULT_EXP_DEGREE) -> I64:
    """``exp(x)`` for ``x <= 0`` computed as MACs (range reduction, Horner polynomial, shift)."""
    coeffs = _check_exp_format(fmt, degree)
    w, f, nearest, sat = fmt.code
    out: I64 = _k.exp_array(_raw("x", x, fmt), w, f, nearest, sat, log2e_raw(fmt), coeffs)
    return out


def exp_error_bound(fmt: Fixed, degree: int = DEFAULT_EXP_DEGREE) -> float:
    """A proven bound on ``|exp(x) - e**x|`` for representable ``x <= 0``, in absolute value.

    Terms (``h = u/2`` with ``rounding="nearest"``, ``u`` with truncation):
    the quantised polynomial's own error on [0, 1) (measured on a dense grid); ``degree`` Horner
    roundings of at most ``h`` each (the factor ``f < 1`` never amplifies an earlier one, and the
    final ``2**n`` with ``n <= 0`` only shrinks them); the rounded argument ``t = x log2 e``, off by
    ``h + |x| * |log2e_raw - log2 e|``, which moves ``2**t`` by ``ln 2 * 2**t`` times that, and
    ``|x| e**x <= 1/e``; the final rounding shift (``h``).
    """
    coeffs = np.array(exp2_coefficients(fmt, degree), dtype=np.float64) * fmt.ulp
    grid = np.linspace(0.0, 1.0, 1 << 14, endpoint=False)
    poly_err = float(np.max(np.abs(np.polynomial.polynomial.polyval(grid, coeffs) - np.exp2(grid))))
    half = fmt.ulp / 2 if fmt.rounding == "nearest" else fmt.ulp
    log2e_err = abs(log2e_raw(fmt) * fmt.ulp - math.log2(math.e))
    # |x| * e**x <= 1/e for x <= 0; 1.01 covers the second-order term of 2**(t + dt) - 2**t
    t_err = math.log(2.0) * (half + log2e_err / math.e) * 1.01
    return poly_err + degree * half + t_err + half


def _scale_raw(scale: int | None, fmt: Fixed) -> int:
    """The raw score factor: ``1 << frac`` (exactly 1: the product rounds back to the score) for none."""
    if scale is None:
        return 1 << fmt.frac
    if (
        isinstance(scale, bool)
        or not isinstance(scale, int | np.integer)
        or not (fmt.min_raw <= int(scale) <= fmt.max_raw)
    ):
        raise EvaluationError(
            f"golden.fixed: scale must be a raw integer of {fmt} ([{fmt.min_raw}, {fmt.max_raw}]), "
            f"got {scale!r}"
        )
    return int(scale)


def tile2d(
    q: ArrayLike,
    k: ArrayLike,
    v: ArrayLike,
    rm: ArrayLike,
    fmt: Fixed,
    *,
    acc_width: int | None = None,
    degree: int = DEFAULT_EXP_DEGREE,
    scale: int | None = None,
) -> dict[str, I64]:
    """The 2D array's share of one tile of the 1-pass cascade (what ``rtl.Array2D`` computes).

    Args: raw ``q (C, E)``, ``k (R, E)``, ``v (R, F)``, the running max ``rm (C,)`` from the 1D
    array; ``scale``, a raw factor in ``fmt`` that multiplies each score after the dot product is
    rounded (``QK = mul(from_acc(Q . K), scale)``, the cascade's ``* scale``; ``None``: no factor,
    as ``rtl.Array2D`` computes). Returns ``QK (R, C)``, ``LM (C,)``, ``SLN (R, C)``, ``SLD (C,)``,
    ``SLNV (F, C)``.
    """
    qq, kk, vv, rr = (_raw(n, a, fmt) for n, a in (("q", q), ("k", k), ("v", v), ("rm", rm)))
    if (
        qq.ndim != 2
        or kk.ndim != 2
        or vv.ndim != 2
        or rr.ndim != 1
        or qq.shape[1] != kk.shape[1]
        or vv.shape[0] != kk.shape[0]
        or rr.shape[0] != qq.shape[0]
        or 0 in qq.shape + vv.shape
    ):
        raise EvaluationError(
            f"golden.fixed.tile2d: expected q (C, E), k (R, E), v (R, F), rm (C,) with no empty rank; "
            f"got {qq.shape}, {kk.shape}, {vv.shape}, {rr.shape}"
        )
    coeffs = _check_exp_format(fmt, degree)
    acc_width = acc_width or default_acc_width(fmt, qq.shape[1])
    w, f, nearest, sat = fmt.code
    factor = _scale_raw(scale, fmt)
    qk, lm, sln, sld, slnv = _k.tile2d(
        qq, kk, vv, rr, w, f, nearest, sat, acc_width, log2e_raw(fmt), coeffs, factor
    )
    return {"QK": qk, "LM": lm, "SLN": sln, "SLD": sld, "SLNV": slnv}


def tile1d(
    lm: I64,
    sld: I64,
    slnv: I64,
    state: dict[str, I64] | None,
    fmt: Fixed,
    *,
    degree: int = DEFAULT_EXP_DEGREE,
    last: bool = False,
) -> tuple[I64, dict[str, I64], I64 | None]:
    """One tile of the 1D array's share (what ``rtl.Array1D`` computes).

    ``state`` holds ``RM (N,)``, ``RD (N,)``, ``RNV (F, N)`` (``None`` starts a new query block:
    RM = the format's minimum, RD = RNV = 0). Returns ``(RM sent back to the 2D array, new state,
    AV (F, N) if last else None)``.
    """
    lm, sld, slnv = _raw("lm", lm, fmt), _raw("sld", sld, fmt), _raw("slnv", slnv, fmt)
    if lm.ndim != 1 or sld.shape != lm.shape or slnv.ndim != 2 or slnv.shape[1] != lm.shape[0]:
        raise EvaluationError(
            f"golden.fixed.tile1d: expected lm (N,), sld (N,), slnv (F, N); got {lm.shape}, {sld.shape}, "
            f"{slnv.shape}"
        )
    coeffs = _check_exp_format(fmt, degree)
    n = lm.shape[0]
    if state is None:
        state = {
            "RM": np.full(n, fmt.min_raw, np.int64),
            "RD": np.zeros(n, np.int64),
            "RNV": np.zeros(slnv.shape, np.int64),
        }
    st = {key: np.array(val, dtype=np.int64) for key, val in state.items()}
    w, f, nearest, sat = fmt.code
    rm = _k.array1d_tile(
        lm, sld, slnv, st["RM"], st["RD"], st["RNV"], w, f, nearest, sat, log2e_raw(fmt), coeffs
    )
    av = _k.array1d_finish(st["RD"], st["RNV"], w, f, nearest, sat) if last else None
    return rm, st, av


def attention_1pass(
    q: ArrayLike,
    k: ArrayLike,
    v: ArrayLike,
    fmt: Fixed,
    *,
    m0: int,
    degree: int = DEFAULT_EXP_DEGREE,
    acc_width: int | None = None,
    scale: int | None = None,
) -> I64:
    """FuseMax's 1-pass cascade in fixed point: the 2D and 1D tiles composed over ``M1`` tiles.

    ``q (P, E)``, ``k (M, E)``, ``v (M, F)`` raw; ``M`` must be a multiple of ``m0``; ``scale`` as
    in :func:`tile2d` (``rtl.AttentionTile`` applies ``fmt.quantize(1 / sqrt(E))``). Returns raw
    ``AV (P, F)``. This is the composition the RTL blocks implement tile by tile; it is checked
    against the float64 interpreter (``golden.run``) within a tolerance derived from the format.
    """
    qq, kk, vv = (_raw(n, a, fmt) for n, a in (("q", q), ("k", k), ("v", v)))
    if kk.shape[0] % m0:
        raise EvaluationError(
            f"golden.fixed.attention_1pass: M = {kk.shape[0]} is not a multiple of m0 = {m0}"
        )
    state: dict[str, Any] | None = None
    av = None
    tiles = kk.shape[0] // m0
    probe = np.full(qq.shape[0], fmt.min_raw, np.int64)
    for t in range(tiles):
        ks, vs = kk[t * m0 : (t + 1) * m0], vv[t * m0 : (t + 1) * m0]
        lm = tile2d(qq, ks, vs, probe, fmt, acc_width=acc_width, degree=degree, scale=scale)["LM"]
        rm_old = probe if state is None else state["RM"]
        rm_new = np.maximum(rm_old, lm)
        part = tile2d(qq, ks, vs, rm_new, fmt, acc_width=acc_width, degree=degree, scale=scale)
        rm, state, av = tile1d(lm, part["SLD"], part["SLNV"], state, fmt, degree=degree, last=t == tiles - 1)
        assert np.array_equal(rm, rm_new)
    assert av is not None
    out: I64 = av.T.copy()
    return out


def topk_indices(scores: ArrayLike, k: int) -> I64:
    """Indices of the ``k`` largest scores in their original order; ties go to the lower index."""
    s = np.asarray(scores)
    if s.ndim != 1 or not 1 <= k <= s.shape[0]:
        raise EvaluationError(
            f"golden.fixed.topk_indices: need a 1-D score vector and 1 <= k <= n; got "
            f"shape {s.shape}, k = {k}"
        )
    order = np.argsort(-s.astype(np.int64), kind="stable")[:k]
    return np.sort(order).astype(np.int64)
