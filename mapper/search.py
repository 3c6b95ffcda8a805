"""``search``: derive a schedule for a cascade on an architecture.

The mapper decides, from the cascade and the architecture alone:

- the spatial mapping: on a 2D array the query rank across the columns and the key rank (the inner
  part of a partitioned rank, or the other rank of the score tensor) across the rows; on a 1D
  array the query rank across the PEs;
- the tiles: the query tile and the key tile are the array's dimensions;
- the binding: every assignment of Einsums to arrays that can execute them (functional units and
  the kinds of Einsum an array's control sequences) is costed per tile, and the best by the
  objective wins; ties go to the binding with fewer transfers between arrays;
- residency: the running state of a recurrence lives in the buffer for as many query tiles as fit
  (P1), per-tile intermediates in the PE registers, except tiles that cross between the arrays
  while they still span the key rank (staged in the buffer), whole score rows in the buffer while
  they fit, spilled in part when a little is missing, streamed through DRAM when they do not fit;
- FLAT's fusion granularity, on an architecture with ``score_row_blocks``: the score rows of a whole
  head or of a block of rows share one pass over K and V; every granularity that divides the
  query rank is costed by :mod:`mapper.cost` (latency bounded by the busiest array and by DRAM,
  energy of the data movement at the buffer's geometry) and the best by the objective wins;
- kernels: fused (one kernel) or, with ``fuse=False``, one kernel per run of consecutive Einsums on
  the same array, talking through DRAM;
- interleaving: with ``interleave`` the arrays' first Einsums run ``lookahead`` tiles ahead, enough
  to hide the latency of a max reduced across the array's rows.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

import einsum
from einsum.errors import suggest
from mapper.arch import ArchSpec, PEArray
from mapper.cost import Estimate, depends, estimate, in_a_later_pass
from mapper.errors import ScheduleError
from mapper.masks import live_lower_bound
from mapper.nest import (
    NestCost,
    action_pj,
    check_objective,
    nest_problem,
    objective_value,
    search_nests,
    spatial_choices,
)
from mapper.nest import lower_bound as nest_lower_bound
from mapper.schedule import (
    EinsumFacts,
    Layout,
    LoopNest,
    Schedule,
    actions_at,
    check,
    complete_partitions,
    einsum_cycles,
    einsum_facts,
    exposed_latency,
    fu_ops,
    layout,
    read_tensors,
    tensor_sizes,
)
from mapper.sram import SRAMError

__all__ = ["Candidate", "SearchOptions", "SearchResult", "explore", "search", "layout"]

FUSIONS = ("auto", "fused", "layerwise")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SearchOptions:
    """What the mapper optimises and what it may do.

    Attributes:
        sizes: rank sizes of the workload (for example ``{"P": 1024, "M": 1024, "E": 64, "F": 64}``).
        objective: ``"latency"`` (default), ``"energy"``, ``"edp"`` (energy-delay product) or
            weights such as ``{"latency": 1, "energy": 0.5}``: a weighted sum of latency and energy,
            each divided by its lower bound.
        interleave: overlap consecutive tiles across the arrays.
        fuse: run the cascade as one fused kernel; ``False`` gives one kernel per array run.
        fusion: ``"auto"`` (default: the best of the fused tilings and the layer-by-layer
            schedule), ``"fused"`` or ``"layerwise"`` (every Einsum its own loop nest).
        bind: Einsums whose array is fixed by the user.
        score_rows: on an architecture with ``score_row_blocks`` (FLAT), fix the query rows whose
            score rows share one pass over K and V (a block, or the whole query rank for FLAT's
            head granularity) instead of letting the search choose.
        top_n: how many of the best schedules :func:`explore` returns.
        max_latency_cycles: a constraint: schedules slower than this (per instance) are dropped.
        max_buffer_bytes: a constraint: loop nests hold at most this much of the buffer.
        progress: called with a line of text as the search moves on (long searches: many loop
            nests at long sequences).
        budget: sample this many random loop nests per Einsum and array instead of searching
            them exhaustively (for spaces too large to enumerate; the result is not certified);
            ``seed`` makes the sample reproducible.
        instances: independent instances of the workload (batch x heads) the candidates are timed
            for, as :func:`sim.evaluate` times them (the tiles of every instance flow through the
            same pipeline, so the best schedule for one head need not be the best for 768).
        systolic: charge the 2D array's fill and drain to contractions, as ``sim.evaluate(...,
            systolic=True)`` does.
    """

    sizes: Mapping[str, int]
    objective: str | Mapping[str, float] = "latency"
    interleave: bool = True
    fuse: bool = True
    fusion: str = "auto"
    bind: Mapping[str, str] = dataclasses.field(default_factory=dict)
    score_rows: int | None = None
    top_n: int = 1
    max_latency_cycles: float | None = None
    max_buffer_bytes: int | None = None
    progress: Callable[[str], None] | None = dataclasses.field(default=None, compare=False, repr=False)
    budget: int | None = None
    seed: int = 0
    instances: int = 1
    systolic: bool = False

    def __post_init__(self) -> None:
        check_objective(self.objective)
        if self.fusion not in FUSIONS:
            raise ScheduleError(
                f"unknown fusion {self.fusion!r}{suggest(self.fusion, FUSIONS)}; "
                f"expected one of {', '.join(FUSIONS)}"
            )
        if isinstance(self.top_n, bool) or not isinstance(self.top_n, int) or self.top_n < 1:
            raise ScheduleError(f"top_n must be a positive integer, found {self.top_n!r}")
        if self.budget is not None and (
            isinstance(self.budget, bool) or not isinstance(self.budget, int) or self.budget < 1
        ):
            raise ScheduleError(f"budget must be a positive integer, found {self.budget!r}")
        for name in ("max_latency_cycles", "max_buffer_bytes"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or not v > 0):
                raise ScheduleError(f"{name} must be a positive number, found {v!r}")
        if isinstance(self.instances, bool) or not isinstance(self.instances, int) or self.instances < 1:
            raise ScheduleError(f"instances must be a positive integer, found {self.instances!r}")
        if self.score_rows is not None and (
            isinstance(self.score_rows, bool) or not isinstance(self.score_rows, int) or self.score_rows <= 0
        ):
            raise ScheduleError(f"score_rows must be a positive integer, found {self.score_rows!r}")
        for r, v in self.sizes.items():
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ScheduleError(f"size of rank {r} must be a positive integer, found {v!r}")
            if v > einsum.MAX_RANK_SIZE:
                raise ScheduleError(
                    f"size of rank {r} is {v}, above the largest size einforge models "
                    f"(2**40 = {einsum.MAX_RANK_SIZE})"
                )
        if self.instances > einsum.MAX_RANK_SIZE:
            raise ScheduleError(f"instances must be at most 2**40, found {self.instances}")


def _tile_sizes(
    lay: Layout, sizes: Mapping[str, int], arch: ArchSpec, outputs: tuple[str, ...]
) -> dict[str, int]:
    """Rank sizes of one tile (one step of one query tile). A key rank that survives to the output
    (a GEMM's second output rank) is cut to the rows; one that is reduced away stays whole."""
    cols = max(a.cols for a in arch.arrays)
    rows = max((a.rows for a in arch.arrays if a.is_2d), default=1)
    t = dict(sizes)
    t[lay.query] = min(cols, sizes[lay.query])
    if lay.whole is not None and lay.key is not None:
        t[lay.key] = sizes.get(lay.key, rows)
        if lay.step is not None:
            t[lay.step] = 1
    elif lay.key is not None and lay.key in outputs:
        t[lay.key] = min(rows, sizes[lay.key])
    return t


def _full_sizes(
    cascade: einsum.Cascade, lay: Layout, sizes: Mapping[str, int], arch: ArchSpec
) -> dict[str, int]:
    """Workload sizes completed with the partition's parts (M0 from the array, M1 = M / M0)."""
    full = complete_partitions(cascade, sizes, lay)
    missing = [r for r in cascade.ranks if r not in full and not (lay.whole and r in (lay.key, lay.outer))]
    if missing:
        raise ScheduleError(
            f"workload gives no size for rank(s) {', '.join(missing)} of {cascade.name}; "
            f"it gives {', '.join(f'{k}={v}' for k, v in sizes.items())}"
        )
    if lay.whole is not None and lay.key is not None:
        # the key tile is the array's rows, unless the workload fixes the block size (a partition
        # that is part of the algorithm, as landmark attention's blocks are)
        rows = max((a.rows for a in arch.arrays if a.is_2d), default=max(a.cols for a in arch.arrays))
        m = full[lay.whole]
        block = full.setdefault(lay.key, rows)
        if lay.outer is not None:
            full[lay.outer] = -(-m // block)  # a ragged last step holds m mod block keys
    return full


def _candidates(
    f: EinsumFacts, arch: ArchSpec, spatial: Mapping[str, tuple[str, ...]], cascade: einsum.Cascade
) -> list[str]:
    out = []
    twos = {r: 2 for r in cascade.ranks}
    for a in arch.arrays:
        if isinstance(fu_ops(f.counts.at(twos), a), str):
            continue
        if f.kind not in a.einsum_kinds and f.epilogue_of is None:
            continue
        # an Einsum without the row rank would leave all but one row of a 2D array idle
        if a.is_2d and spatial[a.name][0] not in f.ranks:
            continue
        out.append(a.name)
    return out


def _allowed(f: EinsumFacts, arr: PEArray, binding: Mapping[str, str]) -> bool:
    if f.kind in arr.einsum_kinds:
        return True
    return f.epilogue_of is not None and binding.get(f.epilogue_of) == arr.name


def search(cascade: einsum.Cascade, arch: ArchSpec, options: SearchOptions) -> Schedule:
    """The best schedule of ``cascade`` on ``arch`` by ``options.objective`` (see :func:`explore`
    for the ranked candidates, the Pareto set and the certificate)."""
    return explore(cascade, arch, options).best


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One schedule the search costed, with the cost model's estimate for one instance."""

    schedule: Schedule
    estimate: Estimate


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """What :func:`explore` found.

    ``top`` are the best candidates by the objective, best first; ``pareto`` the latency-energy
    Pareto set of every candidate; ``bound`` the (latency cycles, energy pJ) that no schedule of
    the cascade on the architecture can beat (every operation on the array that does it cheapest,
    compulsory traffic only); ``certified`` says every point of the space was evaluated (or pruned
    by a bound), so ``best`` is the optimum of the space under the cost model. Loop nests are
    chosen Einsum by Einsum, which is exact for latency and energy (sums) but not for EDP or
    weights where the schedule has nests: those are not certified.
    """

    best: Schedule
    estimate: Estimate
    top: tuple[Candidate, ...]
    pareto: tuple[Candidate, ...]
    objective: str
    evaluated: int
    nest_evaluations: int
    space: int
    bound: tuple[float, float]
    certified: bool
    seconds: float
    pruned: int = 0  # candidates never timed: their latency's lower bound could not beat the best
    notes: tuple[str, ...] = ()  # why a kind of schedule has no candidate (fusion="auto")

    @property
    def gap(self) -> dict[str, float]:
        """How far the best candidate is above the bound, as a fraction, for latency and energy."""
        lat, en = self.bound
        return {
            "latency": self.estimate.latency_cycles / lat - 1 if lat else 0.0,
            "energy": self.estimate.energy_pj / en - 1 if en else 0.0,
        }

    def describe(self) -> str:
        g = self.gap
        lines = [
            f"search ({self.objective}): {self.evaluated} schedules costed "
            f"({self.nest_evaluations} loop nests; {self.evaluated - self.pruned} timed by the engine, "
            f"{self.pruned} pruned by a lower bound) of a space of {self.space} in {self.seconds:.3f} s; "
            + ("certified optimum" if self.certified else "not certified (sampled)"),
            f"  best: {self.estimate.latency_cycles:.6g} cycles, "
            f"{self.estimate.energy_pj:.6g} pJ for {self.estimate.instances} instance"
            + ("s" if self.estimate.instances != 1 else "")
            + "; "
            f"bound {self.bound[0]:.6g} cycles, {self.bound[1]:.6g} pJ (gap {g['latency']:.1%} latency, "
            f"{g['energy']:.1%} energy)",
        ]
        for note in self.notes:
            lines.append(f"  not in the space: {note}")
        for i, c in enumerate(self.top):
            lines.append(
                f"  #{i + 1}: {c.schedule.fusion:9s} {c.estimate.latency_cycles:12.6g} cycles "
                f"{c.estimate.energy_pj:12.6g} pJ  " + _binding_text(c.schedule)
            )
        if len(self.pareto) > 1:
            lines.append(f"  Pareto set: {len(self.pareto)} schedules")
            for c in self.pareto:
                lines.append(
                    f"    {c.estimate.latency_cycles:12.6g} cycles {c.estimate.energy_pj:12.6g} pJ  "
                    + _binding_text(c.schedule)
                )
        return "\n".join(lines)


def _binding_text(s: Schedule) -> str:
    by: dict[str, list[str]] = {}
    for e, a in s.binding.items():
        by.setdefault(a, []).append(e)
    return "; ".join(f"{a}: {','.join(es)}" for a, es in sorted(by.items()))


def _validate(cascade: einsum.Cascade, arch: ArchSpec, options: SearchOptions) -> None:
    windows = einsum.window_accesses(cascade)
    if windows:
        raise ScheduleError(
            f"{cascade.name}: {windows[0]}, a window over other indices (a convolution or sliding "
            "window); the PE-array templates do not model its reuse. Map it on a storage hierarchy "
            "(einforge map --arch FILE or a preset, mapper.hierarchy), which does"
        )
    names = [f.name for f in einsum_facts(cascade)]
    views = [o for o in cascade.outputs if o not in names]
    if views:
        raise ScheduleError(
            f"{cascade.name or 'the cascade'}: output(s) {', '.join(views)} only re-index another tensor "
            "(a view, no operation): there is nothing to map; compute them in an Einsum "
            "(for example Z[m] = A[m + 1] * 1) or evaluate them with einforge run"
        )
    for name, array in options.bind.items():
        if name not in names:
            raise ScheduleError(
                f"bind names Einsum {name!r}, which {cascade.name} does not have{suggest(name, names)} "
                f"(its Einsums that do work: {', '.join(names)})"
            )
        arch.array(array)  # an unknown array: ArchError with a did-you-mean


def explore(cascade: einsum.Cascade, arch: ArchSpec, options: SearchOptions) -> SearchResult:
    """Enumerate the schedules of ``cascade`` on ``arch`` and rank them by the cost model
    (:func:`mapper.cost.estimate`).

    The space: fused tilings (every binding of the Einsums that iterate the query rank to the
    arrays that can run them, x FLAT's granularities where the architecture has them; the Einsums
    without the query rank run first as loop nests), and the layer-by-layer schedule (every Einsum
    its own loop nest, searched exhaustively by :func:`mapper.nest.search_nests` on every array
    that can run it). ``options.fusion`` restricts it to one of the two.
    """
    t0 = time.perf_counter()
    _validate(cascade, arch, options)
    lay = layout(cascade)
    sizes = _full_sizes(cascade, lay, options.sizes, arch)
    facts = einsum_facts(cascade)
    candidates: list[Candidate] = []
    nest_evals = [0, 0]  # loop nests costed, nest searches that sampled
    space = 0
    problems: list[str] = []
    tiled_ok = lay.key is not None and any(lay.query in f.ranks for f in facts)
    if options.fusion in ("auto", "fused") and tiled_ok:
        if options.progress:
            options.progress("fused tilings")
        try:
            scheds = _tiled(cascade, arch, options, lay, sizes, nest_evals)
            space += len(scheds)
            candidates += scheds
        except ScheduleError as exc:
            if options.fusion == "fused":
                raise
            problems.append(f"fused: {exc}")
    elif options.fusion == "fused":
        raise ScheduleError(
            f"{cascade.name} has no fused tiling: "
            + ("no contraction gives a key rank" if lay.key is None else f"no Einsum iterates {lay.query}")
            + "; use fusion='layerwise' or 'auto'"
        )
    per_instance = _bound(cascade, arch, lay, sizes)
    bound = (per_instance[0] * options.instances, per_instance[1] * options.instances)
    cache: dict[int, Candidate] = {}
    layer_pruned = 0
    # the kernels of an unfused schedule (fuse=False) are the baseline auto reports, where the
    # cascade has them; a cascade without (a scan, no contraction giving a key rank) runs layer by
    # layer
    layerwise = options.fusion in ("auto", "layerwise") and not (
        options.fusion == "auto" and not options.fuse and tiled_ok
    )
    if layerwise and options.fusion == "auto" and candidates:
        # the layer-by-layer nest search is the costly part at long sequences: skip it where a
        # proven bound of its figures cannot beat the fused tilings, nor join their Pareto set
        lat, en = _layerwise_bound(cascade, arch, sizes, options.instances)
        ok_fused, _ = _timed(cascade, candidates, arch, lay, sizes, options, bound, cache)
        values = sorted(c.estimate.objective(options.objective, bound) for c in ok_fused)
        floor = objective_value(options.objective, lat, en, bound)
        if (
            len(values) >= options.top_n
            and floor > values[options.top_n - 1] * (1 + 1e-8)
            and any(c.estimate.latency_cycles <= lat and c.estimate.energy_pj <= en for c in ok_fused)
        ):
            layerwise, layer_pruned = False, 1
            space += 1
    if layerwise:
        try:
            s = _layerwise(cascade, arch, options, lay, sizes, [f.name for f in facts], nest_evals)
            candidates.append(_costed(cascade, s, arch, lay, sizes, options))
            space += 1
        except ScheduleError as exc:
            problems.append(f"layer by layer: {exc}")
    if not candidates:
        raise ScheduleError(
            f"no schedule of {cascade.name} on {arch.name!r}: "
            + ("; ".join(problems) or f"fusion={options.fusion!r} admits none of its schedules")
        )
    obj = options.objective
    ok, pruned = _timed(cascade, candidates, arch, lay, sizes, options, bound, cache)
    pruned += layer_pruned
    if not ok:
        fastest = min(c.estimate.latency_cycles for c in candidates)
        raise ScheduleError(
            f"no schedule of {cascade.name} on {arch.name!r} meets max_latency_cycles = "
            f"{options.max_latency_cycles:g}; the fastest takes {fastest:.6g} cycles"
            + ("" if all(c.estimate.timed for c in candidates) else " or more")
        )

    if obj != "latency" and any(math.isnan(c.estimate.energy_pj) for c in ok):
        arch.buffer.costs(arch.word_bits)  # raises the SRAM model's error, which says why

    def key(c: Candidate) -> tuple[float, ...]:
        e = c.estimate
        crossings = sum(
            1
            for f in facts
            for r in f.reads
            if r in c.schedule.binding and c.schedule.binding[r] != c.schedule.binding[f.name]
        )
        second = e.energy_pj if obj == "latency" else e.latency_cycles
        second = 0.0 if math.isnan(second) else second
        return (_round(e.objective(obj, bound)), crossings, _round(second), -(c.schedule.score_rows or 0))

    ranked = sorted(ok, key=key)
    pareto: list[Candidate] = []
    for c in sorted(ok, key=lambda c: (c.estimate.latency_cycles, c.estimate.energy_pj)):
        if not pareto or c.estimate.energy_pj < pareto[-1].estimate.energy_pj:
            pareto.append(c)
    best = ranked[0]
    check(cascade, best.schedule, arch)
    return SearchResult(
        best=best.schedule,
        estimate=best.estimate,
        top=tuple(ranked[: options.top_n]),
        pareto=tuple(pareto),
        objective=obj if isinstance(obj, str) else "weighted",
        evaluated=len(candidates) + layer_pruned,
        nest_evaluations=nest_evals[0],
        pruned=pruned,
        notes=tuple(problems),
        space=space,
        bound=bound,
        # loop nests are chosen Einsum by Einsum: the best of a sum of latencies (or energies) is
        # the sum of the bests, so latency and energy are certified; a product (EDP) or weights are not
        certified=not any(c.schedule.nests for c in candidates)
        or (obj in ("latency", "energy") and nest_evals[1] == 0),
        seconds=time.perf_counter() - t0,
    )


def _round(x: float) -> float:
    """Ties within floating-point noise are ties (then the tie-breaks decide)."""
    return float(f"{x:.9g}")


def _costed(
    cascade: einsum.Cascade,
    s: Schedule,
    arch: ArchSpec,
    lay: Layout,
    sizes: Mapping[str, int],
    options: SearchOptions,
    timed: bool = False,
) -> Candidate:
    out_ranks = tuple(r.upper() for e in cascade.einsums if e.output in cascade.outputs for r in e.indices)
    tile = _tile_sizes(lay, sizes, arch, out_ranks) if s.kernels else dict(sizes)
    if s.kernels:
        for r, v in s.tile.items():
            if not (r == lay.key and lay.whole):
                tile[r] = min(v, sizes[r])
    return Candidate(
        s,
        estimate(
            cascade,
            s,
            arch,
            full=sizes,
            tile=tile,
            lay=lay,
            instances=options.instances,
            systolic=options.systolic,
            timed=timed,
        ),
    )


def _timed(
    cascade: einsum.Cascade,
    candidates: list[Candidate],
    arch: ArchSpec,
    lay: Layout,
    sizes: Mapping[str, int],
    options: SearchOptions,
    norm: tuple[float, float],
    cache: dict[int, Candidate] | None = None,
) -> tuple[list[Candidate], int]:
    """The candidates that meet the constraints, timed by the engine where it matters, and how
    many were not timed. ``candidates`` carry the latency's proven lower bound
    (:func:`mapper.timing.latency_lower_bound`) and their exact energy; they are timed in order of
    the objective at that bound, until the ``top_n``-th best timed objective is below every
    bound left (the objectives are non-decreasing in latency, so none left can beat it). An
    untimed candidate that no timed one dominates in latency and energy is timed too, so the
    Pareto set is exact."""
    obj = options.objective
    cap = options.max_latency_cycles

    def value(c: Candidate) -> float:
        v = c.estimate.objective(obj, norm)
        return -math.inf if math.isnan(v) else v

    memo = cache if cache is not None else {}

    def exact(c: Candidate) -> Candidate:
        if id(c) not in memo:
            memo[id(c)] = _costed(cascade, c.schedule, arch, lay, sizes, options, timed=True)
        return memo[id(c)]

    done: list[Candidate] = []
    left: list[Candidate] = []
    for c in sorted(candidates, key=value):
        if cap is not None and c.estimate.latency_cycles > cap:
            continue  # its bound already misses the constraint
        best = sorted(value(d) for d in done if cap is None or d.estimate.latency_cycles <= cap)
        if len(best) >= options.top_n and value(c) > best[options.top_n - 1] * (1 + 1e-8):
            left.append(c)
            continue
        done.append(exact(c))
    for c in left:
        dominated = any(
            d.estimate.latency_cycles <= c.estimate.latency_cycles
            and d.estimate.energy_pj <= c.estimate.energy_pj
            for d in done
        )
        if not dominated:
            done.append(exact(c))
    ok = [c for c in done if cap is None or c.estimate.latency_cycles <= cap]
    return ok, len(candidates) - len(done)


def _bound(
    cascade: einsum.Cascade, arch: ArchSpec, lay: Layout, sizes: Mapping[str, int]
) -> tuple[float, float]:
    """(latency, energy) per instance no schedule can beat: each Einsum's busiest operations on
    the array where they take least time (all PEs busy), or least energy; compulsory DRAM traffic
    (every input read once, every output written once) and its buffer fill and drain."""

    per_time: list[float] = []
    energy = 0.0
    live = live_lower_bound(cascade, lay, sizes)  # masked points a schedule may skip
    for f in einsum_facts(cascade):
        counts = actions_at(f.counts, f.ranks, sizes, lay)
        if live < 1 and lay.query in f.ranks and {lay.key, lay.outer} & set(f.ranks):
            counts = {k: v * live for k, v in counts.items()}  # type: ignore[misc]
        best_t, best_e = math.inf, math.inf
        for a in arch.arrays:
            ops = fu_ops(counts, a)
            if isinstance(ops, str):
                continue
            best_t = min(best_t, max(ops.values(), default=0) / a.pes)
            pj = action_pj(a, arch)
            best_e = min(best_e, sum(counts[k] * pj[k] for k in counts))
        if math.isfinite(best_t):
            per_time.append(best_t)
            energy += best_e
    tsizes = tensor_sizes(cascade)
    read = read_tensors(cascade)
    words = sum(tsizes[t.name].at(sizes) for t in cascade.inputs if t.name in read) + sum(
        tsizes[t].at(sizes) for t in cascade.outputs
    )
    bpc = arch.dram.bandwidth_bytes_per_s / arch.clock_hz
    try:
        costs = arch.buffer.costs(arch.word_bits)
        buf_pj = costs.read_pj_per_word + costs.write_pj_per_word
    except SRAMError:
        buf_pj = math.nan
    latency = max(max(per_time, default=0.0), sum(per_time) / len(arch.arrays), words * arch.word_bytes / bpc)
    energy += words * (arch.word_bytes * 8 * arch.dram.pj_per_bit + buf_pj)
    return latency, energy


def _nest_for(
    cascade: einsum.Cascade,
    f: EinsumFacts,
    arch: ArchSpec,
    arrays: list[str],
    sizes: Mapping[str, int],
    options: SearchOptions,
    on_chip: frozenset[str],
    resident: int,
    forbid: frozenset[str],
    counter: list[int],
) -> tuple[LoopNest, NestCost]:
    """The best loop nest of ``f`` over ``arrays`` by the objective (an exhaustive search each)."""
    best: tuple[float, LoopNest, NestCost] | None = None
    why: list[str] = []
    obj = options.objective if isinstance(options.objective, str) else "edp"
    for name in arrays:
        arr = arch.array(name)
        prob = nest_problem(cascade, f, arr, arch, sizes, on_chip=on_chip, resident_words=resident)
        prob = dataclasses.replace(prob, on_chip=frozenset(t for t in prob.tensors if t in on_chip))
        choices = [sp for sp in spatial_choices(prob) if not any(r in forbid for r in sp if r is not None)]
        # a recurrence over its only rank runs on one PE, one step after the other
        choices = choices or [(None,) * (2 if arr.is_2d else 1)]
        try:
            found = search_nests(
                prob,
                objective=obj,
                spatial=choices,
                max_buffer_bytes=options.max_buffer_bytes,
                budget=options.budget,
                seed=options.seed,
            )
        except ScheduleError as exc:
            why.append(f"{name}: {exc}")
            continue
        counter[0] += found.evaluated
        if not found.certified:
            counter[1] += 1  # sampled: the space was too large, or a budget was given
        nest, cost = found.best
        score = cost.objective(obj)
        if best is None or score < best[0]:
            best = (score, nest, cost)
    if best is None:
        raise ScheduleError(f"no loop nest of {f.name} fits: " + "; ".join(why))
    return best[1], best[2]


def _layerwise_bound(
    cascade: einsum.Cascade, arch: ArchSpec, sizes: Mapping[str, int], instances: int
) -> tuple[float, float]:
    """(latency, energy) no layer-by-layer schedule can beat: every Einsum's loop-nest bound
    (:func:`mapper.nest.lower_bound`: compute with every PE busy, compulsory traffic) on the array
    where it is least, with the intermediates :func:`_layerwise` keeps in the buffer on chip and
    the others written to DRAM and read back (it decides that before any nest is searched); the
    nests run one after the other."""
    facts = einsum_facts(cascade)
    kept = frozenset(_kept_between(cascade, arch, sizes, [f.name for f in facts]))
    resident = _words(cascade, sizes, kept)
    lat = en = 0.0
    for f in facts:
        best_l, best_e = math.inf, math.inf
        for a in arch.arrays:
            try:
                p = nest_problem(cascade, f, a, arch, sizes, on_chip=kept, resident_words=resident)
            except ScheduleError:
                continue
            p = dataclasses.replace(p, on_chip=frozenset(t for t in p.tensors if t in kept))
            l_, e_ = nest_lower_bound(p)
            best_l, best_e = min(best_l, l_), min(best_e, e_)
        if not math.isfinite(best_l):
            return 0.0, 0.0  # an Einsum no array runs: no bound (the search says why)
        lat += best_l
        en += best_e if not math.isnan(best_e) else 0.0
    return lat * instances, en * instances


def _arrays_for(
    f: EinsumFacts, arch: ArchSpec, options: SearchOptions, binding: Mapping[str, str]
) -> list[str]:
    if f.name in options.bind:
        return [options.bind[f.name]]
    twos = {r: 2 for r in f.ranks}
    out = []
    for a in arch.arrays:
        if isinstance(fu_ops(f.counts.at(twos), a), str):
            continue
        if not _allowed(f, a, binding):
            continue
        out.append(a.name)
    return out


def _kept_between(
    cascade: einsum.Cascade, arch: ArchSpec, sizes: Mapping[str, int], names: Sequence[str]
) -> list[str]:
    """The intermediates among ``names`` a layer-by-layer schedule keeps in the buffer between
    nests: smallest first while they fit in half of it; the others go to DRAM."""
    tsizes = tensor_sizes(cascade)
    consumed = {r for f in einsum_facts(cascade) for r in f.reads}
    inter = sorted(
        (t for t in names if t in consumed and t not in cascade.outputs), key=lambda t: tsizes[t].at(sizes)
    )
    kept: list[str] = []
    room = arch.buffer.capacity_bytes // arch.word_bytes // 2
    for t in inter:
        w = tsizes[t].at(sizes)
        if w <= room:
            kept.append(t)
            room -= w
    return kept


def _words(cascade: einsum.Cascade, sizes: Mapping[str, int], names: Iterable[str]) -> int:
    tsizes = tensor_sizes(cascade)
    return sum(tsizes[t].at(sizes) for t in names)


def _layerwise(
    cascade: einsum.Cascade,
    arch: ArchSpec,
    options: SearchOptions,
    lay: Layout,
    sizes: Mapping[str, int],
    names: list[str],
    counter: list[int],
    *,
    base: Schedule | None = None,
) -> Schedule:
    """Every Einsum in ``names`` its own loop nest, one after the other; intermediates between
    nests stay in the buffer while they fit in half of it (smallest first), else go to DRAM."""
    facts = {f.name: f for f in einsum_facts(cascade)}
    kept = _kept_between(cascade, arch, sizes, names)
    resident = _words(cascade, sizes, kept)
    binding: dict[str, str] = dict(base.binding) if base else {}
    nests: dict[str, LoopNest] = {}
    forbid = frozenset({lay.step} if lay.step else set())
    for i, name in enumerate(names):
        f = facts[name]
        if options.progress:
            options.progress(f"loop nests of {name} ({i + 1}/{len(names)}), {counter[0]} costed so far")
        arrays = _arrays_for(f, arch, options, binding)
        if not arrays:
            raise ScheduleError(f"no array of {arch.name!r} can run Einsum {name} ({f.kind})")
        nest, _cost = _nest_for(
            cascade, f, arch, arrays, sizes, options, frozenset(kept), resident, forbid, counter
        )
        binding[name] = nest.array
        nests[name] = nest
    residency = dict(base.residency) if base else {}
    for inp in cascade.inputs:
        residency.setdefault(inp.name, "dram")
    for out in cascade.outputs:
        residency.setdefault(out, "dram")
    for t in names:
        if t not in cascade.outputs:
            residency[t] = "buffer" if t in kept else "dram"
    if base is not None:
        return dataclasses.replace(base, binding=binding, nests=nests, residency=residency)
    tile = {lay.key: sizes[lay.key]} if lay.whole is not None and lay.key is not None else {}
    return Schedule(
        cascade=cascade.name,
        binding=binding,
        spatial={a.name: () for a in arch.arrays},
        tile=tile,
        query_tiles_on_chip=(1,),
        residency=residency,
        kernels=(),
        interleave=False,
        lookahead=0,
        nests=nests,
    )


def _tiled(
    cascade: einsum.Cascade,
    arch: ArchSpec,
    options: SearchOptions,
    lay: Layout,
    sizes: Mapping[str, int],
    counter: list[int],
) -> list[Candidate]:
    """Every fused tiling: bindings of the Einsums that iterate the query rank x granularities."""
    out_ranks = tuple(r for e in cascade.einsums if e.output in cascade.outputs for r in e.indices)
    tile = _tile_sizes(lay, sizes, arch, tuple(r.upper() for r in out_ranks))
    all_facts = einsum_facts(cascade)
    facts = tuple(f for f in all_facts if lay.query in f.ranks)
    queryless = [f.name for f in all_facts if lay.query not in f.ranks]
    spatial: dict[str, tuple[str, ...]] = {}
    for a in arch.arrays:
        spatial[a.name] = (lay.key or lay.query, lay.query) if a.is_2d else (lay.query,)
    choices: list[list[str]] = []
    for f in facts:
        if f.name in options.bind:
            choices.append([options.bind[f.name]])
            continue
        cands = _candidates(f, arch, spatial, cascade)
        if not cands:
            twos = {r: 2 for r in cascade.ranks}
            tried = []
            for a in arch.arrays:
                ops = fu_ops(f.counts.at(twos), a)
                why = (
                    f"no '{ops}' unit"
                    if isinstance(ops, str)
                    else f"does not run a {f.kind}"
                    if f.kind not in a.einsum_kinds
                    else f"its rows take {spatial[a.name][0]}, which {f.name} does not iterate over"
                )
                tried.append(f"{a.name} ({why})")
            needs = {k: v for k, v in f.counts.at(twos).items() if v}
            raise ScheduleError(
                f"no unit can execute Einsum {f.name} (operations: "
                f"{', '.join(needs)}; tried {'; '.join(tried)})"
            )
        choices.append(cands)
    kept_tile = {
        r: tile[r]
        for r in (lay.query, lay.key)
        if r is not None and (r == lay.query or lay.whole is not None or tile.get(r) != sizes.get(r))
    }
    out: list[Candidate] = []
    problems: list[str] = []
    prologue: Schedule | None = None
    for combo in itertools.product(*choices):
        binding = {f.name: a for f, a in zip(facts, combo, strict=True)}
        if not all(_allowed(f, arch.array(binding[f.name]), binding) for f in facts):
            continue
        kernels = _kernels(facts, binding, options.fuse)
        lookahead = 0
        if options.interleave:
            load = max(_loads(facts, binding, arch, spatial, tile).values())
            latency = max(
                (exposed_latency(f, arch.array(binding[f.name]), spatial) for f in facts), default=0
            )
            lookahead = 1 + (math.ceil(latency / load) if latency and load else 0)
        grains: list[int | None] = list(
            _granularities(cascade, facts, binding, kernels, arch, lay, sizes, tile)
        )
        if options.score_rows is not None:
            if not grains:
                raise ScheduleError(
                    f"score_rows = {options.score_rows} asks for a fusion granularity, but {cascade.name} on "
                    f"{arch.name!r} has none to choose (the architecture has no score_row_blocks, or the "
                    "cascade keeps no whole rows of scores)"
                )
            if options.score_rows not in grains:
                raise ScheduleError(
                    f"score_rows = {options.score_rows} is not a granularity of {arch.name!r} for "
                    f"{lay.query} = {sizes[lay.query]} (expected one of {', '.join(map(str, grains))})"
                )
            grains = [options.score_rows]
        for g in grains or [None]:
            try:
                residency, spill, p1, spilled = _residency(
                    cascade, facts, binding, kernels, arch, lay, sizes, tile, score_rows=g
                )
            except ScheduleError as exc:
                problems.append(f"{g} rows: {exc}" if g else str(exc))
                continue
            s = Schedule(
                cascade=cascade.name,
                binding=binding,
                spatial=spatial,
                tile=kept_tile,
                query_tiles_on_chip=p1,
                residency=residency,
                spill_fraction=spill,
                spilled=spilled,
                kernels=kernels,
                interleave=options.interleave,
                lookahead=lookahead,
                score_rows=g,
            )
            if queryless:
                if prologue is None:  # the nests do not depend on the tiled binding: search once
                    prologue = _layerwise(cascade, arch, options, lay, sizes, queryless, counter, base=s)
                s = dataclasses.replace(
                    s,
                    binding={**binding, **{n: prologue.binding[n] for n in queryless}},
                    nests=prologue.nests,
                    residency={**prologue.residency, **residency},
                )
            out.append(_costed(cascade, s, arch, lay, sizes, options))
    if not out:
        unique = list(dict.fromkeys(problems))
        if any(" rows: " in p for p in unique):
            raise ScheduleError(f"no fusion granularity of {arch.name!r} fits: " + "; ".join(unique))
        if len(unique) == 1:
            raise ScheduleError(unique[0])
        detail = "; ".join(unique) if unique else "the kinds of Einsum the arrays run"
        raise ScheduleError(f"no fused tiling of {cascade.name} fits {arch.name!r}: {detail}")
    return out


def _granularities(cascade, facts, binding, kernels, arch, lay, sizes, tile) -> list[int]:  # type: ignore[no-untyped-def]
    """FLAT's fusion granularities for this workload: the head (every query row) and the row blocks
    that divide the query rank into whole query tiles; empty where the architecture has none or
    the cascade keeps no whole rows of scores in one kernel."""
    if not arch.score_row_blocks or not _long_tensors(cascade, facts, binding, kernels, lay, sizes, tile):
        return []
    p, q_tile = sizes[lay.query], tile[lay.query]
    blocks = [b for b in sorted(set(arch.score_row_blocks)) if b < p and p % b == 0 and b % q_tile == 0]
    return [*blocks, p]


def _loads(facts, binding, arch, spatial, tile) -> dict[str, float]:  # type: ignore[no-untyped-def]
    loads = {a.name: 0.0 for a in arch.arrays}
    for f in facts:
        arr = arch.array(binding[f.name])
        loads[arr.name] += einsum_cycles(f, arr, spatial[arr.name], tile)
    return loads


def _kernels(facts, binding, fuse) -> tuple[tuple[str, ...], ...]:  # type: ignore[no-untyped-def]
    if fuse:
        return (tuple(f.name for f in facts),)
    kernels: list[list[str]] = []
    for f in facts:
        if kernels and binding[kernels[-1][-1]] == binding[f.name]:
            kernels[-1].append(f.name)
        else:
            kernels.append([f.name])
    return tuple(tuple(k) for k in kernels)


def _classify(cascade, facts, binding, kernels, lay, sizes, tile, one_d=frozenset()):  # type: ignore[no-untyped-def]
    """Where each intermediate goes before the buffer is sized: ``dram`` (crosses kernels),
    ``buffer`` (running state, staged crossing tiles), ``block`` (a key block a 1D array's PE
    would hold for a later pass: staged in the buffer a block at a time, beside the score rows
    and not part of what spills), ``long`` (whole rows of scores) or ``array``; and the staged
    crossing tensors. ``one_d``: the arrays with the query rank alone across their PEs."""
    kernel_of = {e: i for i, k in enumerate(kernels) for e in k}
    by_name = {f.name: f for f in facts}

    where: dict[str, str] = {}
    crossing: list[str] = []
    held_whole = _held_whole(facts, lay)
    for f in facts:
        consumers = [g for g in facts if f.name in g.reads]
        if f.name in cascade.outputs:
            continue
        if any(kernel_of[g.name] != kernel_of[f.name] for g in consumers):
            where[f.name] = "dram"
        elif f.name in cascade.iterative:
            where[f.name] = "buffer"
        elif (
            lay.whole is None
            and lay.key is not None
            and lay.key in f.ranks
            and lay.key not in f.reduced
            and tile.get(lay.key) == sizes.get(lay.key)
            and not any(g.epilogue_of == f.name and binding[g.name] == binding[f.name] for g in consumers)
        ):
            where[f.name] = "long"
        elif f.name in held_whole:
            # read in a later pass over the whole rank (FuseMax's 2-pass A reads SLN beside SD, a
            # sum over every key block): every key block's slice waits on chip or in DRAM
            where[f.name] = "long"
        elif (
            lay.whole is not None
            and lay.key in f.ranks
            and lay.key not in f.reduced
            and any(binding[g.name] != binding[f.name] for g in consumers)
        ):
            # a tile that still spans the key rank across the 2D array's rows cannot flow through
            # the edge between the arrays one value per column: it is staged in the buffer
            where[f.name] = "buffer"
            crossing.append(f.name)
        elif (
            binding[f.name] in one_d
            and lay.key is not None
            and lay.key in f.ranks
            and lay.key not in f.reduced
            and any(in_a_later_pass(by_name, g, f.name, lay.key) for g in consumers)
        ):
            # each PE of a 1D array runs its own queries: it would hold a whole key block of the
            # tensor for the later pass (the causal 2-pass's BQK[p, m1, m0], read by SLN beside LM,
            # its maximum over the block), where its registers hold a few words: the buffer does
            where[f.name] = "block"
        else:
            where[f.name] = "array"
    return where, crossing


def _held_whole(facts, lay: Layout) -> set[str]:  # type: ignore[no-untyped-def]
    """The partitioned tensors over the key rank (``SLN[p, m1, m0]``) read in a later pass: by an
    Einsum that also reads something made from them and reduced over the whole rank (neither the
    key rank nor the outer rank left: ``SD[p]``), so that they are known only once the pass over
    every key block ends."""
    if lay.whole is None or lay.outer is None:
        return set()
    made = {g.name: g for g in facts}
    reads = {n: g.reads for n, g in made.items()}
    whole = {n for n, g in made.items() if not (set(g.ranks) - set(g.reduced)) & {lay.key, lay.outer}}
    return {
        f.name
        for f in facts
        if lay.key in f.ranks
        and lay.key not in f.reduced
        and lay.outer in f.ranks
        and any(
            r != f.name and r in whole and depends(reads, r, f.name)
            for g in facts
            if f.name in g.reads
            for r in g.reads
        )
    }


def _block_stats(facts, lay: Layout, sizes: Mapping[str, int]) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """The per-block statistics a pass over the keys makes and a later step reads (the 2-pass's
    ``LM[p, m1]``, read by PRM beside GM, and ``SLD[p, m1]``, read by SD beside PRM): over the outer
    key rank, not the key rank, made before and read after a result of the whole pass (GM), so
    that every key block's value waits on chip for the pass to end. Each with its words per query."""
    if lay.whole is None or lay.outer is None or lay.step is not None:
        return {}  # (a recurrence's running values are its state, sized as such)
    made = {g.name: g for g in facts}
    reads = {n: g.reads for n, g in made.items()}
    dims = {n: set(g.ranks) - set(g.reduced) for n, g in made.items()}
    keyside = {n for n in made if dims[n] & {lay.key, lay.outer}}
    # the pass's whole results (GM, SD: neither the key rank nor the outer rank left), and what
    # is computed after one of them
    results = {n for n in made if n not in keyside and any(depends(reads, n, k) for k in keyside)}
    late = {n for n in made if any(depends(reads, n, r) for r in results)}
    return {
        f.name: math.prod(sizes.get(r, 1) for r in dims[f.name] if r != lay.query)
        for f in facts
        if f.name not in late
        and lay.outer in dims[f.name]
        and lay.key not in dims[f.name]
        and any(f.name in g.reads and g.name in late for g in facts)
    }


def _long_tensors(cascade, facts, binding, kernels, lay, sizes, tile) -> list[str]:  # type: ignore[no-untyped-def]
    where, _ = _classify(cascade, facts, binding, kernels, lay, sizes, tile)
    return [t for t, w in where.items() if w == "long"]


def _residency(cascade, facts, binding, kernels, arch, lay, sizes, tile, *, score_rows=None):  # type: ignore[no-untyped-def]
    """Residency of every tensor, the spilled fraction, the query tiles per kernel that share
    a pass over K and V, and the tensors the spilled fraction covers. With ``score_rows`` (FLAT's
    granularity) the score rows of that many queries are held on chip together; otherwise one
    query tile's at a time."""
    word = arch.word_bytes
    cap = arch.buffer.capacity_bytes
    kernel_of = {e: i for i, k in enumerate(kernels) for e in k}
    residency: dict[str, str] = {}
    for inp in cascade.inputs:
        residency[inp.name] = "dram"
    for out in cascade.outputs:
        residency[out] = "dram"
    produced = {f.name for f in facts}
    key_words, q_in_words, q_out_words = _row_words(cascade, lay, sizes)
    e_f = q_in_words + q_out_words  # the Q and output rows of one query
    # streaming buffers for the key tile (K and V), double-buffered
    rows = max((a.rows for a in arch.arrays if a.is_2d), default=1)
    key_rows = min(rows, tile.get(lay.key, 1)) if lay.key else 1
    kv_bytes = 2 * key_rows * key_words * word
    one_d = frozenset(a.name for a in arch.arrays if not a.is_2d)
    where, crossing = _classify(cascade, facts, binding, kernels, lay, sizes, tile, one_d)
    long_tensors = [t for t, w in where.items() if w == "long"]
    for t, w in where.items():
        if w != "long":
            residency[t] = "buffer" if w == "block" else w
    spill = 0.0
    shared_pass = 0  # the busy kernel's query tiles per pass over K and V, where set above
    q_tile = tile[lay.query]
    n_tiles = max(1, sizes[lay.query] // q_tile)
    fused = bool(long_tensors) and score_rows is not None  # FLAT's granularity: rows held together
    held = score_rows if fused else q_tile
    if long_tensors:
        # the score rows of the queries held (q_tile x M words each) stay on chip while the softmax
        # passes over them, beside the key tile and the held queries' Q and output rows, and their
        # per-block statistics (LM, SLD: a word per key block each)
        kernel = kernel_of[long_tensors[0]]
        held_f = e_f + sum(w for t, w in _block_stats(facts, lay, sizes).items() if kernel_of[t] == kernel)
        row = sizes[lay.whole or lay.key] * word
        need = held * row
        avail = cap - kv_bytes - held * held_f * word
        if need <= avail:
            where_long, staged = "buffer", need
        elif 1 - avail / need < 0.5 and avail > 0:
            where_long, spill, staged = "buffer", 1 - avail / need, avail
        elif row <= avail:
            where_long, staged = "dram", row  # stream: each row is written once and read once per pass
        else:
            raise ScheduleError(
                f"a row of {lay.key} = {sizes[lay.key]} words ({row} bytes) does not fit "
                f"the {cap}-byte buffer beside the key tile ({kv_bytes} bytes) and the Q and output "
                f"rows of {held} queries"
            )
        for t in long_tensors:
            residency[t] = where_long
        per_query = held_f * word  # the Q and output rows (and statistics) of the queries in flight
        avail = cap - kv_bytes - staged
        if where_long == "buffer" and not spill and not fused:
            # Query tiles that share a pass over K and V: all of them where K and V fit whole
            # beside one tile's rows (K and V loaded once, the tiles one after another); else a
            # group streaming K and V past it, each of its tiles holding its own rows.
            whole_kv = sizes[lay.whole or lay.key] * key_words * word
            if whole_kv + held * (row + held_f * word) <= cap:
                shared_pass = n_tiles
            else:
                per_query, avail = row + held_f * word, cap - kv_bytes
    elif cascade.iterative:
        state = sum(_per_query_words(cascade, t, lay, sizes) for t in cascade.iterative if t in produced)
        state += len(crossing) * tile[lay.key]  # the staged tiles' words per query
        per_query = (q_in_words + state) * word
        avail = cap - kv_bytes
        if avail < q_tile * per_query:
            raise ScheduleError(
                f"the running state of one query tile ({q_tile} queries x {per_query} bytes) and the key "
                f"tile ({kv_bytes} bytes) do not fit the {cap}-byte buffer"
            )
    else:
        per_query, avail = 0, 0
    for f in facts:
        residency.setdefault(f.name, "array")

    def fit(avail: int, per_query: int) -> int:
        p1 = max(1, min(n_tiles, avail // (q_tile * per_query))) if per_query else 1
        while n_tiles % p1:
            p1 -= 1
        return p1

    # the kernel holding the score rows or the running state gets what they leave; a kernel that
    # streams its results to DRAM holds the Q and output rows of as many query tiles as fit
    busy_kernels = {kernel_of[t] for t in long_tensors + [t for t in cascade.iterative if t in produced]}
    fused_tiles = max(1, held // q_tile) if fused else None
    p1s = tuple(
        (fused_tiles or shared_pass or fit(avail, per_query))
        if i in busy_kernels
        else fit(cap - kv_bytes, e_f * word)
        for i in range(len(kernels))
    )
    # what the spilled fraction covers: the buffer-resident intermediates, not the key blocks
    # staged a block at a time
    spilled = (
        tuple(t for t in sorted(produced) if residency.get(t) == "buffer" and where.get(t) != "block")
        if spill
        else ()
    )
    return residency, spill, p1s, spilled


def _row_words(cascade: einsum.Cascade, lay: Layout, sizes: Mapping[str, int]) -> tuple[int, int, int]:
    """Words per key of the key-side inputs (the K and V rows: E + F), per query of the query-side
    inputs (the Q row: E) and per query of the outputs (the output row: F), whatever the ranks are
    called. A row spans the tensor's feature ranks: those no Einsum over both the query and the key
    rank (the scores) has, so heads and batches are no part of a row.
    Inputs indexed by both the query and the key rank (a mask) stream with the key tile."""
    key_ranks = {r for r in (lay.key, lay.whole, lay.outer, lay.step) if r is not None}
    grid = {lay.query} | key_ranks
    for e in cascade.einsums:
        ranks = {i.upper() for i in e.indices}
        if lay.query in ranks and ranks & {lay.key, lay.whole}:
            grid |= ranks

    def per(ranks: tuple[str, ...]) -> int:
        return math.prod(sizes.get(r, 1) for r in ranks if r not in grid)

    read = read_tensors(cascade)
    key = q_in = q_out = 0
    for t in cascade.inputs:
        if t.name not in read:
            continue
        on_key = bool(key_ranks & set(t.ranks))
        on_query = lay.query in t.ranks
        if on_key and not on_query:
            key += per(t.ranks)
        elif on_query and not on_key:
            q_in += per(t.ranks)
    ranks_of = {e.output: tuple(i.upper() for i in e.indices) for e in cascade.einsums}
    for o in cascade.outputs:
        ranks = ranks_of.get(o, ())
        if lay.query in ranks and not key_ranks & set(ranks):
            q_out += per(ranks)
    return key, q_in, q_out


def _per_query_words(cascade: einsum.Cascade, tensor: str, lay: Layout, sizes: Mapping[str, int]) -> int:
    """Words of a recurrence's running value per query (RM: 1, RNV: F)."""
    for e in cascade.einsums:
        if e.output == tensor:
            n = 1
            for i in e.indices:
                r = i.upper()
                if r not in (lay.query, lay.step):
                    n *= sizes.get(r, 1)
            return n
    return 1
