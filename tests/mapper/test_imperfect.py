"""Imperfect factors (a dimension's factors multiplying to more than its size, the last trips
short): the analysis against a brute force over every point of the loop nest, hand-computed
counts, the errors, and the search that tries them (:mod:`mapper.analysis`, :mod:`mapper.hsearch`)."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest

from einforge.cli import main
from mapper import hsearch
from mapper.analysis import (
    DataSpace,
    LevelMapping,
    Problem,
    Storage,
    _general,
    _perfect,
    analyze,
    loops_of,
)
from mapper.errors import ScheduleError

# ---- the brute force -------------------------------------------------------------------------
# Every point of the nest, per level, instance and step (the indices of the temporal loops above
# the level) each tensor's tile as a set of words; an instance fetches its tile at its first
# step, and then where a plain rank of the tensor moved (the loop that advanced, or one inside it
# that took more than one trip there, is over its dimension), or a window rank moved (forward
# with every inner loop at one trip: the words the last tile lacked).


def _iterate(problem, mappings):
    loops = loops_of(mappings)
    tiles = [math.prod(x.factor for x in loops[j + 1 :] if x.dim == lp.dim) for j, lp in enumerate(loops)]

    def rec(j, rem, base, idx, trips):
        if j == len(loops):
            yield tuple(idx), tuple(trips), dict(base)
            return
        lp = loops[j]
        T = tiles[j]
        R = rem[lp.dim]
        n = -(-R // T)
        for t in range(n):
            r2 = dict(rem)
            r2[lp.dim] = min(T, R - t * T)
            b2 = dict(base)
            b2[lp.dim] = base[lp.dim] + t * T
            yield from rec(j + 1, r2, b2, idx + [t], trips + [n])

    yield from rec(0, dict(problem.size), {d: 0 for d in problem.size}, [], [])


def _oracle(problem, mappings):
    loops = loops_of(mappings)
    n = len(mappings)
    keeps = [[s.name for s in problem.spaces if m.keep is None or s.name in m.keep] for m in mappings]
    spaces = {s.name: s for s in problem.spaces}
    pts = list(_iterate(problem, mappings))

    def word(space, pt):
        return tuple(sum(c * pt[d] for d, c in rank) for rank in space.projection)

    sp = [k for k, lp in enumerate(loops) if lp.spatial]

    def fetches(t, i, collapse=()):
        """per (instance, step) the words fetched; instances with spatial loops in `collapse` at index 0 only"""
        s = spaces[t]
        inst_k = [k for k in sp if loops[k].level < i]
        time_k = [k for k, lp in enumerate(loops) if lp.level < i and not lp.spatial]
        groups = {}
        for idx, trips, pt in pts:
            if any(idx[k] != 0 for k in collapse):
                continue
            key = (tuple(idx[k] for k in inst_k), tuple(idx[k] for k in time_k))
            g = groups.setdefault(key, [set(), {k: trips[k] for k in time_k}])
            g[0].add(word(s, pt))
        steps = sorted({key[1] for key in groups})
        out = {}
        insts = sorted({key[0] for key in groups})
        for inst in insts:
            seen = False
            for si, step in enumerate(steps):
                if (inst, step) not in groups:
                    continue
                words, trips = groups[(inst, step)]
                if not seen:
                    out[(inst, step)] = words
                    seen = True
                    continue
                prev = steps[si - 1]
                k = next(time_k[j] for j in range(len(time_k)) if step[j] != prev[j])
                inner = [kk for kk in time_k if kk > k]
                single = {r[0][0] for r in s.projection if len(r) == 1}
                if loops[k].dim in single or any(loops[kk].dim in single and trips[kk] > 1 for kk in inner):
                    out[(inst, step)] = words
                    continue
                # only window ranks may have moved: their dims are perfect (nominal shifts)
                win = [r for r in s.projection if len(r) > 1]
                tiles_ = {
                    kk: math.prod(x.factor for x in loops[kk + 1 :] if x.dim == loops[kk].dim)
                    for kk in time_k
                }
                shift = {loops[k].dim: tiles_[k]}
                for kk in inner:
                    d = loops[kk].dim
                    if d not in single:
                        shift[d] = shift.get(d, 0) - (loops[kk].factor - 1) * tiles_[kk]
                moved = [sum(c * shift.get(d, 0) for d, c in r) for r in win]
                if not any(moved):
                    out[(inst, step)] = set()
                elif (
                    all(m >= 0 for m in moved)
                    and all(trips[kk] == 1 for kk in inner)
                    and (inst, prev) in groups
                ):
                    out[(inst, step)] = words - groups[(inst, prev)][0]
                else:
                    out[(inst, step)] = words
        return out, inst_k, groups

    res = {}
    for i in range(n):
        for t in keeps[i]:
            s = spaces[t]
            has_parent = any(t in keeps[j] for j in range(i))
            f, _ik, groups = fetches(t, i)
            fills = sum(len(w) for w in f.values()) if has_parent else 0
            held = {}
            for (inst, _step), (words, _tr) in groups.items():
                held.setdefault(inst, set()).update(words)
            fresh = sum(len(v) for v in held.values())
            child = next((k for k in range(i + 1, n) if t in keeps[k]), None)
            hi = n if child is None else child
            collapse = [k for k in sp if i <= loops[k].level < hi and loops[k].dim not in s.dims]
            if child is None:
                flow = sum(1 for idx, _t, _p in pts if all(idx[k] == 0 for k in collapse))
            else:
                cf, _ck, _g = fetches(t, child, collapse)
                flow = sum(len(w) for w in cf.values())
            if s.output:
                res[(i, t)] = (flow - fresh, fills - fresh if fills else 0, flow)
            else:
                res[(i, t)] = (flow, fills, 0)
    pe = {}
    for idx, _t, _p in pts:
        key = tuple(idx[k] for k in sp)
        pe[key] = pe.get(key, 0) + 1
    used = [len({tuple(idx[k] for k in sp if loops[k].level < i) for idx, _t, _p in pts}) for i in range(n)]
    return res, len(pts), max(pe.values()), used


GEMM = Problem(
    name="mm",
    dims=(("M", 1), ("K", 1), ("N", 1)),
    spaces=(
        DataSpace(name="A", projection=((("M", 1),), (("K", 1),))),
        DataSpace(name="B", projection=((("K", 1),), (("N", 1),))),
        DataSpace(name="Z", projection=((("M", 1),), (("N", 1),)), output=True),
    ),
)
CONV1D = Problem(  # O[k, p] = I[c, p + r] * W[k, c, r]
    name="conv",
    dims=(("K", 1), ("C", 1), ("P", 1), ("R", 1)),
    spaces=(
        DataSpace(name="A", projection=((("C", 1),), (("P", 1), ("R", 1)))),
        DataSpace(name="B", projection=((("K", 1),), (("C", 1),), (("R", 1),))),
        DataSpace(name="Z", projection=((("K", 1),), (("P", 1),)), output=True),
    ),
)
LEVELS = [Storage(name="DRAM"), Storage(name="Buf", instances=64), Storage(name="Reg", instances=4096)]
GEMV_7x5 = Problem(
    name="gemv",
    dims=(("M", 7), ("K", 5)),
    spaces=(
        DataSpace(name="A", projection=((("M", 1),), (("K", 1),))),
        DataSpace(name="B", projection=((("K", 1),),)),
        DataSpace(name="Z", projection=((("M", 1),),), output=True),
    ),
)


def _random_case(rng: random.Random, perfect: bool) -> tuple[Problem, list[LevelMapping]]:
    conv = rng.random() < 0.4
    base = CONV1D if conv else GEMM
    hi = {"M": 9, "K": 7, "N": 6, "C": 5, "P": 6, "R": 3}
    p = Problem(
        name=base.name, dims=tuple((d, rng.randint(1, hi[d])) for d, _n in base.dims), spaces=base.spaces
    )
    slots = [(0, False), (1, False), (1, True), (2, False)]
    fac = {}
    for d, n in p.dims:
        if perfect or d in ("P", "R"):  # a window's dimensions keep exact factors
            fs, m = [1] * 4, n
            for q in range(2, n + 1):
                while m % q == 0:
                    fs[rng.randrange(4)] *= q
                    m //= q
        else:
            fs = [1] + [rng.randint(1, 3) for _ in range(3)]
            for j in (3, 2, 1):  # no loop whose last trip would start past n
                fs[j] = min(fs[j], -(-n // math.prod(fs[j + 1 :])))
            fs[0] = -(-n // math.prod(fs[1:]))
        fac[d] = fs
    ms = []
    for li, lv in enumerate(LEVELS):
        temporal, spatial = [], []
        for si, (lvl, sp) in enumerate(slots):
            if lvl != li:
                continue
            dims = [d for d, _n in p.dims]
            rng.shuffle(dims)
            for d in dims:
                if fac[d][si] > 1 or rng.random() < 0.2:
                    (spatial if sp else temporal).append((d, fac[d][si]))
        keep = frozenset(rng.sample(["A", "B", "Z"], 2)) if li == 1 and rng.random() < 0.3 else None
        ms.append(LevelMapping(target=lv.name, temporal=tuple(temporal), spatial=tuple(spatial), keep=keep))
    return p, ms


@pytest.mark.parametrize("seed", range(4))
def test_the_analysis_counts_what_the_brute_force_counts(seed: int) -> None:
    """Random GEMMs and 1D convolutions (a window: its dimensions exact) over three levels with a
    fanout, half of them with imperfect factors: every level's reads, fills and updates per
    tensor, the computes, the compute cycles (the busiest instance) and the instances in use are
    the brute force's; on exact factors the general path equals the closed forms."""
    rng = random.Random(seed)
    checked = imperfect = 0
    for trial in range(300):
        p, ms = _random_case(rng, perfect=trial % 2 == 0)
        try:
            a = analyze(p, LEVELS, ms)
        except ScheduleError as exc:
            assert "start trips past" in str(exc)  # the generator's loops that would run empty
            continue
        want, computes, cycles, used = _oracle(p, ms)
        got = {
            (i, t): (s.reads, s.fills, s.updates)
            for i, lv in enumerate(LEVELS)
            for t, s in a.levels[lv.name].items()
        }
        assert got == want, (p.dims, ms)
        assert (a.computes, a.compute_cycles) == (computes, cycles), (p.dims, ms)
        assert [a.instances[lv.name] for lv in LEVELS] == used
        checked += 1
        loops = loops_of(ms)
        if all(math.prod(lp.factor for lp in loops if lp.dim == d) == n for d, n in p.dims):
            keeps = [[s.name for s in p.spaces if m.keep is None or s.name in m.keep] for m in ms]
            inst = [math.prod(lp.factor for lp in loops if lp.spatial and lp.level < i) for i in range(3)]
            assert _general(p, 3, loops, keeps, False, False)[0] == _perfect(p, 3, loops, keeps, inst, False)
        else:
            imperfect += 1
    assert checked > 150 and imperfect > 50


