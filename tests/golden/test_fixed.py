"""Bit-true fixed point: formats, the error bound of every operation against float64, composition."""

from __future__ import annotations

import numpy as np
import pytest

import einsum
from einsum import ConfigError, Fixed
from golden import EvaluationError, fixed, softmax_attention

FORMATS = [Fixed(16, 8), Fixed(16, 12), Fixed(12, 6), Fixed(20, 14), Fixed(16, 8, "truncate")]


def test_format_validation_messages() -> None:
    with pytest.raises(
        ConfigError, match=r"invalid fixed-point format: width must be an integer in 2..32, got 40"
    ):
        Fixed(40, 8)
    with pytest.raises(ConfigError, match=r"frac must be an integer in 0..15 \(width - 1\), got 16"):
        Fixed(16, 16)
    with pytest.raises(
        ConfigError,
        match=r"rounding must be one of nearest, truncate, got 'up'; overflow must be "
        r"one of saturate, wrap, got 'clip'",
    ):
        Fixed(16, 8, "up", "clip")


def test_quantize_rounds_saturates_and_wraps() -> None:
    fmt = Fixed(8, 4)
    assert fmt.quantize(np.array([0.03, 0.04, -0.03, 100.0, -100.0])).tolist() == [0, 1, 0, 127, -128]
    assert Fixed(8, 4, "truncate").quantize(-0.01) == -1
    assert Fixed(8, 4, overflow="wrap").quantize(8.0) == -128
    assert fmt.to_float(fmt.quantize(1.5)) == 1.5


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_mul_div_dot_are_within_half_an_ulp(fmt: Fixed) -> None:
    rng = np.random.default_rng(0)
    half = fmt.ulp / 2 if fmt.rounding == "nearest" else fmt.ulp
    r = min(3.0, 0.3 * np.sqrt(fmt.max_value))  # products and 8-term sums stay in range
    a = fmt.quantize(rng.uniform(-r, r, 2000))
    b = fmt.quantize(rng.uniform(-r, r, 2000))
    fa, fb = fmt.to_float(a), fmt.to_float(b)
    assert np.array_equal(fmt.to_float(fixed.add(a, b, fmt)), fa + fb)
    assert np.max(np.abs(fmt.to_float(fixed.mul(a, b, fmt)) - fa * fb)) <= half
    ok = np.abs(fb) > r / (0.5 * fmt.max_value)  # keep quotients in range
    q = fmt.to_float(fixed.div(a[ok], b[ok], fmt))
    assert np.max(np.abs(q - fa[ok] / fb[ok])) <= half
    av, bv = a[:800].reshape(100, 8), b[:800].reshape(100, 8)
    d = fmt.to_float(fixed.dot(av, bv, fmt))
    assert np.max(np.abs(d - np.sum(fmt.to_float(av) * fmt.to_float(bv), axis=1))) <= half


def test_saturation_and_division_by_zero() -> None:
    fmt = Fixed(8, 4)
    assert fixed.add([127], [1], fmt).tolist() == [127]
    assert fixed.sub([-128], [1], fmt).tolist() == [-128]
    assert fixed.mul([127], [127], fmt).tolist() == [127]
    assert fixed.div([5, -5, 0], [0, 0, 0], fmt).tolist() == [127, -128, 127]
    assert fixed.add([127], [1], Fixed(8, 4, overflow="wrap")).tolist() == [-128]


@pytest.mark.parametrize("degree", [2, 3, 4])
@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_exp_meets_its_bound_on_every_input(fmt: Fixed, degree: int) -> None:
    raw = np.arange(fmt.min_raw, 1, dtype=np.int64)
    err = np.abs(fmt.to_float(fixed.exp(raw, fmt, degree=degree)) - np.exp(fmt.to_float(raw)))
    assert err.max() <= fixed.exp_error_bound(fmt, degree)
    assert fixed.exp([0], fmt, degree=degree).tolist() == [1 << fmt.frac]  # exp(0) is exactly 1
    assert fixed.exp([fmt.max_raw], fmt, degree=degree).tolist() == [1 << fmt.frac]  # x > 0 clamps to 0


