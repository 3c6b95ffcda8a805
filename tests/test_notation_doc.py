"""Every example of docs/notation.md parses and evaluates to the value its comment states.

Sections 3, 4 and 5 show fragments; each is completed here with the declarations it assumes
(stated next to it), and its own lines are used exactly as written in the document.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

import einsum
import golden

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "notation.md"


def _blocks(path: Path) -> list[str]:
    return re.findall(r"```\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


BLOCKS = _blocks(DOC)
RNG = np.random.default_rng(7)


def _attention_inputs() -> dict[str, np.ndarray]:
    return {"Q": RNG.normal(size=(12, 5)), "K": RNG.normal(size=(20, 5)), "V": RNG.normal(size=(20, 3))}


def test_the_doc_has_the_examples_we_check() -> None:
    assert len(BLOCKS) == 10


def test_section1_three_pass_attention_is_softmax_attention() -> None:
    c = einsum.parse(BLOCKS[0])
    x = _attention_inputs()
    out = golden.run(c, x)["AV"]
    np.testing.assert_allclose(out, golden.softmax_attention(x["Q"], x["K"], x["V"]), rtol=1e-12, atol=1e-14)


def test_section3_partition_splits_m() -> None:
    c = einsum.parse("input K[m, e]\noutput BK\n" + BLOCKS[1])  # the fragment reads K
    k = RNG.normal(size=(12, 2))
    bk = golden.run(c, {"K": k}, sizes={"M0": 4})["BK"]
    assert bk.shape == (3, 4, 2)  # M = M1 * M0
    for m1 in range(3):
        for m0 in range(4):
            np.testing.assert_array_equal(bk[m1, m0], k[m1 * 4 + m0])  # m = m1 * M0 + m0


def test_section3_a_window_is_a_strided_convolution() -> None:
    c = einsum.parse(BLOCKS[2])
    x = RNG.normal(size=(1, 2, 9, 7))
    f = RNG.normal(size=(2, 3, 3, 3))
    out = golden.run(c, {"I": x, "F": f}, sizes={"P": 4, "Q": 3})["O"]
    assert out.shape == (1, 3, 3, 4)
    for m in range(3):
        for q in range(3):
            for p in range(4):  # stride 2: the 3 x 3 window at (2p, 2q)
                want = np.sum(x[0, :, 2 * p : 2 * p + 3, 2 * q : 2 * q + 3] * f[:, m])
                assert out[0, m, q, p] == pytest.approx(want, rel=1e-12)


def test_section4_running_max_and_final_position() -> None:
    # The fragment reads LM, and RNV and RD at their final positions: declare them.
    context = (
        "input LM[p, m1], SLD[p, m1], SLNV[p, f, m1]\noutput RM, AV\n"
        "init RD[p, m1 = 0] = 0\nRD[p, m1 + 1] = RD[p, m1] + SLD[p, m1]\n"
        "init RNV[p, f, m1 = 0] = 0\nRNV[p, f, m1 + 1] = RNV[p, f, m1] + SLNV[p, f, m1]\n"
    )
    c = einsum.parse(context + BLOCKS[3])
    lm, sld, slnv = RNG.normal(size=(3, 5)), RNG.uniform(1, 2, size=(3, 5)), RNG.normal(size=(3, 2, 5))
    out = golden.run(c, {"LM": lm, "SLD": sld, "SLNV": slnv})
    assert out["RM"].shape == (3, 6)  # positions 0 .. M1
    assert np.all(out["RM"][:, 0] == -np.inf)
    np.testing.assert_array_equal(out["RM"][:, 1:], np.maximum.accumulate(lm, axis=1))
    np.testing.assert_allclose(out["AV"], slnv.sum(axis=2) / sld.sum(axis=1)[:, None], rtol=1e-13)


@pytest.mark.parametrize("m", [1, 3, 4, 9])
def test_section5_topk_keeps_a_quarter(m: int) -> None:
    c = einsum.parse("input s[m]\noutput keep\n" + BLOCKS[4])  # the fragment reads s
    s = RNG.permutation(m).astype(float)
    keep = golden.run(c, {"s": s})["keep"]
    k = math.ceil(0.25 * m)
    assert keep.sum() == k
    assert set(np.flatnonzero(keep)) == set(np.argsort(-s)[:k])


def test_section6_fusemax_cascade_is_softmax_attention_to_1e12() -> None:
    c = einsum.parse(BLOCKS[5])
    x = _attention_inputs()
    out = golden.run(c, x, sizes={"M0": 5})["AV"]
    ref = golden.softmax_attention(x["Q"], x["K"], x["V"])
    assert np.max(np.abs(out - ref)) <= 1e-12 * np.max(np.abs(ref))
    assert c == einsum.library.get("attention_1pass")


def test_section7_pass_counts() -> None:
    assert [einsum.passes(einsum.library.get(f"attention_{n}pass"), "M") for n in (3, 2, 1)] == [3, 2, 1]


def test_section8_matrix_product() -> None:
    a, b = RNG.normal(size=(3, 4)), RNG.normal(size=(4, 2))
    np.testing.assert_allclose(golden.run(einsum.parse(BLOCKS[6]), {"A": a, "B": b})["Z"], a @ b, rtol=1e-14)


def test_section8_running_sum_is_the_sum() -> None:
    x = RNG.normal(size=7)
    y = golden.run(einsum.parse(BLOCKS[7]), {"X": x})["Y"]
    assert y.shape == ()
    assert y == pytest.approx(x.sum(), rel=1e-14)


def test_section8_topk_example_value() -> None:
    keep = golden.run(einsum.parse(BLOCKS[8]), {"s": np.array([3.0, 1.0, 3.0, 2.0])})["keep"]
    np.testing.assert_array_equal(keep, [1, 0, 1, 0])


@pytest.mark.parametrize("index", range(9))
def test_every_example_prints_back_to_itself(index: int) -> None:
    contexts = {
        1: "input K[m, e]\noutput BK\n",
        4: "input s[m]\noutput keep\n",
        3: "input LM[p, m1], SLD[p, m1], SLNV[p, f, m1]\noutput RM, AV\n"
        "init RD[p, m1 = 0] = 0\nRD[p, m1 + 1] = RD[p, m1] + SLD[p, m1]\n"
        "init RNV[p, f, m1 = 0] = 0\nRNV[p, f, m1 + 1] = RNV[p, f, m1] + SLNV[p, f, m1]\n",
    }
    c = einsum.parse(contexts.get(index, "") + BLOCKS[index])
    assert einsum.parse(str(c)) == c
    assert str(einsum.parse(str(c))) == str(c)


def test_section8_per_fiber_topk() -> None:
    c = einsum.parse(BLOCKS[9])
    s = np.array([[3.0, 1, 3, 2], [0, 0, 1, 1]])
    keep = golden.run(c, {"s": s, "KN": np.array([1.0, 3.0])})["keep"]
    assert keep.tolist() == [[1, 0, 0, 0], [1, 0, 1, 1]]