def test_a_gemv_of_7_rows_on_4_pes_by_hand() -> None:
    """M = 7 rows over 4 PEs, 2 rows each (the last PE 1), K = 5 in time at DRAM: 10 cycles, not
    the 35 or 14 of exact factors; 35 / (10 x 4) = 0.875 of the PEs."""
    p = GEMV_7x5
    levels = [Storage(name="DRAM"), Storage(name="Reg", instances=4, capacity=8)]
    ms = [
        LevelMapping(target="DRAM", temporal=(("K", 5),), spatial=(("M", 4),)),
        LevelMapping(target="Reg", temporal=(("M", 2),)),
    ]
    a = analyze(p, levels, ms, compute_instances=4)
    assert (a.computes, a.cycles, a.utilization, a.instances["Reg"]) == (35, 10.0, 0.875, 4)
    reg, dram = a.levels["Reg"], a.levels["DRAM"]
    # every K step each PE fetches its rows of A (7 words in all) and the one B[k] (4 PEs)
    assert (reg["A"].fills, reg["B"].fills) == (35, 20)
    # B is multicast over the PEs (M does not index it): one DRAM read per K step
    assert (dram["A"].reads, dram["B"].reads) == (35, 5)
    # Z: each PE keeps its rows over K; one update per row at DRAM
    assert (reg["Z"].fills, reg["Z"].updates, dram["Z"].updates) == (0, 35, 7)


