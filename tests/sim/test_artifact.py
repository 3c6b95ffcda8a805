"""einforge's model against the FuseMax artifact, point by point, for all five configurations.

The oracle is the artifact's own results (``sim.artifact_results()``): 4 models x 6 lengths per
configuration. Each check names the configuration, the quantity, and the tolerance the model meets;
the two known gaps (FLAT's and +Cascade's energy, +Cascade's latency) are strict xfails with the
reason, so that closing one of them shows up as a failure to be turned into a check.
"""

from __future__ import annotations

import statistics

import pytest

import mapper
import sim

POINTS = [(m, s) for m in sim.MODELS for s in sim.SEQ_LENGTHS]
FIELD = {"latency": "latency_s", "energy": "energy_pj", "traffic": "traffic_bytes"}


@pytest.fixture(scope="module")
def both(sweep: dict) -> tuple[dict, dict]:
    return sweep, sim.artifact_results()


def _ratios(both: tuple[dict, dict], config: str, field: str) -> dict[tuple[str, int], float]:
    ours, art = both
    return {p: getattr(ours[(config, *p)], FIELD[field]) / art[(config, *p)][FIELD[field]] for p in POINTS}


def _within(ratios: dict[tuple[str, int], float], rel: float) -> None:
    bad = {p: round(r, 4) for p, r in ratios.items() if abs(r - 1) > rel}
    assert not bad, f"ours / artifact outside 1 +- {rel}: {bad}"


def test_the_artifact_data_are_complete() -> None:
    art = sim.artifact_results()
    assert len(art) == 7 * 24
    assert {c for c, _, _ in art} == set(sim.ARTIFACT_FILES)
    assert art[("FLAT", "BERT", 1024)]["latency_s"] == pytest.approx(13.39e-3, rel=1e-3)


@pytest.mark.parametrize(
    ("config", "field", "rel"),
    [
        ("FuseMax", "latency", 0.001),
        ("FuseMax", "energy", 0.015),
        ("FuseMax", "traffic", 1e-9),
        ("+Architecture", "latency", 0.005),
        ("+Architecture", "energy", 0.015),
        ("+Architecture", "traffic", 1e-9),
        ("FLAT", "latency", 0.001),
        ("Unfused", "latency", 0.002),
        ("Unfused", "traffic", 0.015),
    ],
)
def test_per_point(both: tuple[dict, dict], config: str, field: str, rel: float) -> None:
    _within(_ratios(both, config, field), rel)


def test_flat_spills_as_the_artifact_does(both: tuple[dict, dict]) -> None:
    # at 256K and 1M FLAT streams its score rows through DRAM and re-reads K and V once per
    # 1024-row block: the artifact's traffic to the byte, up to the float rounding of its CSV
    ratios = _ratios(both, "FLAT", "traffic")
    _within({p: r for p, r in ratios.items() if p[1] >= 1 << 18}, 1e-6)


def test_utilisation_per_point(both: tuple[dict, dict]) -> None:
    ours, art = both
    for config in ("FuseMax", "+Architecture", "FLAT", "Unfused"):
        for p in POINTS:
            o, a = ours[(config, *p)].utilization, art[(config, *p)]
            assert o["1d"] == pytest.approx(a["util_1d"], abs=0.005), (config, p)
            assert o["2d"] == pytest.approx(a["util_2d"], abs=0.01), (config, p)


def test_headline_means(both: tuple[dict, dict]) -> None:
    ours, art = both
    speedup = statistics.mean(ours[("FLAT", *p)].latency_s / ours[("FuseMax", *p)].latency_s for p in POINTS)
    published = statistics.mean(
        art[("FLAT", *p)]["latency_s"] / art[("FuseMax", *p)]["latency_s"] for p in POINTS
    )
    assert published == pytest.approx(6.72, abs=0.005)
    assert speedup == pytest.approx(published, rel=0.005)


@pytest.mark.xfail(
    strict=True,
    reason="known gap: the artifact's FLAT-PE energies hold 300-650 pJ per score element beyond the "
    "published per-action energies (docs/spatial_model.md)",
)
@pytest.mark.parametrize("config", ["FLAT", "+Cascade", "Unfused"])
def test_flat_pe_energy(both: tuple[dict, dict], config: str) -> None:
    _within(_ratios(both, config, "energy"), 0.03)


@pytest.mark.xfail(
    strict=True,
    reason="known gap: the artifact charges exp on FLAT's 1D PE two cycles in +Cascade and one in "
    "FLAT (docs/spatial_model.md)",
)
def test_cascade_latency(both: tuple[dict, dict]) -> None:
    _within(_ratios(both, "+Cascade", "latency"), 0.02)


@pytest.mark.parametrize("arch", ["FuseMax", "FLAT"])
def test_end_to_end_gemms_per_point(arch: str) -> None:
    # the artifact's end-to-end files hold the projection and FFN GEMMs of one layer
    a = mapper.preset(arch.lower())
    art = sim.artifact_results()
    for m, n in POINTS:
        w = sim.workload(m, n)
        gemms = [sim.gemm_report(x, k, y, a, g) for g, (x, k, y) in w.gemms().items()]
        ref = art[(f"end-to-end {arch}", m, n)]
        assert sum(g["latency_s"] for g in gemms) == pytest.approx(ref["latency_s"], rel=1e-3), (arch, m, n)
        if m != "XLM":  # the artifact's Timeloop mapper tiles XLM's GEMMs differently
            assert sum(g["traffic_bytes"] for g in gemms) == pytest.approx(ref["traffic_bytes"], rel=1e-6)
