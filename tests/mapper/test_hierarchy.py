"""Architectures as storage hierarchies (:mod:`mapper.hierarchy`): the Eyeriss-like example against
Timeloop's own figures, the file format's errors, pricing, bandwidth, presets and ``einforge map``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import einsum
import mapper
from einforge.cli import main
from mapper import hierarchy, regfile, timeloop
from mapper.analysis import DataSpace, LevelMapping, Problem, Storage, analyze
from mapper.errors import ArchError, ScheduleError
from tests.mapper.test_timeloop import _timeloop_stats

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "eyeriss_like.yaml"
EY = Path(__file__).parent / "timeloop" / "eyeriss_like"


def test_the_eyeriss_example_reproduces_timeloop_s_eyeriss() -> None:
    """examples/eyeriss_like.yaml, written in einforge's terms with roles for what each scratchpad
    keeps, costs timeloop-mapper's mapping of the stride-2 convolution exactly as Timeloop did."""
    h = hierarchy.load(EXAMPLE)
    design = timeloop.load(EY / "parsed-processed-input.yaml", EY / "timeloop-mapper.map.yaml")
    assert design.mappings is not None
    # the operands in the order an Einsum O = I * W names them: input0 the inputs, input1 the weights
    spaces = {s.name: s for s in design.problem.spaces}
    problem = dataclasses.replace(
        design.problem, spaces=(spaces["Inputs"], spaces["Weights"], spaces["Outputs"])
    )
    tl = {m.target: m for m in design.mappings}
    # Timeloop's two fan-out-only levels are one in the example: the column fanout moves up to
    # the global buffer, the row fanout stays with the PE columns
    mappings = [
        LevelMapping(target="DRAM", temporal=tl["DRAM"].temporal),
        LevelMapping(
            target="shared_glb",
            temporal=tl["shared_glb"].temporal,
            spatial=tl["inter_PE_column_spatial"].spatial,
        ),
        LevelMapping(target="pe_columns", spatial=tl["inter_PE_spatial"].spatial),
        *(
            LevelMapping(target=n, temporal=tl[n].temporal)
            for n in ("ifmap_spad", "weights_spad", "psum_spad")
        ),
    ]
    a = h.analyze(problem, mappings)
    ref = _timeloop_stats(EY / "timeloop-mapper.stats.txt")
    assert (a.computes, a.cycles, a.utilization) == (ref["computes"], ref["cycles"], ref["utilization"])
    levels = ref["levels"]
    assert isinstance(levels, dict)
    for level, tensors in levels.items():
        if level == "mac":
            continue
        k = a.instances[level]
        assert {t: [s.reads / k, s.fills / k, s.updates / k] for t, s in a.levels[level].items()} == tensors
    assert a.energy_pj == pytest.approx(ref["energy_pj"], abs=0.005e6)
    assert a.bound_by == "compute"


def test_a_file_round_trips_and_every_bad_field_is_named(tmp_path: Path) -> None:
    h = hierarchy.load(EXAMPLE)
    again = tmp_path / "again.yaml"
    again.write_text(h.to_yaml())
    assert hierarchy.load(again) == h
    as_json = tmp_path / "h.json"
    as_json.write_text(json.dumps(h.to_dict()))
    assert hierarchy.load(as_json) == h
    good = h.to_dict()

    def refused(change: dict, level: int | None, match: str) -> None:
        d = json.loads(json.dumps(good))
        (d["levels"][level] if level is not None else d).update(change)
        with pytest.raises(ArchError, match=match):
            hierarchy.Hierarchy.from_dict(d)

    refused(
        {"capacity_word": 4}, 1, r"levels\[1\]: unknown key 'capacity_word'; did you mean 'capacity_words'\?"
    )
    refused(
        {"kind": "sramm"}, 1, r"kind must be one of dram, sram, regfile, found 'sramm'; did you mean 'sram'\?"
    )
    refused(
        {"capacity_words": 2**64},
        1,
        r"capacity_words must be an integer in 1 \.\. 2\*\*62, found 18446744073709551616",
    )
    refused({"instances": 5}, 2, r"ifmap_spad has 168 instances, not a multiple of pe_columns's 5")
    refused({"mesh": [14]}, 3, r"mesh must be \[X, Y\]")
    refused({"read_bandwidth": -1}, 3, r"read_bandwidth must be positive")
    refused({"levels": "DRAM"}, None, r"'levels' must be a list")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nlevels: [{name: DRAM}]\ncompute: {name: mac, instances: 0}\n")
    with pytest.raises(ArchError, match=r"compute 'mac': instances must be an integer in 1"):
        hierarchy.load(bad)
    bad.write_text("name: x\nlevels: [}\n")
    with pytest.raises(ArchError, match=r"not valid YAML"):
        hierarchy.load(bad)


