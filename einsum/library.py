"""Named cascades: attention in 3, 2 and 1 passes (FuseMax; each also ``_causal``), fourteen
variants of the field (docs/variants.md), SpAtten's pruning and progressive quantization
(``spatten_*``), a matrix product, a softmax.

Each attention cascade keeps the 1/sqrt(E) scale and reads ``Q[p, e]``, ``K[m, e]``,
``V[m, f]``; the result is ``AV[p, f]``.

Example:
    >>> import einsum
    >>> [n for n in einsum.library.names() if n.startswith("attention_")][:4]
    ['attention_1pass', 'attention_1pass_causal', 'attention_2pass', 'attention_2pass_causal']
    >>> einsum.passes(einsum.library.get("attention_2pass"), "M")
    2
"""

from __future__ import annotations

from functools import cache

from einsum._expr import Operator
from einsum._fixed import Fixed, quantizer
from einsum._ir import Cascade
from einsum._parse import parse
from einsum._variants import VARIANTS
from einsum.errors import EinsumError, suggest

__all__ = ["PQ_FORMAT", "PQ_LSB_BITS", "get", "names", "operators", "source"]

_SOURCES: dict[str, str] = {
    "attention_3pass": """
cascade attention_3pass
input Q[p, e], K[m, e], V[m, f]
param scale = 1 / sqrt(E)
output AV

QK[p, m] = Q[p, e] * K[m, e]
S[p, m]  = QK[p, m] * scale
GM[p]    = max[m] S[p, m]
SN[p, m] = exp(S[p, m] - GM[p])
SD[p]    = sum[m] SN[p, m]
A[p, m]  = SN[p, m] / SD[p]
AV[p, f] = A[p, m] * V[m, f]
""",
    # FuseMax's 2-pass cascade (reference/fusemax.md section 1.5), query rank first.
    "attention_2pass": """
cascade attention_2pass
input Q[p, e], K[m, e], V[m, f]
param scale = 1 / sqrt(E)
partition M -> M1, M0
output AV

BK[m1, m0, e]  = K[m1 * M0 + m0, e]
BV[m1, m0, f]  = V[m1 * M0 + m0, f]
BQK[p, m1, m0] = Q[p, e] * BK[m1, m0, e] * scale
LM[p, m1]      = max[m0] BQK[p, m1, m0]
SLN[p, m1, m0] = exp(BQK[p, m1, m0] - LM[p, m1])
SLD[p, m1]     = sum[m0] SLN[p, m1, m0]
GM[p]          = max[m1] LM[p, m1]
PRM[p, m1]     = exp(LM[p, m1] - GM[p])
SD[p]          = sum[m1] SLD[p, m1] * PRM[p, m1]
A[p, m1, m0]   = SLN[p, m1, m0] * PRM[p, m1] / SD[p]
AV[p, f]       = A[p, m1, m0] * BV[m1, m0, f]
""",
    # FuseMax's 1-pass cascade (NOTATION.md section 6).
    "attention_1pass": """
cascade attention_1pass
input Q[p, e], K[m, e], V[m, f]
param scale = 1 / sqrt(E)
partition M -> M1, M0
output AV

BK[m1, m0, e] = K[m1 * M0 + m0, e]
BV[m1, m0, f] = V[m1 * M0 + m0, f]
init RM[p, m1 = 0] = -inf
init RD[p, m1 = 0] = 0
init RNV[p, f, m1 = 0] = 0

QK[p, m1, m0]   = Q[p, e] * BK[m1, m0, e] * scale
LM[p, m1]       = max[m0] QK[p, m1, m0]
RM[p, m1 + 1]   = max(RM[p, m1], LM[p, m1])
SLN[p, m1, m0]  = exp(QK[p, m1, m0] - RM[p, m1 + 1])
SLD[p, m1]      = sum[m0] SLN[p, m1, m0]
SLNV[p, f, m1]  = SLN[p, m1, m0] * BV[m1, m0, f]
PRM[p, m1]      = exp(RM[p, m1] - RM[p, m1 + 1])
SPD[p, m1]      = RD[p, m1] * PRM[p, m1]
RD[p, m1 + 1]   = SPD[p, m1] + SLD[p, m1]
SPNV[p, f, m1]  = RNV[p, f, m1] * PRM[p, m1]
RNV[p, f, m1 + 1] = SPNV[p, f, m1] + SLNV[p, f, m1]
AV[p, f]        = RNV[p, f, M1] / RD[p, M1]
""",
    "matmul": """
cascade matmul
input A[m, k], B[k, n]
output Z

Z[m, n] = A[m, k] * B[k, n]
""",
    "softmax": """
cascade softmax
input X[p, m]
output Y

GM[p]    = max[m] X[p, m]
SN[p, m] = exp(X[p, m] - GM[p])
SD[p]    = sum[m] SN[p, m]
Y[p, m]  = SN[p, m] / SD[p]
""",
    # Layer normalisation without affine terms: mean, then variance, then normalise (3 passes).
    "layernorm": """
cascade layernorm
input X[p, m]
param eps = 1e-05
output Y

MU[p]   = sum[m] X[p, m] / M
D[p, m] = X[p, m] - MU[p]
VAR[p]  = sum[m] D[p, m] * D[p, m] / M
Y[p, m] = D[p, m] / sqrt(VAR[p] + eps)
""",
}

