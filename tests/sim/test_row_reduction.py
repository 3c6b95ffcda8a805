"""One timing description for the simulator and the RTL: the max across a 2D array's rows is a
chain (FuseMax's), a registered tree or a combinational tree as the ArchSpec says, and both the
simulator's exposed latency and ``rtl.Array2D``'s cycle model take it from
``mapper.row_reduction_latency``."""

from __future__ import annotations

import dataclasses

import pytest

import einsum
import mapper
import sim
from mapper.search import SearchOptions, search
from rtl.array2d import Array2D

W = sim.workload("BERT", "1K")


def _arch(kind: str, rows: int = 16) -> mapper.ArchSpec:
    base = mapper.fusemax()
    a2, a1 = base.array("2d"), base.array("1d")
    return dataclasses.replace(
        base,
        arrays=(
            dataclasses.replace(a2, rows=rows, cols=rows, row_reduction=kind),
            dataclasses.replace(a1, cols=rows),
        ),
    )


def test_latencies() -> None:
    assert [mapper.row_reduction_latency("chain", n) for n in (1, 5, 256)] == [1, 5, 256]
    assert [mapper.row_reduction_latency("registered_tree", n) for n in (1, 2, 5, 256)] == [0, 1, 3, 8]
    assert mapper.row_reduction_latency("tree", 256) == 0
    assert mapper.fusemax().array("2d").row_reduction == "chain"  # the artifact's model: rows cycles


def test_unknown_reduction_is_a_typed_error() -> None:
    with pytest.raises(
        mapper.ArchError,
        match=r"unknown row_reduction 'ring' \(expected one of chain, registered_tree, tree\)",
    ):
        mapper.row_reduction_latency("ring", 8)
    with pytest.raises(
        mapper.ArchError,
        match=r"array '2d': unknown row_reduction 'registered-tree'; did you mean 'registered_tree'\? "
        r"\(expected one of chain, registered_tree, tree\)",
    ):
        _arch("registered-tree")


def test_simulator_charges_the_archs_reduction() -> None:
    """The exposed latency the simulator gives the LM max (FuseMax's 1-pass cascade, mapped by
    the search): 16 cycles for a chain of 16 rows, 4 for a registered tree, 0 for a tree; nothing
    for the other Einsums. The end-to-end effect is small where the tiles pipeline."""
    from mapper.schedule import einsum_facts, exposed_latency

    c = einsum.library.get("attention_1pass")
    for kind, want in (("chain", 16), ("registered_tree", 4), ("tree", 0)):
        arch = _arch(kind)
        s = search(c, arch, SearchOptions(fusion="fused", sizes=W.sizes))
        lat = {f.name: exposed_latency(f, arch.array(s.binding[f.name]), s.spatial) for f in einsum_facts(c)}
        assert lat.pop("LM") == want, (kind, lat)
        assert set(lat.values()) == {0}
    w = sim.Workload("BERT", 64, batch=1, heads=1)  # one query tile: the latency shows
    total = {}
    for kind in ("chain", "tree"):
        arch = _arch(kind)
        s = search(c, arch, SearchOptions(fusion="fused", sizes=w.sizes))
        total[kind] = sim.evaluate(c, s, arch, w).latency_cycles
    assert total["chain"] > total["tree"]


def test_rtl_and_simulator_read_one_description() -> None:
    for kind, wait in (("chain", 8), ("registered_tree", 3), ("tree", 0)):
        arch = _arch(kind, rows=8)
        block = Array2D.from_arch(arch, e=4, f=2)
        assert (block.rows, block.cols, block.reduction) == (8, 8, kind)
        assert block.model.lm_wait == wait == mapper.row_reduction_latency(arch.array("2d").row_reduction, 8)
        # the exp: the simulator charges exp_macs MAC steps a tile; the RTL's EXP state takes as many
        assert block.exp.cycles == arch.array("2d").exp_macs == 6
        block._MustUse__silence = True  # built to read its parameters, never elaborated