def test_keep_roles_and_unknown_names() -> None:
    h = hierarchy.load(EXAMPLE)
    matmul = hierarchy.einsum_problem(einsum.library.get("matmul"), "Z", {"M": 4, "K": 4, "N": 4})
    assert [s.name for s in matmul.spaces] == ["A", "B", "Z"]
    keeps = {c.target: c.keep for c in h.keeps(matmul)}
    assert keeps == {
        "shared_glb": {"A", "Z"},
        "pe_columns": frozenset(),
        "ifmap_spad": {"A"},
        "weights_spad": {"B"},
        "psum_spad": {"Z"},
    }
    odd = dataclasses.replace(
        h, levels=(*h.levels[:1], dataclasses.replace(h.levels[1], keep=("ouptut",)), *h.levels[2:])
    )
    with pytest.raises(
        ArchError, match=r"keeps 'ouptut', which is neither a tensor of Z .*; did you mean 'output'\?"
    ):
        odd.keeps(matmul)
    with pytest.raises(ScheduleError, match=r"no size for rank\(s\) N"):
        hierarchy.einsum_problem(einsum.library.get("matmul"), "Z", {"M": 4, "K": 4})
    with pytest.raises(ScheduleError, match=r"has no Einsum 'Y'; its Einsums write Z"):
        hierarchy.einsum_problem(einsum.library.get("matmul"), "Y", {"M": 4, "K": 4, "N": 4})


def test_levels_without_energies_are_priced_by_the_models_or_refused() -> None:
    p = hierarchy.einsum_problem(einsum.library.get("matmul"), "Z", {"M": 8, "K": 8, "N": 8})
    h = hierarchy.Hierarchy(
        name="priced",
        levels=(
            hierarchy.Level(name="DRAM", kind="dram", block_words=4),
            hierarchy.Level(name="buf", capacity_words=32768, block_words=16),
        ),
        compute=hierarchy.Compute(instances=1, energy_pj=1.0),
    )
    dram, buf = h.storages(p)
    assert dram.read_pj == pytest.approx(16 * 4 * hierarchy.DRAM_PJ_PER_BIT)
    c = mapper.sram.cacti_table(capacity_bytes=65536, width_bits=256, ports=1, banks=1)
    assert (buf.read_pj, buf.fill_pj) == (pytest.approx(c.read_pj), pytest.approx(c.write_pj))
    rf = dataclasses.replace(
        h, levels=(*h.levels, hierarchy.Level(name="rf", kind="regfile", capacity_words=32, block_words=1))
    )
    regs = rf.storages(p)[2]
    model = regfile.costs(depth=32, width_bits=16)
    assert (regs.read_pj, regs.fill_pj) == (model.read_pj, model.write_pj)
    deep = dataclasses.replace(
        h, levels=(*h.levels, hierarchy.Level(name="rf", kind="regfile", capacity_words=8192))
    )
    with pytest.raises(
        ArchError, match=r"level 'rf': give read_pj and write_pj \(register file: depth must be"
    ):
        deep.storages(p)
    tiny = dataclasses.replace(h, levels=(h.levels[0], hierarchy.Level(name="buf", capacity_words=64)))
    with pytest.raises(ArchError, match=r"level 'buf': give read_pj and write_pj \("):
        tiny.storages(p)


