"""On-chip networks (mapper.network, through mapper.analysis): hops by Timeloop's X-Y model on
hand-counted meshes, multicast and spatial reductions, their energy in the analysis, and
Timeloop's ``split`` read from its mapping files."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from mapper import hierarchy, timeloop
from mapper.analysis import DataSpace, LevelMapping, Problem, Storage, analyze
from mapper.errors import ArchError
from mapper.network import fanout_hops, place

EY = Path(__file__).parent / "timeloop" / "eyeriss_like"


def test_hops_on_a_row_by_hand() -> None:
    # four words, one to each PE of a row: 0 + 1 + 2 + 3 hops from the edge
    f = fanout_hops([("K", 4)], [], relevant={"K"}, mesh=(4, 1))
    assert (f.multicast, f.groups, f.hops_per_word) == (1, 4, 1.5)
    # one word to all four: run to the far end once
    f = fanout_hops([("K", 4)], [], relevant=set(), mesh=(4, 1))
    assert (f.multicast, f.groups, f.hops_per_word) == (4, 1, 3.0)
    # a physical row of 8 with 4 in use changes nothing along X
    assert fanout_hops([("K", 4)], [], relevant={"K"}, mesh=(8, 1)).hops_per_word == 1.5


def test_hops_on_a_mesh_by_hand() -> None:
    """4 x 4 PEs, the tensor relevant to the X loop and broadcast down each column: a word runs
    to its column (0 .. 3 hops) and from the centre row (1.5) up 1.5 and down 1.5 hops."""
    f = fanout_hops([("N", 4)], [("M", 4)], relevant={"N"}, mesh=(4, 4))
    assert (f.multicast, f.groups) == (4, 4)
    assert f.hops_per_word == pytest.approx(1.5 + 3.0)
    # relevant to the Y loop, broadcast along each row: to the far column (3) along the centre
    # row, then in each of the 4 columns down (or up) to the word's row: 1.5, 0.5, 0.5, 1.5
    f = fanout_hops([("N", 4)], [("M", 4)], relevant={"M"}, mesh=(4, 4))
    assert (f.multicast, f.groups) == (4, 4)
    assert f.hops_per_word == pytest.approx(3 + 4 * (1.5 + 0.5 + 0.5 + 1.5) / 4)
    # unicast to each of the 16: mean column 1.5, mean distance from the centre row 1
    f = fanout_hops([("N", 4)], [("M", 4)], relevant={"N", "M"}, mesh=(4, 4))
    assert (f.multicast, f.groups, f.hops_per_word) == (1, 16, pytest.approx(2.5))
    # broadcast to all 16: 3 along X, then each of 4 columns 3 hops
    f = fanout_hops([("N", 4)], [("M", 4)], relevant=set(), mesh=(4, 4))
    assert (f.multicast, f.groups, f.hops_per_word) == (16, 1, 3 + 4 * 3)


def test_two_loops_on_one_axis_place_the_innermost_fastest() -> None:
    # X loops innermost first: A (2) then B (2); positions a + 2b. Relevant to B only: the groups
    # are {0, 1} and {2, 3}, whose farthest PEs are 1 and 3 hops away
    f = fanout_hops([("A", 2), ("B", 2)], [], relevant={"B"})
    assert (f.multicast, f.groups, f.hops_per_word) == (2, 2, 2.0)
    f = fanout_hops([("A", 2), ("B", 2)], [], relevant={"A"})  # groups {0, 2} and {1, 3}
    assert f.hops_per_word == 2.5


def test_placement_follows_split_or_fills_x_first() -> None:
    spatial = [("C", 3), ("S", 3), ("Q", 14)]  # outermost first
    assert place(spatial, 1, None) == ([("Q", 14)], [("S", 3), ("C", 3)])
    assert place(spatial, 0, None) == ([], [("Q", 14), ("S", 3), ("C", 3)])
    assert place(spatial, None, None) == ([("Q", 14), ("S", 3), ("C", 3)], [])
    assert place(spatial, None, 42) == ([("Q", 14), ("S", 3)], [("C", 3)])


def _gemm() -> Problem:
    return Problem(
        name="gemm",
        dims=(("M", 4), ("N", 4), ("K", 8)),
        spaces=(
            DataSpace(name="A", projection=((("M", 1),), (("K", 1),))),
            DataSpace(name="B", projection=((("K", 1),), (("N", 1),))),
            DataSpace(name="Z", projection=((("M", 1),), (("N", 1),)), output=True),
        ),
    )


def test_the_analysis_charges_hops_routers_and_reductions() -> None:
    """A buffer over a 4 x 4 array, N along X and K (reduced) along Y: A is broadcast along X,
    B unicast, Z's partial sums reduced down each column."""
    p = _gemm()
    storages = [
        Storage(name="buf", fanout_mesh=(4, 4), hop_pj=0.5, router_pj=0.25, reduction_pj=2.0),
        Storage(name="pe", instances=16),
    ]
    maps = [
        LevelMapping(target="buf", temporal=(("M", 4), ("K", 2)), spatial=(("K", 4), ("N", 4)), split=1),
        LevelMapping(target="pe", keep=frozenset()),
    ]
    a = analyze(p, storages, maps)
    net = a.networks["buf"]
    assert set(net) == {"A", "B", "Z"}
    reads = {t: a.levels["buf"][t].reads for t in "ABZ"}
    # A[m, k]: relevant to K (Y), broadcast along N (X): to the far column, then in each of the
    # four columns to the word's row, 1.5 or 0.5 hops from the centre
    f_a = 3 + 4 * (1.5 + 0.5 + 0.5 + 1.5) / 4
    assert net["A"].multicast == 4 and net["A"].hops == pytest.approx(reads["A"] * f_a)
    assert net["A"].routers == pytest.approx(reads["A"] * (1 + 7))
    assert net["B"].multicast == 1 and net["B"].hops == pytest.approx(reads["B"] * 2.5)
    # Z[m, n]: relevant to N (X), reduced over K (Y): partial sums both ways, 3 adds per word
    z = a.levels["buf"]["Z"]
    assert net["Z"].multicast == 4
    assert net["Z"].words == z.reads + z.updates
    assert net["Z"].hops == pytest.approx((z.reads + z.updates) * (1.5 + 3.0))
    assert net["Z"].reductions == z.updates * 3
    energy = sum(n.hops * 0.5 + n.routers * 0.25 + n.reductions * 2.0 for n in net.values())
    assert a.network_energy_pj == {"buf": pytest.approx(energy)}
    assert a.energy_pj == pytest.approx(a.compute_energy_pj + sum(a.level_energy_pj.values()) + energy)
    assert a.to_dict()["networks"]["buf"]["per_tensor"]["A"]["multicast"] == 4
    # unpriced networks are not analysed unless asked
    plain = [Storage(name="buf"), Storage(name="pe", instances=16)]
    assert analyze(p, plain, maps).networks == {}
    assert analyze(p, plain, maps, network_stats=True).networks["buf"]["B"].hops == net["B"].hops