def test_exp_default_format_figures() -> None:
    fmt = Fixed(16, 8)
    assert einsum.exp2_coefficients(fmt, 3) == (256, 178, 60, 19)
    assert einsum.log2e_raw(fmt) == 369
    assert fixed.exp_error_bound(fmt) / fmt.ulp == pytest.approx(3.435, abs=1e-3)


def test_attention_1pass_in_fixed_point_tracks_the_float64_oracle() -> None:
    fmt = Fixed(16, 10)
    rng = np.random.default_rng(1)
    q, k, v = rng.normal(size=(8, 16)) * 0.5, rng.normal(size=(32, 16)) * 0.5, rng.normal(size=(32, 4))
    qs = fmt.quantize(q / 4)  # the 1/sqrt(E) scale is folded into Q before quantising
    kq, vq = fmt.quantize(k), fmt.quantize(v)
    av = fixed.attention_1pass(qs, kq, vq, fmt, m0=8)
    c = einsum.library.get("attention_1pass")
    ref = (
        einsum
        and __import__("golden").run(
            c, {"Q": fmt.to_float(qs) * 4, "K": fmt.to_float(kq), "V": fmt.to_float(vq)}, sizes={"M0": 8}
        )["AV"]
    )
    assert np.allclose(ref, softmax_attention(fmt.to_float(qs) * 4, fmt.to_float(kq), fmt.to_float(vq)))
    assert np.max(np.abs(fmt.to_float(av) - ref)) <= 2 * fmt.ulp


def test_topk_indices_ties_go_to_the_lower_index() -> None:
    assert fixed.topk_indices([3, 5, 5, 1, 5], 2).tolist() == [1, 2]
    assert fixed.topk_indices([7, 7, 7], 3).tolist() == [0, 1, 2]
    with pytest.raises(EvaluationError, match=r"1 <= k <= n; got shape \(3,\), k = 4"):
        fixed.topk_indices([1, 2, 3], 4)


def test_bad_inputs_are_typed_errors() -> None:
    fmt = Fixed(8, 4)
    with pytest.raises(
        EvaluationError, match="a must hold raw integers \\(use fmt.quantize\\), got dtype float64"
    ):
        fixed.add(np.array([0.5]), np.array([1]), fmt)
    with pytest.raises(
        EvaluationError, match=r"x has raw values outside fixed<8,4> \(\[-128, 127\]\); found \[0, 300\]"
    ):
        fixed.exp([0, 300], fmt)
    with pytest.raises(EvaluationError, match="exp needs at least 2 integer bits"):
        fixed.exp([0], Fixed(8, 7))
    with pytest.raises(
        EvaluationError, match=r"tile2d: expected q \(C, E\), k \(R, E\), v \(R, F\), rm \(C,\)"
    ):
        fixed.tile2d(
            np.zeros((2, 3), int), np.zeros((2, 4), int), np.zeros((2, 1), int), np.zeros(2, int), fmt
        )


def test_shape_errors_of_the_tile_models() -> None:
    fmt = Fixed(16, 8)
    z = np.zeros
    with pytest.raises(EvaluationError, match=r"attention_1pass: M = 10 is not a multiple of m0 = 4"):
        fixed.attention_1pass(z((2, 3), int), z((10, 3), int), z((10, 2), int), fmt, m0=4)
    with pytest.raises(
        EvaluationError, match=r"dot: need at least one term along the last axis; got shape \(2, 0\)"
    ):
        fixed.dot(z((2, 0), int), z((2, 0), int), fmt)
    with pytest.raises(
        EvaluationError,
        match=r"tile1d: expected lm \(N,\), sld \(N,\), slnv \(F, N\); got \(3,\), "
        r"\(3,\), \(2, 4\)",
    ):
        fixed.tile1d(z(3, int), z(3, int), z((2, 4), int), None, fmt)
