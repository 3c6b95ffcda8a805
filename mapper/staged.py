"""A chain of Einsums run in **stages**, one after another: the layer-by-layer schedules of a
hierarchy, beside the fused groups of :mod:`mapper.fusion`.

Each stage is one Einsum, or the few Einsums a recurrence ties together (``SPD`` reads ``RD``'s
previous step and ``RD`` reads ``SPD``: neither can run whole before the other), which run as a
fused group stepping the recurrence's rank one tile at a time. Stage by stage, the tensors that
cross from one stage to a later one live whole at one **between level** (the buffer): written
there once, read there by each later stage, never at the levels outside it. Or, where nothing
fits, they go through the outermost level (DRAM): written there once and read back by each
later stage.

- A stage of one Einsum is mapped by the hierarchy search, the crossing tensors it reads or
  writes kept first at the between level (``produced``: nothing fills them from above, their
  updates go no further); on a tree, on every branch that can run it, the best by the metric.
- A stage of several is a fused group (:func:`mapper.fusion.search`) at the between level with
  the crossing tensors resident there.
- The stages run one after another: the schedule's cycles and energy are the sums. A stage of
  one Einsum is timed as a loop nest, as Timeloop times a mapping and the template its
  layer-by-layer nests: the busiest of its compute and its levels' bandwidths, each level double
  buffered. A fused group is timed by the tile engine, as the template times its kernels;
  :func:`engine_cycles` times one Einsum as a kernel of its own (the Unfused baseline's AV). The
  between
  level must hold, during each stage, every crossing tensor alive then (made before it and read
  by it or after it) beside the stage's own tiles.

This is the layer-by-layer schedule of the FuseMax template (each Einsum a loop nest, its
intermediates in the buffer), stated over any hierarchy. Unlike the template it refuses to run
a recurrence's two halves one whole after the other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from einsum.errors import suggest
from mapper import fusion, hsearch
from mapper.analysis import Analysis, LevelMapping, Problem, loops_of, tile_words
from mapper.errors import ArchError, ScheduleError

__all__ = ["Stage", "StagedResult", "engine_cycles", "mixed", "stages_of", "staged"]


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage: its Einsums, the branch each runs on (empty: one path), and its figures (a
    single Einsum's analysis and mapping, or a fused group's result)."""

    names: tuple[str, ...]
    binding: tuple[str, ...]
    cycles: float
    energy_pj: float
    analyses: tuple[Analysis, ...]
    mappings: tuple[tuple[LevelMapping, ...], ...] = ()
    group: fusion.FusedResult | None = None
    footprint_words: int = 0  # what the between level holds of the stage's own tiles