def test_hierarchy_levels_carry_network_energies() -> None:
    h = hierarchy.Hierarchy.from_dict(
        {
            "name": "toy",
            "levels": [
                {"name": "DRAM", "kind": "dram", "read_pj": 100, "write_pj": 100},
                {"name": "buf", "capacity_words": 4096, "read_pj": 2, "write_pj": 2, "hop_pj": 0.5},
                {"name": "pe", "mesh": [4, 4], "keep": [], "read_pj": 0, "write_pj": 0},
            ],
            "compute": {"name": "mac", "mesh": [4, 4], "energy_pj": 1},
        }
    )
    st = h.storages(_gemm())
    assert [s.fanout_mesh for s in st] == [(1, 1), (4, 4), (1, 1)]
    assert st[1].hop_pj == 0.5
    assert hierarchy.Hierarchy.from_dict(h.to_dict()) == h
    with pytest.raises(ArchError, match=r"level 'buf': hop_pj must be >= 0, found -1"):
        hierarchy.Level(name="buf", hop_pj=-1)
    with pytest.raises(ArchError, match=r"unknown key 'hops_pj'.*did you mean 'hop_pj'"):
        hierarchy.Hierarchy.from_dict(
            {
                "name": "t",
                "levels": [{"name": "DRAM", "kind": "dram", "hops_pj": 1}],
                "compute": {"name": "mac"},
            }
        )


def test_timeloop_split_is_read() -> None:
    """Timeloop's Eyeriss-like mapping: the PE fanout's loops (C3, S3) with split 0 lie along Y,
    the column fanout's Q14 with split 1 along X."""
    design = timeloop.load(EY / "parsed-processed-input.yaml", EY / "timeloop-mapper.map.yaml")
    m = {x.target: x for x in design.mappings}
    assert m["inter_PE_spatial"].split == 0
    assert m["inter_PE_column_spatial"].split == 1
    a = design.analyze()
    assert a.networks == {}  # its networks cost nothing in the design: not analysed