def test_bandwidth_bounds_the_cycles_by_hand() -> None:
    """Z[m] = sum_k A[m, k] on one MAC, 8 x 4: a register level reading 1 word a cycle keeps up
    with the 32 computes (32 reads of A); at half a word a cycle it takes 64 cycles."""
    p = Problem(
        name="rowsum",
        dims=(("M", 8), ("K", 4)),
        spaces=(
            DataSpace(name="A", projection=((("M", 1),), (("K", 1),))),
            DataSpace(name="Z", projection=((("M", 1),),), output=True),
        ),
    )
    mp = [
        LevelMapping(target="DRAM"),
        LevelMapping(target="reg", temporal=(("M", 8), ("K", 4)), keep=frozenset({"Z"})),
    ]
    for bw, cycles, bound in ((1.0, 32, "compute"), (0.5, 64, "DRAM")):
        st = [Storage(name="DRAM", read_bandwidth=bw), Storage(name="reg")]
        a = analyze(p, st, mp)
        assert (a.cycles, a.compute_cycles, a.bound_by) == (cycles, 32, bound)


def test_a_preset_is_a_hierarchy_with_the_nest_cost_s_prices() -> None:
    arch = mapper.fusemax(array_dim=32)
    h = arch.hierarchy()
    assert [lv.name for lv in h.levels] == ["DRAM", "buffer", "rf"]
    arr = arch.array("2d")
    assert h.compute.instances == h.levels[2].instances == arr.pes == 1024
    buf = arch.buffer.costs(arch.word_bits)
    assert (h.levels[1].read_pj, h.levels[1].write_pj) == (buf.read_pj_per_word, buf.write_pj_per_word)
    assert h.levels[1].capacity_words == arch.buffer.capacity_bytes // 2
    assert h.levels[0].read_pj == 16 * arch.dram.pj_per_bit
    assert (h.levels[2].read_pj, h.compute.energy_pj) == (arr.rf_read_pj, arch.energy.mac_pj)
    assert arch.hierarchy("1d").compute.instances == arch.array("1d").pes
    with pytest.raises(ArchError, match=r"has no array '3d'"):
        arch.hierarchy("3d")


def test_einforge_map_searches_or_evaluates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "map",
        "--arch",
        str(EXAMPLE),
        "--cascade",
        "matmul",
        "--sizes",
        "M=28,K=12,N=16",
        "--budget",
        "500",
    ]
    out = tmp_path / "m.yaml"
    assert main([*args, "--json", "--write-mapping", str(out)]) == 0
    found = json.loads(capsys.readouterr().out)
    # the budget's 500 uniform draws and 25 that fill the fanouts first
    assert found["search"]["valid"] + found["search"]["rejected"] == 525 and found["energy_pj"] > 0
    assert set(found["levels"]["weights_spad"]["per_tensor"]) == {"B"}
    assert (
        main(
            [
                "map",
                "--arch",
                str(EXAMPLE),
                "--cascade",
                "matmul",
                "--sizes",
                "M=28,K=12,N=16",
                "--mapping",
                str(out),
                "--json",
            ]
        )
        == 0
    )
    again = json.loads(capsys.readouterr().out)
    assert again["levels"] == found["levels"] and again["cycles"] == found["cycles"]
    assert (
        main(
            [
                "map",
                "--arch",
                "fusemax",
                "--cascade",
                "attention_3pass",
                "--einsum",
                "QK",
                "--sizes",
                "P=16,M=64,E=16,F=16",
                "--budget",
                "200",
            ]
        )
        == 0
    )
    assert "QK:" in capsys.readouterr().out
    assert (
        main(["map", "--arch", "fusemax", "--cascade", "attention_3pass", "--sizes", "P=16,M=64,E=16,F=16"])
        == 2
    )
    assert "name one with --einsum" in capsys.readouterr().err
    assert main(["map", "--arch", "fusemax", "--cascade", "matmul", "--sizes", "M=4,K=4"]) == 2
    assert "no size for rank(s) N" in capsys.readouterr().err


