"""Mapping search over a storage hierarchy of any depth: the mapper for :mod:`mapper.analysis`.

The space, as Timeloop's mapper spans it for one Einsum: every way to split each dimension's size
into one factor per slot (each level's temporal loops, and its spatial loops where the level fans
out to more instances below it), a loop order per level, and every level keeping every tensor. A
candidate is valid when each level's spatial factors fit its fanout and its tiles fit its
capacity (the analysis checks the latter). Each valid candidate is costed by
:func:`mapper.analysis.analyze`, the one analysis; the search only enumerates and compares.

A level that keeps no tensor only fans out: it gets spatial loops, no temporal ones.

Loop orders: per level, the distinct orders that make one tensor stationary (the dimensions it
does not project onto innermost, the rest in the problem's order), plus the problem's order. A
level with fewer than two temporal loops has one order.

The search is exhaustive when the space holds at most ``budget`` candidates; otherwise it draws
``budget`` candidates at random (seeded, so a run repeats): each prime factor of each dimension
goes to a slot uniformly, each level's order uniformly from its candidates. The result says which.

Metrics: ``edp`` (energy x cycles, the default), ``energy`` or ``cycles``; ties go to the lower
other figure, then to the fewer accesses at the outermost level, then to the first found. Without
energies (a design with no prices), ``energy`` and ``edp`` rank by accesses per level, outermost
first, after cycles.

>>> from mapper.analysis import DataSpace, Problem, Storage
>>> gemv = Problem(name="gemv", dims=(("M", 8), ("K", 4)), spaces=(
...     DataSpace(name="A", projection=((("M", 1),), (("K", 1),))),
...     DataSpace(name="B", projection=((("K", 1),),)),
...     DataSpace(name="Z", projection=((("M", 1),),), output=True)))
>>> levels = [Storage(name="DRAM", read_pj=100, fill_pj=100, update_pj=100),
...           Storage(name="Reg", instances=4, capacity=8, read_pj=1, fill_pj=1, update_pj=1)]
>>> r = search(gemv, levels, compute_instances=4, compute_pj=1)
>>> r.exhaustive, r.analysis.cycles, r.analysis.utilization
(True, 8.0, 1.0)
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import random
from collections.abc import Callable, Iterator, Mapping, Sequence

from einsum.errors import suggest
from mapper.analysis import Analysis, LevelMapping, Problem, Storage, _extent, analyze
from mapper.errors import ArchError, ScheduleError

__all__ = ["METRICS", "Constraint", "HierarchyResult", "fanouts", "metric_key", "search", "to_timeloop"]

METRICS = ("edp", "energy", "cycles")


def metric_key(cycles: float, energy_pj: float, metric: str) -> tuple[float, ...]:
    """How a schedule ranks by ``metric`` (smaller is better): the metric, then the other figure
    to break ties."""
    return {
        "edp": (cycles * energy_pj, cycles, energy_pj),
        "energy": (energy_pj, cycles),
        "cycles": (cycles, energy_pj),
    }[metric]


DEFAULT_BUDGET = 20_000


@dataclasses.dataclass(frozen=True, kw_only=True)
class Constraint:
    """A constraint on one level's mappings (Timeloop's mapspace constraints): the tensors it keeps
    (``None``: free), fixed factors of its temporal (or, with ``spatial``, spatial) loops, and a
    temporal loop order: ``order`` (outermost first) goes innermost, the dimensions it does not name
    go outside it in any candidate order (Timeloop's partial permutations); ``outer`` (outermost
    first) goes outermost, the others inside it in any candidate order (a fused group's shared
    loops above an Einsum's own)."""

    target: str
    spatial: bool = False
    keep: frozenset[str] | None = None
    factors: Mapping[str, int] = dataclasses.field(default_factory=dict)
    order: tuple[str, ...] | None = None
    outer: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class HierarchyResult:
    """The best mapping found, its analysis, and what the search covered."""

    mappings: tuple[LevelMapping, ...]
    analysis: Analysis
    metric: str
    evaluated: int  # candidates analysed
    rejected: int  # candidates over a fanout or a capacity
    space: int  # candidates in the space
    exhaustive: bool
    seed: int | None

    def describe(self) -> str:
        how = (
            f"all {self.space:,} candidates"
            if self.exhaustive
            else f"{self.evaluated + self.rejected:,} of {self.space:,} candidates drawn at random "
            f"(seed {self.seed})"
        )
        return (
            f"searched {how}: {self.evaluated:,} valid, {self.rejected:,} over a fanout or a capacity; "
            f"best by {self.metric}"
        )


def fanouts(storages: Sequence[Storage], compute_instances: int) -> list[int]:
    """Per level, how many instances below one instance of it (the next level's, or the compute
    units' under the innermost level)."""
    counts = [s.instances for s in storages] + [compute_instances]
    out = []
    for i, s in enumerate(storages):
        below = counts[i + 1]
        if below % counts[i]:
            below_name = storages[i + 1].name if i + 1 < len(storages) else "the compute units"
            raise ArchError(
                f"{below_name} has {below} instances, not a multiple of {s.name}'s {counts[i]}: "
                "each instance must fan out to the same number below it"
            )
        out.append(below // counts[i])
    return out


def _primes(n: int) -> list[int]:
    out, p = [], 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    if n > 1:
        out.append(n)
    return out


def _padded(n: int, fan: Sequence[int]) -> list[int]:
    """The sizes a dimension of ``n`` may be split as with imperfect factors: ``n``, and ``n``
    rounded up to a multiple of each fanout and to a power of two (each under ``2 n``)."""
    out = {n}
    for f in fan:
        if f > 1:
            out.add(-(-n // f) * f)
    out.add(1 << (n - 1).bit_length())
    return sorted(x for x in out if x < 2 * n or x == n)


def _tight(f: Sequence[int], n: int) -> tuple[int, ...]:
    """Slot factors (outermost slot first) of a dimension of size ``n`` whose product may exceed
    it: the outermost factor above 1 becomes the trips that cover ``n`` over the tile inside it
    (the analysis checks the inner ones)."""
    out = list(f)
    if math.prod(out) > n:
        for j, v in enumerate(out):
            if v > 1:
                inner = math.prod(out[j + 1 :])
                out[j] = -(-n // inner)
                break
    return tuple(out)


def _splits(n: int, k: int) -> list[tuple[int, ...]]:
    """Every ordered way to write ``n`` as a product of ``k`` factors."""
    out: set[tuple[int, ...]] = {(1,) * k}
    for p in _primes(n):
        out = {t[:i] + (t[i] * p,) + t[i + 1 :] for t in out for i in range(k)}
    return sorted(out)


def _split_count(n: int, k: int) -> int:
    exps: dict[int, int] = {}
    for p in _primes(n):
        exps[p] = exps.get(p, 0) + 1
    return math.prod(math.comb(e + k - 1, k - 1) for e in exps.values())


def _orders(problem: Problem) -> list[tuple[str, ...]]:
    """Candidate loop orders, outermost first: the problem's, then each tensor stationary."""
    dims = [d for d, _n in problem.dims]
    out = [tuple(dims)]
    for s in problem.spaces:
        order = tuple([d for d in dims if d in s.dims] + [d for d in dims if d not in s.dims])
        if order not in out:
            out.append(order)
    return out


def _metric(metric: str, a: Analysis, priced: bool) -> tuple[float, ...]:
    outer = tuple(a.scalar_accesses(name) for name in a.levels)
    e = a.energy_pj if priced else 0.0
    if metric == "cycles":
        return (a.cycles, e, *outer)
    if not priced:
        return (a.cycles, *outer)
    if metric == "energy":
        return (e, a.cycles, *outer)
    return (e * a.cycles, e, a.cycles, *outer)


def search(
    problem: Problem,
    storages: Sequence[Storage],
    *,
    compute_instances: int,
    compute_pj: float = 0.0,
    metric: str = "edp",
    budget: int = DEFAULT_BUDGET,
    seed: int = 0,
    constraints: Sequence[Constraint] = (),
    cold_output_fills: bool = False,
    progress: Callable[[int, int], None] | None = None,
    produced: frozenset[str] = frozenset(),
    imperfect: bool = False,
    point_cycles: float = 1.0,
) -> HierarchyResult:
    """The best mapping of ``problem`` over ``storages`` (outermost first) by ``metric``, within
    ``constraints`` (Timeloop's: the tensors a level keeps, fixed factors, a fixed loop order).
    ``produced``: tensors made on chip by a fused group (:func:`mapper.analysis.analyze`).
    ``imperfect``: also try imperfect factors (:mod:`mapper.analysis`), a dimension's size
    padded up to a multiple of each fanout and to a power of two, the factors of the padded size
    split over the slots and the outermost made the trips that cover the real size (a dimension
    with fixed factors stays exact)."""
    if metric not in METRICS:
        raise ScheduleError(f"metric must be one of {', '.join(METRICS)}, found {metric!r}")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ScheduleError(f"budget must be a positive number of candidates, found {budget!r}")
    if not storages:
        raise ArchError("a hierarchy needs at least one storage level")
    fan = fanouts(storages, compute_instances)
    priced = compute_pj > 0 or any(s.read_pj or s.fill_pj or s.update_pj for s in storages)
    # slots: (level, spatial?)
    slots = [(i, sp) for i in range(len(storages)) for sp in (False, True) if not sp or fan[i] > 1]
    dims = list(problem.dims)
    names = [s.name for s in storages]
    tensors = [s.name for s in problem.spaces]
    keep: list[frozenset[str] | None] = [None] * len(storages)
    level_orders = [_orders(problem) if len(dims) > 1 else [tuple(d for d, _n in dims)] for _ in storages]
    fixed: list[dict[int, int]] = [{} for _ in dims]  # per dimension: slot -> factor
    for c in constraints:
        if c.target not in names:
            raise ScheduleError(
                f"constraint: target {c.target!r} is no storage level{suggest(c.target, names)}"
            )
        i = names.index(c.target)
        if c.keep is not None:
            for t in c.keep:
                if t not in tensors:
                    raise ScheduleError(f"constraint on {c.target}: no tensor {t!r}{suggest(t, tensors)}")
            keep[i] = c.keep
        if c.spatial and fan[i] == 1 and any(f > 1 for f in c.factors.values()):
            raise ScheduleError(f"constraint on {c.target}: spatial factors, but it fans out to no instances")
        for d, f in c.factors.items():
            k = next((k for k, (dd, _n) in enumerate(dims) if dd == d), None)
            if k is None:
                raise ScheduleError(
                    f"constraint on {c.target}: no dimension {d!r}{suggest(d, [d for d, _n in dims])}"
                )
            if (i, c.spatial) in slots:
                fixed[k][slots.index((i, c.spatial))] = f
        for field, named in (("order", c.order), ("outer", c.outer)):  # innermost, or outermost
            if named is None:
                continue
            for d in named:
                if d not in [dd for dd, _n in dims]:
                    raise ScheduleError(
                        f"constraint on {c.target}: {field} names {d!r}, which is no dimension"
                    )
            fixed_part = tuple(named)
            level_orders[i] = list(
                dict.fromkeys(
                    (rest + fixed_part if field == "order" else fixed_part + rest)
                    for rest in (tuple(d for d in o if d not in fixed_part) for o in level_orders[i])
                )
            )
    for i, kept in enumerate(keep):
        if i and kept is not None and not kept:  # holds nothing: it only fans out, no loops in time
            for k in range(len(dims)):
                fixed[k].setdefault(slots.index((i, False)), 1)
            level_orders[i] = level_orders[i][:1]
    rests = []
    sizes: list[list[int]] = []  # per dimension, the sizes its free factors split (padded ones too)
    for k, (d, n) in enumerate(dims):
        prod = math.prod(fixed[k].values())
        free = [j for j in range(len(slots)) if j not in fixed[k]]
        if n % prod or (not free and prod != n):
            raise ScheduleError(
                f"constraints: the fixed factors of {d} multiply to {prod}, which does not "
                f"{'divide' if free else 'equal'} {d} = {n}"
            )
        rests.append((n // prod, free))
        sizes.append(_padded(n, fan) if imperfect and prod == 1 and free else [n // prod])
    space = math.prod(sum(_split_count(r, len(free)) for r in sizes[k]) for k, (_r, free) in enumerate(rests))
    space *= math.prod(len(o) for o in level_orders)
    #: sampled searches add this many fanout-filling draws to the budget's uniform ones
    fill_draws = 0 if space <= budget else max(1, budget // 20)

    def build(split: Sequence[tuple[int, ...]], order_ix: Sequence[int]) -> tuple[LevelMapping, ...] | None:
        mappings = []
        for i in range(len(storages)):
            t_ix = slots.index((i, False))
            s_ix = slots.index((i, True)) if (i, True) in slots else None
            factor = {d: split[k][t_ix] for k, (d, _n) in enumerate(dims)}
            temporal = tuple((d, factor[d]) for d in level_orders[i][order_ix[i]] if factor[d] > 1)
            spatial: tuple[tuple[str, int], ...] = ()
            axis: int | None = None
            if s_ix is not None:
                spatial = tuple((d, split[k][s_ix]) for k, (d, _n) in enumerate(dims) if split[k][s_ix] > 1)
                if math.prod(f for _d, f in spatial) > fan[i]:
                    return None
                mesh = storages[i].fanout_mesh
                if mesh is not None and mesh[0] > 1 and mesh[1] > 1 and len(spatial) > 1:
                    placed = _on_mesh(spatial, mesh)
                    if placed is None:  # no split of the loops fits the X x Y mesh
                        return None
                    spatial, axis = placed
            mappings.append(
                LevelMapping(
                    target=storages[i].name, temporal=temporal, spatial=spatial, keep=keep[i], split=axis
                )
            )
        return tuple(mappings)

    def place(k: int, free_factors: Sequence[int]) -> tuple[int, ...]:
        f = [1] * len(slots)
        for j, v in fixed[k].items():
            f[j] = v
        for j, v in zip(rests[k][1], free_factors, strict=True):
            f[j] = v
        return _tight(f, dims[k][1])

    def candidates() -> Iterator[tuple[tuple[tuple[int, ...], ...], tuple[int, ...]]]:
        if space <= budget:
            per_dim = [
                list(dict.fromkeys(place(k, t) for r in sizes[k] for t in _splits(r, len(free))))
                for k, (_r, free) in enumerate(rests)
            ]
            for split in itertools.product(*per_dim):
                loops = [
                    sum(1 for t in split if t[slots.index((i, False))] > 1) for i in range(len(storages))
                ]
                for order_ix in itertools.product(
                    *[range(len(level_orders[i]) if loops[i] > 1 else 1) for i in range(len(storages))]
                ):
                    yield split, order_ix
            return
        rng = random.Random(seed)
        for _ in range(budget):
            yield draw(rng), tuple(rng.randrange(len(o)) for o in level_orders)
        # then a few that fill the fanouts first (Timeloop's mapper filters by utilisation for the
        # same reason: uniform draws rarely fill a large array); their own seeded stream, so the
        # draws above are the same with or without them
        fill = random.Random(seed + 1)
        for _ in range(fill_draws):
            yield draw(fill, spatial_first=True), tuple(fill.randrange(len(o)) for o in level_orders)

    spaces = {sp.name: sp for sp in problem.spaces}
    kept_names = [
        [t for t in spaces if keep[i] is None or t in keep[i]]  # type: ignore[operator]
        for i in range(len(storages))
    ]

    def tile(f: list[list[int]], i: int) -> int:
        spans = {
            d: min(n, math.prod(f[k][j] for j, (lv, _sp) in enumerate(slots) if lv >= i))
            for k, (d, n) in enumerate(dims)
        }
        return sum(math.prod(_extent(spaces[t], spans)) for t in kept_names[i])

    def draw(rng: random.Random, spatial_first: bool = False) -> tuple[tuple[int, ...], ...]:
        """A random candidate: each prime of each dimension to a free slot that its fanout still
        admits (``spatial_first``: a spatial slot wherever one still admits it); then, innermost
        level first, primes moved outward until every tile fits."""
        f = [list(place(k, [1] * len(free))) for k, (_r, free) in enumerate(rests)]
        used = {j: math.prod(f[k][j] for k in range(len(dims))) for j, (_lv, sp) in enumerate(slots) if sp}
        # (a padded size drawn only where there are several: exact searches draw as before)
        work = [
            (k, p)
            for k in range(len(rests))
            for p in _primes(sizes[k][0] if len(sizes[k]) == 1 else rng.choice(sizes[k]))
        ]
        rng.shuffle(work)
        for k, p in work:
            free = rests[k][1]
            ok = [j for j in free if not slots[j][1] or used[j] * p <= fan[slots[j][0]]]
            if spatial_first and any(slots[j][1] for j in ok):
                ok = [j for j in ok if slots[j][1]]
            j = rng.choice(ok or free)
            f[k][j] *= p
            if slots[j][1]:
                used[j] *= p
        for i in range(len(storages) - 1, 0, -1):
            cap = storages[i].capacity
            if cap is None:
                continue
            while tile(f, i) > cap:
                movable = [
                    (f[k][j], k, j)
                    for k in range(len(dims))
                    for j, (lv, _sp) in enumerate(slots)
                    if lv >= i and j in rests[k][1] and f[k][j] > 1
                ]
                dest = [j for j, (lv, sp) in enumerate(slots) if lv < i and not sp]
                if not movable:
                    break
                _v, k, j = max(movable)
                out = next((d for d in reversed(dest) if d in rests[k][1]), None)
                if out is None:
                    break
                p = _primes(f[k][j])[0]
                f[k][j] //= p
                f[k][out] *= p
                if slots[j][1]:
                    used[j] //= p
        return tuple(_tight(x, dims[k][1]) for k, x in enumerate(f))

    def cost(mappings: Sequence[LevelMapping]) -> Analysis:
        """The one analysis of a candidate (:func:`mapper.analysis.analyze`)."""
        return analyze(
            problem,
            storages,
            mappings,
            compute_pj=compute_pj,
            compute_instances=compute_instances,
            cold_output_fills=cold_output_fills,
            produced=produced,
            point_cycles=point_cycles,
        )

    best: tuple[tuple[float, ...], tuple[LevelMapping, ...], Analysis] | None = None
    evaluated = rejected = seen = 0
    total = min(space, budget + fill_draws)
    for split, order_ix in candidates():
        seen += 1
        if progress is not None and seen % 1000 == 0:
            progress(seen, total)
        mappings = build(split, order_ix)
        if mappings is None:
            rejected += 1
            continue
        try:
            a = cost(mappings)
        except ScheduleError:
            rejected += 1
            continue
        evaluated += 1
        key = _metric(metric, a, priced)
        if best is None or key < best[0]:
            best = (key, mappings, a)
    if best is None:
        raise ScheduleError(
            f"no mapping of {problem.name} fits: all {rejected:,} candidates searched exceed a level's "
            "fanout or capacity (is a buffer smaller than one word of each tensor?)"
        )
    if any(st.prices_network for st in storages):
        best = _place(storages, best, metric, priced, cost)
    return HierarchyResult(
        mappings=best[1],
        analysis=best[2],
        metric=metric,
        evaluated=evaluated,
        rejected=rejected,
        space=seen if space <= budget else space,  # exhaustive: exactly the candidates enumerated
        exhaustive=space <= budget,
        seed=None if space <= budget else seed,
    )


def to_timeloop(mappings: Sequence[LevelMapping], dims: Sequence[str]) -> list[dict[str, object]]:
    """``mappings`` in Timeloop's mapping format (factors of every dimension, permutations
    innermost first), so ``einforge timeloop`` and Timeloop can read the result back."""
    out = []
    for m in mappings:
        for kind, loops in (("temporal", m.temporal), ("spatial", m.spatial)):
            if kind == "spatial" and not loops:
                continue
            f = dict(loops)
            named = [d for d, _f in loops]
            order = list(reversed(named)) + [d for d in dims if d not in named]
            entry: dict[str, object] = {
                "target": m.target,
                "type": kind,
                "factors": " ".join(f"{d}{f.get(d, 1)}" for d in dims),
                # Timeloop reads "PQC" for one-letter dimensions, a list otherwise
                "permutation": "".join(order) if all(len(d) == 1 for d in dims) else order,
            }
            if kind == "spatial" and m.split is not None:
                entry["split"] = m.split  # the innermost loops along X, as Timeloop counts them
            out.append(entry)
    return out


@functools.lru_cache(maxsize=16)
def _subsets(n: int) -> tuple[int, ...]:
    """The subsets of n loops as bit masks, the largest first (X filled first)."""
    return tuple(sorted(range(1 << n), key=lambda b: (-bin(b).count("1"), -b)))


def _on_mesh(
    spatial: Sequence[tuple[str, int]], mesh: tuple[int, int]
) -> tuple[tuple[tuple[str, int], ...], int] | None:
    """Spatial loops placed on an X x Y mesh: the loops reordered so that those along X are the
    innermost, and their count (the ``split``); the first fitting choice, X filled first with the
    innermost loops where that fits; None where no subset of the loops fits X with the rest
    fitting Y."""
    loops = list(spatial)
    for bits in _subsets(len(loops)):
        x = [lp for j, lp in enumerate(loops) if bits >> j & 1]
        y = [lp for j, lp in enumerate(loops) if not bits >> j & 1]
        if math.prod(f for _d, f in x) <= mesh[0] and math.prod(f for _d, f in y) <= mesh[1]:
            return (*y, *x), len(x)
    return None


def _place(
    storages: Sequence[Storage],
    best: tuple[tuple[float, ...], tuple[LevelMapping, ...], Analysis],
    metric: str,
    priced: bool,
    cost: Callable[[Sequence[LevelMapping]], Analysis],
) -> tuple[tuple[float, ...], tuple[LevelMapping, ...], Analysis]:
    """The best mapping's spatial loops placed on the X and Y axes of each fanout whose network
    is priced: every split that fits the mesh, level by level, kept where it lowers the metric
    (the default placement fills X first); ``cost`` is the search's analysis of a candidate."""
    key, mappings, a = best
    for i, st in enumerate(storages):
        m = mappings[i]
        if not st.prices_network or len(m.spatial) < 2:
            continue
        for split in range(len(m.spatial) + 1):
            x, y = m.spatial[len(m.spatial) - split :], m.spatial[: len(m.spatial) - split]
            if st.fanout_mesh is not None and (
                math.prod(f for _d, f in x) > st.fanout_mesh[0]
                or math.prod(f for _d, f in y) > st.fanout_mesh[1]
            ):
                continue
            trial = (*mappings[:i], dataclasses.replace(m, split=split), *mappings[i + 1 :])
            try:
                b = cost(trial)
            except ScheduleError:
                continue
            k = _metric(metric, b, priced)
            if k < key:
                key, mappings, a = k, trial, b
    return key, mappings, a