@dataclasses.dataclass(frozen=True)
class StagedResult:
    """A staged schedule: the stages in order, the level the crossing tensors live at (the
    outermost: through DRAM), and those tensors with their words."""

    stages: tuple[Stage, ...]
    between: str
    crossing: tuple[tuple[str, int], ...]
    peak_words: int  # the most the between level holds at once (crossing tensors and tiles)
    evaluated: int = 0
    through_outermost: bool = False  # the crossing tensors go out to the outermost level and back
    #: crossing tensors that go out and back although the between level is on chip (read after
    #: the chain too)
    out_and_back: tuple[str, ...] = ()

    @property
    def cycles(self) -> float:
        return float(sum(s.cycles for s in self.stages))

    @property
    def energy_pj(self) -> float:
        return float(sum(s.energy_pj for s in self.stages))

    def scalar_accesses(self, level: str) -> float:
        return sum(a.scalar_accesses(level) for s in self.stages for a in s.analyses if level in a.levels)

    def describe(self) -> str:
        kept = [(t, w) for t, w in self.crossing if t not in self.out_and_back]
        if not self.crossing:
            where = "no tensor crosses between stages"
        elif self.through_outermost:
            where = f"tensors between stages through {self.between}"
        else:
            where = (
                f"tensors between stages in {self.between} ({sum(w for _t, w in kept):,} words; at most "
                f"{self.peak_words:,} held at once)"
            )
            if self.out_and_back:
                where += f"; {', '.join(self.out_and_back)} out and back (read after the chain too)"
        lines = [
            f"in {len(self.stages)} stages, one after another: {self.cycles:,.0f} cycles, "
            f"{self.energy_pj:,.0f} pJ; {where}"
        ]
        for s in self.stages:
            on = sorted(set(s.binding))
            branch = f" on {', '.join(on)}" if on else ""
            kind = "fused" if s.group is not None else "alone"
            lines.append(
                f"  {' -> '.join(s.names)} ({kind}){branch}: {s.cycles:,.0f} cycles, {s.energy_pj:,.0f} pJ"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cycles": self.cycles,
            "energy_pj": self.energy_pj,
            "between": self.between,
            "crossing": dict(self.crossing),
            "peak_words": self.peak_words,
            "through_outermost": self.through_outermost,
            "out_and_back": list(self.out_and_back),
            "stages": [
                {
                    "einsums": list(s.names),
                    "binding": dict(zip(s.names, s.binding, strict=True)) if s.binding else {},
                    "cycles": s.cycles,
                    "energy_pj": s.energy_pj,
                    **({"fused": s.group.to_dict()} if s.group is not None else {}),
                    **({"analysis": s.analyses[0].to_dict()} if s.group is None else {}),
                }
                for s in self.stages
            ],
        }


def _reads(p: Problem) -> set[str]:
    return {s.name for s in p.spaces if not s.output}


def stages_of(problems: Sequence[Problem], steps: Mapping[str, str]) -> list[tuple[int, int]]:
    """The stages of the chain, as ``(first, last)`` indices: each Einsum alone, except where a
    recurrence's state is read by an earlier Einsum than the one that writes it (the two run
    together, stepping the recurrence), with everything between them."""
    spans = []
    for j, p in enumerate(problems):
        t = p.output.name
        if t in steps:
            readers = [i for i in range(j) if t in _reads(problems[i])]
            if readers:
                spans.append((min(readers), j))
    out: list[tuple[int, int]] = []
    i = 0
    while i < len(problems):
        end = i
        changed = True
        while changed:
            changed = False
            for a, b in spans:
                if a <= end and b > end and a >= i:
                    end, changed = b, True
        out.append((i, end))
        i = end + 1
    return out


def staged(
    hierarchy: Any,
    problems: Sequence[Problem],
    *,
    names: Sequence[str] | None = None,
    steps: Mapping[str, str] | None = None,
    after: frozenset[str] = frozenset(),
    metric: str = "edp",
    budget: int = 2000,
    seed: int = 0,
    priced: bool = True,
    imperfect: bool = False,
    progress: Callable[[str], None] | None = None,
    spans: Sequence[tuple[int, int]] | None = None,
    between: str | None = None,
    _cache: dict[Any, Any] | None = None,
) -> StagedResult:
    """The chain ``problems`` in stages (module text), the crossing tensors at each level below
    the outermost that every Einsum reaches, or through the outermost; the best by ``metric``.
    ``after``: the chain's tensors read after it (written out to the outermost level).
    ``spans``: the stages as ``(first, last)`` indices, a stage of several Einsums a fused group
    (the Unfused baseline's kernels), instead of :func:`stages_of`'s; ``between``: the one level
    the crossing tensors live at (the outermost: through DRAM)."""
    if metric not in hsearch.METRICS:
        raise ScheduleError(f"metric must be one of {', '.join(hsearch.METRICS)}, found {metric!r}")
    names = tuple(names or [p.name for p in problems])
    steps = steps or {}
    least = stages_of(problems, steps)
    spans = least if spans is None else _checked_spans(spans, least, names)
    writer = {p.output.name: j for j, p in enumerate(problems)}
    stage_of = {j: s for s, (a, b) in enumerate(spans) for j in range(a, b + 1)}
    # tensors one stage writes and a later stage reads: tensor -> (writer's stage, last reader's)
    crossing: dict[str, tuple[int, int]] = {}
    for j, p in enumerate(problems):
        for t in _reads(p):
            if t in writer and stage_of[writer[t]] < stage_of[j]:
                w = stage_of[writer[t]]
                crossing[t] = (w, max(stage_of[j], crossing.get(t, (w, w))[1]))
    words = {t: fusion._whole(problems[writer[t]], t) for t in crossing}
    levels = [lv.name for lv in hierarchy.levels]
    if between is not None and between not in levels:
        raise ScheduleError(
            f"staged: between names {between!r}, which is no level the stages share"
            f"{suggest(between, levels)} (they share {', '.join(levels)})"
        )
    best: StagedResult | None = None
    why: list[str] = []
    evaluated = 0
    for k in [levels.index(between)] if between is not None else [*range(1, len(levels)), 0]:
        try:
            r = _at(hierarchy, problems, names, spans, crossing, words, k, steps, after, metric, budget, seed,
                    priced, imperfect, progress, _cache)  # fmt: skip
        except ScheduleError as exc:
            why.append(f"between stages in {levels[k]}: {exc}")
            continue
        evaluated += r.evaluated
        if best is None or _key(r, metric, priced) < _key(best, metric, priced):
            best = r
    if best is None:
        raise ScheduleError(
            f"staged: no schedule of {', '.join(names)} in stages fits ({'; '.join(why[:3])})"
        )
    return dataclasses.replace(best, evaluated=evaluated)


