"""The CUDA (numba.cuda) kernel templates of the attention cores: one thread per query row, the
simple reference. :mod:`golden._codegen` fills in the cascade's expressions."""

_CUDA = """
@cuda.jit(cache=True)
def kernel(q, k, v, out, prm, sz, szi, {extra}, gmap):
    g = cuda.blockIdx.y
    gq, gk, gv = gmap[0, g], gmap[1, g], gmap[2, g]  # the entries Q, K and V are read at
{xgroups}    pi = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    P, E = q.shape[1], q.shape[2]
    M = k.shape[1]
    if pi >= P:
        return
    INF = math.inf
    acc = cuda.local.array({F}, float64)
    for f in range({F}):
        acc[f] = 0.0
    rm = -INF
    rd = 0.0
{qunflat}    for mi in range(M):
        qk = 0.0
        for e in range(E):
            qk += q[gq, pi, e] * k[gk, mi, e]
{kunflat}        val = {body}
{update}
{finish}
"""

_CUDA_SOFTMAX = """        if val != -INF:
            new = val if val > rm else rm
            old = math.exp(rm - new) if rm != -INF else 0.0
            w = math.exp(val - new)
            rd = rd * old + w
            for f in range({F}):
                acc[f] = acc[f] * old + w * v[gv, mi, f]
            rm = new"""
_CUDA_SOFTMAX_END = """    for f in range({F}):
        out[g, pi, f] = acc[f] / rd"""
_CUDA_WEIGHTED = """        for f in range({F}):
            acc[f] += val * v[gv, mi, f]"""
_CUDA_WEIGHTED_END = """    for f in range({F}):
        out[g, pi, f] = acc[f]"""

# Tiled: a thread block per (query tile of TQ rows, batch entry), one thread per query row, its Q
# row in registers; each key tile of K and V (BK keys) staged in shared memory by the whole
# block; the online softmax (or weighted sum) accumulated in the inputs' dtype (float32 for
# float32 inputs). Threads past the last row still stage tiles and meet every barrier.
_CUDA_TILED = """
@cuda.jit(cache=True)
def kernel(q, k, v, out, prm, sz, szi, {extra}, gmap):
    g = cuda.blockIdx.y
    gq, gk, gv = gmap[0, g], gmap[1, g], gmap[2, g]  # the entries Q, K and V are read at
{xgroups}    t = cuda.threadIdx.x
    pi = cuda.blockIdx.x * {TQ} + t
    P = q.shape[1]
    M = k.shape[1]
    ZERO = {dt}(0.0)
    ONE = {dt}(1.0)
    INF = {dt}(math.inf)
    ks = cuda.shared.array(({BK}, {E}), {dt})
    vs = cuda.shared.array(({BK}, {F}), {dt})
    qr = cuda.local.array({E}, {dt})
    acc = cuda.local.array({F}, {dt})
    live = pi < P
    for e in range({E}):
        qr[e] = q[gq, pi, e] if live else ZERO
    for f in range({F}):
        acc[f] = ZERO
    rm = -INF
    rd = ZERO
{qunflat}    for m0 in range(0, M, {BK}):
        nk = min({BK}, M - m0)
        for idx in range(t, nk * {E}, {TQ}):
            ks[idx // {E}, idx % {E}] = k[gk, m0 + idx // {E}, idx % {E}]
        for idx in range(t, nk * {F}, {TQ}):
            vs[idx // {F}, idx % {F}] = v[gv, m0 + idx // {F}, idx % {F}]
        cuda.syncthreads()
        if live:
            for j in range(nk):
                mi = m0 + j
                qk = ZERO
                for e in range({E}):
                    qk += qr[e] * ks[j, e]
{kunflat}                val = {dt}({body})
{update}
        cuda.syncthreads()
    if live:
{finish}
"""

_CUDA_TILED_SOFTMAX = """                if val != -INF:
                    new = val if val > rm else rm
                    old = math.exp(rm - new) if rm != -INF else ZERO
                    w = math.exp(val - new)
                    rd = rd * old + w
                    for f in range({F}):
                        acc[f] = acc[f] * old + w * vs[j, f]
                    rm = new"""
_CUDA_TILED_SOFTMAX_END = """        for f in range({F}):
            out[g, pi, f] = acc[f] / rd"""
_CUDA_TILED_WEIGHTED = """                for f in range({F}):
                    acc[f] += val * vs[j, f]"""
_CUDA_TILED_WEIGHTED_END = """        for f in range({F}):
            out[g, pi, f] = acc[f]"""
