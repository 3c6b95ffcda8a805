"""The CPU (Numba) kernel templates of the attention cores: a thread per query tile, an online
softmax over key tiles. :mod:`golden._codegen` fills in the cascade's expressions."""

_KEY_RANGE = """        klo = M
        khi = 0
        for i in range(n):
            pi = p0 + i
{qunflat}            lo = 0
            hi = M
{bounds}            if lo < hi:
                klo = min(klo, lo)
                khi = max(khi, hi)
"""

_PROLOGUE = """
def kernel(q, k, v, out, prm, sz, szi, {extra}, bq, bk, blk, gmap):
    G, P, _ = out.shape
    M, F = k.shape[1], v.shape[2]
    ONE = q.dtype.type(1.0)
    ZERO = q.dtype.type(0.0)
    INF = q.dtype.type(np.inf)
    BIG = q.dtype.type(8886110.520507872)  # exp(16)
{params}    nqb = (P + bq - 1) // bq
    for w in prange(G * nqb):
{wide}        g = w // nqb
        gq, gk, gv = gmap[0, g], gmap[1, g], gmap[2, g]  # the entries Q, K and V are read at
{xgroups}        p0 = (w % nqb) * bq
        n = min(bq, P - p0)
        qt = q[gq, p0 : p0 + n]
"""

_SOFTMAX = (
    _PROLOGUE
    + """        rm = np.full(n, -np.inf, q.dtype)
        rd = np.zeros(n, q.dtype)
        acc = out[g, p0 : p0 + n]  # the weighted sum accumulates in place; / rd at the end
        acc[:] = ZERO
        s = np.empty((n, bk), q.dtype)
{key_range}        for m0 in range({krange}, bk):
            nk = min({kend}, m0 + bk) - m0
{tile_check}            _gemm(qt, k[gk, m0 : m0 + nk], s, True, 0.0)  # the tile's Q . K, into s[:, :nk]
            for i in range(n):
                pi = p0 + i
{qunflat}                row = s[i]
                # Conditional rescaling (as the hand-written 1-pass kernel, FlashAttention-4): the
                # row's running reference RM serves as the exp's shift while this tile's exp-sum
                # against it stays below exp(16). A sample of 32 scores sets the reference at a
                # row's first tile (its first 32) and, where the score reads an index or a tensor
                # beside qk (a bias along the row, as ALiBi's: DRIFT), a strided one raises it
                # first where a tile's scores have grown past it. Past exp(16) (or inf / NaN), or
                # where the sample is all masked, the row takes two passes against its true max.
                # Softmax is shift-invariant, so either gives the same AV.
                ref = rm[i]
                smp = -INF
                if ref != -INF and not {drift}:
                    pass
                elif nk < 64 or not {drift}:  # unit stride (vectorised): a short tile whole, or
                    for j in range(nk if nk < 64 else 32):  # a row's first 32 scores
                        mi = m0 + j
{kunflat3}                        qk = row[j]
                        smp = _fmax(smp, q.dtype.type({body}))
                else:
                    for j in range(0, nk, nk // 32):
                        mi = m0 + j
{kunflat3}                        qk = row[j]
                        smp = _fmax(smp, q.dtype.type({body}))
                if smp != -INF and (ref == -INF or smp > ref + 8):
                    if ref != -INF:
                        prm_ = exp_fast(ref - smp)
                        rd[i] *= prm_
                        for f in range(F):
                            acc[i, f] *= prm_
                    ref = smp
                    rm[i] = smp
                tot = ZERO
                if ref != -INF:
                    for j in range(nk):
                        mi = m0 + j
{kunflat3}                        qk = row[j]
                        e = exp_fast(q.dtype.type({body}) - ref)
                        row[j] = e
                        tot += e
                if ref != -INF and tot <= BIG:
                    rd[i] += tot
                    continue
                if ref != -INF:  # the exps overwrote the row's products: recompute them
                    _gemm(qt[i : i + 1], k[gk, m0 : m0 + nk], s[i : i + 1], True, 0.0)
                mx = -INF
                for j in range(nk):
                    mi = m0 + j
{kunflat}                    qk = row[j]
                    val = q.dtype.type({body})
                    row[j] = val
                    mx = _fmax(mx, val)
                if mx == -INF:  # every key of the tile masked for this query
                    row[:nk] = ZERO
                    continue
                new = mx if mx > rm[i] else rm[i]
                tot = ZERO
                for j in range(nk):
                    e = exp_fast(row[j] - new)  # a masked key: exp(-inf) = 0; NaN stays NaN
                    row[j] = e
                    tot += e
                if new != rm[i]:
                    prm_ = exp_fast(rm[i] - new)
                    rd[i] *= prm_
                    for f in range(F):
                        acc[i, f] *= prm_
                    rm[i] = new
                rd[i] += tot
            _gemm(s[:, :nk], v[gv, m0 : m0 + nk], acc, False, 1.0)  # acc += weights V
        for i in range(n):
            for f in range(F):
                acc[i, f] = acc[i, f] / rd[i]
"""
)

_WEIGHTED = (
    _PROLOGUE
    + """        acc = out[g, p0 : p0 + n]
        acc[:] = ZERO
        s = np.empty((n, bk), q.dtype)
{key_range}        for m0 in range({krange}, bk):
            nk = min({kend}, m0 + bk) - m0
{tile_check}            _gemm(qt, k[gk, m0 : m0 + nk], s, True, 0.0)
            for i in range(n):
                pi = p0 + i
{qunflat}                row = s[i]
                for j in range(nk):
                    mi = m0 + j
{kunflat}                    qk = row[j]
                    row[j] = {body}
            _gemm(s[:, :nk], v[gv, m0 : m0 + nk], acc, False, 1.0)
"""
)

# A key tile none of whose (bq x bk) blocks holds a live key for this query tile (the call's
# block mask: block_mask below, once per call) contributes nothing.
_TILE_CHECK = """            live = False
            for kb in range(m0 // bk, (m0 + nk - 1) // bk + 1):
                if blk[g % blk.shape[0], p0 // bq, kb]:
                    live = True
                    break
            if not live:
                continue
"""

# Where a score's condition can be false over whole tiles (documents apart, blocks not
# selected), the blocks where it holds somewhere: evaluated once per call (for one batch entry
# where the condition reads nothing that varies over the batch), in parallel over blocks, each
# stopping at its first live key.
_BLOCK_MASK = """

@njit(parallel=True, cache=True)
def block_mask(q, prm, sz, szi, {extra}, bq, bk, G, P, M, blk, gmap):
    ONE = q.dtype.type(1.0)
    ZERO = q.dtype.type(0.0)
    INF = q.dtype.type(np.inf)
{params}    nqb = (P + bq - 1) // bq
    nkb = (M + bk - 1) // bk
    for w in prange(G * nqb * nkb):
        g = w // (nqb * nkb)
{xgroups}        qb = (w // nkb) % nqb
        kb = w % nkb
        p0 = qb * bq
        m0 = kb * bk
        n = min(bq, P - p0)
        nk = min(bk, M - m0)
        live = False
        for i in range(n):
            pi = p0 + i
{bqunflat}            for j in range(nk):
                mi = m0 + j
{bkunflat}                if {cond} != ZERO:
                    live = True
                    break
            if live:
                break
        blk[g, qb, kb] = live
"""
