"""The CUDA (numba.cuda) kernel templates of the attention cores: one thread per query row, the
simple reference. :mod:`golden._codegen` fills in the cascade's expressions."""

_CUDA = """
@cuda.jit(cache=True)
def kernel(q, k, v, out, prm, sz, szi, {extra}):
    g = cuda.blockIdx.y
    pi = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
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
            qk += q[g, pi, e] * k[g, mi, e]
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
                acc[f] = acc[f] * old + w * v[g, mi, f]
            rm = new"""
_CUDA_SOFTMAX_END = """    for f in range({F}):
        out[g, pi, f] = acc[f] / rd"""
_CUDA_WEIGHTED = """        for f in range({F}):
            acc[f] += val * v[g, mi, f]"""
_CUDA_WEIGHTED_END = """    for f in range({F}):
        out[g, pi, f] = acc[f]"""