def test_einforge_map_prints_the_networks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from einforge.cli import main

    arch = tmp_path / "net.yaml"
    arch.write_text(
        "name: net-toy\n"
        "levels:\n"
        "  - {name: DRAM, kind: dram, read_pj: 100, write_pj: 100}\n"
        "  - {name: buf, capacity_words: 65536, read_pj: 2, write_pj: 2, hop_pj: 0.5, reduction_pj: 0.3}\n"
        "  - {name: pe, mesh: [8, 8], capacity_words: 16, read_pj: 0.1, write_pj: 0.1}\n"
        "compute: {name: mac, mesh: [8, 8], energy_pj: 1}\n"
    )
    args = ["map", "--arch", str(arch), "--cascade", "matmul", "--sizes", "M=16,K=16,N=16", "--budget", "200"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "on-chip networks:" in out
    table = out.split("on-chip networks:")[1]
    assert "fanout of" in table and " buf " in table and "multicast" in table
    # a hierarchy that prices no network prints none
    arch.write_text(arch.read_text().replace(", hop_pj: 0.5, reduction_pj: 0.3", ""))
    assert main(args) == 0
    assert "on-chip networks" not in capsys.readouterr().out


def test_the_search_places_spatial_loops_where_the_network_costs_least() -> None:
    """On a priced 8 x 8 fanout every candidate's spatial loops must fit the mesh (X and Y
    apart, not only their product); the search then tries the best mapping's other splits that
    fit, and keeps the cheapest: no valid split of its result costs less."""
    import dataclasses

    from mapper import hsearch

    p = _gemm()
    p = dataclasses.replace(p, dims=(("M", 8), ("N", 8), ("K", 8)))
    storages = [
        Storage(name="DRAM", read_pj=100, fill_pj=100, update_pj=100),
        Storage(name="buf", capacity=4096, read_pj=2, fill_pj=2, update_pj=2, fanout_mesh=(8, 8), hop_pj=1.0),
        Storage(name="pe", instances=64, capacity=64, read_pj=0.1, fill_pj=0.1, update_pj=0.1),
    ]
    r = hsearch.search(p, storages, compute_instances=64, compute_pj=1, metric="edp", budget=300)
    m = r.mappings[1]
    assert len(m.spatial) >= 2 and m.split is not None
    # the placement fits the mesh: the innermost `split` loops along X, the rest along Y
    x_loops, y_loops = m.spatial[len(m.spatial) - m.split :], m.spatial[: len(m.spatial) - m.split]
    assert math.prod(f for _d, f in x_loops) <= 8 and math.prod(f for _d, f in y_loops) <= 8
    for split in range(len(m.spatial) + 1):
        x, y = m.spatial[len(m.spatial) - split :], m.spatial[: len(m.spatial) - split]
        if math.prod(f for _d, f in x) > 8 or math.prod(f for _d, f in y) > 8:
            continue
        trial = (r.mappings[0], dataclasses.replace(m, split=split), r.mappings[2])
        other = analyze(p, storages, trial, compute_pj=1, compute_instances=64)
        assert r.analysis.energy_pj <= other.energy_pj + 1e-9


def test_spatial_loops_that_fit_no_mesh_split_are_refused() -> None:
    from mapper.hsearch import _on_mesh

    # 4 x 8 x 2 = 64 PEs on 8 x 8: N along X, M and K along Y
    placed = _on_mesh((("M", 4), ("N", 8), ("K", 2)), (8, 8))
    assert placed is not None
    loops, split = placed
    assert math.prod(f for _d, f in loops[len(loops) - split :]) <= 8
    assert math.prod(f for _d, f in loops[: len(loops) - split]) <= 8
    assert _on_mesh((("M", 16), ("N", 4)), (8, 8)) is None  # 16 fits neither axis
    # 27 PEs fit 64, but 3 x 3 x 3 splits into no X <= 8 and Y <= 8
    assert _on_mesh((("M", 3), ("N", 3), ("K", 3)), (8, 8)) is None
    assert _on_mesh((("M", 3), ("N", 3)), (8, 8)) == ((("M", 3), ("N", 3)), 1)


def test_a_bad_timeloop_split_is_named(tmp_path: Path) -> None:
    text = (EY / "timeloop-mapper.map.yaml").read_text().replace("split: 1", "split: -1", 1)
    bad = tmp_path / "map.yaml"
    bad.write_text(text)
    with pytest.raises(timeloop.TimeloopError, match=r"split must be a count of dimensions, found -1"):
        timeloop.load(EY / "parsed-processed-input.yaml", bad)