def _checked_spans(
    spans: Sequence[tuple[int, int]], least: Sequence[tuple[int, int]], names: Sequence[str]
) -> list[tuple[int, int]]:
    """``spans`` after checking they cover the chain in order, each stage whole, and cut no
    recurrence's stage (``least``: the smallest stages)."""
    out = [tuple(x) for x in spans]
    flat = [i for a, b in out for i in range(a, b + 1)] if all(len(x) == 2 for x in out) else []
    if flat != list(range(len(names))):
        raise ScheduleError(
            f"staged: spans must cover the Einsums 0 .. {len(names) - 1} in order, each once, as "
            f"(first, last) pairs; found {list(spans)}"
        )
    starts = {a for a, _b in out}
    for a, b in least:
        if any(a < x <= b for x in starts):
            raise ScheduleError(
                f"staged: spans cut {', '.join(names[a : b + 1])}, which a recurrence ties into one stage"
            )
    return [(int(a), int(b)) for a, b in out]


def _key(r: StagedResult, metric: str, priced: bool) -> tuple[float, ...]:
    cyc, en = r.cycles, r.energy_pj
    if not priced:
        return (cyc, r.scalar_accesses(r.between))
    return hsearch.metric_key(cyc, en, metric)


def _at(
    hierarchy: Any,
    problems: Sequence[Problem],
    names: Sequence[str],
    spans: Sequence[tuple[int, int]],
    crossing: Mapping[str, tuple[int, int]],
    words: Mapping[str, int],
    k: int,
    steps: Mapping[str, str],
    after: frozenset[str],
    metric: str,
    budget: int,
    seed: int,
    priced: bool,
    imperfect: bool,
    progress: Callable[[str], None] | None,
    cache: dict[Any, Any] | None = None,
) -> StagedResult:
    """The staged schedule with the crossing tensors at level ``k`` (0: through the outermost);
    ``cache``: stages already searched (:func:`_stage`)."""
    level = hierarchy.levels[k]
    stages: list[Stage] = []
    evaluated = 0
    # a tensor also read after the chain goes out to the outermost level, and is read back there
    resident = frozenset(t for t in crossing if t not in after) if k > 0 else frozenset()
    for a, b in spans:
        producer = _producer_branch(problems, names, stages, problems[a]) if a == b else None
        st, n = _stage(hierarchy, problems, names, a, b, k, frozenset(crossing), resident, steps, after,
                       metric, budget, seed, priced, imperfect, progress, producer, cache)  # fmt: skip
        if st is None:
            raise ScheduleError(n)  # type: ignore[arg-type]
        stages.append(st)
        evaluated += n  # type: ignore[operator]
    # the between level holds, during each stage, the crossing tensors alive then and its tiles
    peak = 0
    if k > 0:
        for s, st in enumerate(stages):
            alive = sum(words[t] for t, (w, last) in crossing.items() if w <= s <= last and t in resident)
            peak = max(peak, alive + st.footprint_words)
        cap = level.capacity_words
        if cap is not None and peak > cap // max(1, int(level.multiple_buffering)):
            raise ScheduleError(
                f"{level.name} must hold {peak:,} words at once (the tensors between stages and a stage's "
                f"tiles), but it holds {cap:,}"
            )
    return StagedResult(
        stages=tuple(stages),
        between=level.name,
        crossing=tuple((t, words[t]) for t in crossing),
        out_and_back=tuple(t for t in crossing if k > 0 and t not in resident),
        peak_words=peak,
        evaluated=evaluated,
        through_outermost=k == 0,
    )


