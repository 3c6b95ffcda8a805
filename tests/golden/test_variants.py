"""The variant cascades of einsum.library, run by golden.run, against golden.variants' NumPy
references written from the papers (random shapes including P != M, E != F, odd sizes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import einsum
import golden
from golden import variants as ref

RUN = golden.run


def _get(name: str) -> einsum.Cascade:
    return einsum.library.get(name)


@st.composite
def qkv(draw: st.DrawFn, *, square: bool = False, ties: bool = True) -> tuple[np.ndarray, ...]:
    p = draw(st.integers(1, 9))
    m = p if square else draw(st.integers(1, 40))
    e, f = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if ties and draw(st.booleans()):
        return tuple(rng.integers(-1, 2, size=s).astype(float) for s in ((p, e), (m, e), (m, f)))
    scale = draw(st.sampled_from([0.1, 1.0, 3.0]))
    return rng.normal(size=(p, e)) * scale, rng.normal(size=(m, e)), rng.normal(size=(m, f))


def _close(got: np.ndarray, want: np.ndarray) -> None:
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


SCORE_MODS: list[tuple[str, Callable[..., np.ndarray]]] = [
    ("sigmoid_attention", ref.sigmoid),
    ("softcap_attention", ref.softcap),
]


@pytest.mark.parametrize(("name", "reference"), SCORE_MODS, ids=[n for n, _ in SCORE_MODS])
@given(case=qkv())
def test_pointwise_variants(
    name: str, reference: Callable[..., np.ndarray], case: tuple[np.ndarray, ...]
) -> None:
    q, k, v = case
    _close(RUN(_get(name), {"Q": q, "K": k, "V": v})["AV"], reference(q, k, v))


@given(case=qkv(), extra=st.integers(0, 30))
def test_decode_aligned_bottom_right(case: tuple[np.ndarray, ...], extra: int) -> None:
    """A KV cache holds at least the new queries' positions: M >= P."""
    q, k, v = case
    rng = np.random.default_rng(extra)
    k = np.concatenate([k, rng.normal(size=(max(0, q.shape[0] - k.shape[0]) + extra % 3, k.shape[1]))])
    v = np.concatenate([v, rng.normal(size=(k.shape[0] - v.shape[0], v.shape[1]))])
    _close(RUN(_get("attention_decode"), {"Q": q, "K": k, "V": v})["AV"], ref.decode(q, k, v))


@given(case=qkv(square=True))
def test_causal_variants_on_self_attention(case: tuple[np.ndarray, ...]) -> None:
    q, k, v = case
    _close(RUN(_get("alibi_attention"), {"Q": q, "K": k, "V": v})["AV"], ref.alibi(q, k, v))
    _close(RUN(_get("sliding_window_attention"), {"Q": q, "K": k, "V": v})["AV"], ref.sliding_window(q, k, v))
    _close(RUN(_get("linear_attention_decay"), {"Q": q, "K": k, "V": v})["O"], ref.linear_decay(q, k, v))


@given(case=qkv(), docs=st.integers(1, 4), seed=st.integers(0, 100))
def test_document_mask(case: tuple[np.ndarray, ...], docs: int, seed: int) -> None:
    q, k, v = case
    rng = np.random.default_rng(seed)
    dk = rng.integers(0, docs, size=k.shape[0]).astype(float)
    dq = rng.choice(dk, size=q.shape[0])  # every query's document has a key
    got = RUN(_get("document_mask_attention"), {"Q": q, "K": k, "V": v, "DQ": dq, "DK": dk})["AV"]
    _close(got, ref.document_mask(q, k, v, dq, dk))


