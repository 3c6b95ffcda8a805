"""Bit-true fixed-point kernels (Numba). Raw values are int64; a format travels as its ``code``.

These functions are the definition of the datapath arithmetic that ``rtl`` builds: every shift,
rounding and saturation here has a counterpart in the hardware, in the same order. They are
``register_jitable``-style scalar helpers (plain ``njit``), callable from the array kernels below
and from any other Numba kernel.
"""

# Numba-compiled code is not typed for mypy (see pyproject's override for this module).

from __future__ import annotations

import numpy as np
from numba import njit

from golden import _kernel_cache  # noqa: F401  (before the kernels: where Numba caches them)


@njit(cache=True)
def round_shift(v, s, nearest):
    """``v / 2**s`` rounded: half up (``(v + 2**(s-1)) >> s``) or towards minus infinity."""
    if s <= 0:
        return v << (-s)
    if nearest:
        return (v + (np.int64(1) << (s - 1))) >> s
    return v >> s


@njit(cache=True)
def fit(v, width, saturate):
    """Bring ``v`` into ``width`` signed bits: clamp, or keep the low bits (two's complement wrap)."""
    lo = -(np.int64(1) << (width - 1))
    hi = (np.int64(1) << (width - 1)) - 1
    if saturate:
        if v < lo:
            return lo
        if v > hi:
            return hi
        return v
    span = np.int64(1) << width
    return (v - lo) % span + lo


@njit(cache=True)
def fx_add(a, b, width, saturate):
    return fit(a + b, width, saturate)


@njit(cache=True)
def fx_sub(a, b, width, saturate):
    return fit(a - b, width, saturate)


@njit(cache=True)
def fx_mul(a, b, width, frac, nearest, saturate):
    """Product rounded back to ``frac`` fraction bits."""
    return fit(round_shift(a * b, frac, nearest), width, saturate)


@njit(cache=True)
def fx_mac(acc, a, b, acc_width, saturate):
    """``acc + a*b`` in the wide accumulator (``2*frac`` fraction bits, ``acc_width`` bits)."""
    return fit(acc + a * b, acc_width, saturate)


@njit(cache=True)
def fx_from_acc(acc, width, frac, nearest, saturate):
    """An accumulator value (``2*frac`` fraction bits) rounded into the datapath format."""
    return fit(round_shift(acc, frac, nearest), width, saturate)


