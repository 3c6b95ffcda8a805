"""The register-file model (mapper.regfile) against the FuseMax artifact's Accelergy output for
its PE register file (32 entries of 16 bits, 45 nm), and its growth with depth and width."""

from __future__ import annotations

import pytest

from mapper import regfile
from mapper.errors import ArchError

# the artifact's workspace/inputs/yamls/area_energy/outputs-1d-fusemax/ERT_summary_verbose.yaml and
# outputs-2d-fusemax/ART_summary_verbose.yaml, reg_file (smartbuffer_RF, depth 32, width 16)
ARTIFACT = {
    "read_pj": 0.653431,
    "write_pj": 0.56957,
    "area_um2": 4255.9342,
    # the storage's part of each, without the address generators (NeuroSim's adders there)
    "storage_read_pj": 0.08386081822572881 + 0.5491951806916063,
    "storage_write_pj": 0.5491951806916063,
    "storage_area_um2": 3061.76 + 1136.0,
}


def test_the_artifact_s_register_file() -> None:
    c = regfile.costs(depth=32, width_bits=16)
    addr_pj = 5 * regfile.ADDER_PJ_PER_BIT
    addr_um2 = 2 * 5 * regfile.ADDER_AREA_UM2_PER_BIT
    assert c.read_pj - addr_pj == pytest.approx(ARTIFACT["storage_read_pj"], rel=1e-9)
    assert c.write_pj - addr_pj == pytest.approx(ARTIFACT["storage_write_pj"], rel=1e-9)
    assert c.area_um2 - addr_um2 == pytest.approx(ARTIFACT["storage_area_um2"], rel=1e-9)
    # Aladdin's adder for the address generators where the artifact used NeuroSim's
    assert c.read_pj == pytest.approx(ARTIFACT["read_pj"], rel=0.02)
    assert c.write_pj == pytest.approx(ARTIFACT["write_pj"], rel=0.025)
    assert c.area_um2 == pytest.approx(ARTIFACT["area_um2"], rel=0.01)


def test_energy_and_area_grow_with_depth_and_width() -> None:
    depths = [8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096]
    widths = [8, 16, 32, 64, 128, 256]
    for w in widths:
        row = [regfile.costs(depth=d, width_bits=w) for d in depths]
        for a, b in zip(row, row[1:], strict=False):
            assert b.read_pj > a.read_pj and b.write_pj > a.write_pj and b.area_um2 > a.area_um2
    for d in depths:
        col = [regfile.costs(depth=d, width_bits=w) for w in widths]
        for a, b in zip(col, col[1:], strict=False):
            assert b.read_pj > a.read_pj and b.area_um2 > a.area_um2
    # a 64-entry file of 32 bits is the compound's unscaled regfile: 32 register bits and 64
    # comparators a read, 2,048 bits and 64 comparators of area, plus two 6-bit adders
    c = regfile.costs(depth=64, width_bits=32)
    assert c.read_pj == pytest.approx(32 * 0.009 + 64 * 0.02947 + 6 * 0.21 / 32)
    assert c.area_um2 == pytest.approx(2048 * 5.98 + 64 * 71 + 2 * 6 * 278 / 32)


@pytest.mark.parametrize(
    ("depth", "width", "match"),
    [
        (0, 16, r"depth must be an integer in 1 \.\. 4096"),
        (8192, 16, "depth"),
        (32, 4096, "width_bits"),
        (32.5, 16, "depth"),
    ],
)
def test_outside_the_model_s_range(depth: object, width: object, match: str) -> None:
    with pytest.raises(ArchError, match=match):
        regfile.costs(depth=depth, width_bits=width)  # type: ignore[arg-type]


# the artifact's workspace/outputs/pregenerated-check/accelergy_area/ART_summary_verbose.yaml: the
# same 32 x 16-bit reg_file in the run that made its results, where the storage's area_share was
# not applied ("area_scale: 1")
ARTIFACT_UNSCALED_STORAGE_UM2 = 12247.04 + 4544.0


def test_the_artifact_s_unscaled_area() -> None:
    for depth in (4, 16, 32, 64):
        c = regfile.costs(depth=depth, width_bits=16, scaled_area=False)
        bits = max(1, (depth - 1).bit_length())
        addr_um2 = 2 * bits * regfile.ADDER_AREA_UM2_PER_BIT
        assert c.area_um2 - addr_um2 == pytest.approx(ARTIFACT_UNSCALED_STORAGE_UM2, rel=1e-9)
        # energy is scaled either way
        assert c.read_pj == regfile.costs(depth=depth, width_bits=16).read_pj
    # past the 64 x 32 regfile the file is priced whole both ways
    assert regfile.costs(depth=128, width_bits=16, scaled_area=False).area_um2 == pytest.approx(
        2 * regfile.costs(depth=128, width_bits=16).area_um2 - 2 * 7 * regfile.ADDER_AREA_UM2_PER_BIT,
        rel=1e-9,
    )


def test_architectures_take_register_files_by_depth() -> None:
    from mapper.arch import preset

    a = preset("fusemax", array_dim=16)
    deep = a.with_register_files({"2d": 64, "1d": 256})
    assert deep.array("2d").rf_words == 64 and deep.array("1d").rf_words == 256
    assert deep.array("2d").rf_area_um2 == regfile.costs(depth=64, width_bits=16).area_um2
    assert deep.array("1d").rf_read_pj == regfile.costs(depth=256, width_bits=16).read_pj
    assert deep.area_um2()["2d"] - a.area_um2()["2d"] == pytest.approx(
        256 * (deep.array("2d").rf_area_um2 - a.array("2d").rf_area_um2)
    )
    # at another node the model's 45 nm figures scale like every other component
    seven = preset("fusemax", array_dim=16, node_nm=7).with_register_files({"2d": 64})
    from mapper.technology import area_factor

    assert seven.array("2d").rf_area_um2 == pytest.approx(deep.array("2d").rf_area_um2 * area_factor(45, 7))
    with pytest.raises(
        ArchError, match=r"register files for an array '3d' it does not have .*\['2d', '1d'\]"
    ):
        a.with_register_files({"3d": 8})
    with pytest.raises(ArchError, match=r"depth must be an integer in 1 \.\. 4096"):
        a.with_register_files({"2d": 0})
