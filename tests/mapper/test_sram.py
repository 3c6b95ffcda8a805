"""SRAM costs from geometry: the shipped CACTI 7 table, its interpolation and its errors."""

from __future__ import annotations

import csv
import itertools
import json
import os
import subprocess
import sys

import pytest

import mapper
import sim
from mapper import sram
from mapper.sram import SRAMError, cacti_table

MIB = 2**20


@pytest.mark.parametrize(
    ("capacity", "read_pj_per_word", "write_pj_per_word", "area_mm2", "leak_mw"),
    [
        # the FuseMax artifact's buffers as CACTI 7 prices them (45 nm, one 4096-bit row per access)
        (32 * MIB, 93.18, 105.85, 175.7, 0.764),  # FLAT, Unfused, +Cascade
        (16 * MIB, 48.88, 61.53, None, None),  # FuseMax, +Architecture
    ],
)
def test_the_artifact_buffers(capacity, read_pj_per_word, write_pj_per_word, area_mm2, leak_mw):
    c = cacti_table(capacity_bytes=capacity, width_bits=4096, ports=1, banks=1)
    read, write = c.per_word(16)
    assert read == pytest.approx(read_pj_per_word, rel=0.005)
    assert write == pytest.approx(write_pj_per_word, rel=0.005)
    if area_mm2 is not None:
        assert c.area_um2 / 1e6 == pytest.approx(area_mm2, rel=0.005)
        assert c.leakage_mw == pytest.approx(leak_mw, rel=0.005)


def test_presets_are_priced_by_their_geometry():
    fm, fl = mapper.fusemax().buffer.costs(16), mapper.flat().buffer.costs(16)
    assert (fm.read_pj_per_word, fl.read_pj_per_word) == pytest.approx((48.88, 93.18), rel=0.005)
    assert fm.source.startswith("CACTI 7 table")


def test_buffer_size_moves_energy_and_area():
    # the user's sweep that used to move nothing: 4, 16 and 64 MiB FuseMax buffers
    costs = [mapper.fusemax(buffer_bytes=m * MIB).buffer.costs(16) for m in (4, 16, 64)]
    reads = [c.read_pj_per_word for c in costs]
    writes = [c.write_pj_per_word for c in costs]
    areas = [c.area_um2 for c in costs]
    assert reads == sorted(reads) and len(set(reads)) == 3
    assert writes == sorted(writes) and len(set(writes)) == 3
    assert areas == sorted(areas) and len(set(areas)) == 3
    # and a report sees it
    rep = sim.run_config(sim.CONFIGS[0], sim.workload("BERT", "1K"))
    assert rep.per_component_area_mm2["buffer"] == pytest.approx(areas[1] / 1e6)
    assert rep.area_mm2 == pytest.approx(sum(mapper.fusemax().area_um2().values()) / 1e6)


@pytest.mark.parametrize(("width", "ports", "banks"), [(64, 1, 1), (512, 2, 4), (4096, 4, 1), (1024, 1, 8)])
def test_monotonic_in_capacity(width, ports, banks):
    """A bigger buffer of the same organisation costs more per access, and more area, at every
    grid capacity and between them."""
    caps = [c * f for c in sram.grid()["capacity_bytes"][:-1] for f in (1.0, 1.5)] + [64 * MIB]
    got = []
    for cap in caps:
        try:
            got.append(cacti_table(capacity_bytes=cap, width_bits=width, ports=ports, banks=banks))
        except SRAMError:
            continue  # CACTI has no organisation of this many banks this small
    assert len(got) > 10
    for a, b in itertools.pairwise(got):
        assert b.read_pj > a.read_pj
        assert b.area_um2 > a.area_um2


def test_interpolation_is_log_log_between_grid_points():
    lo = cacti_table(capacity_bytes=16 * MIB, width_bits=4096)
    hi = cacti_table(capacity_bytes=32 * MIB, width_bits=4096)
    mid = cacti_table(capacity_bytes=16 * MIB * 2**0.5, width_bits=4096)
    assert mid.read_pj == pytest.approx((lo.read_pj * hi.read_pj) ** 0.5, rel=1e-12)
    assert lo.read_pj < mid.read_pj < hi.read_pj
    # a grid point is the table's value itself
    assert lo.read_pj == pytest.approx(12.5127e3, rel=1e-12)


