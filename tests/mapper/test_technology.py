"""Technology scaling (mapper.technology, ArchSpec.at_node): the factors against Stillmaker and
Baas's table and against hwcomponents' figures, and a design's components at 45, 22 and 7 nm."""

from __future__ import annotations

import json

import pytest

import einsum
import mapper
import sim
from einforge.cli import main
from mapper import technology as tech
from mapper.errors import ArchError


def test_factors_at_the_listed_nodes_are_the_table() -> None:
    for i, a in enumerate(tech.NODES_NM):
        for j, b in enumerate(tech.NODES_NM):
            assert tech.area_factor(a, b) == pytest.approx(tech.AREA[i][j], rel=1e-12)
            fa = sum(c * 0.8 ** (2 - k) for k, c in enumerate(tech.ENERGY_FIT[i]))
            fb = sum(c * 0.8 ** (2 - k) for k, c in enumerate(tech.ENERGY_FIT[j]))
            assert tech.energy_factor(a, b) == pytest.approx(fb / fa, rel=1e-12)


@pytest.mark.parametrize(
    ("node", "area", "energy"),
    # hwcomponents 1.0.114's tech_node_area and tech_node_energy from 45 nm (0.8 V), run beside
    [
        (40, 0.7923076923076924, 0.8689770302999358),
        (22, 0.2516666666666667, 0.2941079141535118),
        (7, 0.059, 0.09430896655219188),
    ],
)
def test_interpolated_factors_equal_hwcomponents(node: float, area: float, energy: float) -> None:
    assert tech.area_factor(45, node) == pytest.approx(area, rel=1e-12)
    assert tech.energy_factor(45, node) == pytest.approx(energy, rel=1e-12)


def test_a_design_at_45_22_and_7_nm(capsys: pytest.CaptureFixture[str]) -> None:
    base = mapper.fusemax(array_dim=32)
    area45 = base.area_um2()
    for node in (22.0, 7.0):
        arch = base.at_node(node)
        e, a = tech.energy_factor(45, node), tech.area_factor(45, node)
        assert arch.name == f"fusemax@{node:g}nm" and arch.node_nm == node
        assert arch.energy.mac_pj == pytest.approx(base.energy.mac_pj * e)
        assert arch.energy.exp_area_um2 == pytest.approx(base.energy.exp_area_um2 * a)
        assert arch.array("2d").rf_read_pj == pytest.approx(base.array("2d").rf_read_pj * e)
        buf45, buf = base.buffer.costs(16), arch.buffer.costs(16)
        assert buf.read_pj_per_word == pytest.approx(buf45.read_pj_per_word * e)
        assert buf.leakage_mw == pytest.approx(buf45.leakage_mw * e)
        for comp, um2 in arch.area_um2().items():
            assert um2 == pytest.approx(area45[comp] * a), comp
        assert arch.dram == base.dram and arch.clock_hz == base.clock_hz  # off chip; the clock is given
        assert mapper.ArchSpec.from_dict(arch.to_dict()) == arch
        assert arch.at_node(45).energy.mac_pj == pytest.approx(base.energy.mac_pj)
    # a report at 7 nm: the same schedule and latency, less energy
    c = einsum.library.get("attention_1pass")
    w = sim.workload("BERT", "1K", batch=1)
    reports = []
    for arch in (base, base.at_node(7)):
        s = mapper.search(c, arch, mapper.SearchOptions(sizes=w.sizes, fusion="fused"))
        reports.append(sim.evaluate(c, s, arch, w))
    assert reports[1].latency_s == reports[0].latency_s
    assert reports[1].energy_pj < 0.5 * reports[0].energy_pj
    assert main(["costs", "--node", "7", "--array-dim", "32", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["arch"] == "fusemax(array_dim=32)@7nm"
    mac = next(r["pj"] for r in out["energy_pj"] if r["component"] == "2d.mac" and r["action"] == "op")
    assert mac == pytest.approx(base.energy.mac_pj * tech.energy_factor(45, 7))
    assert mapper.preset("fusemax", node_nm=22).name == "fusemax@22nm"


def test_bad_nodes_are_typed_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ArchError, match=r"node_nm 3 nm is outside the scaling tables \(7 \.\.\. 130 nm"):
        mapper.fusemax().at_node(3)
    with pytest.raises(ArchError, match=r"node_nm must be a number of nanometres, found '7nm'"):
        mapper.fusemax().at_node("7nm")  # type: ignore[arg-type]
    d = mapper.fusemax().to_dict()
    d["node_nm"] = 7
    with pytest.raises(
        ArchError, match=r"is at 7 nm but its buffer at 45 nm; build it at 45 nm and call at_node"
    ):
        mapper.ArchSpec.from_dict(d)
    with pytest.raises(ArchError, match=r"vdd must be a supply voltage"):
        tech.energy_factor(45, 7, vdd=5)
    assert main(["costs", "--node", "200"]) == 2
    assert "outside the scaling tables" in capsys.readouterr().err
