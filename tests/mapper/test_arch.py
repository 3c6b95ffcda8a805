"""ArchSpec: validation, presets, YAML/JSON round trips, typed errors with did-you-mean."""

import dataclasses
import json

import pytest

import mapper
from mapper import ArchError, ArchSpec


@pytest.mark.parametrize("name", mapper.presets())
@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_presets_round_trip(tmp_path, name, suffix):
    arch = mapper.preset(name)
    path = tmp_path / f"arch{suffix}"
    arch.save(path)
    assert mapper.load(path) == arch


def test_parameterised_preset():
    arch = mapper.fusemax(array_dim=128, buffer_bytes=8 << 20, bandwidth_bytes_per_s=100e9, clock_hz=1e9)
    assert arch.array("2d").rows == arch.array("2d").cols == 128
    assert arch.array("1d").pes == 128
    assert arch.buffer.capacity_bytes == 8 << 20


def test_unknown_key_has_did_you_mean():
    d = mapper.fusemax().to_dict()
    d["clock_hzz"] = d.pop("clock_hz")
    with pytest.raises(ArchError, match=r"architecture: unknown key 'clock_hzz'; did you mean 'clock_hz'\?"):
        ArchSpec.from_dict(d)
    d = mapper.fusemax().to_dict()
    d["arrays"][0]["rowz"] = 4
    with pytest.raises(ArchError, match=r"arrays\[0\]: unknown key 'rowz'; did you mean 'rows'\?"):
        ArchSpec.from_dict(d)


def test_no_compute_unit():
    with pytest.raises(
        ArchError, match="architecture 'x' has no compute unit; expected at least one PE array"
    ):
        mapper.fusemax().replace(name="x", arrays=())


def test_zero_bandwidth():
    with pytest.raises(ArchError, match=r"dram: bandwidth_bytes_per_s must be positive, found 0"):
        mapper.fusemax(bandwidth_bytes_per_s=0)


def test_unknown_functional_unit():
    with pytest.raises(
        ArchError,
        match=r"array '1d': unknown functional unit 'divide'; did you mean 'div'\? \(expected some of ",
    ):
        mapper.PEArray(
            name="1d",
            rows=1,
            cols=4,
            units=("mac", "divide"),
            rf_words=4,
            rf_read_pj=0,
            rf_write_pj=0,
            rf_area_um2=0,
        )


def test_unknown_array_name():
    with pytest.raises(
        ArchError,
        match=r"architecture 'fusemax' has no array '2D'; did you mean '2d'\? \(it has \['2d', '1d'\]\)",
    ):
        mapper.fusemax().array("2D")


def test_unknown_preset_and_format(tmp_path):
    with pytest.raises(
        ArchError,
        match=r"unknown architecture preset 'fusemx'; did you mean 'fusemax'\? \(expected one of fusemax, ",
    ):
        mapper.preset("fusemx")
    with pytest.raises(ArchError, match=r"expected a \.json, \.yaml or \.yml file"):
        mapper.fusemax().save(tmp_path / "arch.txt")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ArchError, match="not valid JSON"):
        mapper.load(tmp_path / "bad.json")


def test_json_is_plain_data():
    assert json.loads(mapper.flat().to_json())["arrays"][0]["einsum_kinds"] == ["contraction"]


def test_area_per_component():
    area = mapper.fusemax().area_um2()
    # a FuseMax 2D PE: MAC 1545 + max 49.29 + register file 4256 um^2
    assert area["2d"] == pytest.approx(256 * 256 * (1545 + 49.29 + 4256))
    # CACTI 7, 45 nm: a 16 MiB buffer of 4096-bit rows, one bank, one port: 84.2012 mm^2
    assert area["buffer"] == pytest.approx(84.2012e6)


def test_non_numeric_field_and_bad_preset_parameter():
    with pytest.raises(
        ArchError, match=r"architecture 'fusemax': clock_hz must be a finite number, found 'fast'"
    ):
        mapper.fusemax(clock_hz="fast")
    with pytest.raises(
        ArchError,
        match=r"^preset 'flat' has no parameter 'rows' \(its parameters: array_dim, buffer_bytes, "
        r"bandwidth_bytes_per_s, clock_hz, score_row_blocks, node_nm, energy_model\)$",
    ):
        mapper.preset("flat", rows=8)
    with pytest.raises(
        ArchError, match=r"^preset 'fusemax' has no parameter 'array_dm'; did you mean 'array_dim'\?"
    ):
        mapper.preset("fusemax", array_dm=8)


def test_score_row_blocks():
    assert mapper.arch.flat().score_row_blocks == (256, 512, 1024)
    assert mapper.arch.unfused().score_row_blocks == ()
    assert mapper.arch.fusemax().score_row_blocks == ()
    with pytest.raises(ArchError, match=r"architecture 'flat': score_row_blocks must be positive, found 0"):
        mapper.arch.flat(score_row_blocks=(256, 0))
    with pytest.raises(
        ArchError, match=r"architecture 'flat': score_row_blocks must be an integer, found 1024.0"
    ):
        mapper.arch.flat(score_row_blocks=(1024.0,))
    a = mapper.flat()
    assert mapper.ArchSpec.from_dict(json.loads(a.to_json())) == a


def test_yaml_numbers_in_exponent_form_are_numbers(tmp_path):
    # PyYAML follows YAML 1.1 and reads 1e9 as a string; architecture files follow YAML 1.2
    path = tmp_path / "a.yaml"
    mapper.fusemax().save(path)
    text = path.read_text()
    assert "clock_hz: 940000000.0" in text
    path.write_text(text.replace("clock_hz: 940000000.0", "clock_hz: 1e9"))
    assert mapper.load(path).clock_hz == 1e9
    path.write_text(text.replace("clock_hz: 940000000.0", "clock_hz: '1e9'"))
    with pytest.raises(ArchError, match=r"clock_hz must be a finite number, found '1e9'"):
        mapper.load(path)


def test_div_latency_is_checked_and_charged_once_a_tile() -> None:
    """A pipelined divider: a non-negative integer, paid once per tile by the Einsums that divide."""
    from mapper.arch import fusemax_tile

    with pytest.raises(ArchError, match=r"fusemax_tile: div_latency must not be negative, found -1"):
        fusemax_tile(div_latency=-1)
    a = fusemax_tile(array_dim=4, div_latency=5)
    assert (a.array("1d").div_latency, a.array("2d").div_latency) == (5, 0)  # the 2D array does not divide
    with pytest.raises(ArchError, match=r"array '1d': div_latency must not be negative, found -2"):
        dataclasses.replace(a.array("1d"), div_latency=-2)