def _stage(
    hierarchy: Any,
    problems: Sequence[Problem],
    names: Sequence[str],
    a: int,
    b: int,
    k: int,
    crossing: frozenset[str],
    resident: frozenset[str],
    steps: Mapping[str, str],
    after: frozenset[str],
    metric: str,
    budget: int,
    seed: int,
    priced: bool,
    imperfect: bool,
    progress: Callable[[str], None] | None,
    producer: str | None,
    cache: dict[Any, Any] | None,
) -> tuple[Stage | None, int | str]:
    """The stage of ``problems[a..b]`` with the crossing tensors at level ``k``: its best mapping
    (one Einsum alone, or a fused group at level ``k``) and the mappings costed, or None and why
    it cannot run. A stage's figures depend only on its Einsums, which of their tensors cross to
    other stages (``crossing``), which of those stay at level ``k`` (``resident``) and, for an
    epilogue alone, where its contraction ran (``producer``), so ``cache`` keeps them by those."""
    ps, ns = problems[a : b + 1], names[a : b + 1]
    here = {x.name for p in ps for x in p.spaces}
    mine = frozenset(t for t in resident if t in here)
    made = {p.output.name for p in ps}
    drain = frozenset(t for t in made if (t in after or t in crossing) and t not in mine)
    key = (a, b, k, mine, drain, producer)
    if cache is not None and key in cache:
        return cache[key]  # type: ignore[no-any-return]
    if progress is not None:
        progress(f"stage {' -> '.join(ns)} (between stages: {hierarchy.levels[k].name})")
    out: tuple[Stage | None, int | str]
    try:
        if b > a:
            g = fusion.search(
                hierarchy, ps, names=ns, level=hierarchy.levels[k].name if k > 0 else None, metric=metric,
                budget=budget, seed=seed, priced=priced, imperfect=imperfect, steps=steps, drain=drain,
                resident=mine,
            )  # fmt: skip
            out = (
                Stage(
                    names=tuple(ns),
                    binding=g.mapping.binding,
                    cycles=g.cycles,
                    energy_pj=g.energy_pj,
                    analyses=g.analyses,
                    mappings=g.mapping.mappings,
                    group=g,
                    footprint_words=g.footprint_words if k > 0 else 0,
                ),
                g.evaluated,
            )
        else:
            one = _alone(hierarchy, ps[0], ns[0], k, mine, metric, budget, seed, priced, imperfect, producer)
            out = (one, 1)
    except (ScheduleError, ArchError) as exc:
        if cache is None:
            raise
        out = (None, str(exc))
    if cache is not None:
        cache[key] = out
    return out


def _crossing_of(problems: Sequence[Problem], a: int, b: int) -> frozenset[str]:
    """The tensors of ``problems[a..b]`` that cross to or from the rest of the chain."""
    inside = range(a, b + 1)
    writer = {p.output.name: j for j, p in enumerate(problems)}
    out = set()
    for j, p in enumerate(problems):
        for t in _reads(p):
            if t in writer and (writer[t] in inside) != (j in inside):
                out.add(t)
    return frozenset(out)


