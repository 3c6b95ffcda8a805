"""Tiled, parallel Numba kernels for softmax attention on the CPU, one per pass structure.

Inputs are ``q (G, P, E)``, ``k (G, M, E)``, ``v (G, M, F)``, C-contiguous, all float32 or all
float64; ``out (G, P, F)`` is written. With ``causal``, query ``p`` sits at position ``p + shift``
and sees the keys up to it (``shift = 0``: top-left aligned; ``M - P``: bottom-right).
``prange`` runs over (group, query tile); each work item
keeps its tile's state in its own buffers, so no two threads write the same memory. The matrix
products of a tile go to BLAS (:func:`_gemm`: MKL where installed, else scipy's OpenBLAS; the caller
limits BLAS to one thread so that it does not fight ``prange``'s threads); the elementwise work
runs in loops that LLVM vectorises: a ``llvm.maxnum`` reduction for row maxima and, in float32,
an exp built from Cody-Waite range reduction, a degree-6 polynomial and an exponent-field bitcast
for ``2**n`` (libm's ``expf`` does not vectorise).

- :func:`fwd_1pass`: the 1-pass cascade (online softmax over key tiles of ``bk``; the P x M
  score matrix never exists, one ``bq x bk`` tile at a time does).
- :func:`fwd_2pass`: pass 1 keeps each key tile's max LM and sum SLD; pass 2 recomputes the tile
  scores and accumulates ``A = SLN * PRM / SD`` (evaluated as ``exp(S - GM) / SD``) times V.
- :func:`fwd_3pass`: a ``bq x M`` slab of scores per query tile, then max, exp and sum, and
  normalise-and-multiply, each a pass over the slab.

The scalar operators of the running state come from :mod:`golden._attnops` (shared with the CUDA
kernels).
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic, overload, register_jitable

from golden import _kernel_cache  # noqa: F401  (before the kernels: where Numba caches them)
from golden._attnops import finish, online_max, visible_keys
from golden._blas import backend, bind_at_import, xgemm

__all__ = ["EXP_COEFFS", "exp_fast", "fwd_1pass", "fwd_2pass", "fwd_3pass"]

bind_at_import()  # before any kernel below loads from the disk cache

# Fast-math without nnan/ninf: the running max starts at -inf and must compare correctly.
_FM = {"reassoc", "contract", "nsz", "arcp", "afn"}

# exp(r) ~ 1 + r*(c1 + r*(c2 + ...)) on [-ln2/2, ln2/2]: a relative least-squares fit on Chebyshev
# nodes, rounded to float32; max relative error 9.6e-8 (0.81 ulp of 2**-23) on 200,001 points.
EXP_COEFFS = (
    1.0,
    0.4999999403953552,
    0.1666642129421234,
    0.04166772589087486,
    0.008374763652682304,
    0.001385929062962532,
)
_C1, _C2, _C3, _C4, _C5, _C6 = (np.float32(c) for c in EXP_COEFFS)
_LOG2E = np.float32(1.4426950408889634)
# Cody-Waite: ln 2 = _LN2_HI + _LN2_LO with _LN2_HI exact in 9 bits, so n * _LN2_HI is exact.
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)


@intrinsic
def _pow2i(typingctx, n):  # type: ignore[no-untyped-def]
    """``2.0 ** n`` as float32 for int32 ``n`` in [-127, 127]; ``n = -127`` gives 0."""
    if n != types.int32:
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        biased = builder.add(args[0], ir.Constant(ir.IntType(32), 127))
        return builder.bitcast(builder.shl(biased, ir.Constant(ir.IntType(32), 23)), ir.FloatType())

    return types.float32(types.int32), codegen


@intrinsic
def _fmax(typingctx, a, b):  # type: ignore[no-untyped-def]
    """``llvm.maxnum``: a max that the loop vectoriser turns into a vector reduction."""
    if a != b or a not in (types.float32, types.float64):
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        lty = context.get_value_type(signature.return_type)
        fn = builder.module.declare_intrinsic("llvm.maxnum", [lty], ir.FunctionType(lty, [lty, lty]))
        return builder.call(fn, args)

    return a(a, a), codegen


@intrinsic
def _wide_vectors(typingctx):  # type: ignore[no-untyped-def]
    """Let LLVM's loop vectoriser use 512-bit vectors in the calling function (the attribute
    ``"prefer-vector-width"="512"``; x86 tunes for 256 by default)."""

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        # llvmlite's FunctionAttributes admits only its list of flag names; a string attribute
        # ("key"="value") goes into the function's definition as written, through set.add
        set.add(builder.function.attributes, '"prefer-vector-width"="512"')
        return context.get_dummy_value()

    return types.none(), codegen


def exp_fast(x):  # type: ignore[no-untyped-def]
    """``exp(x)``: in float32 a vectorisable Cody-Waite reduction and polynomial (inputs clamped to
    [-88, 88]: 0 where exp is denormal, as flushing would; never inf; NaN stays NaN), else
    ``math.exp``."""
    return math.exp(x)


def tanh_fast(x):  # type: ignore[no-untyped-def]
    """``tanh(x)``: in float32 vectorisable (an odd Taylor polynomial to x^13 below |x| = 0.3,
    where its error is under 1e-10; ``1 - 2 / (exp_fast(2|x|) + 1)`` with the sign above, a few
    ulp; NaN stays NaN), else ``math.tanh``."""
    return math.tanh(x)


@overload(tanh_fast, jit_options={"fastmath": {"contract", "nsz", "arcp", "afn"}})
def _tanh_fast_impl(x):  # type: ignore[no-untyped-def]
    if x == types.float32:

        def impl(x):  # type: ignore[no-untyped-def]
            a = abs(x)
            x2 = x * x
            small = x * (
                np.float32(1.0) + x2 * (_T3 + x2 * (_T5 + x2 * (_T7 + x2 * (_T9 + x2 * (_T11 + x2 * _T13)))))
            )
            big = np.float32(1.0) - np.float32(2.0) / (exp_fast(np.float32(2.0) * a) + np.float32(1.0))
            big = big if x >= np.float32(0.0) else -big
            out = small if a < np.float32(0.3) else big
            return out if x == x else x

        return impl
    return lambda x: math.tanh(x)


# tanh's odd Taylor coefficients (x^3 .. x^13)
_T3, _T5, _T7, _T9, _T11, _T13 = (
    np.float32(c) for c in (-1 / 3, 2 / 15, -17 / 315, 62 / 2835, -1382 / 155925, 21844 / 6081075)
)


# No "reassoc" here: it would fold the Cody-Waite pair back into one rounded ln 2 (4 ulp at |x| = 87).
@overload(exp_fast, jit_options={"fastmath": {"contract", "nsz", "arcp", "afn"}})
def _exp_fast_impl(x):  # type: ignore[no-untyped-def]
    if x == types.float32:

        def impl(x):  # type: ignore[no-untyped-def]
            c = x if x > np.float32(-88.0) else np.float32(-88.0)  # NaN lands here too ...
            c = c if c < np.float32(88.0) else np.float32(88.0)
            # n = round(c / ln 2): c * log2e + 127.5 > 0 truncates down
            n = np.int32(np.int32(c * _LOG2E + np.float32(127.5)) - np.int32(127))
            fn = np.float32(n)
            r = (c - fn * _LN2_HI) - fn * _LN2_LO  # c - n ln2, |r| <= ln2/2 (+ rounding)
            p = np.float32(1.0) + r * (_C1 + r * (_C2 + r * (_C3 + r * (_C4 + r * (_C5 + r * _C6)))))
            e = p * _pow2i(n)
            return e if x == x else x  # ... and leaves as NaN, as exp(NaN) does (a select: vectorises)

        return impl
    return lambda x: math.exp(x)


@register_jitable(inline="always")
def _row_max(row, c):  # type: ignore[no-untyped-def]
    mx = row[0]
    for j in range(1, c):
        mx = _fmax(mx, row[j])
    return mx


@register_jitable(inline="always")
def _row_exp(row, c, nk, scale, shift):  # type: ignore[no-untyped-def]
    """``row[:c] = exp(row[:c] * scale - shift)``, ``row[c:nk] = 0``; returns the sum.

    The rows hold raw dot products: the 1/sqrt(E) scale is applied here, in one fused
    multiply-add with the shift, as a naive ``(q @ k.T) * scale`` applies it after the product
    (pre-scaling Q would round every query element once more)."""
    tot = row[0] - row[0]
    for j in range(c):
        e = exp_fast(row[j] * scale - shift)
        row[j] = e
        tot += e
    for j in range(c, nk):
        row[j] = 0
    return tot


def _gemm(a, b, c, b_transposed, beta):  # type: ignore[no-untyped-def]
    """``c[:m, :n] = a @ (b.T if b_transposed else b) + beta * c[:m, :n]`` for row-major 2D
    arrays with unit column stride (``m = a.shape[0]``). Jit-only: BLAS ``?gemm`` through
    :func:`golden._blas.xgemm` (MKL where installed, else scipy's OpenBLAS), so that a product
    can write into part of a buffer and accumulate (beta = 1), and the kernels stay cacheable."""
    raise NotImplementedError("_gemm is only callable from compiled code")


@overload(_gemm)
def _gemm_impl(a, b, c, b_transposed, beta):  # type: ignore[no-untyped-def]
    backend()  # the symbols xgemm calls (bound at import; this raises a wrong EINFORGE_BLAS)
    real = c.dtype

    def impl(a, b, c, b_transposed, beta):  # type: ignore[no-untyped-def]
        # Row-major C = A B is column-major C^T = B^T A^T: hence B first.
        m, kk = a.shape
        n = b.shape[0] if b_transposed else b.shape[1]
        if m == 0 or n == 0:
            return
        xgemm(
            ord("T") if b_transposed else ord("N"),
            ord("N"),
            n,
            m,
            kk,
            real(1),
            b.ctypes.data,
            max(1, b.strides[0] // b.itemsize),
            a.ctypes.data,
            max(1, a.strides[0] // a.itemsize),
            real(beta),
            c.ctypes.data,
            max(1, c.strides[0] // c.itemsize),
        )

    return impl


@register_jitable
def _dot(a, b, b_transposed):  # type: ignore[no-untyped-def]
    """``a @ (b.T if b_transposed else b)`` as a new array, through :func:`_gemm`."""
    n = b.shape[0] if b_transposed else b.shape[1]
    c = np.empty((a.shape[0], n), a.dtype)
    _gemm(a, b, c, b_transposed, 0.0)
    return c


@register_jitable
def _work_item(q, w, nqb, bq):  # type: ignore[no-untyped-def]
    """Work item ``w``: group ``g``, first query ``p0``, ``n`` queries (a view of ``q``)."""
    g = w // nqb
    p0 = (w - g * nqb) * bq
    n = min(q.shape[1], p0 + bq) - p0
    return g, p0, n, q[g, p0 : p0 + n]


# A row's running reference may trail its running max as long as a tile's exp-sum stays below
# exp(16) ~ 8.9e6 (no overflow in float32 sums over any practical M); past that (or inf/nan) the
# row is recomputed against its true max.
RESCALE_LIMIT = 16.0


@njit(inline="always")
def _1pass_item(q, k, v, out, scale, causal, shift, bq, bk, w):  # type: ignore[no-untyped-def]
    """Work item ``w`` of :func:`fwd_1pass` (inlined into its parallel loop)."""
    G, P, _ = q.shape
    M, F = k.shape[1], v.shape[2]
    big = q.dtype.type(math.exp(RESCALE_LIMIT))
    nqb = (P + bq - 1) // bq
    g, p0, n, qt = _work_item(q, w, nqb, bq)
    kg = g // (G // k.shape[0])  # grouped-query attention: several query heads share a K/V head
    rm = np.full(n, -np.inf, q.dtype)
    rd = np.zeros(n, q.dtype)
    rnv = out[g, p0 : p0 + n]  # RNV accumulates in place; AV = RNV / RD at the end
    rnv[:] = 0
    s = np.empty((n, bk), q.dtype)
    mend = min(M, p0 + n + shift) if causal else M
    for m0 in range(0, mend, bk):
        nk = min(mend, m0 + bk) - m0
        kt = k[kg, m0 : m0 + nk]
        _gemm(qt, kt, s, True, 0.0)  # QK for the tile, into s[:, :nk]
        for i in range(n):
            row = s[i]
            c = visible_keys(p0 + i + shift, m0, nk, causal)
            if c == 0:
                row[:nk] = 0
                continue
            # First visible tile: the max of its first 32 scores as the reference. (The first
            # score alone left some rows' references far below their max, and the float32
            # error of those rows at up to 2.8 x a naive computation's: 2 of 180 random draws
            # broke the tests' tolerance rule; with 32 scores, none did.)
            ref = rm[i] if rm[i] != -np.inf else _row_max(row, min(c, 32)) * scale
            sld = _row_exp(row, c, nk, scale, ref)
            if not sld <= big:  # recompute the row's scores; its true max becomes the reference
                _gemm(qt[i : i + 1], kt, s[i : i + 1], True, 0.0)
                lm = _row_max(row, c) * scale
                ref = lm if lm > ref else ref
                sld = _row_exp(row, c, nk, scale, ref)
            if ref != rm[i]:
                ref, prm = online_max(rm[i], ref)
                rm[i] = ref
                rd[i] *= prm
                for f in range(F):
                    rnv[i, f] *= prm
            rd[i] += sld
        _gemm(s[:, :nk], v[kg, m0 : m0 + nk], rnv, False, 1.0)  # RNV += SLN V
    for i in range(n):
        for f in range(F):
            rnv[i, f] = finish(rnv[i, f], rd[i])


@njit(parallel=True, fastmath=_FM, cache=True)
def fwd_1pass(q, k, v, out, scale, causal, shift, bq, bk):  # type: ignore[no-untyped-def]
    """The 1-pass cascade with conditional rescaling (as in FlashAttention-4): RM is a running
    *reference*, raised to the true max (and RD, RNV corrected by PRM) only when a tile's
    exp-sum against it gets large, so the row max costs no pass of its own in the common case.
    Softmax is shift-invariant: AV = RNV / RD is the same for any reference that keeps the
    exponents in range."""
    nqb = (q.shape[1] + bq - 1) // bq
    for w in prange(q.shape[0] * nqb):
        _1pass_item(q, k, v, out, scale, causal, shift, bq, bk, w)


@njit(parallel=True, fastmath=_FM, cache=True)
def fwd_1pass_wide(q, k, v, out, scale, causal, shift, bq, bk):  # type: ignore[no-untyped-def]
    """:func:`fwd_1pass` with its loops vectorised 512 bits wide (:func:`_wide_vectors`), for key
    tiles of at least ``golden._compile.WIDE_KEYS`` keys."""
    nqb = (q.shape[1] + bq - 1) // bq
    for w in prange(q.shape[0] * nqb):
        _wide_vectors()
        _1pass_item(q, k, v, out, scale, causal, shift, bq, bk, w)


@register_jitable
def _tile_scores(qt, k, g, t, bk, mend):  # type: ignore[no-untyped-def]
    """Key tile ``t``'s scores ``qt K[m0 : m0 + nk]^T``, with ``m0`` and ``nk``."""
    m0 = t * bk
    nk = min(mend, m0 + bk) - m0
    return _dot(qt, k[g, m0 : m0 + nk], True), m0, nk


@njit(parallel=True, fastmath=_FM, cache=True)
def fwd_2pass(q, k, v, out, scale, causal, shift, bq, bk):  # type: ignore[no-untyped-def]
    G, P, _ = q.shape
    M, F = k.shape[1], v.shape[2]
    nqb = (P + bq - 1) // bq
    for w in prange(G * nqb):
        g, p0, n, qt = _work_item(q, w, nqb, bq)
        kg = g // (G // k.shape[0])  # grouped-query attention: several query heads share a K/V head
        mend = min(M, p0 + n + shift) if causal else M
        ntiles = (mend + bk - 1) // bk
        lm = np.full((n, ntiles), -np.inf, q.dtype)
        sld = np.zeros((n, ntiles), q.dtype)
        # pass 1: LM[p, m1] = max[m0] S, SLD[p, m1] = sum[m0] exp(S - LM)
        for t in range(ntiles):
            s, m0, nk = _tile_scores(qt, k, kg, t, bk, mend)
            for i in range(n):
                c = visible_keys(p0 + i + shift, m0, nk, causal)
                if c > 0:
                    lm[i, t] = _row_max(s[i], c) * scale
                    sld[i, t] = _row_exp(s[i], c, nk, scale, lm[i, t])
        # GM[p] = max[m1] LM, PRM[p, m1] = exp(LM - GM), SD[p] = sum[m1] SLD * PRM
        gm = np.empty(n, q.dtype)
        sd = np.zeros(n, q.dtype)
        for i in range(n):
            gm[i] = lm[i, 0]
            for t in range(1, ntiles):
                gm[i] = lm[i, t] if lm[i, t] > gm[i] else gm[i]
            for t in range(ntiles):
                if lm[i, t] != -np.inf:
                    sd[i] += sld[i, t] * math.exp(lm[i, t] - gm[i])
        # pass 2: AV[p, f] = sum[m1, m0] A * V with A = SLN * PRM / SD, evaluated as
        # exp(S - GM) / SD (the same value with one exp and one rounding fewer)
        acc = np.zeros((n, F), q.dtype)
        for t in range(ntiles):
            s, m0, nk = _tile_scores(qt, k, kg, t, bk, mend)
            for i in range(n):
                row = s[i]
                c = visible_keys(p0 + i + shift, m0, nk, causal)
                if c == 0:
                    row[:] = 0
                    continue
                _row_exp(row, c, nk, scale, gm[i])
                for j in range(c):
                    row[j] = finish(row[j], sd[i])
            _gemm(s, v[kg, m0 : m0 + nk], acc, False, 1.0)
        out[g, p0 : p0 + n] = acc


@njit(parallel=True, fastmath=_FM, cache=True)
def fwd_3pass(q, k, v, out, scale, causal, shift, bq, bk):  # type: ignore[no-untyped-def]
    G, P, _ = q.shape
    M = k.shape[1]
    nqb = (P + bq - 1) // bq
    for w in prange(G * nqb):
        g, p0, n, qt = _work_item(q, w, nqb, bq)
        kg = g // (G // k.shape[0])  # grouped-query attention: several query heads share a K/V head
        mend = min(M, p0 + n + shift) if causal else M  # keys past the tile's last query are all masked
        s = _dot(qt, k[kg, :mend], True)  # QK for the query tile: an n x mend slab (S = QK * scale)
        for i in range(n):
            row = s[i]
            c = visible_keys(p0 + i + shift, 0, mend, causal)
            gm = _row_max(row, c) * scale  # pass 1: GM
            sd = _row_exp(row, c, mend, scale, gm)  # pass 2: SN and SD
            for j in range(c):  # pass 3: A = SN / SD (then A x V below)
                row[j] = finish(row[j], sd)
        _gemm(s, v[kg, :mend], out[g, p0 : p0 + n], False, 0.0)