# SpAtten (Wang, Zhang, Han, HPCA 2021, arXiv 2012.09852): its four mechanisms as cascades.
# Layers are an iterative rank L: each layer's Q, K and V are inputs (as in SpAtten's own
# evaluation, which replays the attention of a model), and the pruning state (cumulative scores
# and the keep masks) is carried from layer l to l + 1. KT[l] / KH[l] say how many tokens / heads
# are kept for the layers after l; a pruned token or head is never read again.
_SOURCES["spatten_token_pruning"] = """
cascade spatten_token_pruning
input Q[l, h, p, e], K[l, h, m, e], V[l, h, m, f], KT[l]
param scale = 1 / sqrt(E)
output AV, KEEP

init TS[m, l = 0]   = 0
init KEEP[m, l = 0] = 1

QK[l, h, p, m] = Q[l, h, p, e] * K[l, h, m, e] * KEEP[m, l]
S[l, h, p, m]  = where(KEEP[m, l] > 0, QK[l, h, p, m] * scale, -inf)
GM[l, h, p]    = max[m] S[l, h, p, m]
SN[l, h, p, m] = exp(S[l, h, p, m] - GM[l, h, p])
SD[l, h, p]    = sum[m] SN[l, h, p, m]
A[l, h, p, m]  = SN[l, h, p, m] / SD[l, h, p]
AV[l, h, p, f] = A[l, h, p, m] * V[l, h, m, f] * KEEP[m, l]
TS[m, l + 1]   = TS[m, l] + sum[h, p] A[l, h, p, m]
KEEP[m, l + 1] = KEEP[m, l] * topk[m; KT[l]] where(KEEP[m, l] > 0, TS[m, l + 1], -inf)
"""
_SOURCES["spatten_head_pruning"] = """
cascade spatten_head_pruning
input Q[l, h, p, e], K[l, h, m, e], V[l, h, m, f], KH[l]
param scale = 1 / sqrt(E)
output AV, HKEEP

init HS[h, l = 0]    = 0
init HKEEP[h, l = 0] = 1

QK[l, h, p, m] = Q[l, h, p, e] * K[l, h, m, e] * HKEEP[h, l]
S[l, h, p, m]  = QK[l, h, p, m] * scale
GM[l, h, p]    = max[m] S[l, h, p, m]
SN[l, h, p, m] = exp(S[l, h, p, m] - GM[l, h, p])
SD[l, h, p]    = sum[m] SN[l, h, p, m]
A[l, h, p, m]  = SN[l, h, p, m] / SD[l, h, p]
AV[l, h, p, f] = A[l, h, p, m] * V[l, h, m, f] * HKEEP[h, l]
HS[h, l + 1]   = HS[h, l] + sum[p, f] abs(AV[l, h, p, f])
HKEEP[h, l + 1] = HKEEP[h, l] * topk[h; KH[l]] where(HKEEP[h, l] > 0, HS[h, l + 1], -inf)
"""
# Local value pruning: per query, only the kv largest probabilities keep their V row (the others
# are never fetched); no renormalisation.
_SOURCES["spatten_local_value_pruning"] = """
cascade spatten_local_value_pruning
input Q[p, e], K[m, e], V[m, f]
param scale = 1 / sqrt(E)
param vkeep = 0.2
param kv = ceil(vkeep * M)
output AV

QK[p, m] = Q[p, e] * K[m, e]
S[p, m]  = QK[p, m] * scale
GM[p]    = max[m] S[p, m]
SN[p, m] = exp(S[p, m] - GM[p])
SD[p]    = sum[m] SN[p, m]
A[p, m]  = SN[p, m] / SD[p]
VK[p, m] = topk[m; kv] A[p, m]
AV[p, f] = A[p, m] * VK[p, m] * V[m, f]
"""
# Progressive quantization (8 + 4 bits): scores from the MSBs of K first; a query whose largest
# probability is under tau fetches K's 4 LSBs and recomputes its row once. qk12 rounds to the
# on-chip 12-bit format, qk12msb keeps its 8 most significant bits.
_SOURCES["spatten_progressive_quantization"] = """
cascade spatten_progressive_quantization
input Q[p, e], K[m, e], V[m, f]
param scale = 1 / sqrt(E)
param tau = 0.1
output AV, LSB

QQ[p, e]  = qk12(Q[p, e])
KM[m, e]  = qk12msb(K[m, e])
KF[m, e]  = qk12(K[m, e])
VQ[m, f]  = qk12(V[m, f])
SM[p, m]  = QQ[p, e] * KM[m, e] * scale
GMM[p]    = max[m] SM[p, m]
SNM[p, m] = exp(SM[p, m] - GMM[p])
SDM[p]    = sum[m] SNM[p, m]
AM[p, m]  = SNM[p, m] / SDM[p]
AMX[p]    = max[m] AM[p, m]
LSB[p]    = AMX[p] < tau
SF[p, m]  = QQ[p, e] * KF[m, e] * LSB[p] * scale
GMF[p]    = max[m] SF[p, m]
SNF[p, m] = exp(SF[p, m] - GMF[p])
SDF[p]    = sum[m] SNF[p, m]
A[p, m]   = where(LSB[p] > 0, SNF[p, m] / SDF[p], AM[p, m])
AV[p, f]  = A[p, m] * VQ[m, f]
"""

