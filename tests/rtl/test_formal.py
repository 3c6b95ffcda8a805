"""Formal proofs (yowasp-sby + z3): stream handshakes by k-induction, top-k's output by BMC."""

from __future__ import annotations

import pytest

from rtl.formal import PROOFS, prove

pytestmark = pytest.mark.rtl


# top-k's output proof (BMC) takes 45 s here: it runs with --run-slow, and CI runs it (.ci/run)
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n == "topk_output" else n for n in PROOFS]
)
def test_proof_passes(name: str) -> None:
    res = prove(name)
    assert res["passed"], res["log"]
