"""SpAtten's four library cascades, run by golden.run, against golden.spatten's NumPy references
(written from the paper, loop by loop), on random inputs and on tie-heavy ones."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import einsum
import golden
from golden import spatten as ref

LIB = einsum.library


def _qkv(rng: np.random.Generator, shape_q: tuple[int, ...], shape_k: tuple[int, ...], f: int, ties: bool):
    """Random Q, K, V; with ``ties`` small integers (many equal scores and probabilities)."""

    def draw(shape: tuple[int, ...]) -> np.ndarray:
        return rng.integers(-1, 2, size=shape).astype(float) if ties else rng.normal(size=shape)

    shape_v = (*shape_k[:-1], f)
    return draw(shape_q), draw(shape_k), draw(shape_v)


@st.composite
def layered(draw: st.DrawFn) -> tuple[np.ndarray, ...]:
    n_layers, heads, p, m = (
        draw(st.integers(1, 4)),
        draw(st.integers(1, 3)),
        draw(st.integers(1, 3)),
        draw(st.integers(2, 9)),
    )
    e, f = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    ties = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    q, k, v = _qkv(rng, (n_layers, heads, p, e), (n_layers, heads, m, e), f, ties)
    keep_t = np.array(draw(st.lists(st.integers(1, m + 1), min_size=n_layers, max_size=n_layers)), float)
    keep_h = np.array(draw(st.lists(st.integers(1, heads), min_size=n_layers, max_size=n_layers)), float)
    return q, k, v, keep_t, keep_h


@given(layered())
def test_token_pruning_equals_reference(case: tuple[np.ndarray, ...]) -> None:
    q, k, v, keep, _ = case
    got = golden.run(LIB.get("spatten_token_pruning"), {"Q": q, "K": k, "V": v, "KT": keep})
    out, alive = ref.token_pruning(q, k, v, keep)
    np.testing.assert_array_equal(got["KEEP"].T, alive)
    np.testing.assert_allclose(got["AV"], out, rtol=1e-12, atol=1e-12)


@given(layered())
def test_head_pruning_equals_reference(case: tuple[np.ndarray, ...]) -> None:
    q, k, v, _, keep = case
    got = golden.run(LIB.get("spatten_head_pruning"), {"Q": q, "K": k, "V": v, "KH": keep})
    out, alive = ref.head_pruning(q, k, v, keep)
    np.testing.assert_array_equal(got["HKEEP"].T, alive)
    np.testing.assert_allclose(got["AV"], out, rtol=1e-12, atol=1e-12)


@st.composite
def single(draw: st.DrawFn) -> tuple[np.ndarray, ...]:
    p, m, e, f = (
        draw(st.integers(1, 4)),
        draw(st.integers(1, 40)),
        draw(st.integers(1, 4)),
        draw(st.integers(1, 3)),
    )
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([0.05, 1.0, 4.0]))
    q, k, v = _qkv(rng, (p, e), (m, e), f, draw(st.booleans()))
    return q * scale, k, v


@given(single())
def test_local_value_pruning_equals_reference(case: tuple[np.ndarray, ...]) -> None:
    q, k, v = case
    kv = int(np.ceil(0.2 * k.shape[0]))  # the cascade's vkeep = 0.2
    got = golden.run(LIB.get("spatten_local_value_pruning"), {"Q": q, "K": k, "V": v})
    np.testing.assert_allclose(got["AV"], ref.local_value_pruning(q, k, v, kv), rtol=1e-12, atol=1e-12)


@given(single())
def test_progressive_quantization_equals_reference(case: tuple[np.ndarray, ...]) -> None:
    q, k, v = case
    got = golden.run(LIB.get("spatten_progressive_quantization"), {"Q": q, "K": k, "V": v})
    out, lsb = ref.progressive_quantization(q, k, v, fmt=LIB.PQ_FORMAT, lsb_bits=LIB.PQ_LSB_BITS, tau=0.1)
    np.testing.assert_array_equal(got["LSB"], lsb)
    np.testing.assert_allclose(got["AV"], out, rtol=1e-12, atol=1e-12)


def test_progressive_quantization_refetches_only_flat_rows() -> None:
    """A peaked row keeps its MSB-only result; a flat one (max probability under tau) refetches."""
    rng = np.random.default_rng(3)
    k, v = rng.normal(size=(40, 4)), rng.normal(size=(40, 2))
    q = np.stack([k[5] * 4.0, np.zeros(4) + 0.01])
    got = golden.run(LIB.get("spatten_progressive_quantization"), {"Q": q, "K": k, "V": v})
    assert got["LSB"].tolist() == [0.0, 1.0]


def test_ties_go_to_the_lower_index() -> None:
    """Equal importance everywhere (Q = 0: uniform probabilities): the first tokens and heads stay,
    as the top-k engine's filter keeps the earliest of equal scores."""
    n_layers, heads, m = 3, 4, 6
    q = np.zeros((n_layers, heads, 2, 2))
    k, v = np.ones((n_layers, heads, m, 2)), np.ones((n_layers, heads, m, 1))
    got = golden.run(LIB.get("spatten_token_pruning"), {"Q": q, "K": k, "V": v, "KT": np.array([4.0, 2, 1])})
    assert got["KEEP"].T.tolist() == [[1] * 6, [1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]]
    got = golden.run(LIB.get("spatten_head_pruning"), {"Q": q, "K": k, "V": v, "KH": np.array([3.0, 3, 2])})
    assert got["HKEEP"].T.tolist() == [[1] * 4, [1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 0, 0]]
    a = golden.run(
        LIB.get("spatten_local_value_pruning"), {"Q": q[0, 0], "K": k[0, 0], "V": np.arange(6.0)[:, None]}
    )
    assert a["AV"].tolist() == [[(0 + 1) / 6], [(0 + 1) / 6]]  # kv = ceil(0.2 * 6) = 2: rows 0 and 1


def test_a_pruned_token_is_never_read_again() -> None:
    """After a token is pruned, changing its K and V in later layers changes nothing."""
    rng = np.random.default_rng(0)
    q, k, v = _qkv(rng, (3, 2, 2, 3), (3, 2, 8, 3), 2, False)
    keep = np.array([5.0, 3, 3])
    base = golden.run(LIB.get("spatten_token_pruning"), {"Q": q, "K": k, "V": v, "KT": keep})
    pruned = np.flatnonzero(base["KEEP"][:, 1] == 0)
    k2, v2 = k.copy(), v.copy()
    k2[1:, :, pruned], v2[1:, :, pruned] = 1e3, -1e3
    again = golden.run(LIB.get("spatten_token_pruning"), {"Q": q, "K": k2, "V": v2, "KT": keep})
    np.testing.assert_array_equal(again["AV"], base["AV"])


def test_per_fiber_k_must_be_whole() -> None:
    c = einsum.parse("input s[p, m], KN[p]\noutput keep\nkeep[p, m] = topk[m; KN[p]] s[p, m]")
    with pytest.raises(
        golden.EvaluationError, match=r"topk's k must be a non-negative integer in every fiber, got 1.5"
    ):
        golden.run(c, {"s": np.ones((2, 3)), "KN": np.array([1.5, 1.0])})


def test_per_fiber_k_may_not_read_the_selected_index() -> None:
    with pytest.raises(
        einsum.CascadeError,
        match=r"topk's k must be a param expression or read only the fiber's indices \(p\), got KN\[m\]",
    ):
        einsum.parse("input s[p, m], KN[m]\noutput keep\nkeep[p, m] = topk[m; KN[m]] s[p, m]")