def test_outside_the_grid_is_an_error_that_says_so():
    with pytest.raises(
        SRAMError,
        match=r"SRAM capacity 128 MiB is outside the CACTI table's grid "
        r"\(16 KiB to 64 MiB\); choose a value inside it or pass "
        r"your own sram_model",
    ):
        cacti_table(capacity_bytes=128 * MIB, width_bits=4096)
    with pytest.raises(SRAMError, match=r"SRAM width 16384 bits is outside"):
        cacti_table(capacity_bytes=MIB, width_bits=16384)
    with pytest.raises(SRAMError, match=r"the CACTI table is for 45 nm, not 22 nm"):
        cacti_table(capacity_bytes=MIB, width_bits=4096, technology_nm=22)
    with pytest.raises(
        SRAMError,
        match=r"CACTI finds no organisation for an SRAM of 16384 bytes, 4096-bit "
        r"accesses, 1 port\(s\), 32 bank\(s\)",
    ):
        cacti_table(capacity_bytes=16384, width_bits=4096, banks=32)
    # the architecture's own area call raises it before any simulation
    big = mapper.fusemax(buffer_bytes=128 * MIB)
    with pytest.raises(SRAMError, match="outside the CACTI table's grid"):
        big.area_um2()


def test_given_figures_override_the_model():
    b = mapper.Buffer(capacity_bytes=16 * MIB, read_pj_per_word=1.0)
    c = b.costs(16)
    assert c.read_pj_per_word == 1.0
    assert c.write_pj_per_word == pytest.approx(61.53, rel=0.005)
    full = mapper.Buffer(
        capacity_bytes=1 << 40, read_pj_per_word=1, write_pj_per_word=2, area_um2=3, leakage_mw=4
    )
    assert full.costs(16).source == "given"  # no model is asked, so no grid to leave


def test_a_plugged_in_model_is_used():
    seen = {}

    def model(**geometry):
        seen.update(geometry)
        return mapper.SRAMCosts(
            read_pj=256.0, write_pj=512.0, leakage_mw=1.0, area_um2=5.0, width_bits=4096, source="mine"
        )

    import einsum

    arch = mapper.fusemax(array_dim=2, buffer_bytes=1 << 20)
    toy = sim.Workload(model="toy", seq=8, batch=1, heads=1, E=2, F=2, D=4, S=4)
    c = einsum.library.get("attention_1pass")
    s = mapper.search(c, arch, mapper.SearchOptions(fusion="fused", sizes=toy.sizes))
    r = sim.evaluate(c, s, arch, toy, sram_model=model)
    assert seen == {
        "capacity_bytes": 1 << 20,
        "width_bits": 4096,
        "ports": 1,
        "banks": 1,
        "technology_nm": 45.0,
    }
    assert r.per_component_pj["buffer"] == pytest.approx(r.buffer_reads * 1.0 + r.buffer_writes * 2.0)
    assert r.per_component_area_mm2["buffer"] == pytest.approx(5e-6)


def test_hwcomponents_model_says_what_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "hwcomponents_cacti", None)  # as if not installed
    with pytest.raises(SRAMError, match="needs the hwcomponents-cacti package"):
        sram.hwcomponents_model(capacity_bytes=MIB, width_bits=4096)


def test_the_table_records_how_it_was_made():
    meta = json.loads(sram.TABLE.with_suffix(".json").read_text())
    assert meta["tool"] == "CACTI 7"
    assert "hwcomponents-cacti 1.0.40" in meta["source"]
    grid = sram.grid()
    assert grid["capacity_bytes"][0] == 16 * 1024 and grid["capacity_bytes"][-1] == 64 * MIB
    assert grid["width_bits"] == (64, 128, 256, 512, 1024, 2048, 4096, 8192)
    assert grid["ports"] == (1, 2, 3, 4) and grid["banks"] == (1, 2, 4, 8, 16, 32)
    with sram.TABLE.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) + len(meta["no_result"]) == 13 * 8 * 4 * 6


@pytest.mark.slow
def test_the_generator_reproduces_table_points(tmp_path):
    """Rebuild CACTI from the pinned package and rerun a few grid points (needs pip's index and g++;
    ``python -m mapper.cacti.generate`` reruns the whole grid)."""
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    try:
        out = subprocess.run(
            [sys.executable, "-m", "mapper.cacti.generate", "--check", "6", "--seed", "1"],
            capture_output=True,
            text=True,
            timeout=900,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.skip("CACTI rebuild timed out")
    if (
        "fetching" in out.stdout
        and out.returncode != 0
        and "pip" in out.stderr
        and "sha256" not in out.stderr
    ):
        pytest.skip(f"cannot fetch hwcomponents-cacti here: {out.stderr[-300:]}")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "6 of 6 rerun points equal the shipped table" in out.stdout