def test_a_spatial_loop_inside_a_window_s_loop_sets_its_stride() -> None:
    """A temporal loop over P with a spatial loop over P inside it steps each instance's window
    by the spatial factor, not by one (the closed form took the stride from the temporal loops
    alone: 27 buffer reads of the input, where the brute force counts 36)."""
    p = Problem(name="conv", dims=(("K", 3), ("C", 1), ("P", 6), ("R", 2)), spaces=CONV1D.spaces)
    ms = [
        LevelMapping(target="DRAM", temporal=(("K", 3),)),
        LevelMapping(target="Buf", temporal=(("R", 1), ("P", 2), ("K", 1)), spatial=(("P", 3),)),
        LevelMapping(target="Reg", temporal=(("R", 2),)),
    ]
    a = analyze(p, LEVELS, ms)
    assert a.levels["Buf"]["A"].reads == 36 == _oracle(p, ms)[0][(1, "A")][0]


def test_imperfect_factors_that_do_not_fit_are_typed_errors() -> None:
    p = Problem(name="conv", dims=(("K", 5), ("C", 3), ("P", 6), ("R", 3)), spaces=CONV1D.spaces)
    exact = [LevelMapping(target="Buf", temporal=(("P", 6), ("R", 3), ("C", 3)))]
    levels = [Storage(name="Buf")]
    # K = 5 as 3 trips of 2 (the last of 1) is imperfect and fine; 4 trips of 2 would start one at 6
    analyze(p, levels, [LevelMapping(target="Buf", temporal=(("K", 3), ("K", 2), *exact[0].temporal))])
    with pytest.raises(ScheduleError, match=r"loop of factor 4 over tiles of 2 would start trips past 5"):
        analyze(p, levels, [LevelMapping(target="Buf", temporal=(("K", 4), ("K", 2), *exact[0].temporal))])
    with pytest.raises(ScheduleError, match=r"must cover it"):
        analyze(p, levels, [LevelMapping(target="Buf", temporal=(("K", 2), ("K", 2), *exact[0].temporal))])
    with pytest.raises(
        ScheduleError, match=r"P has imperfect factors, but A's rank P \+ R is a window over it"
    ):
        analyze(
            p,
            levels,
            [LevelMapping(target="Buf", temporal=(("K", 5), ("C", 3), ("P", 2), ("P", 4), ("R", 3)))],
        )
    priced = [Storage(name="DRAM"), Storage(name="Buf", instances=4, hop_pj=1.0)]
    with pytest.raises(ScheduleError, match=r"Buf's network is analysed, but a spatial loop"):
        analyze(
            p,
            priced,
            [
                LevelMapping(target="DRAM", temporal=(("C", 3), ("P", 6), ("R", 3))),
                LevelMapping(target="Buf", spatial=(("K", 3),), temporal=(("K", 2),)),
            ],
        )