@given(
    blocks=st.integers(1, 5),
    block=st.integers(1, 8),
    e=st.integers(1, 4),
    f=st.integers(1, 3),
    seed=st.integers(0, 999),
)
def test_lightning_attention2_equals_the_recurrent_form(
    blocks: int, block: int, e: int, f: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    n = blocks * block
    q, k, v = rng.normal(size=(n, e)), rng.normal(size=(n, e)), rng.normal(size=(n, f))
    got = RUN(_get("lightning_attention2"), {"Q": q, "K": k, "V": v}, {"M0": block})["O"]
    _close(got, ref.lightning2(q, k, v, block))


@given(case=qkv())
def test_aaren_scan(case: tuple[np.ndarray, ...]) -> None:
    q, k, v = case
    _close(RUN(_get("aaren"), {"Q": q[0], "K": k, "V": v})["O"], ref.aaren(q[0], k, v))


@given(agents=st.integers(1, 4), block=st.integers(1, 4), case=qkv())
def test_agent_attention(agents: int, block: int, case: tuple[np.ndarray, ...]) -> None:
    _, k, v = case
    q = np.random.default_rng(agents * 7 + block).normal(size=(agents * block, k.shape[1]))
    got = RUN(_get("agent_attention"), {"Q": q, "K": k, "V": v}, {"P0": block})["AV"]
    _close(got, ref.agent(q, k, v, block))


@given(
    pb=st.integers(1, 3),
    bq=st.integers(1, 4),
    mb=st.integers(1, 5),
    bk=st.integers(1, 4),
    e=st.integers(1, 3),
    ties=st.booleans(),
    seed=st.integers(0, 999),
)
def test_seer_attention(pb: int, bq: int, mb: int, bk: int, e: int, ties: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    draw = (lambda s: rng.integers(-1, 2, size=s).astype(float)) if ties else (lambda s: rng.normal(size=s))
    q, k, v = draw((pb * bq, e)), draw((mb * bk, e)), draw((mb * bk, 2))
    got = RUN(_get("seer_attention"), {"Q": q, "K": k, "V": v}, {"P0": bq, "M0": bk})["AV"]
    _close(got, ref.seer(q, k, v, bq, bk, kb=2))


@given(case=qkv(square=True), clusters=st.integers(1, 4), seed=st.integers(0, 99))
def test_routing_attention(case: tuple[np.ndarray, ...], clusters: int, seed: int) -> None:
    q, k, v = case
    c = np.random.default_rng(seed).normal(size=(clusters, q.shape[1]))
    got = RUN(_get("routing_attention"), {"Q": q, "K": k, "V": v, "C": c})["AV"]
    _close(got, ref.routing(q, k, v, c))


@given(case=qkv(), blocks=st.integers(1, 5), block=st.integers(1, 6), seed=st.integers(0, 99))
def test_landmark_attention(case: tuple[np.ndarray, ...], blocks: int, block: int, seed: int) -> None:
    q, _, _ = case
    rng = np.random.default_rng(seed)
    k, v = rng.normal(size=(blocks * block, q.shape[1])), rng.normal(size=(blocks * block, 2))
    lk = rng.normal(size=(blocks, q.shape[1]))
    got = RUN(_get("landmark_attention"), {"Q": q, "K": k, "V": v, "LK": lk}, {"M0": block})["AV"]
    _close(got, ref.landmark(q, k, v, lk, block, kb=2))


@given(case=qkv(), seed=st.integers(0, 99), ties=st.booleans())
def test_recycled_attention(case: tuple[np.ndarray, ...], seed: int, ties: bool) -> None:
    q, k, v = case
    rng = np.random.default_rng(seed)
    mass = rng.integers(0, 3, size=k.shape[0]).astype(float) if ties else rng.random(k.shape[0])
    got = RUN(_get("recycled_attention"), {"Q": q, "K": k, "V": v, "PA": mass})["AV"]
    _close(got, ref.recycled(q, k, v, mass))


VARIANTS = [
    "sigmoid_attention", "alibi_attention", "softcap_attention", "sliding_window_attention",
    "document_mask_attention", "attention_decode", "linear_attention_decay", "lightning_attention2",
    "aaren", "agent_attention", "seer_attention", "routing_attention", "landmark_attention",
    "recycled_attention",
]  # fmt: skip


def test_the_library_has_fourteen_variants_with_references() -> None:
    assert len(VARIANTS) == 14 and set(VARIANTS) <= set(einsum.library.names())


def test_decode_with_one_query_sees_every_key() -> None:
    """Bottom-right alignment (KV-cache decode): with P = 1 the query sees all M keys (top-left
    alignment would show it key 0 only)."""
    rng = np.random.default_rng(1)
    q, k, v = rng.normal(size=(1, 4)), rng.normal(size=(9, 4)), rng.normal(size=(9, 3))
    got = RUN(_get("attention_decode"), {"Q": q, "K": k, "V": v})["AV"]
    _close(got, golden.softmax_attention(q, k, v))


def _passes(name: str) -> dict[str, Any]:
    c = _get(name)
    return {r: einsum.passes(c, r) for r in ("M",) if r in c.ranks}


def test_pass_counts_of_the_variants() -> None:
    """No normaliser (sigmoid, linear) streams K and V once; a softmax variant written in three
    passes needs three; Aaren's scan and Lightning-2's block recurrence one."""
    assert _passes("sigmoid_attention") == {"M": 1}
    assert _passes("linear_attention_decay") == {"M": 1}
    assert _passes("lightning_attention2") == {"M": 1}
    assert _passes("aaren") == {"M": 1}
    assert _passes("alibi_attention") == {"M": 3}