def test_einforge_map_on_a_level_no_model_prices(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A register file deeper than the model's 4096 rows and no energies: the mapping is searched
    and counted, and the energy is reported as not priced, saying why."""
    f = tmp_path / "u.yaml"
    f.write_text(
        "name: x\nlevels:\n - {name: DRAM, kind: dram}\n"
        " - {name: rf, kind: regfile, capacity_words: 99999}\ncompute: {instances: 1}\n"
    )
    assert (
        main(["map", "--arch", str(f), "--cascade", "matmul", "--sizes", "M=4,K=4,N=4", "--budget", "50"])
        == 0
    )
    out = capsys.readouterr().out
    assert "energy not priced: cycles, then accesses" in out
    assert "energy: not priced (level 'rf': give read_pj and write_pj (register file: depth must be" in out


def test_a_convolution_cascade_is_timeloop_s_cnn_layer() -> None:
    """examples/cascades/conv2d.ein (stride 2) as an analysis problem has the projections of
    Timeloop's CNN layer (Inputs[N, C, R + 2P, S + 2Q]); costed with timeloop-mapper's mapping
    of the Eyeriss-like design it gives Timeloop's own counts."""
    c = einsum.parse((ROOT / "examples" / "cascades" / "conv2d.ein").read_text())
    design = timeloop.load(EY / "parsed-processed-input.yaml", EY / "timeloop-mapper.map.yaml")
    sizes = dict(design.problem.dims)
    p = hierarchy.einsum_problem(c, "O", sizes)
    assert dict(p.dims) == sizes
    names = {"I": "Inputs", "F": "Weights", "O": "Outputs"}
    ours = {names[s.name]: {tuple(sorted(r)) for r in s.projection} for s in p.spaces}
    theirs = {s.name: {tuple(sorted(r)) for r in s.projection} for s in design.problem.spaces}
    assert ours == theirs
    assert ours["Inputs"] == {(("N", 1),), (("C", 1),), (("P", 2), ("R", 1)), (("Q", 2), ("S", 1))}
    renamed = dataclasses.replace(
        p, spaces=tuple(dataclasses.replace(s, name=names[s.name]) for s in p.spaces)
    )
    a = dataclasses.replace(design, problem=renamed).analyze()
    b = design.analyze()
    assert a.to_dict() == b.to_dict()
    # the PE-array templates do not model a window's reuse: a typed error that says where to go
    with pytest.raises(ScheduleError, match=r"reads I\[n, c, r \+ 2 \* p, s \+ 2 \* q\], a window"):
        from mapper.search import SearchOptions, explore

        explore(c, mapper.fusemax(array_dim=16), SearchOptions(sizes=sizes))


def test_compute_units_price_each_einsum_by_its_operations() -> None:
    """attention_3pass's GM (a max over m) pays the max unit, SN (a subtract and an exp) the adder
    and the exp unit, QK a MAC per point; a PE without a divider cannot run A."""
    c = einsum.library.get("attention_3pass")
    sizes = {"P": 8, "M": 16, "E": 4, "F": 4}
    units = {"mac": 2.0, "add": 1.0, "max": 0.5, "exp": 10.0, "div": 7.0}
    h = hierarchy.Hierarchy.from_dict(
        {
            "name": "units",
            "levels": [{"name": "DRAM", "kind": "dram", "read_pj": 0, "write_pj": 0}],
            "compute": {"name": "pe", "energy_pj": 99.0, "units": units},
        }
    )
    assert hierarchy.Hierarchy.from_dict(h.to_dict()) == h
    for name, per_point in (("QK", 2.0), ("GM", 0.5), ("SN", 1.0 + 10.0), ("A", 7.0), ("AV", 2.0)):
        p = hierarchy.einsum_problem(c, name, sizes)
        a = h.search(p, budget=50).analysis
        assert a.compute_energy_pj == pytest.approx(a.computes * per_point), name
    no_div = dataclasses.replace(h, compute=dataclasses.replace(h.compute, units={"mac": 2.0, "add": 1.0}))
    with pytest.raises(
        ArchError, match=r"compute 'pe' has no unit for div, which A needs \(its units: mac, add\)"
    ):
        no_div.search(hierarchy.einsum_problem(c, "A", sizes), budget=10)
    with pytest.raises(ArchError, match=r"units: unknown operation 'exps'; did you mean 'exp'"):
        hierarchy.Compute(units={"exps": 1.0})
    # a preset's array has its PEs' units: FuseMax's 2D PEs run exp on the MAC and have no divider;
    # any other operation (a mask's select) is priced as a MAC, as the template prices it
    two_d = mapper.fusemax(array_dim=16).hierarchy().compute.units
    assert two_d == {"mac": 17.1645, "add": 8.3395, "other": 17.1645, "exp": 6 * 17.1645, "max": 0.028036}
    assert "div" in mapper.fusemax(array_dim=16).hierarchy("1d").compute.units


def test_the_simba_example_reproduces_timeloop_s_simba() -> None:
    """examples/simba_like.yaml (Timeloop's Simba-like design, keep written as roles) with the
    convolution cascade and timeloop-mapper's mapping: Timeloop's counts and energy."""
    sb = Path(__file__).parent / "timeloop" / "simba_like"
    design = timeloop.load(
        sb / "parsed-processed-input.yaml",
        sb / "timeloop-mapper.map.yaml",
        ert=sb / "timeloop-mapper.ERT.yaml",
    )
    h = hierarchy.load(ROOT / "examples" / "simba_like.yaml")
    c = einsum.parse((ROOT / "examples" / "cascades" / "conv2d.ein").read_text())
    p = hierarchy.einsum_problem(c, "O", dict(design.problem.dims))
    names = {"I": "Inputs", "F": "Weights", "O": "Outputs"}
    p = dataclasses.replace(p, spaces=tuple(dataclasses.replace(s, name=names[s.name]) for s in p.spaces))
    ms = [dataclasses.replace(m, keep=None) for m in design.mappings]  # the example's roles decide
    ours, theirs = h.analyze(p, ms), design.analyze()
    assert (ours.cycles, ours.computes) == (theirs.cycles, theirs.computes)
    for level, stats in theirs.levels.items():
        assert ours.levels[level] == stats, level
    assert ours.energy_pj == pytest.approx(theirs.energy_pj, rel=1e-9)


def test_serial_units_and_unpriced_operations() -> None:
    """A compute whose functional units do not overlap (``serial``) takes the sum of their cycles
    per point, not the busiest unit's; operations a problem lists as ``unpriced`` take their cycles
    and cost no energy. Both as the FuseMax artifact's bookkeeping needs them (mapper.as_tree)."""
    p = Problem(
        name="SN",
        dims=(("P", 4),),
        spaces=(
            DataSpace(name="S", projection=((("P", 1),),)),
            DataSpace(name="SN", projection=((("P", 1),),), output=True),
        ),
        ops=(("add", 1.0), ("exp", 1.0)),
    )
    c = hierarchy.Compute(units={"add": 0.5, "exp": 3.0}, issue={"add": "mac", "exp": ["exp", 2]})
    assert c.point_cycles(p) == 2.0 and dataclasses.replace(c, serial=True).point_cycles(p) == 3.0
    assert c.pj_per_point(p) == 3.5
    assert c.pj_per_point(dataclasses.replace(p, unpriced=(("add", 1.0),))) == 3.0
    with pytest.raises(mapper.ArchError, match=r"compute 'mac': serial must be true or false, found 'yes'"):
        hierarchy.Compute(serial="yes")  # type: ignore[arg-type]


def test_a_systolic_mesh_pays_its_fill_and_drain_per_block() -> None:
    """``compute: {systolic: true}``: a GEMM on a 4 x 4 mesh pays SCALE-Sim's fill and drain for
    each block of the loops at the level that fans out, the loops above repeating it. Hand counts:
    M and N across the mesh, K = 8 streamed, output stationary: 4 + 4 + 8 - 2 - 1 = 13 cycles a
    block; K down the rows and N across, M = 8 streamed, weight stationary: 2*4 + 4 + 8 - 2 - 1 =
    17; twice each where a DRAM loop over M repeats the block. Without it, 8 cycles a block."""
    p = hierarchy.einsum_problem(einsum.library.get("matmul"), "Z", {"M": 8, "K": 8, "N": 4})
    doc = {
        "name": "systolic",
        "levels": [
            {"name": "DRAM", "kind": "dram", "read_pj": 1, "write_pj": 1},
            {"name": "buf", "capacity_words": 4096, "read_pj": 1, "write_pj": 1},
        ],
        "compute": {"name": "pe", "mesh": [4, 4], "energy_pj": 1.0, "systolic": True},
    }
    h = hierarchy.Hierarchy.from_dict(doc)
    assert hierarchy.Hierarchy.from_dict(h.to_dict()) == h
    plain = hierarchy.Hierarchy.from_dict(
        {**doc, "compute": {"name": "pe", "mesh": [4, 4], "energy_pj": 1.0}}
    )

    def cycles(hier: hierarchy.Hierarchy, outer: tuple, temporal: tuple, spatial: tuple) -> float:
        ms = [
            LevelMapping(target="DRAM", temporal=outer),
            LevelMapping(target="buf", temporal=temporal, spatial=spatial),
        ]
        return hier.analyze(p, ms).compute_cycles

    os_ = (("M", 2),), (("K", 8),), (("M", 4), ("N", 4))
    assert cycles(h, *os_) == 2 * 13 and cycles(plain, *os_) == 2 * 8
    p8 = hierarchy.einsum_problem(einsum.library.get("matmul"), "Z", {"M": 16, "K": 4, "N": 4})
    ws = [LevelMapping(target="DRAM", temporal=(("M", 2),)),
          LevelMapping(target="buf", temporal=(("M", 8),), spatial=(("K", 4), ("N", 4)))]  # fmt: skip
    assert h.analyze(p8, ws).compute_cycles == 2 * 17
    # K along the columns instead: the mesh turned, 2*4 + 4 + 8 - 2 - 1 cycles again
    turned = [ws[0], dataclasses.replace(ws[1], spatial=(("N", 4), ("K", 4)))]
    assert h.analyze(p8, turned).compute_cycles == 2 * 17
    p6 = hierarchy.einsum_problem(einsum.library.get("matmul"), "Z", {"M": 6, "K": 8, "N": 4})
    ragged = [LevelMapping(target="DRAM", temporal=(("M", 2),)),
              LevelMapping(target="buf", temporal=(("K", 8),), spatial=(("M", 4), ("N", 4)))]  # fmt: skip
    assert plain.analyze(p6, ragged).computes == 6 * 8 * 4
    with pytest.raises(
        ScheduleError, match=r"Z runs on a systolic mesh with imperfect factors of M: its fill"
    ):
        h.analyze(p6, ragged)
    with pytest.raises(ArchError, match=r"compute 'pe': systolic must be true or false, found 'yes'"):
        hierarchy.Hierarchy.from_dict({**doc, "compute": {"name": "pe", "systolic": "yes"}})
