"""Synthesis by parts: the attention tile's area composed from one 2D PE, one column, one 1D PE and
the rest (blackboxes for the parts), checked against a flat synthesis where one is feasible."""

from __future__ import annotations

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from einsum import Fixed
from rtl.area import design_rtlil, parse_stat, synthesize, tile_area, tile_area_flat
from rtl.runner import SimulatorError
from rtl.tile import AttentionTile

pytestmark = pytest.mark.rtl


def test_parse_stat_counts_blackbox_instances() -> None:
    stat = """
     12 1.2E+01 cells
        3   10.6   NAND2_X1
        4   18.1   DFF_X1
        1      -   tile_grid
        4      -   tile_pe1d

   Chip area for module '\\\\attention_tile': 20.482000
"""
    a = parse_stat(stat, blackboxes=("tile_grid", "tile_pe1d"))
    assert a.instances == {"tile_grid": 1, "tile_pe1d": 4}
    assert (a.cells, a.flip_flops, a.area_um2) == (7, 4, 20.482)
    with pytest.raises(SimulatorError, match="yosys left cells unmapped"):
        parse_stat(stat)  # the instances, unknown, are cells the library does not have


class _WritesOnly(wiring.Component):
    """A register chain whose only sink is a memory's write port."""

    def __init__(self) -> None:
        super().__init__({"d": In(8), "addr": In(4), "q": Out(8)})

    def elaborate(self, platform):  # type: ignore[no-untyped-def]
        m = Module()
        m.submodules.mem = mem = Memory(shape=8, depth=16, init=[])
        wp, rp = mem.write_port(), mem.read_port(domain="comb")
        a, b = Signal(8), Signal(8)
        m.d.sync += [a.eq(self.d), b.eq(a + 1)]
        m.d.comb += [
            wp.addr.eq(self.addr),
            wp.data.eq(b),
            wp.en.eq(1),
            rp.addr.eq(self.addr),
            self.q.eq(rp.data),
        ]
        return m


def test_priced_memories_keep_the_logic_that_writes_them() -> None:
    a = synthesize(design_rtlil(_WritesOnly(), "w"), "w", memories="registers")
    assert a.memories == ((8, 16, 1, 1),)
    assert a.flip_flops == 2 * 8 + 8 * 16  # the chain's 16 and the memory's 128
    assert a.by_cell.get("DFF_X1") == 16


@pytest.mark.slow  # CI runs it (.ci/run); about 5 to 15 s
def test_parts_against_flat_synthesis() -> None:
    """At 2 x 2 the flat synthesis is feasible: the parts' sum is within 2% of it (they lose the
    optimisation across their ports), with the same flip-flops; the critical path timed across
    the parts' ports is within 10% of the flat netlist's (each synthesis maps the divider its own
    way), and both run through the 1D PE's divider into the output FIFO."""
    tile = AttentionTile(rows=2, p=4, m=4, e=2, f=2, fmt=Fixed(8, 4), degree=1, lookahead=1)
    tile._MustUse__silence = True
    parts = tile_area(tile, memories="synthesise")
    flat = tile_area_flat(tile, memories="synthesise")
    assert parts.flip_flops == flat.flip_flops
    assert abs(parts.area_um2 / flat.area_um2 - 1) < 0.02, (parts.area_um2, flat.area_um2)
    assert {k: n for k, (n, _) in parts.parts.items()} == {"pe2d": 4, "column": 2, "pe1d": 2}
    assert flat.timing is not None and parts.critical_ns is not None
    assert abs(parts.critical_ns / flat.timing["critical_ns"] - 1) < 0.10, (parts.critical_ns, flat.timing)
    assert "av[0]" in parts.critical and parts.critical[-1].startswith("-> register out_fifo.store")
    assert flat.timing["path"][-1].startswith("-> register out_fifo.store")


def test_the_rest_instantiates_every_part_once() -> None:
    tile = AttentionTile(rows=3, p=6, m=6, e=2, f=2, fmt=Fixed(8, 4), degree=1)
    tile._MustUse__silence = True
    seen: list[str] = []

    def fake(text: str, top: str, **kw: object) -> object:
        from rtl.area import Area

        seen.append(top)
        inst = {"tile_grid": 1, "tile_pe1d": 3} if top == "attention_tile" else {}
        return Area(1, 1.0, 0, {}, instances=inst)

    pa = tile_area(tile, synth=fake, jobs=1, timing=False)  # type: ignore[arg-type]
    assert sorted(seen) == ["attention_tile", "tile_column", "tile_pe1d", "tile_pe2d"]
    assert pa.area_um2 == 1 + 9 + 3 + 3

    def wrong(text: str, top: str, **kw: object) -> object:
        from rtl.area import Area

        return Area(1, 1.0, 0, {}, instances={"tile_grid": 1} if top == "attention_tile" else {})

    with pytest.raises(SimulatorError, match="the rest instantiates"):
        tile_area(tile, synth=wrong, jobs=1, timing=False)  # type: ignore[arg-type]


@pytest.mark.slow  # CI runs it (.ci/run); about 5 to 15 s
def test_dse_area_from_the_tile_parts(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sweep's area: rtl_tile prices the 2D array as its PEs and columns, the 1D array as its PEs."""
    import einforge.rtlflow.area as ra
    from mapper.arch import fusemax_tile

    monkeypatch.setattr(ra, "CACHE", tmp_path / "rtl-area.json")  # type: ignore[operator]
    arch = fusemax_tile(array_dim=2)
    out = ra.arch_area_from_tile_parts(arch, e=4)
    tile = AttentionTile(rows=2, p=4, m=4, e=4, f=4, degree=arch.array("2d").exp_macs - 2)
    tile._MustUse__silence = True
    pe2d = synthesize(design_rtlil(tile.pe2d(), "tile_pe2d"), "tile_pe2d", memories="synthesise")
    col = synthesize(design_rtlil(tile.column(), "tile_column"), "tile_column", memories="synthesise")
    assert out["2d"] == pytest.approx(4 * pe2d.area_um2 + 2 * col.area_um2)
    assert out["buffer"] == arch.area_um2()["buffer"]
