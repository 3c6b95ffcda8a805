"""Positions that are windows over other indices (convolutions: ``I[c, 2 * p + r]``): parsed,
evaluated by the interpreter and the compiled kernels against numpy, and told apart from
partition positions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import einsum
import golden
from einsum.errors import CascadeError, EinsumError

ROOT = Path(__file__).resolve().parents[2]
CONV1D = """
cascade conv1d
input I[c, w], F[k, c, r]
output O

O[k, p] = I[c, 2 * p + 3 * r] * F[k, c, r]
"""


def _conv1d(i: np.ndarray, f: np.ndarray, p: int, stride: int, dilation: int) -> np.ndarray:
    k, c, r = f.shape
    out = np.zeros((k, p))
    for kk in range(k):
        for pp in range(p):
            out[kk, pp] = sum(
                i[cc, stride * pp + dilation * rr] * f[kk, cc, rr] for cc in range(c) for rr in range(r)
            )
    return out


def test_a_strided_dilated_window_evaluates_as_numpy_does() -> None:
    c = einsum.parse(CONV1D)
    rng = np.random.default_rng(0)
    i, f = rng.standard_normal((3, 16)), rng.standard_normal((4, 3, 3))
    want = _conv1d(i, f, 5, 2, 3)  # last position read: 2 * 4 + 3 * 2 = 14 < 16
    got = golden.run(c, {"I": i, "F": f}, sizes={"P": 5})["O"]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    compiled = golden.compile(c)({"I": i, "F": f}, sizes={"P": 5})["O"]
    np.testing.assert_allclose(compiled, want, rtol=1e-12)
    # a window past the input is an evaluation error that names the position
    with pytest.raises(golden.EvaluationError, match="position 16 along dimension 1 is outside I's 16"):
        golden.run(c, {"I": i, "F": f}, sizes={"P": 6})


def test_the_example_conv2d_against_numpy() -> None:
    c = einsum.parse((ROOT / "examples" / "cascades" / "conv2d.ein").read_text())
    rng = np.random.default_rng(1)
    i, f = rng.standard_normal((1, 2, 11, 9)), rng.standard_normal((2, 3, 3, 3))
    got = golden.run(c, {"I": i, "F": f}, sizes={"P": 5, "Q": 4})["O"]
    want = np.zeros((1, 3, 4, 5))
    for m in range(3):
        for q in range(4):
            for p in range(5):
                want[0, m, q, p] = np.sum(i[0, :, 2 * p : 2 * p + 3, 2 * q : 2 * q + 3] * f[:, m])
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_affine_terms_and_windows() -> None:
    from einsum._parse import parse_expr

    assert einsum.affine_terms(parse_expr("2 * p + r - 1")) == ({"p": 2, "r": 1}, -1)
    assert einsum.affine_terms(parse_expr("m1 * M0 + m0"), {"M0": 64}) == ({"m1": 64, "m0": 1}, 0)
    assert einsum.affine_terms(parse_expr("-(p - r)")) == ({"p": -1, "r": 1}, 0)
    with pytest.raises(EinsumError, match="no size for rank M0"):
        einsum.affine_terms(parse_expr("m1 * M0 + m0"))
    c = einsum.parse(CONV1D)
    assert einsum.window_accesses(c) == ["O[k, p] reads I[c, 2 * p + 3 * r]"]
    assert einsum.window_accesses(einsum.library.get("attention_1pass")) == []


def test_a_position_mixing_a_partition_and_a_window_is_refused() -> None:
    text = """
cascade mixed
input K[m, e]
partition M -> M1, M0
output BK

BK[m1, p, e] = K[m1 * M0 + p, e]
"""
    with pytest.raises(CascadeError, match=r"uses p, which walks neither rank M nor a part of its partition"):
        einsum.parse(text)


def test_positions_the_mapper_cannot_project() -> None:
    from einsum._parse import parse_expr
    from mapper import hierarchy
    from mapper.errors import ScheduleError

    with pytest.raises(EinsumError, match=r"position p \* r multiplies two indices"):
        einsum.affine_terms(parse_expr("p * r"))
    c = einsum.parse(
        "cascade rev\ninput I[c, w], F[k, c, r]\noutput O\nO[k, p] = I[c, p - r + 2] * F[k, c, r]\n"
    )
    with pytest.raises(
        ScheduleError, match=r"reads I\[c, p - r \+ 2\]: a position with a negative coefficient"
    ):
        hierarchy.einsum_problem(c, "O", {"K": 2, "C": 2, "P": 4, "R": 3})
