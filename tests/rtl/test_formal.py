"""Formal proofs (yowasp-sby + z3): stream handshakes by k-induction, top-k's output by BMC."""

from __future__ import annotations

import pytest

from rtl.formal import PROOFS, prove

pytestmark = pytest.mark.rtl


@pytest.mark.parametrize("name", list(PROOFS))
def test_proof_passes(name: str) -> None:
    res = prove(name)
    assert res["passed"], res["log"]
