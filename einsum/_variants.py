"""The attention variants of the field as cascades (the texts :mod:`einsum.library` serves).

Each is written from its paper's equations; ``golden.variants`` holds an independent NumPy
reference for each, and ``tests/golden/test_variants.py`` checks the two agree. Conventions as in
the library: ``Q[p, e]``, ``K[m, e]``, ``V[m, f]``, the ``1 / sqrt(E)`` scale, output ``AV``.
Blocked variants (Lightning Attention-2, SeerAttention) keep their output blocked
(``O[m1, m0, f]`` is ``O[m, f]`` reshaped), since an index of one rank cannot address another.
"""

from __future__ import annotations

_SOFTMAX_TAIL = """GM[p]    = max[m] S[p, m]
SN[p, m] = exp(S[p, m] - GM[p])
SD[p]    = sum[m] SN[p, m]
A[p, m]  = SN[p, m] / SD[p]
AV[p, f] = A[p, m] * V[m, f]
"""

VARIANTS: dict[str, str] = {
    # FlashSigmoid (Ramapuram et al., ICLR 2025, arXiv 2409.04431): no normaliser, bias -log(M).
    "sigmoid_attention": """
cascade sigmoid_attention
input Q[p, e], K[m, e], V[m, f]
param scale = 1 / sqrt(E)
param bias = -log(M)
output AV

QK[p, m] = Q[p, e] * K[m, e]
SG[p, m] = sigmoid(QK[p, m] * scale + bias)
AV[p, f] = SG[p, m] * V[m, f]
""",
    # ALiBi (Press et al., ICLR 2022, arXiv 2108.12409): causal, a linear penalty slope * (p - m).
    "alibi_attention": """
cascade alibi_attention
input Q[p, e], K[m, e], V[m, f]
param scale = 1 / sqrt(E)
param slope = 0.0625
output AV

QK[p, m] = Q[p, e] * K[m, e]
S[p, m]  = where(p >= m, QK[p, m] * scale - slope * (p - m), -inf)
"""
    + _SOFTMAX_TAIL,
    # Logit soft-capping (Gemma 2, arXiv 2408.00118): cap * tanh(s / cap).
    "softcap_attention": """
cascade softcap_attention
input Q[p, e], K[m, e], V[m, f]
param scale = 1 / sqrt(E)
param cap = 50
output AV

QK[p, m] = Q[p, e] * K[m, e]
S[p, m]  = cap * tanh(QK[p, m] * scale / cap)
"""
    + _SOFTMAX_TAIL,
    # Causal sliding window (Longformer, Mistral): query p sees keys p - window < m <= p.
    "sliding_window_attention": """
cascade sliding_window_attention
input Q[p, e], K[m, e], V[m, f]
param scale = 1 / sqrt(E)
param window = 16
output AV

QK[p, m] = Q[p, e] * K[m, e]
S[p, m]  = where((p >= m) * (p - m < window), QK[p, m] * scale, -inf)
"""
    + _SOFTMAX_TAIL,
    # Document masking (packed sequences): a query sees the keys of its own document.
    "document_mask_attention": """
cascade document_mask_attention
input Q[p, e], K[m, e], V[m, f], DQ[p], DK[m]
param scale = 1 / sqrt(E)
output AV

QK[p, m] = Q[p, e] * K[m, e]
S[p, m]  = where(DQ[p] == DK[m], QK[p, m] * scale, -inf)
"""
    + _SOFTMAX_TAIL,
    # Decode with a KV cache: causal aligned bottom-right (FlashAttention): the P new queries are
    # the last P positions, so query p sees keys m <= p + M - P (with P = 1, every key).
    "attention_decode": """
cascade attention_decode
input Q[p, e], K[m, e], V[m, f]
param scale = 1 / sqrt(E)
output AV

QK[p, m] = Q[p, e] * K[m, e]
S[p, m]  = where(m <= p + M - P, QK[p, m] * scale, -inf)
"""
    + _SOFTMAX_TAIL,
    # Causal linear attention with decay (TransNormerLLM / Lightning Attention, arXiv 2307.14995):
    # O[p] = sum_{m <= p} lam^(p - m) (Q[p] . K[m]) V[m], the parallel (quadratic) form.
    "linear_attention_decay": """
cascade linear_attention_decay
input Q[p, e], K[m, e], V[m, f]
param lam = 0.95
output O

QK[p, m] = Q[p, e] * K[m, e]
DQK[p, m] = where(p >= m, lam ** (p - m), 0) * QK[p, m]
O[p, f]  = DQK[p, m] * V[m, f]
""",
    # Lightning Attention-2 (Qin et al., arXiv 2401.04658): blocks of M0 tokens; inside a block the
    # masked, decayed products (intra); across blocks a state KV[e, f] carried with decay lam^M0
    # (inter). Causal self-attention, so the queries share the key grid (Q[m, e]).
    "lightning_attention2": """
cascade lightning_attention2
input Q[m, e], K[m, e], V[m, f]
param lam = 0.95
partition M -> M1, M0
output O

BQ[m1, m0, e] = Q[m1 * M0 + m0, e]
BK[m1, m0, e] = K[m1 * M0 + m0, e]
BV[m1, m0, f] = V[m1 * M0 + m0, f]
init KV[e, f, m1 = 0] = 0
QKI[m1, m0, m]  = BQ[m1, m0, e] * K[m, e]
DI[m1, m0, m]   = where((m <= m1 * M0 + m0) * (m >= m1 * M0), lam ** (m1 * M0 + m0 - m), 0)
OI[m1, m0, f]   = DI[m1, m0, m] * QKI[m1, m0, m] * V[m, f]
OX[m1, m0, f]   = lam ** (m0 + 1) * BQ[m1, m0, e] * KV[e, f, m1]
KV[e, f, m1 + 1] = lam ** M0 * KV[e, f, m1] + sum[m0] lam ** (M0 - 1 - m0) * BK[m1, m0, e] * BV[m1, m0, f]
O[m1, m0, f]    = OI[m1, m0, f] + OX[m1, m0, f]
""",
    # Aaren (Feng et al., arXiv 2405.13956): one query's attention over every prefix, as a scan of
    # the softmax state (running max, denominator, numerator); O[m] attends to keys 0..m.
    "aaren": """
cascade aaren
input Q[e], K[m, e], V[m, f]
param scale = 1 / sqrt(E)
output O

init RM[m = 0] = -inf
init RD[m = 0] = 0
init RN[f, m = 0] = 0
S[m]          = Q[e] * K[m, e] * scale
RM[m + 1]     = max(RM[m], S[m])
RD[m + 1]     = RD[m] * exp(RM[m] - RM[m + 1]) + exp(S[m] - RM[m + 1])
RN[f, m + 1]  = RN[f, m] * exp(RM[m] - RM[m + 1]) + exp(S[m] - RM[m + 1]) * V[m, f]
O[m, f]       = RN[f, m + 1] / RD[m + 1]
""",
    # Agent attention (Han et al., ECCV 2024, arXiv 2312.08874): agents pooled from blocks of the
    # queries aggregate K and V by softmax attention; the queries attend to the agents.
    "agent_attention": """
cascade agent_attention
input Q[p, e], K[m, e], V[m, f]
param scale = 1 / sqrt(E)
partition P -> P1, P0
output AV

BQ[p1, p0, e] = Q[p1 * P0 + p0, e]
AG[p1, e]     = sum[p0] BQ[p1, p0, e] / P0
SA[p1, m]     = AG[p1, e] * K[m, e] * scale
GA[p1]        = max[m] SA[p1, m]
NA[p1, m]     = exp(SA[p1, m] - GA[p1])
DA[p1]        = sum[m] NA[p1, m]
VA[p1, f]     = NA[p1, m] * V[m, f] / DA[p1]
SQ[p, p1]     = Q[p, e] * AG[p1, e] * scale
GQ[p]         = max[p1] SQ[p, p1]
NQ[p, p1]     = exp(SQ[p, p1] - GQ[p])
DQ[p]         = sum[p1] NQ[p, p1]
AV[p, f]      = NQ[p, p1] * VA[p1, f] / DQ[p]
""",
    # SeerAttention (Gao et al., arXiv 2410.13276): Q and K average-pooled per block, gate scores
    # between blocks, the kb best key blocks of each query block kept, attention over those only.
    "seer_attention": """
cascade seer_attention
input Q[p, e], K[m, e], V[m, f]
param scale = 1 / sqrt(E)
param kb = 2
partition P -> P1, P0
partition M -> M1, M0
output AV

BQ[p1, p0, e] = Q[p1 * P0 + p0, e]
BK[m1, m0, e] = K[m1 * M0 + m0, e]
BV[m1, m0, f] = V[m1 * M0 + m0, f]
PQ[p1, e]     = sum[p0] BQ[p1, p0, e] / P0
PK[m1, e]     = sum[m0] BK[m1, m0, e] / M0
G[p1, m1]     = PQ[p1, e] * PK[m1, e]
BM[p1, m1]    = topk[m1; kb] G[p1, m1]
QK[p1, p0, m1, m0] = BQ[p1, p0, e] * BK[m1, m0, e]
S[p1, p0, m1, m0]  = where(BM[p1, m1] > 0, QK[p1, p0, m1, m0] * scale, -inf)
GM[p1, p0]    = max[m1, m0] S[p1, p0, m1, m0]
SN[p1, p0, m1, m0] = exp(S[p1, p0, m1, m0] - GM[p1, p0])
SD[p1, p0]    = sum[m1, m0] SN[p1, p0, m1, m0]
AV[p1, p0, f] = SN[p1, p0, m1, m0] * BV[m1, m0, f] / SD[p1, p0]
""",
    # Routing attention (Roy et al., TACL 2021, arXiv 2003.05997): queries and keys go to their
    # nearest centroid; a query attends to the keys of its cluster (and, self-attention, itself).
    "routing_attention": """
cascade routing_attention
input Q[p, e], K[m, e], V[m, f], C[c, e]
param scale = 1 / sqrt(E)
output AV

QC[p, c] = Q[p, e] * C[c, e]
KC[m, c] = K[m, e] * C[c, e]
CQ[p, c] = topk[c; 1] QC[p, c]
CK[m, c] = topk[c; 1] KC[m, c]
SC[p, m] = CQ[p, c] * CK[m, c]
QK[p, m] = Q[p, e] * K[m, e]
S[p, m]  = where((SC[p, m] > 0) + (p == m) > 0, QK[p, m] * scale, -inf)
"""
    + _SOFTMAX_TAIL,
    # Landmark attention (Mohtashami & Jaggi, NeurIPS 2023, arXiv 2305.16300): a softmax inside
    # each block of M0 keys times a softmax over the blocks' landmark scores, over the kb blocks
    # with the best landmark scores (grouped softmax with block retrieval).
    "landmark_attention": """
cascade landmark_attention
input Q[p, e], K[m, e], V[m, f], LK[m1, e]
param scale = 1 / sqrt(E)
param kb = 2
partition M -> M1, M0
output AV

BK[m1, m0, e] = K[m1 * M0 + m0, e]
BV[m1, m0, f] = V[m1 * M0 + m0, f]
LS[p, m1]     = Q[p, e] * LK[m1, e] * scale
SEL[p, m1]    = topk[m1; kb] LS[p, m1]
GS[p, m1]     = where(SEL[p, m1] > 0, LS[p, m1], -inf)
GG[p]         = max[m1] GS[p, m1]
GN[p, m1]     = exp(GS[p, m1] - GG[p])
GD[p]         = sum[m1] GN[p, m1]
BS[p, m1, m0] = Q[p, e] * BK[m1, m0, e] * scale
BG[p, m1]     = max[m0] BS[p, m1, m0]
BN[p, m1, m0] = exp(BS[p, m1, m0] - BG[p, m1])
BD[p, m1]     = sum[m0] BN[p, m1, m0]
AV[p, f]      = GN[p, m1] / GD[p] * BN[p, m1, m0] / BD[p, m1] * BV[m1, m0, f]
""",
    # Recycled attention (Xu, Goyal, Choi, arXiv 2411.05787): between full-attention steps a
    # decode step attends only to the kr keys the last full step attended to most (its attention
    # mass PA[m]) and to the last `recent` keys.
    "recycled_attention": """
cascade recycled_attention
input Q[p, e], K[m, e], V[m, f], PA[m]
param scale = 1 / sqrt(E)
param kr = 8
param recent = 4
output AV

KEEP[m]  = topk[m; kr] PA[m]
QK[p, m] = Q[p, e] * K[m, e]
S[p, m]  = where((KEEP[m] > 0) + (m >= M - recent) > 0, QK[p, m] * scale, -inf)
"""
    + _SOFTMAX_TAIL,
}
