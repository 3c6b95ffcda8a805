"""The mapping search over a storage hierarchy (:mod:`mapper.hsearch`): against a brute force
over every mapping, the Timeloop exercises' reference mappings, constraints and the command line."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import yaml

from einforge.cli import main
from mapper import hsearch, timeloop
from mapper.analysis import DataSpace, LevelMapping, Problem, Storage, analyze
from mapper.errors import ArchError, ScheduleError

HERE = Path(__file__).parent / "timeloop"
GEMV = Problem(
    name="gemv",
    dims=(("M", 12), ("K", 4)),
    spaces=(
        DataSpace(name="A", projection=((("M", 1),), (("K", 1),))),
        DataSpace(name="B", projection=((("K", 1),),)),
        DataSpace(name="Z", projection=((("M", 1),),), output=True),
    ),
)


def _levels(reg_words: int) -> list[Storage]:
    return [
        Storage(name="DRAM", read_pj=200, fill_pj=200, update_pj=200),
        Storage(name="Buf", capacity=24, read_pj=6, fill_pj=6, update_pj=6),
        Storage(name="Reg", instances=4, capacity=reg_words, read_pj=1, fill_pj=1, update_pj=1),
    ]


def _divisor_splits(n: int, k: int) -> list[tuple[int, ...]]:
    if k == 1:
        return [(n,)]
    return [(d, *rest) for d in range(1, n + 1) if n % d == 0 for rest in _divisor_splits(n // d, k - 1)]


def _brute_force(levels: list[Storage]) -> float:
    """The least energy-delay product over every mapping: each dimension split over DRAM, Buf,
    Buf's spatial fanout and Reg in every way, every loop order at every level."""
    best = math.inf
    dims = [d for d, _n in GEMV.dims]
    for m_split, k_split in itertools.product(_divisor_splits(12, 4), _divisor_splits(4, 4)):
        f = {"M": m_split, "K": k_split}
        if m_split[2] * k_split[2] > 4:
            continue
        for orders in itertools.product(*[list(itertools.permutations(dims))] * 3):
            mp = [
                LevelMapping(
                    target=lv.name,
                    temporal=tuple((d, f[d][slot]) for d in orders[i] if f[d][slot] > 1),
                    spatial=tuple((d, f[d][2]) for d in dims if f[d][2] > 1) if i == 1 else (),
                )
                for i, (lv, slot) in enumerate(zip(levels, (0, 1, 3), strict=True))
            ]
            try:
                a = analyze(GEMV, levels, mp, compute_pj=2, compute_instances=4)
            except ScheduleError:
                continue
            best = min(best, a.energy_pj * a.cycles)
    return best


@pytest.mark.parametrize("reg_words", [3, 6, 24])
def test_an_exhaustive_search_finds_the_brute_force_optimum(reg_words: int) -> None:
    levels = _levels(reg_words)
    r = hsearch.search(GEMV, levels, compute_instances=4, compute_pj=2)
    assert r.exhaustive and r.seed is None
    assert r.evaluated + r.rejected == r.space
    # two dimensions: the candidate orders are every order, so nothing escapes the search
    assert r.analysis.energy_pj * r.analysis.cycles == pytest.approx(_brute_force(levels), rel=1e-12)
    # and the mapping it returns is the one it reports
    assert analyze(GEMV, levels, r.mappings, compute_pj=2, compute_instances=4) == r.analysis


def test_the_search_respects_capacity_and_fanout() -> None:
    r = hsearch.search(GEMV, _levels(3), compute_instances=4, compute_pj=2, metric="energy")
    reg_tile = analyze(GEMV, _levels(3), r.mappings, compute_pj=2, compute_instances=4)
    assert reg_tile == r.analysis
    spatial = math.prod(f for m in r.mappings for _d, f in m.spatial)
    assert spatial <= 4
    with pytest.raises(ScheduleError, match=r"no mapping of gemv fits: all [\d,]+ candidates"):
        hsearch.search(GEMV, [Storage(name="DRAM"), Storage(name="R", capacity=2)], compute_instances=1)


def test_a_mapping_over_a_level_s_capacity_is_refused() -> None:
    """Timeloop rejects a mapping whose tiles overflow a buffer; so does the analysis."""
    levels = _levels(3)
    mp = [
        LevelMapping(target="DRAM"),
        LevelMapping(target="Buf"),
        LevelMapping(target="Reg", temporal=(("M", 12), ("K", 4))),
    ]
    with pytest.raises(
        ScheduleError, match=r"the tiles Buf keeps \(A, B, Z\) take 64 words, but one instance holds 24"
    ):
        analyze(GEMV, levels, mp)