def test_the_search_tries_imperfect_factors() -> None:
    """On a 7 x 5 GEMV and 4 PEs, exact factors leave 3 PEs idle (35 cycles, 7 and 5 prime); with
    ``imperfect`` the exhaustive search finds 10 cycles, and what it reports is its mapping's."""
    p = GEMV_7x5
    levels = [
        Storage(name="DRAM", read_pj=100, fill_pj=100, update_pj=100),
        Storage(name="Reg", instances=4, capacity=8, read_pj=1, fill_pj=1, update_pj=1),
    ]
    exact = hsearch.search(p, levels, compute_instances=4, compute_pj=1)
    imp = hsearch.search(p, levels, compute_instances=4, compute_pj=1, imperfect=True)
    assert exact.exhaustive and imp.exhaustive and imp.space > exact.space
    assert (exact.analysis.cycles, imp.analysis.cycles) == (35.0, 10.0)
    assert imp.analysis.energy_pj < exact.analysis.energy_pj
    assert analyze(p, levels, imp.mappings, compute_pj=1, compute_instances=4) == imp.analysis


def test_einforge_map_imperfect(capsys: Any) -> None:
    """Prime sizes leave exact factors one loop per dimension: the Eyeriss-like array runs the
    97 x 31 x 53 product on one PE; padded up, the search spreads it over most of them."""
    args = ["map", "--arch", "examples/eyeriss_like.yaml", "--cascade", "matmul", "--sizes", "M=97,K=31,N=53"]
    assert main([*args, "--budget", "800", "--json"]) == 0
    exact = json.loads(capsys.readouterr().out)
    assert main([*args, "--budget", "800", "--json", "--imperfect"]) == 0
    imp = json.loads(capsys.readouterr().out)
    assert imp["computes"] == exact["computes"] == exact["cycles"] == 97 * 31 * 53
    assert imp["cycles"] < exact["cycles"] / 50 and imp["utilization"] > 0.5
