"""DRAM types (mapper.dram): figures with their sources, filled into mapper.arch.DRAM, saved and
loaded, swept, and refused with a typed error when unknown."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from mapper import arch as archs
from mapper import dram
from mapper.errors import ArchError


def test_each_type_has_sourced_figures() -> None:
    for t in dram.TYPES.values():
        assert t.pj_per_bit > 0 and t.bandwidth_bytes_per_s > 0
        assert t.energy_source and t.bandwidth_source and t.device
    # the FuseMax artifact's Accelergy output: 249.6 pJ per 64-bit HBM2 access
    assert dram.TYPES["HBM2"].pj_per_bit * 64 == pytest.approx(249.6)
    # JEDEC rates times widths
    assert dram.TYPES["HBM2"].bandwidth_bytes_per_s == 256e9
    assert dram.TYPES["HBM3"].bandwidth_bytes_per_s == pytest.approx(819.2e9)
    assert dram.TYPES["LPDDR4"].bandwidth_bytes_per_s == pytest.approx(34.128e9)
    # the default of a DRAM without a type is HBM2's energy
    assert archs.DRAM(bandwidth_bytes_per_s=1e9).pj_per_bit == dram.TYPES["HBM2"].pj_per_bit


def test_a_type_fills_what_is_not_given() -> None:
    d = archs.DRAM(type="hbm3", devices=4)
    assert d.type == "HBM3"
    assert d.bandwidth_bytes_per_s == pytest.approx(4 * 819.2e9)
    assert d.pj_per_bit == 4.05
    given = archs.DRAM(type="HBM3", devices=4, pj_per_bit=5.0)
    assert given.pj_per_bit == 5.0 and given.bandwidth_bytes_per_s == d.bandwidth_bytes_per_s


def test_energy_follows_the_type() -> None:
    """The same design and schedule with LPDDR4 instead of HBM2: the DRAM energy scales by 8 / 3.9."""
    import einsum
    import sim

    c = einsum.library.get("attention_1pass")
    base = archs.preset("fusemax", array_dim=16, buffer_bytes=2**20)
    w = sim.workload(sizes="P=256,M=1024,E=64,F=64")
    from mapper.search import SearchOptions, explore

    results = {}
    for t in ("HBM2", "LPDDR4"):
        a = base.replace(dram=archs.DRAM(type=t, bandwidth_bytes_per_s=base.dram.bandwidth_bytes_per_s))
        found = explore(c, a, SearchOptions(sizes=w.for_cascade(c).sizes, fusion="fused"))
        results[t] = sim.evaluate(c, found.best, a, w)
    hbm, lp = results["HBM2"], results["LPDDR4"]
    assert lp.latency_cycles == hbm.latency_cycles
    assert lp.per_component_pj["dram"] == pytest.approx(hbm.per_component_pj["dram"] * 8 / 3.9)


def test_saved_files_keep_the_type_not_its_figures() -> None:
    a = archs.preset("fusemax", array_dim=16).replace(dram=archs.DRAM(type="HBM2", devices=2))
    d = a.to_dict()
    assert d["dram"] == {"latency_cycles": 0.0, "transfers": "average", "type": "HBM2", "devices": 2}
    assert archs.ArchSpec.from_dict(d) == a
    d["dram"]["type"] = "HBM3"  # what a sweep's dram.type does
    b = archs.ArchSpec.from_dict(d)
    assert b.dram.pj_per_bit == 4.05 and b.dram.bandwidth_bytes_per_s == pytest.approx(2 * 819.2e9)
    # without a type the figures are the file's, as before
    assert "type" not in archs.preset("fusemax").to_dict()["dram"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"type": "HMB2"}, "dram: unknown DRAM type 'HMB2'; did you mean 'HBM2'?"),
        (
            {"type": "DDR4"},
            "dram: no energy figure with a source ships for DRAM type 'DDR4'; give its pj_per_bit",
        ),
        ({"type": "HBM2", "devices": 0}, "dram: devices must be positive, found 0"),
        ({"type": "HBM2", "devices": 1.5}, "dram: devices must be an integer, found 1.5"),
        ({"devices": 2, "bandwidth_bytes_per_s": 1e9}, "dram: devices (2) needs a type"),
        ({}, "dram: give bandwidth_bytes_per_s, or a type (such as HBM2) and devices"),
        ({"type": 3}, "dram: unknown DRAM type 3"),
    ],
)
def test_bad_dram_is_a_typed_error(fields: dict, message: str) -> None:
    with pytest.raises(ArchError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        archs.DRAM(**fields)


def test_costs_command_takes_a_dram_type() -> None:
    run = [sys.executable, "-m", "einforge", "costs", "--array-dim", "16", "--json"]
    out = json.loads(
        subprocess.run([*run, "--dram", "HBM3x2"], capture_output=True, text=True, check=True).stdout
    )
    assert out["dram"] == {
        "type": "HBM3",
        "devices": 2,
        "bandwidth_bytes_per_s": pytest.approx(1638.4e9),
        "pj_per_bit": 4.05,
    }
    assert {"component": "dram", "action": "bit", "pj": 4.05} in out["energy_pj"]
    bad = subprocess.run([*run, "--dram", "DDR4"], capture_output=True, text=True)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "no energy figure with a source ships for DRAM type 'DDR4'" in bad.stderr


def test_a_hierarchy_s_dram_level_takes_a_type() -> None:
    """kind: dram with dram_type HBM3 and 2 devices: 4.05 pJ a bit for a 4-word block, and 2 x
    819.2 GB/s as 819.2 16-bit words a cycle at 1 GHz; given figures win; bad fields are named."""
    import einsum
    from mapper import hierarchy

    h = hierarchy.Hierarchy.from_dict(
        {
            "name": "typed",
            "clock_hz": 1e9,
            "levels": [
                {"name": "DRAM", "kind": "dram", "dram_type": "hbm3", "devices": 2, "block_words": 4},
                {"name": "buf", "capacity_words": 4096, "read_pj": 1, "write_pj": 1},
            ],
            "compute": {"name": "mac"},
        }
    )
    assert h.levels[0].dram_type == "HBM3"
    p = hierarchy.einsum_problem(einsum.library.get("matmul"), "Z", {"M": 8, "K": 8, "N": 8})
    dram = h.storages(p)[0]
    assert dram.read_pj == pytest.approx(64 * 4.05) and dram.fill_pj == pytest.approx(64 * 4.05)
    assert dram.shared_bandwidth == pytest.approx(819.2)
    assert hierarchy.Hierarchy.from_dict(h.to_dict()) == h
    given = dataclasses.replace(h.levels[0], read_pj=1.0, write_pj=1.0, shared_bandwidth=8.0)
    st = dataclasses.replace(h, levels=(given, h.levels[1])).storages(p)[0]
    assert (st.read_pj, st.shared_bandwidth) == (1.0, 8.0)
    for fields, message in (
        ({"kind": "sram", "dram_type": "HBM2"}, "dram_type 'HBM2' is for a level of kind dram, not sram"),
        ({"kind": "dram", "dram_type": "HMB3"}, "unknown DRAM type 'HMB3'; did you mean 'HBM3'"),
        ({"kind": "dram", "devices": 2}, r"devices \(2\) goes with a dram_type"),
        ({"kind": "dram", "dram_type": "DDR4"}, "no energy figure with a source ships for DRAM type 'DDR4'"),
    ):
        with pytest.raises(ArchError, match=message):
            hierarchy.Level(name="x", **fields)


def test_costs_dram_option_format() -> None:
    run = [sys.executable, "-m", "einforge", "costs", "--array-dim", "16", "--dram", "HBM-2"]
    bad = subprocess.run(run, capture_output=True, text=True)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "--dram: expected TYPE or TYPExN such as HBM2 or HBM3x2, found 'HBM-2'" in bad.stderr
