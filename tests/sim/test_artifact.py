"""einforge's model against the FuseMax artifact, point by point, for all five configurations.

The oracle is the artifact's own results (``tests/data/fusemax_artifact``): 4 models x 6 lengths per
configuration. Each check names the configuration, the quantity, and the tolerance the model meets;
the two known gaps (FLAT's and +Cascade's energy, +Cascade's latency) are strict xfails with the
reason, so that closing one of them shows up as a failure to be turned into a check.
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

import pytest

import mapper
import sim

DATA = Path(__file__).resolve().parents[1] / "data" / "fusemax_artifact"
FILES = {
    "FuseMax": "attn-proposal.csv",
    "+Architecture": "attn-stall_proposal.csv",
    "+Cascade": "attn-cascade.csv",
    "FLAT": "attn-flat.csv",
    "Unfused": "attn-unfused.csv",
}
POINTS = [(m, s) for m in sim.MODELS for s in sim.SEQ_LENGTHS]


def _artifact() -> dict[tuple[str, str, int], dict[str, float]]:
    out = {}
    for config, name in FILES.items():
        with (DATA / name).open(newline="") as f:
            for row in csv.DictReader(f):
                key = (config, row["model"], sim.parse_seq(row["seq_len"]))
                out[key] = {k: float(v) for k, v in row.items() if k not in ("model", "seq_len")}
    return out


@pytest.fixture(scope="module")
def both() -> tuple[dict, dict]:
    ours = {(r["config"], r["model"], r["seq"]): r["report"] for r in sim.compare()}
    return ours, _artifact()


def _ratios(both: tuple[dict, dict], config: str, field: str) -> dict[tuple[str, int], float]:
    ours, art = both
    attr = {"latency": "latency_s", "energy": "energy_pj", "traffic": "traffic_bytes"}[field]
    return {p: getattr(ours[(config, *p)], attr) / art[(config, *p)][field] for p in POINTS}


def _within(ratios: dict[tuple[str, int], float], rel: float) -> None:
    bad = {p: round(r, 4) for p, r in ratios.items() if abs(r - 1) > rel}
    assert not bad, f"ours / artifact outside 1 +- {rel}: {bad}"


def test_the_artifact_data_are_complete() -> None:
    art = _artifact()
    assert len(art) == 5 * 24
    assert art[("FuseMax", "BERT", 1024)]["latency"] == pytest.approx(2.013e-3, rel=1e-3)


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
    published = statistics.mean(art[("FLAT", *p)]["latency"] / art[("FuseMax", *p)]["latency"] for p in POINTS)
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


@pytest.mark.parametrize(("arch", "name"), [("fusemax", "end2end-proposal.csv"), ("flat", "end2end-flat.csv")])
def test_end_to_end_gemms_per_point(arch: str, name: str) -> None:
    # the artifact's end-to-end files hold the projection and FFN GEMMs of one layer
    a = mapper.preset(arch)
    with (DATA / name).open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 24
    for row in rows:
        w = sim.workload(row["model"], row["seq_len"])
        gemms = [sim.gemm_report(m, k, n, a, g) for g, (m, k, n) in w.gemms().items()]
        where = (arch, row["model"], row["seq_len"])
        assert sum(g["latency_s"] for g in gemms) == pytest.approx(float(row["latency"]), rel=1e-3), where
        if row["model"] != "XLM":  # the artifact's Timeloop mapper tiles XLM's GEMMs differently
            assert sum(g["traffic_bytes"] for g in gemms) == pytest.approx(float(row["traffic"]), rel=1e-6), where
