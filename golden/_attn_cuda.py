"""numba.cuda kernels for softmax attention: one thread block per (group, query tile).

A block of 16 x 16 threads owns ``BQ`` queries. Per key tile of ``BK`` keys it stages K and V in
shared memory (Q stays there), computes the ``BQ x BK`` score tile with each thread
holding a ``BQ/16 x BK/16`` register micro-tile (rows ``ty + 16 a``, keys ``tx + 16 b``), writes
it (times 1/sqrt(E)) to shared memory for the row statistics, and accumulates the ``BQ x F``
output in registers (rows ``ty + 16 a``, features ``tx + 16 c``). The pass structure follows the cascade:

- 1 pass: online softmax; RM, RD in shared memory, PRM rescales the register accumulators.
- 2 passes: pass 1 keeps LM and SLD per tile folded into GM and SD; pass 2 recomputes the
  scores and accumulates ``exp(S - LM) * PRM / SD`` (= ``exp(S - GM) / SD``) times V.
- 3 passes: GM, then SD, then ``A = SN / SD`` times V, each a sweep over the key tiles
  (recomputing the scores rather than storing the P x M matrix).

The running-state operators are :mod:`golden._attnops`, the same ones the CPU kernels inline.
Tile sizes are chosen so that the static shared memory fits 48 KiB; E and F are compile-time
constants (one compiled kernel per shape family, cached for the process).
Runs on numba's CUDA simulator with ``NUMBA_ENABLE_CUDASIM=1`` (slow: one Python thread per
CUDA thread; tests use small shapes).
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import numpy as np
from numba import cuda, float32, float64

from golden._attnops import finish, online_max, running_sum, visible_keys
from golden.errors import EvaluationError

__all__ = ["SHARED_BYTES", "launch", "run", "tile_shape"]

SHARED_BYTES = 48 * 1024
_T = 16  # threads per block side


def _shared_bytes(bq: int, bk: int, e: int, f: int, itemsize: int) -> int:
    words = bq * (e + 1) + bk * (e + 1) + bk * f + bq * (bk + 1) + 6 * bq + _T * _T
    return words * itemsize


def tile_shape(e: int, f: int, dtype: Any) -> tuple[int, int]:
    """The largest (BQ, BK) whose Q, K, V and score tiles fit :data:`SHARED_BYTES`.

    Raises:
        EvaluationError: not even 16 x 16 tiles fit (E and F too large for ``dtype``).
    """
    itemsize = np.dtype(dtype).itemsize
    for bq, bk in ((64, 64), (64, 32), (32, 32), (32, 16), (16, 16)):
        if _shared_bytes(bq, bk, e, f, itemsize) <= SHARED_BYTES:
            return bq, bk
    raise EvaluationError(
        f"attention: backend 'cuda' with E = {e}, F = {f} in {np.dtype(dtype).name} needs "
        f"{_shared_bytes(16, 16, e, f, itemsize):,} bytes of shared memory even with 16 x 16 tiles; "
        f"the kernel has {SHARED_BYTES:,} (use a smaller head dimension, float32, or backend 'cpu')"
    )


def run(q: Any, k: Any, v: Any, out: Any, scale: Any, cascade: str, causal: bool, shift: int = 0) -> None:
    if not cuda.is_available():
        raise EvaluationError(
            "attention: backend 'cuda' needs an NVIDIA GPU with a working CUDA driver (none found); "
            "set NUMBA_ENABLE_CUDASIM=1 to run the kernels on numba's CUDA simulator instead"
        )
    tile_shape(q.shape[2], v.shape[2], q.dtype)  # fail before copying anything to the device
    dq, dk, dv = (cuda.to_device(a) for a in (q, k, v))
    dout = cuda.device_array_like(out)
    launch(dq, dk, dv, dout, scale, cascade, causal, shift)
    dout.copy_to_host(out)
    cuda.synchronize()


def launch(q: Any, k: Any, v: Any, out: Any, scale: Any, cascade: str, causal: bool, shift: int = 0) -> None:
    """Run the kernel on device arrays ``(G, P, E)``, ``(G, M, E)``, ``(G, M, F)`` -> ``out``
    (asynchronous; no checks beyond the tile fit: :func:`golden.attention` checks its inputs)."""
    g, p, e = q.shape
    f = v.shape[2]
    bq, bk = tile_shape(e, f, q.dtype)
    kernel = _kernel(np.dtype(q.dtype).name, e, f, bq, bk, int(cascade[len("attention_")]))
    kernel[(g, -(-p // bq)), (_T, _T)](q, k, v, out, scale, np.dtype(q.dtype).type(1), causal, shift)


@cache
def _kernel(dtype_name: str, E: int, F: int, BQ: int, BK: int, NPASS: int) -> Any:  # noqa: N803
    dt = float32 if dtype_name == "float32" else float64
    RQ, RK, RF = BQ // _T, BK // _T, -(-F // _T)  # noqa: N806
    W = _T * _T // BQ  # noqa: N806  (threads per row in the row statistics)
    EP = E + 1  # noqa: N806  (padding: threads tx read K rows tx + 16 b, column e, without bank conflicts)

    @cuda.jit(device=True)
    def load_kv(k, v, g, m0, M, ks, vs, tid):  # type: ignore[no-untyped-def]
        for idx in range(tid, BK * E, _T * _T):
            j, e = idx // E, idx % E
            ks[j, e] = k[g, m0 + j, e] if m0 + j < M else 0
        for idx in range(tid, BK * F, _T * _T):
            j, f = idx // F, idx % F
            vs[j, f] = v[g, m0 + j, f] if m0 + j < M else 0

    @cuda.jit(device=True)
    def scores(qs, ks, ss, p0, m0, M, causal, qshift, scale, tx, ty):  # type: ignore[no-untyped-def]
        """ss[r, j] = (Q[r] . K[j]) * scale, -inf where masked or past M (the scale after the
        product, as the naive formula and the CPU kernels apply it)."""
        s = cuda.local.array((RQ, RK), dt)
        for a in range(RQ):
            for b in range(RK):
                s[a, b] = 0
        for e in range(E):
            for a in range(RQ):
                qv = qs[ty + _T * a, e]
                for b in range(RK):
                    s[a, b] += qv * ks[tx + _T * b, e]
        for a in range(RQ):
            r = ty + _T * a
            c = visible_keys(p0 + r + qshift, m0, min(BK, M - m0), causal)
            for b in range(RK):
                j = tx + _T * b
                ss[r, j] = s[a, b] * scale if j < c else -math.inf

    @cuda.jit(device=True)
    def row_max(ss, r, part):  # type: ignore[no-untyped-def]
        """The max of row r over this thread's columns part, part + W, ..."""
        mx = ss[r, part]
        for j in range(part + W, BK, W):
            mx = max(mx, ss[r, j])
        return mx

    @cuda.jit(device=True)
    def row_exp(ss, r, part, shift, factor):  # type: ignore[no-untyped-def]
        """ss[r, j] = exp(ss[r, j] - shift) * factor (masked -inf -> 0) over this thread's
        columns; returns their sum before the factor. ``factor - factor`` is a zero of the
        kernel's dtype (no float64 literals)."""
        zero = factor - factor
        tot = zero
        for j in range(part, BK, W):
            x = ss[r, j]
            ex = zero
            if x != -math.inf:
                ex = math.exp(x - shift)
            ss[r, j] = ex * factor
            tot += ex
        return tot

    @cuda.jit(device=True)
    def accumulate(acc, ss, vs, rs, tx, ty):  # type: ignore[no-untyped-def]
        """acc[a, c] = acc[a, c] * rs[r] + sum_j ss[r, j] * V[j, f]: the tile's products are
        summed on their own first (as a tensor-core MMA would), then added to the accumulator."""
        part = cuda.local.array((RQ, RF), dt)
        for a in range(RQ):
            for c in range(RF):
                part[a, c] = acc[a, c] - acc[a, c]
        for j in range(BK):
            for a in range(RQ):
                pj = ss[ty + _T * a, j]
                for c in range(RF):
                    f = tx + _T * c
                    if f < F:
                        part[a, c] += pj * vs[j, f]
        for a in range(RQ):
            r = ty + _T * a
            for c in range(RF):
                acc[a, c] = running_sum(acc[a, c], rs[r], part[a, c])

    @cuda.jit
    def kernel(q, k, v, out, scale, one, causal, qshift):  # type: ignore[no-untyped-def]
        qs = cuda.shared.array((BQ, EP), dt)
        ks = cuda.shared.array((BK, EP), dt)
        vs = cuda.shared.array((BK, F), dt)
        ss = cuda.shared.array((BQ, BK + 1), dt)
        rm = cuda.shared.array(BQ, dt)  # RM / GM
        rd = cuda.shared.array(BQ, dt)  # RD / SD
        rs = cuda.shared.array(BQ, dt)  # this tile's factor on the accumulators (PRM)
        shift = cuda.shared.array(BQ, dt)  # subtracted before exp
        fac = cuda.shared.array(BQ, dt)  # multiplied after exp
        tfac = cuda.shared.array(BQ, dt)  # 2 passes: exp(LM - GM) on this tile's SLD
        red = cuda.shared.array((BQ, W), dt)  # partial maxima / sums
        g, qb = cuda.blockIdx.x, cuda.blockIdx.y
        kg = g // (cuda.gridDim.x // k.shape[0])  # grouped-query attention: query heads share a K/V head
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        tid = ty * _T + tx
        sr, part = tid // W, tid % W  # the row and column stripe of the row statistics
        P, M = q.shape[1], k.shape[1]
        p0 = qb * BQ
        for idx in range(tid, BQ * E, _T * _T):
            r, e = idx // E, idx % E
            qs[r, e] = q[g, p0 + r, e] if p0 + r < P else 0
        if tid < BQ:
            rm[tid] = -math.inf
            rd[tid] = one - one
            rs[tid] = one
        acc = cuda.local.array((RQ, RF), dt)
        for a in range(RQ):
            for c in range(RF):
                acc[a, c] = one - one
        mend = min(M, p0 + BQ + qshift) if causal else M
        for sweep in range(NPASS):
            last = sweep == NPASS - 1
            for m0 in range(0, mend, BK):
                cuda.syncthreads()
                load_kv(k, v, kg, m0, M, ks, vs, tid)
                cuda.syncthreads()
                scores(qs, ks, ss, p0, m0, M, causal, qshift, scale, tx, ty)
                cuda.syncthreads()
                # Row statistics, W threads per row: partial maxima, one thread per row decides the
                # shift and factor, partial exp-sums, one thread per row folds them.
                red[sr, part] = row_max(ss, sr, part)
                cuda.syncthreads()
                if part == 0:
                    lm = red[sr, 0]
                    for i in range(1, W):
                        lm = max(lm, red[sr, i])
                    shift[sr] = one - one if lm == -math.inf else lm  # all masked: any finite shift
                    fac[sr] = one
                    tfac[sr] = one - one
                    rs[sr] = one
                    if NPASS == 1 or (not last and (NPASS == 2 or sweep == 0)):
                        if lm != -math.inf:  # RM, PRM (2 passes: GM, and exp(LM - GM) for SLD)
                            new, prm = online_max(rm[sr], lm)
                            rs[sr] = prm
                            tfac[sr] = math.exp(lm - new)
                            if NPASS == 1:
                                shift[sr] = new
                            rm[sr] = new
                    else:  # 3 passes, sweep 1 (SD), or the last sweep: A = exp(S - GM) / SD
                        shift[sr] = rm[sr]
                        if last:
                            fac[sr] = one / rd[sr]
                cuda.syncthreads()
                if not (NPASS == 3 and sweep == 0):  # the 3-pass GM sweep needs no exp
                    red[sr, part] = row_exp(ss, sr, part, shift[sr], fac[sr])
                    cuda.syncthreads()
                    if part == 0 and not (last and NPASS > 1):
                        tot = red[sr, 0]
                        for i in range(1, W):
                            tot += red[sr, i]
                        if NPASS == 1:  # RD = RD * PRM + SLD
                            rd[sr] = running_sum(rd[sr], rs[sr], tot)
                        elif NPASS == 2:  # SD = SD * PRM + SLD * exp(LM - GM)
                            rd[sr] = running_sum(rd[sr], rs[sr], tot * tfac[sr])
                        else:  # SD += sum exp(S - GM)
                            rd[sr] += tot
                    cuda.syncthreads()
                if last:
                    accumulate(acc, ss, vs, rs, tx, ty)
        for a in range(RQ):
            p = p0 + ty + _T * a
            if p < P:
                for c in range(RF):
                    f = tx + _T * c
                    if f < F:
                        out[g, p, f] = finish(acc[a, c], rd[ty + _T * a]) if NPASS == 1 else acc[a, c]

    return kernel
