"""``energy_model="hwcomponents"`` (mapper.plugins): a typed error without the packages; where
they are installed (Python 3.12+), the plug-in's figures beside einforge's shipped ones.

The second group runs only where hwcomponents is importable. CI's Python has no hwcomponents;
run it with an interpreter that has (see docs/architecture.md, "Live component models")."""

from __future__ import annotations

import pytest

from mapper import plugins, regfile, sram
from mapper.arch import DRAM, preset
from mapper.errors import ArchError

_SKIP = pytest.mark.skipif(not plugins.available(), reason="hwcomponents is not installed here")
# hwcomponents-cacti leaves its configuration file open (its own ResourceWarning)
_QUIET = pytest.mark.filterwarnings(
    "ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning"
)


def LIVE(f):  # type: ignore[no-untyped-def]  # noqa: N802
    return _SKIP(_QUIET(f))


def test_an_unknown_or_missing_model_is_a_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ArchError, match=r"unknown energy_model 'hwcomponent'; did you mean 'hwcomponents'"):
        preset("fusemax", energy_model="hwcomponent")
    monkeypatch.setattr(plugins, "available", lambda: False)
    monkeypatch.setattr(plugins.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(
        ArchError, match=r"needs hwcomponents, hwcomponents-cacti, hwcomponents-library \(pip install"
    ):
        preset("fusemax", energy_model="hwcomponents")
    # the default needs nothing
    assert preset("fusemax", energy_model="tables") == preset("fusemax")


@LIVE
def test_the_buffer_through_live_cacti_equals_the_shipped_table() -> None:
    for cap, width in ((2**20, 4096), (16 * 2**20, 4096), (2**16, 1024)):
        live = sram.hwcomponents_model(capacity_bytes=cap, width_bits=width)
        table = sram.cacti_table(capacity_bytes=cap, width_bits=width)
        assert live.read_pj == pytest.approx(table.read_pj, rel=1e-9)
        assert live.area_um2 == pytest.approx(table.area_um2, rel=1e-9)
    a = preset("fusemax", array_dim=16, buffer_bytes=2**20, energy_model="hwcomponents")
    b = preset("fusemax", array_dim=16, buffer_bytes=2**20)
    assert a.name.endswith("[hwcomponents]")
    assert a.buffer.read_pj_per_word == pytest.approx(b.buffer.costs(16).read_pj_per_word, rel=1e-9)


@LIVE
def test_register_files_and_dram_beside_the_tables() -> None:
    """At Aladdin's own 40 nm the plug-in's register bit and 32-bit comparator are the figures
    mapper.regfile uses; it charges writes as reads and sizes each address comparator to the
    address (6 of 32 bits at 64 entries), so its files cost less energy per access."""
    ours = [regfile.costs(depth=d, width_bits=16) for d in (8, 64, 512)]
    live = [plugins.regfile_costs(depth=d, width_bits=16, node_nm=40) for d in (8, 64, 512)]
    for o, x in zip(ours, live, strict=True):
        assert x.read_pj == x.write_pj
        assert x.read_pj < o.read_pj
    assert [x.read_pj for x in live] == sorted(x.read_pj for x in live)
    assert [x.area_um2 for x in live] == sorted(x.area_um2 for x in live)
    # registers: 16 x 64 bits at 5.98 um^2 (the same primitive), comparators 71 um^2 x 6 / 32
    x = plugins.regfile_costs(depth=64, width_bits=16, node_nm=40)
    storage = 0.5 * (32 * 64 * regfile.REGISTER_AREA_UM2 + 64 * regfile.COMPARATOR_AREA_UM2 * 6 / 32)
    assert x.area_um2 - storage == pytest.approx(2 * 278.0 * 6 / 32, rel=0.05)  # two 6-bit adders
    # hwcomponents-cacti's HBM2 is 6.25 pJ/bit, the earlier table's (and einforge's) 3.9
    assert plugins.dram_pj_per_bit("HBM2") == pytest.approx(6.25)
    assert plugins.dram_pj_per_bit("HBM3") == pytest.approx(4.05)
    a = preset("fusemax", array_dim=16, energy_model="hwcomponents")
    assert a.dram.pj_per_bit == 3.9  # a DRAM without a type keeps its figure
    typed = plugins.price(preset("fusemax", array_dim=16).replace(dram=DRAM(type="HBM2")))
    assert typed.dram.pj_per_bit == pytest.approx(6.25)
