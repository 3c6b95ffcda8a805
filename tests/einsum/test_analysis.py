"""Passes, operation counts, tensor sizes, dependency graph and size binding, on hand-worked cases."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

import einsum
from einsum import Poly

LIB = einsum.library.get


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("attention_3pass", 3),
        ("attention_2pass", 2),
        ("attention_1pass", 1),
        ("softmax", 3),
        ("layernorm", 3),
        ("matmul", 1),
    ],
)
def test_library_pass_counts(name: str, expected: int) -> None:
    assert einsum.passes(LIB(name), "M") == expected


def test_mean_then_variance_is_two_passes_without_the_normalisation() -> None:
    c = einsum.parse("""
        input X[p, m]
        output VAR
        MU[p]   = sum[m] X[p, m] / M
        D[p, m] = X[p, m] - MU[p]
        VAR[p]  = sum[m] D[p, m] * D[p, m] / M
    """)
    assert einsum.passes(c, "M") == 2


def test_one_pass_variance_by_sums_of_powers() -> None:
    c = einsum.parse("""
        input X[p, m]
        output VAR
        S1[p]  = sum[m] X[p, m]
        S2[p]  = sum[m] X[p, m] * X[p, m]
        VAR[p] = S2[p] / M - (S1[p] / M) * (S1[p] / M)
    """)
    assert einsum.passes(c, "M") == 1


def test_passes_over_a_rank_the_reduction_does_not_touch() -> None:
    # Over P, attention is a single traversal: each query row is independent.
    assert einsum.passes(LIB("attention_3pass"), "P") == 1


def test_running_sum_is_one_pass_and_reuse_after_it_is_two() -> None:
    c = einsum.parse("""
        input X[i]
        output Y
        init R[i = 0] = 0
        R[i + 1] = R[i] + X[i]
        Y[i] = X[i] / R[I]
    """)
    assert einsum.passes(c, "I") == 2


def test_op_counts_of_three_pass_attention_by_hand() -> None:
    counts = einsum.op_counts(LIB("attention_3pass"))
    sizes = {"P": 3, "M": 5, "E": 7, "F": 2}
    by = [c.at(sizes) for c in counts]
    assert by[0] == {"mac": 3 * 5 * 7, "add": 0, "max": 0, "exp": 0, "div": 0, "other": 0}  # QK
    assert by[1]["mac"] == 15  # S = QK * scale
    assert by[2]["max"] == 15  # GM: one compare per element reduced
    assert (by[3]["add"], by[3]["exp"]) == (15, 15)  # SN = exp(S - GM)
    assert by[4]["add"] == 15  # SD
    assert by[5]["div"] == 15  # A
    assert by[6]["mac"] == 3 * 5 * 2  # AV


def test_op_counts_match_fusemax_per_element_costs() -> None:
    c = LIB("attention_1pass")
    counts = dict(zip((e.lhs_text for e in c.einsums), einsum.op_counts(c), strict=True))
    assert str(counts["QK[p, m1, m0]"]) == "mac=E*M0*M1*P + M0*M1*P"  # E MACs, then the scale
    assert str(counts["SLN[p, m1, m0]"]) == "add=M0*M1*P, exp=M0*M1*P"
    assert str(counts["SLNV[p, f, m1]"]) == "mac=F*M0*M1*P"
    assert str(counts["PRM[p, m1]"]) == "add=M1*P, exp=M1*P"
    assert str(counts["AV[p, f]"]) == "div=F*P"
    assert str(counts["BK[m1, m0, e]"]) == ""  # re-indexing is free


def test_op_counts_hoist_invariant_factors_and_charge_user_operators() -> None:
    exp6 = einsum.Operator(name="exp6", arity=1, golden=np.exp, cost=einsum.Actions(mac=6, add=1))
    c = einsum.parse(
        """
        input A[p, m], B[p]
        output Z, W
        Z[p] = A[p, m] * B[p] * 2
        W[p, m] = exp6(A[p, m] - B[p])
    """,
        operators=[exp6],
    )
    z, w = einsum.op_counts(c)
    assert str(z) == "mac=2*P, add=M*P"  # sum A over m, then two scalings per p
    assert w.at({"P": 2, "M": 3}) == {"mac": 36, "add": 6 + 6, "max": 0, "exp": 0, "div": 0, "other": 0}


def test_tensor_sizes_count_iterative_positions() -> None:
    sizes = einsum.tensor_sizes(LIB("attention_1pass"))
    assert str(sizes["RNV"]) == "F*M1*P + F*P"
    assert str(sizes["QK"]) == "M0*M1*P"
    assert sizes["Q"].at({"P": 4, "E": 3}) == 12


def test_poly_arithmetic() -> None:
    a = Poly.product(["P", "M"]) + 2
    assert str(a * Poly.product(["E"])) == "E*M*P + 2*E"
    assert (a * 3).at({"P": 2, "M": 5}) == 36
    with pytest.raises(einsum.EinsumError, match=r"Poly.at\(\): no size for rank M in M\*P \+ 2"):
        a.at({"P": 2})


def test_dependency_graph_shape() -> None:
    g = einsum.dependency_graph(LIB("attention_1pass"))
    assert g.nodes["Q"]["role"] == "input" and g.nodes["AV"]["role"] == "output"
    assert (
        g.has_edge("RM", ("einsum", 11))
        and g.edges["RM", ("einsum", 11)]["access"] == "RM[p, m1], RM[p, m1 + 1]"
    )
    cycles = {frozenset(n for n in cyc if isinstance(n, str)) for cyc in nx.simple_cycles(g)}
    assert frozenset({"RD", "SPD"}) in cycles and frozenset({"RM"}) in cycles
    assert nx.is_directed_acyclic_graph(einsum.dependency_graph(LIB("attention_3pass")))


def test_stages_group_recurrences() -> None:
    c = LIB("attention_1pass")
    groups = [tuple(c.einsums[i].lhs_text for i in s.statements) for s in c.stages if s.step]
    assert groups == [
        ("RM[p, m1 + 1]",),
        ("SPD[p, m1]", "RD[p, m1 + 1]"),
        ("SPNV[p, f, m1]", "RNV[p, f, m1 + 1]"),
    ]


def test_bind_sizes_derives_partitions_either_way() -> None:
    c = LIB("attention_2pass")
    shapes = {"Q": (4, 3), "K": (12, 3), "V": (12, 2)}
    assert einsum.bind_sizes(c, shapes, {"M0": 4})["M1"] == 3
    assert einsum.bind_sizes(c, shapes, {"M1": 4})["M0"] == 3
    assert einsum.bind_sizes(c, {}, {"P": 1, "E": 1, "F": 1, "M1": 2, "M0": 3})["M"] == 6


def test_eval_params() -> None:
    c = einsum.parse(
        "input A[m]\nparam k = ceil(0.25 * M)\nparam j = max(k, 2) ** 2\noutput Z\nZ[m] = A[m] * j"
    )
    assert einsum.eval_params(c, {"M": 9}) == {"k": 3.0, "j": 9.0}


def test_masked_op_counts_are_functions_of_the_keep_ratios() -> None:
    """op_counts(masks=True) at the densities golden.run measures equals the work the pruned
    cascade really keeps: QK and AV over the kept (layer, token) pairs, prob x V over the kept
    probabilities, the LSB recompute over the rows that refetch."""
    import golden

    rng = np.random.default_rng(7)
    L, H, P, M, E, F = 4, 2, 3, 12, 5, 2
    q, k, v = rng.normal(size=(L, H, P, E)), rng.normal(size=(L, H, M, E)), rng.normal(size=(L, H, M, F))
    c = einsum.library.get("spatten_token_pruning")
    got = golden.run(c, {"Q": q, "K": k, "V": v, "KT": np.array([9.0, 5, 3, 2])})
    kept = got["KEEP"][:, :L]  # the tokens layers 0..L-1 read
    sizes = {"L": L, "H": H, "P": P, "M": M, "E": E, "F": F, "keep_KEEP": kept.mean()}
    counts = {e.output: n.at(sizes) for e, n in zip(c.einsums, einsum.op_counts(c, masks=True), strict=True)}
    assert kept.sum() == 12 + 9 + 5 + 3
    assert counts["QK"]["mac"] == pytest.approx(E * H * P * kept.sum())
    assert counts["AV"]["mac"] == pytest.approx(F * H * P * kept.sum())
    dense = {e.output: n.at(sizes) for e, n in zip(c.einsums, einsum.op_counts(c), strict=True)}
    assert dense["QK"]["mac"] == E * H * L * M * P + H * L * M * P  # and the mask product, as a MAC

    v1 = einsum.library.get("spatten_local_value_pruning")
    kv = int(np.ceil(0.2 * M))
    av = einsum.op_counts(v1, masks=True)[-1].at({"P": P, "M": M, "F": F, "keep_VK": kv / M})
    assert av["mac"] == pytest.approx(P * kv * F)
    assert set(einsum.mask_tensors(einsum.library.get("attention_3pass"))) == set()
