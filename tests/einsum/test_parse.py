"""Parsing and printing: canonical text, precedence, the builder API."""

from __future__ import annotations

import math

import numpy as np
import pytest

import einsum
from einsum import builder as eb


@pytest.mark.parametrize("name", einsum.library.names())
def test_library_round_trips(name: str) -> None:
    c = einsum.library.get(name)
    ops = einsum.library.operators(name)
    assert einsum.parse(str(c), operators=ops) == c
    assert einsum.parse(einsum.library.source(name), operators=ops) == c


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("a-b-c", "a - b - c"),
        ("a-(b-c)", "a - (b - c)"),
        ("(a+b)*c", "(a + b) * c"),
        ("a*b/c", "a * b / c"),
        ("a/(b*c)", "a / (b * c)"),
        ("-a**2", "-a ** 2"),
        ("(-2)**2", "(-2) ** 2"),
        ("2**-1", "2 ** -1"),
        ("a - -1", "a - -1"),
        ("-(2)", "-(2)"),
        ("(sum[i] X[i]) + 1", "(sum[i] X[i]) + 1"),
        ("sum[i] X[i] + 1", "sum[i] X[i] + 1"),
        ("1 + max[i] X[i]", "1 + (max[i] X[i])"),
        ("where(i >= j, 1.50, -inf)", "where(i >= j, 1.5, -inf)"),
        ("0.000010", "1e-05"),
        ("(a < b) == (b < a)", "(a < b) == (b < a)"),
        ("topk[i; 2] X[i]", "topk[i; 2] X[i]"),
    ],
)
def test_canonical_expression_text(text: str, canonical: str) -> None:
    expr = einsum.parse_expr(text)
    assert str(expr) == canonical
    assert einsum.parse_expr(canonical) == expr


def test_reduction_body_extends_to_the_right() -> None:
    expr = einsum.parse_expr("sum[m] A[p, m] * B[m] + 1")
    assert isinstance(expr, einsum.Reduce)
    assert str(expr.body) == "A[p, m] * B[m] + 1"


def test_statements_continue_inside_brackets_and_comments_are_ignored() -> None:
    c = einsum.parse("""
        # a comment
        input A[m,
                k], B[k, n]   # trailing comment
        output Z
        Z[m, n] = (A[m, k] *
                   B[k, n])
    """)
    assert str(c.einsums[0]) == "Z[m, n] = A[m, k] * B[k, n]"


def test_params_shadow_indices_in_values_not_in_accesses() -> None:
    c = einsum.parse("input s[k]\nparam k = 2\noutput keep\nkeep[k] = topk[k; k] s[k]")
    topk = c.einsums[0].expr
    assert isinstance(topk, einsum.TopK) and topk.k == einsum.ParamRef("k")


def test_user_operator_round_trip_and_evaluation() -> None:
    exp6 = einsum.Operator(name="exp6", arity=1, golden=np.exp, cost=einsum.Actions(mac=6, add=1))
    c = einsum.parse("input X[i]\noutput Y\nY[i] = exp6(X[i] - 1)", operators=[exp6])
    assert c.operators == (exp6,)
    assert einsum.parse(str(c), operators=c.operators) == c
    import golden

    np.testing.assert_allclose(golden.run(c, {"X": np.array([1.0, 2.0])})["Y"], [1.0, math.e])


def test_builder_builds_the_library_one_pass_cascade() -> None:
    p, m1, m0, e, f = eb.indices("p m1 m0 e f")
    M0, M1 = eb.size("M0"), eb.size("M1")
    b = eb.CascadeBuilder("attention_1pass")
    Q, K, V = b.input("Q", "p e"), b.input("K", "m e"), b.input("V", "m f")
    scale = b.param("scale", 1 / eb.sqrt(eb.size("E")))
    b.partition("M", "M1", "M0")
    b.output("AV")
    BK = b.einsum("BK", "m1 m0 e", K[m1 * M0 + m0, e])
    BV = b.einsum("BV", "m1 m0 f", V[m1 * M0 + m0, f])
    RM = b.init("RM", "p m1", m1, -math.inf)
    RD = b.init("RD", "p m1", m1, 0)
    RNV = b.init("RNV", "p f m1", m1, 0)
    QK = b.einsum("QK", "p m1 m0", Q[p, e] * BK[m1, m0, e] * scale)
    LM = b.einsum("LM", "p m1", eb.max_over("m0", QK[p, m1, m0]))
    b.step("RM", "p m1", m1, eb.maximum(RM[p, m1], LM[p, m1]))
    SLN = b.einsum("SLN", "p m1 m0", eb.exp(QK[p, m1, m0] - RM[p, m1 + 1]))
    SLD = b.einsum("SLD", "p m1", eb.sum_over("m0", SLN[p, m1, m0]))
    SLNV = b.einsum("SLNV", "p f m1", SLN[p, m1, m0] * BV[m1, m0, f])
    PRM = b.einsum("PRM", "p m1", eb.exp(RM[p, m1] - RM[p, m1 + 1]))
    SPD = b.einsum("SPD", "p m1", RD[p, m1] * PRM[p, m1])
    b.step("RD", "p m1", m1, SPD[p, m1] + SLD[p, m1])
    SPNV = b.einsum("SPNV", "p f m1", RNV[p, f, m1] * PRM[p, m1])
    b.step("RNV", "p f m1", m1, SPNV[p, f, m1] + SLNV[p, f, m1])
    b.einsum("AV", "p f", RNV[p, f, M1] / RD[p, M1])
    assert b.build() == einsum.library.get("attention_1pass")


def test_builder_reports_problems_like_the_parser() -> None:
    b = eb.CascadeBuilder()
    A = b.input("A", "m")
    b.einsum("Z", "m n", A["m"])
    b.output("Z")
    with pytest.raises(einsum.CascadeError, match=r"einsums\[0\] Z\[m, n\]: index n on the left is bound"):
        b.build()


def test_cascade_views() -> None:
    c = einsum.library.get("attention_1pass")
    assert c.iterative == {"RM": 1, "RD": 1, "RNV": 2}
    assert c.tensors["SLNV"] == ("P", "F", "M1")
    assert c.ranks == ("E", "F", "M", "M0", "M1", "P")
