"""Mutated cascade text either parses or raises a typed einforge error, never anything else."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import einsum
import golden

SOURCES = [einsum.library.source(n) for n in einsum.library.names()]
ALPHABET = "abcmpeMPE01+-*/=()[],;<>#. \n_"


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SOURCES))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["delete", "insert", "replace", "duplicate-line"]))
        if kind == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 5)) :]
        elif kind == "insert":
            text = text[:pos] + draw(st.text(ALPHABET, min_size=1, max_size=4)) + text[pos:]
        elif kind == "replace":
            text = text[:pos] + draw(st.sampled_from(ALPHABET)) + text[pos + 1 :]
        else:
            lines = text.splitlines()
            i = draw(st.integers(0, len(lines) - 1))
            text = "\n".join(lines[: i + 1] + lines[i:])
    return text


@given(mutated(), st.integers(0, 2**32 - 1))
def test_mutated_text_fails_only_with_typed_errors(text: str, seed: int) -> None:
    try:
        c = einsum.parse(text)
    except einsum.EinforgeError:
        return
    # Whatever parses also prints back to itself and evaluates or fails typed.
    assert einsum.parse(str(c)) == c
    rng = np.random.default_rng(seed)
    shapes = {"P": 3, "M": 4, "E": 2, "F": 2, "K": 2, "N": 2}
    inputs = {t.name: rng.normal(size=tuple(shapes.get(r, 2) for r in t.ranks)) for t in c.inputs}
    try:
        golden.run(c, inputs, {"M0": 2} if "M0" in c.ranks else None)
        for rank in c.ranks:
            einsum.passes(c, rank)
        einsum.op_counts(c)
    except einsum.EinforgeError:
        pass