@pytest.mark.slow  # CI's slow step runs it (.ci/run)
@pytest.mark.parametrize(
    ("files", "ert"),
    [
        (("3level.arch.yaml", "conv1d+oc.prob.yaml", "3level.map.yaml"), "3level.ERT.yaml"),
        (
            ("3levelspatial.arch.yaml", "conv1d+oc+ic.prob.yaml", "3levelspatial-kp.map.yaml"),
            "3levelspatial.ERT.yaml",
        ),
    ],
)
def test_the_search_beats_the_exercises_mappings_and_round_trips(
    files: tuple[str, ...], ert: str, tmp_path: Path
) -> None:
    given = timeloop.load(*(HERE / f for f in files), ert=HERE / ert).analyze()
    design = timeloop.load(*(HERE / f for f in files[:2]), ert=HERE / ert)
    r = design.search(budget=5000)
    a = r.analysis
    assert a.energy_pj * a.cycles <= given.energy_pj * given.cycles
    assert a.utilization == given.utilization == 1.0
    # the same seed, the same answer
    assert design.search(budget=5000).mappings == r.mappings
    # the mapping written in Timeloop's format reads back to the same figures
    path = tmp_path / "found.map.yaml"
    path.write_text(
        yaml.safe_dump({"mapping": hsearch.to_timeloop(r.mappings, [d for d, _n in design.problem.dims])})
    )
    again = timeloop.load(*(HERE / f for f in files[:2]), path, ert=HERE / ert).analyze()
    assert again == a


def test_constraints_fix_keeps_factors_and_orders(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "mapspace_constraints:\n"
        "  - {target: RegisterFile, type: bypass, keep: [Weights], bypass: [Inputs, Outputs]}\n"
        "  - {target: GlobalBuffer, type: spatial, factors: K16 C1 R0 P0}\n"
        "  - {target: GlobalBuffer, type: temporal, factors: R3, permutation: PCKR}\n"
    )
    files = [HERE / "3levelspatial.arch.yaml", HERE / "conv1d+oc+ic.prob.yaml", path]
    design = timeloop.load(*files, ert=HERE / "3levelspatial.ERT.yaml")
    r = design.search(budget=3000)
    reg, buf = r.mappings[2], r.mappings[1]
    assert reg.keep == frozenset({"Weights"}) and set(r.analysis.levels["RegisterFile"]) == {"Weights"}
    assert dict(buf.spatial) == {"K": 16}
    assert dict(buf.temporal)["R"] == 3
    # Timeloop's permutation is innermost first: PCKR puts R outermost
    order = [d for d, _f in buf.temporal]
    assert order == sorted(order, key="RKCP".index)


def test_an_outer_order_puts_its_loops_outermost() -> None:
    """``Constraint.outer`` (a fused group's shared loops above an Einsum's own): the loops it
    names go outermost at the level, in its order; every mapping the search returns has them so,
    whatever the other loops there; a name that is no dimension is a typed error."""
    levels = _levels(3)
    for first, then in ((("M", 3), ("K", 2)), (("K", 2), ("M", 3))):
        cons = [hsearch.Constraint(target="DRAM", factors={"M": 3, "K": 2}, outer=(first[0],))]
        for seed in range(3):
            r = hsearch.search(GEMV, levels, compute_instances=4, constraints=cons, budget=20, seed=seed)
            assert r.mappings[0].temporal == (first, then)
    with pytest.raises(ScheduleError, match=r"constraint on DRAM: outer names 'Q', which is no dimension"):
        hsearch.search(
            GEMV, levels, compute_instances=4, constraints=[hsearch.Constraint(target="DRAM", outer=("Q",))]
        )


def test_bad_constraints_are_typed_errors(tmp_path: Path) -> None:
    files = [HERE / "3levelspatial.arch.yaml", HERE / "conv1d+oc+ic.prob.yaml"]
    path = tmp_path / "c.yaml"
    path.write_text("mapspace_constraints:\n  - {target: RegistrFile, type: bypass, keep: [Weights]}\n")
    with pytest.raises(
        timeloop.TimeloopError, match=r"'RegistrFile' is no storage level; did you mean 'RegisterFile'"
    ):
        timeloop.load(*files, path)
    path.write_text("mapspace_constraints:\n  - {target: GlobalBuffer, type: temporal, factors: K5}\n")
    design = timeloop.load(*files, path)
    with pytest.raises(
        ScheduleError, match=r"the fixed factors of K multiply to 5, which does not divide K = 32"
    ):
        design.search()
    with pytest.raises(ScheduleError, match=r"metric must be one of edp, energy, cycles, found 'speed'"):
        design.search(metric="speed")
    with pytest.raises(ArchError, match=r"not a multiple of"):
        hsearch.search(GEMV, [Storage(name="D"), Storage(name="R", instances=3)], compute_instances=4)


def test_the_command_line_searches_without_a_mapping(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = [str(HERE / f) for f in ("3level.arch.yaml", "conv1d+oc.prob.yaml")]
    ert = str(HERE / "3level.ERT.yaml")
    out = tmp_path / "m.yaml"
    assert (
        main(["timeloop", *files, "--ert", ert, "--budget", "2000", "--json", "--write-mapping", str(out)])
        == 0
    )
    found = json.loads(capsys.readouterr().out)
    assert (
        found["search"]["valid"] + found["search"]["rejected"] == 2000 + 100
    )  # and the fanout-filling draws
    assert main(["timeloop", *files, str(out), "--ert", ert, "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["energy_pj"] == found["energy_pj"] and again["levels"] == found["levels"]
    assert main(["timeloop", *files, str(out), "--write-mapping", str(tmp_path / "x.yaml")]) == 2
    assert "writes a searched mapping" in capsys.readouterr().err
    assert main(["timeloop", *files, "--budget", "300"]) == 0
    text = capsys.readouterr().out
    assert (
        "searched 315 of" in text and "energy not priced: cycles, then accesses" in text
    )  # 300 + 15 filling
