"""einforge's model against the FuseMax artifact, point by point, for all five configurations.

The oracle is the artifact's own results (``sim.artifact_results()``): 4 models x 6 lengths per
configuration, compared in the artifact's own accounting (``accounting="fusemax-artifact"``: its
bookkeeping quirks reproduced behind documented switches, ``sim.accounting``). Each check names the
configuration, the quantity, and the tolerance the model meets. Latency and traffic do not depend
on the accounting except +Cascade's latency (the artifact sums its operations' cycles).
"""

from __future__ import annotations

import statistics

import pytest

import einsum
import mapper
import sim

POINTS = [(m, s) for m in sim.MODELS for s in sim.SEQ_LENGTHS]
FIELD = {"latency": "latency_s", "energy": "energy_pj", "traffic": "traffic_bytes"}


@pytest.fixture(scope="module")
def both(artifact_sweep: dict) -> tuple[dict, dict]:
    return artifact_sweep, sim.artifact_results()


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
        ("FuseMax", "energy", 0.03),
        ("FuseMax", "traffic", 1e-9),
        ("+Architecture", "latency", 0.005),
        ("+Architecture", "energy", 0.03),
        ("+Architecture", "traffic", 1e-9),
        ("+Cascade", "latency", 0.02),
        ("+Cascade", "energy", 0.05),
        ("FLAT", "latency", 0.001),
        ("Unfused", "latency", 0.002),
        ("Unfused", "energy", 0.03),
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


def _mean_ratio(both: tuple[dict, dict], num: str, den: str, field: str) -> tuple[float, float]:
    """Mean over the points of ``num`` / ``den`` in ``field``: (ours, the artifact's)."""
    ours, art = both
    attr = FIELD[field]
    return (
        statistics.mean(getattr(ours[(num, *p)], attr) / getattr(ours[(den, *p)], attr) for p in POINTS),
        statistics.mean(art[(num, *p)][attr] / art[(den, *p)][attr] for p in POINTS),
    )


def test_headline_means(both: tuple[dict, dict]) -> None:
    speedup, published = _mean_ratio(both, "FLAT", "FuseMax", "latency")
    assert published == pytest.approx(6.72, abs=0.005)
    assert speedup == pytest.approx(published, rel=0.005)


def test_flat_energy(both: tuple[dict, dict]) -> None:
    # the tightest points are BERT and T5 at 256K (2.9% above): there the artifact's Timeloop mapping
    # sends the spilled scores between the 2D array and DRAM past the buffer (flat.py's __bypass_l3),
    # while this model stages them through it (docs/spatial_model.md)
    _within(_ratios(both, "FLAT", "energy"), 0.03)


def test_energy_headline(both: tuple[dict, dict]) -> None:
    ratio, published = _mean_ratio(both, "FuseMax", "FLAT", "energy")
    assert published == pytest.approx(0.787, abs=0.0005)
    assert ratio == pytest.approx(published, rel=0.02)


def test_end_to_end_energy_headline() -> None:
    art = sim.artifact_results()
    configs = {c.name: c for c in sim.CONFIGS}

    def e2e(config: str, p: tuple[str, int]) -> float:
        return sim.run_config(
            configs[config], sim.workload(*p), end_to_end=True, accounting="fusemax-artifact"
        ).energy_pj

    def e2e_art(config: str, p: tuple[str, int]) -> float:
        return art[(config, *p)]["energy_pj"] + art[(f"end-to-end {config}", *p)]["energy_pj"]

    ratio = statistics.mean(e2e("FuseMax", p) / e2e("FLAT", p) for p in POINTS)
    published = statistics.mean(e2e_art("FuseMax", p) / e2e_art("FLAT", p) for p in POINTS)
    assert published == pytest.approx(0.833, abs=0.0005)
    assert ratio == pytest.approx(published, rel=0.02)


def test_flat_granularity_is_chosen_as_the_artifact_did(both: tuple[dict, dict]) -> None:
    # flat_validation.csv: a head up to 4K, then the largest block whose score rows fit (1024 rows at
    # 16K, 256 at 64K), and 1024-row blocks once the scores stream through DRAM. At 4K the search,
    # which ranks by the engine's latency (fill and drain included), takes 1024-row blocks: 699
    # cycles (3.5 ppm) faster than the head that FLAT's rule takes, a near-tie the artifact's
    # latency (within 0.1 %) cannot tell apart
    ours, _ = both
    expected = {1 << 10: 1 << 10, 1 << 12: 1024, 1 << 14: 1024, 1 << 16: 256, 1 << 18: 1024, 1 << 20: 1024}
    for m, n in POINTS:
        assert ours[("FLAT", m, n)].score_rows == expected[n], (m, n)
    c, w = einsum.library.get("attention_3pass"), sim.workload("BERT", "4K")
    head = sim.evaluate(
        c,
        mapper.search(
            c, mapper.flat(), mapper.SearchOptions(sizes=w.sizes, score_rows=4096, instances=w.instances)
        ),
        mapper.flat(),
        w,
        accounting="fusemax-artifact",
    )
    chosen = ours[("FLAT", "BERT", 1 << 12)]
    assert chosen.latency_cycles < head.latency_cycles < chosen.latency_cycles * (1 + 1e-5)


def test_physical_and_artifact_accounting_differ_only_where_documented(
    sweep: dict, both: tuple[dict, dict]
) -> None:
    ours, _ = both
    for key, phys in sweep.items():
        art = ours[key]
        assert phys.traffic_bytes == art.traffic_bytes
        if key[0] != "+Cascade":
            assert phys.latency_s == pytest.approx(art.latency_s, rel=1e-12)
        # physical charges every register file and (+Cascade) the exp unit: never less energy
        assert phys.energy_pj >= art.energy_pj
        assert phys.accounting == "physical" and art.accounting == "fusemax-artifact"


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