@njit(cache=True)
def fx_div(a, b, width, frac, nearest, saturate):
    """``a / b`` by sign and magnitude: half away from zero, or towards zero; ``b == 0`` saturates."""
    lo = -(np.int64(1) << (width - 1))
    hi = (np.int64(1) << (width - 1)) - 1
    if b == 0:
        return hi if a >= 0 else lo
    negative = (a < 0) != (b < 0)
    na = -a if a < 0 else a
    nb = -b if b < 0 else b
    if nearest:
        q = ((na << (frac + 1)) // nb + 1) >> 1
    else:
        q = (na << frac) // nb
    return fit(-q if negative else q, width, saturate)


@njit(cache=True)
def fx_exp(x, width, frac, nearest, saturate, log2e, coeffs):
    """``exp(x)`` for ``x <= 0`` as the MAC sequence the hardware runs (positive ``x`` clamps to 0).

    1. ``t = x * log2(e)`` (one MAC, rounded to ``frac`` bits);
    2. ``n = floor(t)``, ``f = t - n`` in [0, 1);
    3. ``y = 2**f`` by Horner's rule on ``coeffs`` (one MAC per coefficient after the first);
    4. ``y * 2**n``: a rounding right shift by ``-n`` (results below half an ulp become 0).
    """
    if x > 0:
        x = np.int64(0)
    t = round_shift(x * log2e, frac, nearest)
    n = t >> frac
    f = t - (n << frac)
    degree = coeffs.shape[0] - 1
    y = coeffs[degree]
    for i in range(degree - 1, -1, -1):
        y = round_shift(y * f, frac, nearest) + coeffs[i]
    s = -n
    if s > frac + 3:
        s = frac + 3
    return fit(round_shift(y, s, nearest), width, saturate)


# ----------------------------------------------------------------------------------- array kernels


@njit(cache=True)
def exp_array(x, width, frac, nearest, saturate, log2e, coeffs):
    out = np.empty_like(x)
    flat_in = x.ravel()
    flat_out = out.ravel()
    for i in range(flat_in.shape[0]):
        flat_out[i] = fx_exp(flat_in[i], width, frac, nearest, saturate, log2e, coeffs)
    return out


@njit(cache=True)
def binary_array(op, a, b, width, frac, nearest, saturate):
    """Elementwise ``op`` (0 add, 1 sub, 2 mul, 3 max, 4 div) over equal-shape raw arrays."""
    out = np.empty_like(a)
    fa, fb, fo = a.ravel(), b.ravel(), out.ravel()
    for i in range(fa.shape[0]):
        x, y = fa[i], fb[i]
        if op == 0:
            fo[i] = fx_add(x, y, width, saturate)
        elif op == 1:
            fo[i] = fx_sub(x, y, width, saturate)
        elif op == 2:
            fo[i] = fx_mul(x, y, width, frac, nearest, saturate)
        elif op == 3:
            fo[i] = max(x, y)
        else:
            fo[i] = fx_div(x, y, width, frac, nearest, saturate)
    return out


@njit(cache=True)
def dot_rows(a, b, width, frac, nearest, saturate, acc_width):
    """Row-wise dot products as MACs in index order into the wide accumulator, rounded once."""
    out = np.empty(a.shape[0], dtype=np.int64)
    for i in range(a.shape[0]):
        acc = np.int64(0)
        for j in range(a.shape[1]):
            acc = fx_mac(acc, a[i, j], b[i, j], acc_width, saturate)
        out[i] = fx_from_acc(acc, width, frac, nearest, saturate)
    return out


@njit(cache=True)
def tile2d(q, k, v, rm, width, frac, nearest, saturate, acc_width, log2e, coeffs, scale):
    """The 2D array's share of the 1-pass cascade for one tile.

    ``q`` (C, E) queries, ``k`` (R, E) keys, ``v`` (R, F) values, ``rm`` (C,) the running max from
    the 1D array, ``scale`` the raw factor applied to each score (``1 << frac``: none). Returns
    ``qk`` (R, C), ``lm`` (C,), ``sln`` (R, C), ``sld`` (C,), ``slnv`` (F, C).
    """
    rows, e_size = k.shape
    cols = q.shape[0]
    f_size = v.shape[1]
    qk = np.empty((rows, cols), dtype=np.int64)
    for r in range(rows):
        for c in range(cols):
            acc = np.int64(0)
            for e in range(e_size):
                acc = fx_mac(acc, k[r, e], q[c, e], acc_width, saturate)
            qk[r, c] = fx_mul(
                fx_from_acc(acc, width, frac, nearest, saturate), scale, width, frac, nearest, saturate
            )
    lm = np.empty(cols, dtype=np.int64)
    sln = np.empty((rows, cols), dtype=np.int64)
    sld = np.empty(cols, dtype=np.int64)
    slnv = np.empty((f_size, cols), dtype=np.int64)
    for c in range(cols):
        best = qk[0, c]
        for r in range(1, rows):
            best = max(best, qk[r, c])
        lm[c] = best
        total = np.int64(0)
        for r in range(rows):
            x = fx_sub(qk[r, c], rm[c], width, saturate)
            sln[r, c] = fx_exp(x, width, frac, nearest, saturate, log2e, coeffs)
            total += sln[r, c]
        sld[c] = fit(total, width, saturate)
        for f in range(f_size):
            dot = np.int64(0)
            for r in range(rows):
                dot += sln[r, c] * v[r, f]
            slnv[f, c] = fx_from_acc(dot, width, frac, nearest, saturate)
    return qk, lm, sln, sld, slnv


@njit(cache=True)
def array1d_tile(lm, sld, slnv, rm, rd, rnv, width, frac, nearest, saturate, log2e, coeffs):
    """One tile of the 1D array's share, updating the running state ``rm``, ``rd``, ``rnv`` in place.

    RM = max(RM, LM); PRM = exp(RM_old - RM); RD = RD * PRM + SLD; RNV = RNV * PRM + SLNV.
    Returns the new running max (what goes back to the 2D array).
    """
    n = lm.shape[0]
    f_size = slnv.shape[0]
    new_rm = np.empty(n, dtype=np.int64)
    for p in range(n):
        m = max(rm[p], lm[p])
        prm = fx_exp(fx_sub(rm[p], m, width, saturate), width, frac, nearest, saturate, log2e, coeffs)
        rm[p] = m
        new_rm[p] = m
        rd[p] = fx_add(fx_mul(rd[p], prm, width, frac, nearest, saturate), sld[p], width, saturate)
        for f in range(f_size):
            spnv = fx_mul(rnv[f, p], prm, width, frac, nearest, saturate)
            rnv[f, p] = fx_add(spnv, slnv[f, p], width, saturate)
    return new_rm


@njit(cache=True)
def array1d_finish(rd, rnv, width, frac, nearest, saturate):
    """AV = RNV / RD for every value column and query: ``(F, N)``."""
    f_size, n = rnv.shape
    av = np.empty((f_size, n), dtype=np.int64)
    for f in range(f_size):
        for p in range(n):
            av[f, p] = fx_div(rnv[f, p], rd[p], width, frac, nearest, saturate)
    return av