def mixed(
    hierarchy: Any,
    problems: Sequence[Problem],
    *,
    names: Sequence[str] | None = None,
    steps: Mapping[str, str] | None = None,
    after: frozenset[str] = frozenset(),
    metric: str = "edp",
    budget: int = 2000,
    seed: int = 0,
    priced: bool = True,
    imperfect: bool = False,
    progress: Callable[[str], None] | None = None,
    between: str | None = None,
    longest: int = 4,
) -> StagedResult:
    """The chain cut into stages searched, not given: each stage a run of up to ``longest`` of
    :func:`stages_of`'s smallest stages, one Einsum alone or a fused group at the between level.
    Every run is searched once (:func:`_stage`); since the stages run one after another their
    cycles and energies add, so a dynamic programme over the cuts keeps, for each prefix of the
    chain, the cuts no other beats on both cycles and energy, and the best of the whole chain's
    by ``metric`` is then evaluated exactly (:func:`staged` with those spans), the between level's
    capacity checked (the next best where it does not fit). All in stages and all in one group
    (where the chain is at most ``longest`` stages) are among the cuts tried."""
    if metric not in hsearch.METRICS:
        raise ScheduleError(f"metric must be one of {', '.join(hsearch.METRICS)}, found {metric!r}")
    if longest < 1:
        raise ScheduleError(f"mixed: longest must be at least 1 (stages a run may join), found {longest}")
    names = tuple(names or [p.name for p in problems])
    steps = steps or {}
    units = stages_of(problems, steps)
    levels = [lv.name for lv in hierarchy.levels]
    if between is not None and between not in levels:
        raise ScheduleError(
            f"mixed: between names {between!r}, which is no level the stages share"
            f"{suggest(between, levels)} (they share {', '.join(levels)})"
        )
    best: StagedResult | None = None
    why: list[str] = []
    evaluated = 0
    for k in [levels.index(between)] if between is not None else [*range(1, len(levels)), 0]:
        cache: dict[Any, Any] = {}
        fronts: list[list[tuple[float, float, tuple[tuple[int, int], ...]]]] = [[(0.0, 0.0, ())]]
        for last in range(len(units)):
            cands = []
            for first in range(max(0, last - longest + 1), last + 1):
                a, b = units[first][0], units[last][1]
                cross = _crossing_of(problems, a, b)
                resident = frozenset(t for t in cross if t not in after) if k > 0 else frozenset()
                st, n = _stage(hierarchy, problems, names, a, b, k, cross, resident, steps, after, metric,
                               budget, seed, priced, imperfect, progress, None, cache)  # fmt: skip
                if st is None:
                    continue
                evaluated += n  # type: ignore[operator]
                for c, e, sp in fronts[first]:
                    cands.append((c + st.cycles, e + st.energy_pj, (*sp, (a, b))))
            fronts.append(_pareto(cands))
        order = sorted(
            fronts[-1], key=lambda x: hsearch.metric_key(x[0], x[1], metric) if priced else (x[0],)
        )
        for _c, _e, spans in order:
            try:
                r = staged(
                    hierarchy, problems, names=names, steps=steps, after=after, metric=metric, budget=budget,
                    seed=seed, priced=priced, imperfect=imperfect, spans=spans, between=levels[k],
                    _cache=cache,
                )  # fmt: skip
            except ScheduleError as exc:
                why.append(f"between stages in {levels[k]}: {exc}")
                continue
            if best is None or _key(r, metric, priced) < _key(best, metric, priced):
                best = r
            break
    if best is None:
        raise ScheduleError(f"mixed: no cut of {', '.join(names)} into stages fits ({'; '.join(why[:3])})")
    return dataclasses.replace(best, evaluated=evaluated)