#: The on-chip format of SpAtten's progressive quantization in the library cascade: 12 bits,
#: 8 of them fraction bits (values in [-8, 8)), fetched as 8 MSBs then 4 LSBs.
PQ_FORMAT = Fixed(12, 8)
PQ_LSB_BITS = 4
_OPERATORS: dict[str, tuple[Operator, ...]] = {
    "spatten_progressive_quantization": (
        quantizer(PQ_FORMAT, "qk12"),
        quantizer(PQ_FORMAT, "qk12msb", drop_lsbs=PQ_LSB_BITS),
    ),
}

_SOURCES.update(VARIANTS)

# Causal variants (query p sees keys m <= p, top-left aligned): the same cascades with masked
# scores set to -inf. In the 2-pass cascade a key tile can be wholly masked for a query (LM = -inf),
# so its SLN is zero where masked instead of exp(-inf - -inf).
_CAUSAL: dict[str, list[tuple[str, str]]] = {
    "attention_3pass": [
        ("S[p, m]  = QK[p, m] * scale", "S[p, m]  = where(p >= m, QK[p, m] * scale, -inf)"),
    ],
    "attention_2pass": [
        (
            "BQK[p, m1, m0] = Q[p, e] * BK[m1, m0, e] * scale",
            "SBQK[p, m1, m0] = Q[p, e] * BK[m1, m0, e] * scale\n"
            "BQK[p, m1, m0] = where(p >= m1 * M0 + m0, SBQK[p, m1, m0], -inf)",
        ),
        (
            "SLN[p, m1, m0] = exp(BQK[p, m1, m0] - LM[p, m1])",
            "SLN[p, m1, m0] = where(p >= m1 * M0 + m0, exp(BQK[p, m1, m0] - LM[p, m1]), 0)",
        ),
    ],
    "attention_1pass": [
        (
            "QK[p, m1, m0]   = Q[p, e] * BK[m1, m0, e] * scale",
            "SQK[p, m1, m0]  = Q[p, e] * BK[m1, m0, e] * scale\n"
            "QK[p, m1, m0]   = where(p >= m1 * M0 + m0, SQK[p, m1, m0], -inf)",
        ),
    ],
}
for _base, _subs in _CAUSAL.items():
    _src = _SOURCES[_base].replace(f"cascade {_base}\n", f"cascade {_base}_causal\n")
    for _old, _new in _subs:
        assert _old in _src, (_base, _old)
        _src = _src.replace(_old, _new)
    _SOURCES[_base + "_causal"] = _src


def names() -> tuple[str, ...]:
    """Names of the library's cascades, sorted."""
    return tuple(sorted(_SOURCES))


def source(name: str) -> str:
    """The notation text of a library cascade."""
    _check(name)
    return _SOURCES[name].lstrip()


def operators(name: str) -> tuple[Operator, ...]:
    """The user-defined operators a library cascade calls (pass them to :func:`einsum.parse` to
    read its text back): ``qk12`` and ``qk12msb`` for ``spatten_progressive_quantization``."""
    _check(name)
    return _OPERATORS.get(name, ())


def get(name: str) -> Cascade:
    """The library cascade called ``name`` (see :func:`names`).

    Raises:
        EinsumError: no cascade has that name (with a suggestion).
    """
    _check(name)
    return _parsed(name)


@cache
def _parsed(name: str) -> Cascade:
    return parse(_SOURCES[name], operators=_OPERATORS.get(name, ()))


def _check(name: object) -> None:
    if not isinstance(name, str) or name not in _SOURCES:
        hint = suggest(name, _SOURCES)
        raise EinsumError(f"library has no cascade {name!r}{hint} (known: {', '.join(names())})")
