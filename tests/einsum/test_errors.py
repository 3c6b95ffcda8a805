"""The bad-input catalogue: each case raises a typed einforge error whose text is matched.

Every message names what is wrong, where (line and column, or the statement), what was found
and what was expected.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import einsum
import golden
from einsum import CascadeError, EinforgeError, EinsumError, ParseError, SizeError
from golden import EvaluationError

MATMUL = "input A[m, k], B[k, n]\noutput Z\n"

# (id, text, error class, regex matched against str(error))
PARSE_CASES = [
    (
        "bad-character",
        MATMUL + "Z[m, n] = A[m, k] $ B[k, n]",
        r"^line 3, column 19: unexpected character '\$'\n    Z\[m, n\] = A\[m, k\] \$ B\[k, n\]\n {22}\^",
    ),
    (
        "unclosed-bracket",
        MATMUL + "Z[m, n = A[m, k]",
        r"^line 3, column 8: on the left, an index may only be written 'n' or, for a recurrence, 'n \+ 1'",
    ),
    (
        "unknown-function",
        MATMUL + "Z[m, n] = foo(A[m, k]) * B[k, n]",
        r"^line 3, column 11: unknown function 'foo'; did you mean 'floor'\? \(known: abs, ceil, erf, exp,",
    ),
    (
        "unknown-function-hint",
        MATMUL + "Z[m, n] = exq(A[m, k]) * B[k, n]",
        r"unknown function 'exq'; did you mean 'exp'\?",
    ),
    (
        "builtin-arity",
        MATMUL + "Z[m, n] = max(A[m, k]) * B[k, n]",
        r"^line 3, column 11: max\(\) takes 2 argument\(s\), found 1",
    ),
    (
        "sum-as-function",
        MATMUL + "Z[m, n] = sum(A[m, k] * B[k, n])",
        r"line 3, column 11: sum is a reduction: write sum\[i\] EXPR",
    ),
    (
        "lhs-expression",
        MATMUL + "Z[m + 2, n] = A[m, k] * B[k, n]",
        r"line 3, column 5: on the left, an index may only be written 'm' or, for a recurrence, 'm \+ 1'",
    ),
    (
        "init-without-position",
        "input X[i]\noutput Y\ninit R[i] = 0\n",
        r"line 3, column 6: an init gives the value at position 0 of the iterative rank",
    ),
    (
        "uppercase-input-index",
        "input A[M]\noutput Z\nZ[m] = A[m]",
        r"line 1, column 9: input indices are lowercase \(the index of rank M is m\), found 'M'",
    ),
    (
        "unknown-statement",
        MATMUL.replace("output", "outputs"),
        r"line 2, column 1: expected a statement \(one of cascade, input, param, partition, output, "
        r"init, or an Einsum T\[i, \.\.\.\] = \.\.\.\), found 'outputs'",
    ),
    (
        "chained-comparison",
        "input X[p, m]\noutput Y\nY[p, m] = 0 < X[p, m] < 1",
        r"line 3, column 23: comparisons do not chain; use parentheses",
    ),
    (
        "mixed-case-name",
        MATMUL + "Z[m, n] = A[m, k] * B[k, n] * Scale",
        r"line 3, column 31: unknown name 'Scale': not a param, nor an index \(lowercase\) nor a rank",
    ),
    (
        "lowercase-partition",
        "input K[m]\npartition m -> m1, m0\n",
        r"line 2, column 11: rank names are UPPERCASE, found 'm'",
    ),
    ("named-twice", "cascade a\ncascade b\n", r"line 2, column 1: the cascade is named twice"),
    (
        "missing-expression",
        MATMUL + "Z[m, n] = ",
        r"line 3, column 11: expected an expression, found the end of the line",
    ),
    (
        "access-as-index",
        MATMUL + "Z[m, n] = A[B[k, n], k]",
        r"line 3, column 13: a tensor access cannot be used as an index",
    ),
    (
        "two-steps",
        "input X[i, j]\noutput R\ninit R[i = 0, j] = 0\nR[i + 1, j + 1] = X[i, j]",
        r"line 4, column 10: only one index on the left may be a step",
    ),
]

CASCADE_CASES = [
    (
        "index-offset-beyond-2**40",  # it overflowed int64 in the interpreter and in Numba
        "input X[p]\nY[p] = X[p + 100000000000000000000000]\noutput Y",
        r"reads X\[p \+ 1e\+23\]: index 0 \(p \+ 1e\+23\) holds the constant 1e\+23, beyond 2\*\*40",
    ),
    (
        "undefined-tensor",
        MATMUL + "Z[m, n] = A[m, k] * T[k, n]",
        r"einsums\[0\] Z\[m, n\] \(line 3\): reads T\[k, n\], but T is neither a declared input nor "
        r"defined by any Einsum",
    ),
    (
        "undefined-tensor-hint",
        MATMUL + "Y[m, k] = A[m, k]\nZ[m, n] = YY[m, k] * B[k, n]",
        r"reads YY\[m, k\], but YY is neither a declared input nor defined by any Einsum; did you "
        r"mean 'Y'\?",
    ),
    (
        "defined-twice",
        MATMUL + "Z[m, n] = A[m, k] * B[k, n]\nZ[m, n] = A[m, k] * B[k, n]",
        r"einsums\[1\] Z\[m, n\] \(line 4\): tensor Z is defined twice \(first by einsums\[0\] "
        r"Z\[m, n\] \(line 3\)\)",
    ),
    (
        "unbound-lhs-index",
        "input A[m]\noutput Z\nZ[m, n] = A[m]",
        r"einsums\[0\] Z\[m, n\] \(line 3\): index n on the left is bound by nothing on the right",
    ),
    (
        "reduced-on-left",
        "input A[m]\noutput Z\nZ[m] = sum[m] A[m]",
        r"sum\[m\] reduces m, which is also on the left; a reduced index must not be an output index",
    ),
    (
        "access-arity",
        MATMUL + "Z[m, n] = A[m] * B[m, n]",
        r"reads A\[m\] with 1 index\(es\), but A has 2 \(A\[m, k\]\)",
    ),
    (
        "recurrence-without-init",
        "input X[i]\noutput Y\nR[i + 1] = R[i] + X[i]\nY[] = R[I]",
        r"einsums\[0\] R\[i \+ 1\] \(line 3\): a recurrence without init; add 'init R\[i = 0\] = \.\.\.'",
    ),
    (
        "init-without-recurrence",
        "input X[i]\noutput Y\ninit R[i = 0] = 0\nY[] = X[i]",
        r"einsums\[0\] R\[i = 0\] \(line 3\): init without a recurrence; add 'R\[i \+ 1\] = \.\.\.'",
    ),
    (
        "output-never-defined",
        MATMUL.replace("output Z", "output Y") + "Z[m, n] = A[m, k] * B[k, n]",
        r"output Y is never defined",
    ),
    (
        "output-never-defined-hint",
        MATMUL.replace("output Z", "output ZZ") + "Z[m, n] = A[m, k] * B[k, n]",
        r"output ZZ is never defined; did you mean 'Z'\?",
    ),
    (
        "index-rank-mismatch",
        "input Q[p, e], K[m, e]\noutput S\nS[p, m] = Q[m, e] * K[m, e]",
        r"reads Q\[m, e\]: index m walks rank M, but dimension 0 of Q is rank P \(write p\)",
    ),
    (
        "cycle",
        "input X[i]\noutput B\nA[i] = B[i] + X[i]\nB[i] = A[i] * 2",
        r"cyclic dependency between einsums\[0\] A\[i\] \(line 3\), einsums\[1\] B\[i\] \(line 4\): "
        r"A -> B -> A, and no iterative rank",
    ),
    (
        "misspelled-param",
        "input A[m]\nparam scale = 2\noutput Z\nZ[m] = A[m] * scal",
        r"uses scal as a value, but no tensor has rank SCAL, so scal walks nothing; did you mean "
        r"param 'scale'\?",
    ),
    ("no-output", "input A[m]\nZ[m] = A[m]", r"the cascade has no output; add 'output NAME'"),
    (
        "partitioned-twice",
        "input K[m]\npartition M -> M1, M0\npartition M -> M2, M3\noutput Z\nZ[m] = K[m]",
        r"partition M -> M2, M3: rank M is partitioned twice",
    ),
    (
        "param-forward-reference",
        "input A[m]\nparam a = 2 * b\nparam b = 1\noutput Z\nZ[m] = A[m]",
        r"param a: uses b, which is not a param defined before it \(params are declared before use",
    ),
    (
        "param-uses-tensor",
        "input A[m]\nparam a = 2 * A[m]\noutput Z\nZ[m] = A[m]",
        r"param a = 2 \* A\[m\]: a param may use numbers, earlier params and rank sizes only, not A\[m\]",
    ),
    (
        "reads-own-position",
        "input X[i]\noutput Y\ninit R[i = 0] = 0\nR[i + 1] = R[i + 1] + X[i]\nY[] = R[I]",
        r"einsums\[1\] R\[i \+ 1\] \(line 4\): reads R\[i \+ 1\], the position it is defining",
    ),
    (
        "final-position-not-iterative",
        "input X[i]\noutput Y\nY[] = X[I]",
        r"reads X\[I\]: position I is the final position of an iterative rank, but dimension 0 of X "
        r"is rank I, which is not iterative",
    ),
    (
        "unknown-rank",
        MATMUL + "Z[m, n] = A[m, k] * B[k, n] / sqrt(EE)",
        r"uses rank EE, which no tensor or index of this cascade has \(ranks: K, M, N\)",
    ),
    (
        "non-affine-index",
        "input A[m]\noutput Z\nZ[m] = A[m * m]",
        r"reads A\[m \* m\]: index 0 \(m \* m\) must be an integer affine expression",
    ),
    (
        "defines-input",
        MATMUL + "A[m, k] = B[k, m]\nZ[m, n] = A[m, k] * B[k, n]",
        r"einsums\[0\] A\[m, k\] \(line 3\): defines A, which is a declared input",
    ),
    (
        "future-read",
        "input X[i]\noutput Y\ninit R[i = 0] = 0\nR[i + 1] = R[i] + S[i + 1]\nS[i] = R[i] * X[i]\nY[] = R[I]",
        r"reads S\[i \+ 1\], a position that a later step of i writes",
    ),
    (
        "topk-k-not-scalar",
        "input S[m]\noutput K2\nK2[m] = topk[m; m] S[m]",
        r"topk's k must be a param expression or read only the fiber's indices \(none\), got m",
    ),
]


@pytest.mark.parametrize(
    ("text", "pattern"), [(c[1], c[2]) for c in PARSE_CASES], ids=[c[0] for c in PARSE_CASES]
)
def test_syntax_errors_name_line_and_column(text: str, pattern: str) -> None:
    with pytest.raises(ParseError) as info:
        einsum.parse(text)
    assert re.search(pattern, str(info.value)), str(info.value)


@pytest.mark.parametrize(
    ("text", "pattern"), [(c[1], c[2]) for c in CASCADE_CASES], ids=[c[0] for c in CASCADE_CASES]
)
def test_cascade_errors_name_the_statement(text: str, pattern: str) -> None:
    with pytest.raises(EinsumError) as info:
        einsum.parse(text)
    assert re.search(pattern, str(info.value)), str(info.value)


def test_every_problem_is_reported_at_once() -> None:
    text = MATMUL + "Z[m, n] = A[m] * T[k, n]\nW[m, q] = A[m, k]"
    with pytest.raises(CascadeError) as info:
        einsum.parse(text)
    reasons = info.value.reasons
    assert len(reasons) == 3, reasons
    assert str(info.value).startswith("ill-formed cascade:\n  - einsums[0] Z[m, n] (line 3): reads A[m]")


def test_syntax_error_is_also_an_einforge_error_and_a_value_error() -> None:
    with pytest.raises(EinforgeError):
        einsum.parse("Z[")
    with pytest.raises(ValueError, match=r"line 1, column 3"):
        einsum.parse("Z[")


# -- evaluation-time errors -------------------------------------------------------------------

ATT = einsum.library.get("attention_1pass")
RNG = np.random.default_rng(0)
Q, K, V = RNG.normal(size=(4, 3)), RNG.normal(size=(8, 3)), RNG.normal(size=(8, 2))


@pytest.mark.parametrize(
    ("inputs", "sizes", "error", "pattern"),
    [
        (
            {"Q": Q, "K": K[:, :2], "V": V},
            {"M0": 4},
            SizeError,
            r"^inconsistent sizes for rank E: 3 in Q \(dimension 1\) but 2 in K \(dimension 1\)$",
        ),
        (
            {"Q": Q, "K": K, "V": V},
            {"M0": 3},
            SizeError,
            r"^partition M -> M1, M0: M = 8 is not divisible by M0 = 3$",
        ),
        (
            {"Q": Q, "K": K, "V": V},
            None,
            SizeError,
            r"^partition M -> M1, M0: sizes are missing; pass sizes=\{'M0': \.\.\.\}$",
        ),
        (
            {"Q": Q, "K": K, "V": V},
            {"M00": 4},
            SizeError,
            r"^sizes\['M00'\]: the cascade has no rank 'M00'; did you mean 'M0'\? \(ranks: E, F, M, M0, M1, P\)$",
        ),
        (
            {"Q": Q[0], "K": K, "V": V},
            {"M0": 4},
            SizeError,
            r"^input Q\[p, e\] is declared with 2 rank\(s\) \(P, E\) but its array has shape \(3,\)$",
        ),
        (
            {"Q": Q, "K": K, "V": V},
            {"M0": 0},
            SizeError,
            r"^sizes\['M0'\] must be a positive integer, got 0$",
        ),
        (
            {"Q": Q, "K": K, "V": V},
            {"M0": 4, "M1": 3},
            SizeError,
            r"^partition M -> M1, M0: M1 = 3 \* M0 = 4 is not M = 8$",
        ),
        (
            {"Q": Q, "K": K[:0], "V": V[:0]},
            {"M0": 4},
            SizeError,
            r"^rank M has size 0 in K \(dimension 0\); ranks must be non-empty$",
        ),
        (
            {"Q": Q, "V": V},
            {"M0": 4},
            EvaluationError,
            r"^golden.run: input K\[m, e\] is missing \(the cascade declares Q\[p, e\], K\[m, e\], V\[m, f\]\)$",
        ),
        (
            {"Q": Q, "K": K, "V": V, "q": Q},
            {"M0": 4},
            EvaluationError,
            r"^golden.run: inputs\['q'\] is not an input of the cascade; did you mean 'Q'\?",
        ),
        (
            {"Q": Q.astype(str), "K": K, "V": V},
            {"M0": 4},
            EvaluationError,
            r"^golden.run: input Q must be a real numeric array, got dtype <U",
        ),
    ],
    ids=[
        "inconsistent-sizes",
        "partition-not-dividing",
        "missing-free-size",
        "unknown-size",
        "wrong-ndim",
        "zero-size",
        "partition-product",
        "empty-rank",
        "missing-input",
        "unknown-input",
        "non-numeric",
    ],
)
def test_evaluation_errors(
    inputs: dict[str, np.ndarray], sizes: dict[str, int] | None, error: type[Exception], pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        golden.run(ATT, inputs, sizes)


def test_out_of_bounds_read_names_the_position() -> None:
    c = einsum.parse("input X[i]\noutput Y\nY[i] = X[i + 1]")
    with pytest.raises(
        EvaluationError,
        match=r"^einsums\[0\] Y\[i\] \(line 3\): reads X\[i \+ 1\]: "
        r"position 4 along dimension 0 is outside X's 4 positions$",
    ):
        golden.run(c, {"X": np.zeros(4)})


def test_operator_that_is_not_pointwise() -> None:
    bad = einsum.Operator(name="collapse", arity=1, golden=lambda x: np.sum(x), cost=einsum.Actions())
    c = einsum.parse("input X[i]\noutput Y\nY[i] = collapse(X[i])", operators=[bad])
    with pytest.raises(
        EvaluationError,
        match=r"operator 'collapse' returned shape \(\) for "
        r"arguments of shape \(3,\); its golden function must work point-wise",
    ):
        golden.run(c, {"X": np.zeros(3)})


def test_unknown_library_name_suggests() -> None:
    with pytest.raises(
        EinsumError,
        match=r"library has no cascade 'attention_1pas'; did you mean "
        r"'attention_1pass'\? \(known: aaren, agent_attention, alibi_attention, attention_1pass,",
    ):
        einsum.library.get("attention_1pas")


def test_passes_over_unknown_rank() -> None:
    with pytest.raises(
        EinsumError,
        match=r"passes\(\): rank 'Q' is not a rank of this cascade "
        r"\(ranks: E, F, M, M0, M1, P\)",
    ):
        einsum.passes(ATT, "Q")


def test_golden_run_rejects_non_cascade() -> None:
    with pytest.raises(EvaluationError, match=r"golden.run: expected an einsum.Cascade, got str"):
        golden.run("attention_1pass", {})  # type: ignore[arg-type]


def test_param_division_by_zero() -> None:
    c = einsum.parse("input A[m]\nparam a = 1 / (M - M)\noutput Z\nZ[m] = A[m] * a")
    with pytest.raises(EinsumError, match=r"param a = 1 / \(M - M\): float division by zero"):
        golden.run(c, {"A": np.ones(2)})


def test_ir_constructors_check_their_fields() -> None:
    with pytest.raises(EinsumError, match=r"index name must be a lowercase identifier, got 'P'"):
        einsum.Var("P")
    with pytest.raises(EinsumError, match=r"Num value must not be NaN"):
        einsum.Num(float("nan"))
    with pytest.raises(EinsumError, match=r"input Q: a rank appears twice in \['P', 'P'\]"):
        einsum.Input("Q", ("P", "P"))
    with pytest.raises(EinsumError, match=r"Cascade.einsums must be a tuple, got list"):
        einsum.Cascade(inputs=(), outputs=("Z",), einsums=[])  # type: ignore[arg-type]


def test_parse_rejects_operators_that_are_not_operators() -> None:
    with pytest.raises(
        EinsumError, match=r"parse\(\): operators must be einsum.Operator objects, got 'exp6'"
    ):
        einsum.parse("input X[i]\noutput Y\nY[i] = X[i]", operators=["exp6"])  # type: ignore[list-item]


def test_library_get_with_a_non_string() -> None:
    with pytest.raises(EinsumError, match=r"library has no cascade \['x'\]"):
        einsum.library.get(["x"])  # type: ignore[arg-type]


def test_an_unclosed_bracket_on_the_last_line_is_reported_on_that_line() -> None:
    text = "cascade x\ninput A[m]\noutput Z\nZ[m] = (A[m]\n"
    with pytest.raises(ParseError) as exc:
        einsum.parse(text)
    assert (exc.value.line, exc.value.column) == (4, 13)
    assert str(exc.value).startswith(
        "line 4, column 13: expected ')' to close '(', found the end of the line"
    )