def _pareto(
    points: list[tuple[float, float, tuple[tuple[int, int], ...]]],
) -> list[tuple[float, float, tuple[tuple[int, int], ...]]]:
    """The points no other beats on both cycles and energy (the first of equals)."""
    out: list[tuple[float, float, tuple[tuple[int, int], ...]]] = []
    for c, e, sp in sorted(points, key=lambda x: (x[0], x[1])):
        if not out or e < out[-1][1]:
            out.append((c, e, sp))
    return out


def engine_cycles(
    path: Any,
    p: Problem,
    name: str,
    analysis: Analysis,
    mappings: Any,
    lookahead: int = fusion.LOOKAHEAD,
    interleave: bool = True,
) -> float:
    """One Einsum's cycles on ``path`` as the tile engine times a kernel (:func:`mapper.fusion.
    timed`): its outermost level's temporal loops are the tiles, and each tile's DRAM transfer
    runs ahead of its compute, double buffered. At least the analysis's cycles (the busiest of
    the compute and the levels' bandwidths), which are a proven lower bound of it."""
    lat = fusion.latency(path, p, mappings)
    return fusion.timed(
        [p], [name], [analysis], [""], (tuple(mappings[0].temporal),), {}, [lat],
        lookahead=lookahead, interleave=interleave,
    )  # fmt: skip


def _producer_branch(
    problems: Sequence[Problem], names: Sequence[str], stages: Sequence[Stage], p: Problem
) -> str | None:
    """Where ``p``'s contraction ran, if ``p`` is an epilogue of one in an earlier stage: its
    branch ("" on one path); None otherwise."""
    if not p.epilogue_of:
        return None
    for st in stages:
        for n, b in zip(st.names, st.binding or ("",) * len(st.names), strict=True):
            q = problems[list(names).index(n)]
            if q.output.name == p.epilogue_of:
                return b
    return None


def _alone(
    hierarchy: Any,
    p: Problem,
    name: str,
    k: int,
    resident: frozenset[str],
    metric: str,
    budget: int,
    seed: int,
    priced: bool,
    imperfect: bool,
    producer: str | None = None,
) -> Stage:
    """A stage of one Einsum: the best mapping on each branch that can run it, the ``resident``
    tensors kept first at level ``k``; an epilogue also where its contraction ran (``producer``:
    that branch)."""
    paths = [(b.name, hierarchy.branch(b.name)) for b in hierarchy.branches] or [("", hierarchy)]
    found = []
    problems_left = []
    for b, path in paths:
        keeps = fusion._keeps(path, p, k, sorted(resident))
        if keeps is None:
            problems_left.append(
                f"{path.name}: {path.levels[k].name} may not keep {', '.join(sorted(resident))}"
            )
            continue
        cons = [
            hsearch.Constraint(target=lv.name, keep=kp) for lv, kp in zip(path.levels, keeps, strict=True)
        ]
        try:
            r = path.search(
                p, priced=priced, metric=metric, budget=budget, seed=seed, constraints=cons,
                produced=resident, imperfect=imperfect, with_producer=producer == b,
            )  # fmt: skip
        except (ScheduleError, ArchError) as exc:
            problems_left.append(f"{path.name}: {exc}")
            continue
        if r.evaluated:
            found.append((b, r, r.analysis.cycles))
    if not found:
        raise ScheduleError(f"no branch can run {name} alone: {'; '.join(problems_left[:2])}")

    def key(br: tuple[str, Any, float]) -> tuple[float, ...]:
        if not priced:
            return (br[2], 0.0)
        return hsearch.metric_key(br[2], br[1].analysis.energy_pj, metric)

    b, r, cycles = min(found, key=key)
    held = 0
    if k > 0:
        ms = r.mappings
        here = [s.name for s in p.spaces if ms[k].keep is None or s.name in ms[k].keep]
        held = tile_words(p, loops_of(ms, k), [t for t in here if t not in resident])
    return Stage(
        names=(name,),
        binding=(b,) if b else (),
        cycles=cycles,
        energy_pj=r.analysis.energy_pj,
        analyses=(r.analysis,),
        mappings=(r.mappings,),
        footprint_words=held,
    )
