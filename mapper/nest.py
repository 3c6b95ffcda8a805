"""Loop-nest mappings of one Einsum, their cost, and an exhaustive or random search over them.

A :class:`LoopNest` maps one Einsum onto one PE array the way Timeloop's mappings do: which ranks
go across the array's rows and columns (any rank, a reduced one included: the partial sums are
reduced across the array), the tile of every rank held in the global buffer, and one loop order
(outermost first) used at both temporal levels (DRAM -> buffer tiles, buffer -> array steps).

:func:`nest_cost` is the cost model of a loop nest (:class:`NestProblem` holds what it needs,
computed once per Einsum, sizes and array):

- compute cycles = the product over ranks of their trips (a spatial rank: ``ceil(size / dim)``
  folds, a ragged last fold costed as a full one; a temporal rank: its size) times the cycles one
  PE needs per point on its busiest functional unit;
- reuse: a tensor is fetched again for every iteration of a loop over a rank it does not index
  that sits outside the innermost loop over a rank it does index (the standard stationarity rule;
  inside a buffer tile the reused word waits in the PE's register file, so an array whose
  ``rf_words`` cannot hold a word of every operand rereads each operand on every step);
  DRAM words of a tensor = its size x those refetches over the DRAM level's loops; words the
  buffer delivers to the array = its size x the refetches over the loops of both levels taken as
  one nest, DRAM level outermost (Timeloop's rule: a buffer tile that stays while a DRAM-level
  loop over another rank turns is swept again by the buffer-level loops under it; a spatial rank
  the tensor does not index is multicast); an output refetched over a reduction loop writes
  partial sums and reads them back; an output reduced across the array has no register that
  holds its reduced sum, so every temporal step over another rank updates the buffer;
- the buffer holds one tile of every tensor (capacity), and serves
  :meth:`mapper.Buffer.words_per_cycle` words per cycle (unbounded unless the architecture sets
  the buffer's ``bandwidth``);
- latency = max(compute, DRAM bytes / DRAM bytes per cycle, buffer words / buffer words per
  cycle): tiles are double-buffered, so the three overlap and the slowest bounds;
- energy = the Einsum's actions x pJ per action + the output register's read and write of every
  reducing operation (temporal or spatial, as Timeloop and AccelForge charge them) + buffer reads
  and writes x pJ per word + DRAM bits x pJ per bit.

:func:`search_nests` enumerates the space (spatial pairs x tile sizes that divide the trips x loop
orders), prunes every spatial choice whose lower bound (compute at that occupancy, compulsory
traffic) cannot beat the best found, and so certifies the optimum over the space; with a
``budget`` it samples the space at random instead. It only enumerates and asks :func:`nest_cost`.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

import einsum
from mapper.analysis import DataSpace, LevelMapping, Problem, Storage
from mapper.arch import ArchSpec, PEArray
from mapper.errors import ScheduleError
from mapper.schedule import (
    EinsumFacts,
    LoopNest,
    Schedule,
    _accesses,
    _index_vars,
    einsum_facts,
    fu_ops,
    tensor_sizes,
)
from mapper.sram import SRAMError

__all__ = [
    "LoopNest",
    "NestCost",
    "NestProblem",
    "NestSearch",
    "action_pj",
    "nest_cost",
    "nest_hierarchy",
    "nest_problem",
    "objective_value",
    "schedule_nests",
    "search_nests",
    "OBJECTIVES",
]

OBJECTIVES = ("latency", "energy", "edp")


def action_pj(arr: PEArray, arch: ArchSpec) -> dict[str, float]:
    """pJ per IR action category on one PE of ``arr`` (an exp on the MAC costs ``exp_macs`` MACs)."""
    e = arch.energy
    return {
        "mac": e.mac_pj,
        "add": e.add_pj,
        "max": e.max_pj,
        "exp": e.exp_pj if "exp" in arr.units else arr.exp_macs * e.mac_pj,
        "div": e.div_pj,
        "other": e.mac_pj,
    }


def objective_value(
    objective: str | Mapping[str, float],
    latency: float,
    energy: float,
    norm: tuple[float, float] = (1.0, 1.0),
) -> float:
    """The value of ``objective`` for a latency and an energy: ``latency``, ``energy``, ``edp``, or
    weights (a weighted sum of latency and energy, each divided by its entry of ``norm``)."""
    if isinstance(objective, str):
        return {"latency": latency, "energy": energy, "edp": latency * energy}[objective]
    return objective.get("latency", 0.0) * latency / norm[0] + objective.get("energy", 0.0) * energy / norm[1]


@dataclasses.dataclass(frozen=True)
class NestCost:
    """What one loop nest costs. Cycles are the array's clock; traffic in words."""

    compute_cycles: int
    latency_cycles: float
    bound_by: str  # "compute", "dram" or "buffer"
    dram_words: float
    buffer_reads: float
    buffer_writes: float
    buffer_words_held: int
    energy_pj: float
    spatial_utilization: float  # busiest unit's operations / (PEs x compute cycles)
    fits: bool

    def objective(self, name: str) -> float:
        return objective_value(name, self.latency_cycles, self.energy_pj)


@dataclasses.dataclass(frozen=True)
class NestProblem:
    """What the cost of any loop nest of one Einsum on one array needs, computed once."""

    fact: EinsumFacts
    array: PEArray
    ranks: tuple[str, ...]
    sizes: Mapping[str, int]
    tensors: Mapping[str, frozenset[str]]  # tensor -> ranks it is indexed by
    tensor_words: Mapping[str, int]
    output: str
    reduced: frozenset[str]
    cycles_per_point: float  # busiest unit's operations per iteration point, per PE
    busiest_ops: int
    action_energy_pj: float
    rf_pj: float
    word_bytes: int
    dram_bytes_per_cycle: float
    buffer_words_per_cycle: float
    buffer_capacity_words: int
    buffer_read_pj: float
    buffer_write_pj: float
    dram_pj_per_word: float
    on_chip: frozenset[str] = frozenset()  # tensors already in (or staying in) the buffer
    rf_holds: bool = True  # each PE's register file holds a word of every operand (rf_words)

    @property
    def points(self) -> int:
        return math.prod(self.sizes[r] for r in self.ranks)

    def compulsory_words(self) -> int:
        return sum(self.tensor_words.values())


def nest_problem(
    cascade: einsum.Cascade,
    fact: EinsumFacts,
    array: PEArray,
    arch: ArchSpec,
    sizes: Mapping[str, int],
    *,
    sram_model: object = None,
    on_chip: frozenset[str] = frozenset(),
    resident_words: int = 0,
) -> NestProblem:
    """The :class:`NestProblem` of ``fact`` (an Einsum of ``cascade``) on ``array`` at ``sizes``.

    ``on_chip`` tensors live in the buffer for the whole nest (an intermediate another nest left
    there, or an output that stays for the next): they move no DRAM words and take
    ``resident_words`` of the buffer, leaving the rest for the tiles."""
    missing = [r for r in fact.ranks if r not in sizes]
    if missing:
        raise ScheduleError(f"Einsum {fact.name}: no size for rank(s) {', '.join(missing)}")
    # the statement that does the work (a recurrence's step, not its init)
    e = next(x for x in cascade.einsums if x.output == fact.name and not x.init)
    tensors: dict[str, frozenset[str]] = {}
    for a in _accesses(e.expr):
        if a.tensor in cascade.params:
            continue
        tensors.setdefault(a.tensor, frozenset(v.upper() for v in _index_vars(a)))
    tensors[fact.name] = frozenset(v.upper() for v in e.indices)
    words = {t: math.prod(sizes[r] for r in rs) for t, rs in tensors.items()}
    counts = fact.counts.at(sizes)
    ops = fu_ops(counts, array)
    if isinstance(ops, str):
        raise ScheduleError(f"Einsum {fact.name} needs '{ops}', which array {array.name!r} cannot execute")
    points = math.prod(sizes[r] for r in fact.ranks)
    busiest = max(ops.values(), default=0)
    pj = action_pj(array, arch)
    rf_ops = counts["mac"] + counts["add"] + counts["max"] if fact.reduced else 0
    try:
        buf = arch.buffer.costs(arch.word_bits, sram_model)  # type: ignore[arg-type]
        read_pj, write_pj = buf.read_pj_per_word, buf.write_pj_per_word
    except SRAMError:  # a buffer the SRAM model cannot price: latency only (energy is NaN)
        read_pj = write_pj = math.nan
    bw = arch.buffer.words_per_cycle(arch.word_bits)
    return NestProblem(
        fact=fact,
        array=array,
        ranks=fact.ranks,
        sizes={r: sizes[r] for r in fact.ranks},
        tensors=tensors,
        tensor_words=words,
        output=fact.name,
        reduced=frozenset(fact.reduced),
        cycles_per_point=busiest / points if points else 0.0,
        busiest_ops=busiest,
        action_energy_pj=sum(counts[k] * pj[k] for k in counts),
        rf_pj=rf_ops * (array.rf_read_pj + array.rf_write_pj),
        word_bytes=arch.word_bytes,
        dram_bytes_per_cycle=arch.dram.bandwidth_bytes_per_s / arch.clock_hz,
        buffer_words_per_cycle=bw,
        buffer_capacity_words=max(0, arch.buffer.capacity_bytes // arch.word_bytes - resident_words),
        buffer_read_pj=read_pj,
        buffer_write_pj=write_pj,
        dram_pj_per_word=arch.word_bytes * 8 * arch.dram.pj_per_bit,
        on_chip=frozenset(on_chip),
        rf_holds=array.rf_words >= len(tensors),
    )


def _dims(array: PEArray) -> tuple[int, ...]:
    return (array.rows, array.cols) if array.is_2d else (array.cols,)


def trips(problem: NestProblem, spatial: Sequence[str | None]) -> dict[str, int]:
    """Temporal trips of every rank once ``spatial`` ranks are spread over the array."""
    t = dict(problem.sizes)
    for dim, r in zip(_dims(problem.array), spatial, strict=True):
        if r is not None:
            t[r] = -(-problem.sizes[r] // dim)
    return t


def _refetch(order: Sequence[str], trips_: Mapping[str, int], ranks: frozenset[str]) -> int:
    """How many times a tensor indexed by ``ranks`` is fetched per distinct tile, through loops in
    ``order`` with ``trips_``: loops over other ranks outside its innermost relevant loop."""
    last = -1
    for i, r in enumerate(order):
        if r in ranks and trips_[r] > 1:  # a loop that runs once changes nothing
            last = i
    n = 1
    for i in range(last):
        r = order[i]
        if r not in ranks:
            n *= trips_[r]
    return n


def _refetch_loops(loops: Sequence[tuple[str, int]], ranks: frozenset[str]) -> int:
    """:func:`_refetch` over a list of ``(rank, trips)`` loops, outermost first, where a rank may
    have a loop at several levels."""
    last = -1
    for i, (r, n) in enumerate(loops):
        if r in ranks and n > 1:
            last = i
    out = 1
    for r, n in loops[: max(last, 0)]:  # no relevant loop runs: the tile never changes
        if r not in ranks:
            out *= n
    return out


def _all_other(trips_: Mapping[str, int], ranks: frozenset[str]) -> int:
    return math.prod(v for r, v in trips_.items() if r not in ranks)


def systolic_cycles(problem: NestProblem, spatial: Sequence[str | None]) -> int | None:
    """Compute cycles of a two-operand contraction over three ranks on a 2D systolic array, with
    fill and drain, as SCALE-Sim counts them (:func:`mapper.systolic_gemm_cycles`): both output
    ranks across the array is output stationary (the reduced rank streams); the reduced rank down
    the rows is weight stationary (the operand indexed by the columns' rank stays, the other output
    rank streams). None where the nest is no such dataflow."""
    from mapper.schedule import systolic_gemm_cycles

    p = problem
    if not p.array.is_2d or p.fact.kind != "contraction" or len(p.ranks) != 3 or len(p.reduced) != 1:
        return None
    rows_rank, cols_rank = spatial
    if rows_rank is None or cols_rank is None:
        return None
    (red,) = p.reduced
    s = p.sizes
    if rows_rank != red and cols_rank != red:  # output stationary
        return systolic_gemm_cycles(s[rows_rank], s[cols_rank], s[red], p.array.rows, p.array.cols, "os")
    if rows_rank == red:  # the reduced rank down the rows: weight (or input) stationary
        (streamed,) = [r for r in p.ranks if r not in (rows_rank, cols_rank)]
        return systolic_gemm_cycles(s[streamed], s[cols_rank], s[red], p.array.rows, p.array.cols, "ws")
    return None


def nest_cost(problem: NestProblem, nest: LoopNest, *, systolic: bool = False) -> NestCost:
    """The cost of ``nest`` (see the module's text for the model). With ``systolic`` a contraction
    on a 2D array in a systolic dataflow pays its fill and drain (:func:`systolic_cycles`)."""
    p = problem
    dims = _dims(p.array)
    t_all = trips(p, nest.spatial)
    ext = {r: 1 for r in p.ranks}
    for dim, r in zip(dims, nest.spatial, strict=True):
        if r is not None:
            ext[r] = min(dim, p.sizes[r])
    compute_points = math.prod(t_all.values())
    compute = math.ceil(compute_points * p.cycles_per_point) if p.busiest_ops else 0
    if systolic:
        compute = systolic_cycles(p, nest.spatial) or compute
    outer = {r: -(-t_all[r] // nest.tiles[r]) for r in p.ranks}
    inner = {r: nest.tiles[r] for r in p.ranks}
    # the loops above the PEs, outermost first: the DRAM level's, then the buffer level's
    loops = [(r, outer[r]) for r in nest.order] + [(r, inner[r]) for r in nest.order]
    spatial_reduce = any(r in p.reduced for r in nest.spatial if r is not None)
    dram = 0.0
    reads = 0.0
    writes = 0.0
    held = 0
    for t, rs in p.tensors.items():
        size = p.tensor_words[t]
        # buffer tiles filled from DRAM: loops at the DRAM level over other ranks outside its
        # innermost relevant one refetch it
        out_ref = _refetch(nest.order, outer, rs)
        # words delivered to the array: the same rule over both levels' loops, since a buffer tile
        # that stays while a DRAM-level loop over another rank turns is still swept again by the
        # buffer-level loops under it (Timeloop's accesses at the buffer). The reused word waits
        # in the PE's register meanwhile; a register file too small for a word of every operand
        # rereads each one on every step, and an output reduced across the array has no register
        # that holds its reduced sum, so every step updates the buffer
        if p.rf_holds and not (t == p.output and spatial_reduce):
            to_array = _refetch_loops(loops, rs)
        else:
            to_array = _all_other(outer, rs) * _all_other(inner, rs)
        if t in p.on_chip:  # wholly in the buffer: only the array's reads and writes
            if t == p.output:
                writes += size * to_array
                reads += size * (to_array - 1)
            else:
                reads += size * to_array
            continue
        tile = 1
        for r in rs:
            tile *= min(p.sizes[r], inner[r] * ext[r])
        held += tile
        if t == p.output:
            # partial sums leave and come back when a reduction loop wraps the output's loops
            dram += size * (2 * out_ref - 1)
            writes += size * to_array + size * (out_ref - 1)  # from the array, and refills
            reads += size * (to_array - 1) + size * out_ref  # partial sums, and drains
        else:
            dram += size * out_ref
            writes += size * out_ref  # filled from DRAM
            reads += size * to_array
    fits = held <= p.buffer_capacity_words
    dram_cycles = dram * p.word_bytes / p.dram_bytes_per_cycle
    buffer_cycles = (reads + writes) / p.buffer_words_per_cycle
    latency = max(compute, dram_cycles, buffer_cycles)
    bound = "compute" if latency == compute else "dram" if latency == dram_cycles else "buffer"
    energy = (
        p.action_energy_pj
        + p.rf_pj
        + reads * p.buffer_read_pj
        + writes * p.buffer_write_pj
        + dram * p.dram_pj_per_word
    )
    util = p.busiest_ops / (p.array.pes * compute) if compute else 0.0
    return NestCost(
        compute_cycles=compute,
        latency_cycles=latency,
        bound_by=bound,
        dram_words=dram,
        buffer_reads=reads,
        buffer_writes=writes,
        buffer_words_held=held,
        energy_pj=energy,
        spatial_utilization=util,
        fits=fits,
    )


def nest_hierarchy(
    problem: NestProblem, nest: LoopNest, *, resident: bool = False
) -> tuple[Problem, tuple[Storage, ...], tuple[LevelMapping, ...]]:
    """``nest`` as a mapping over a storage hierarchy (:mod:`mapper.analysis`): DRAM, the global
    buffer, one register file per PE, with the DRAM level's and the buffer level's loops in the
    nest's order and the spatial ranks across the array. A register file keeps every operand
    where ``rf_words`` holds a word of each, and the output unless it is reduced across the array
    (no PE register holds the reduced sum). :func:`nest_cost` is this analysis specialised: its DRAM
    words, buffer writes and tile words equal the analysis's, and its buffer reads equal the
    analysis's plus the output's words drained to DRAM (read out of the buffer to send them up),
    wherever the spatial ranks divide their sizes (``tests/mapper/test_cost_model.py`` checks it).
    ``to_timeloop`` (:mod:`mapper.hsearch`) writes the result in Timeloop's mapping format.
    With ``resident``, the tensors the schedule keeps in the buffer between nests
    (``problem.on_chip``) are kept by the buffer and not by DRAM: analyse it with them
    ``produced`` (:func:`mapper.analysis.analyze`), so nothing fills them from DRAM."""
    p = problem
    if p.on_chip and not resident:
        raise ScheduleError(
            f"nest {nest.describe()}: tensors resident in the buffer ({', '.join(sorted(p.on_chip))}) "
            "have no place in a single-Einsum hierarchy"
        )
    dims = _dims(p.array)
    t_all = trips(p, nest.spatial)
    outer = {r: -(-t_all[r] // nest.tiles[r]) for r in p.ranks}
    spatial = tuple(
        (r, min(d, p.sizes[r]))
        for d, r in zip(dims, nest.spatial, strict=True)
        if r is not None and p.sizes[r] > 1
    )
    for r, f in spatial:
        if p.sizes[r] % f:
            raise ScheduleError(
                f"nest {nest.describe()}: rank {r} ({p.sizes[r]}) does not divide over {f} PEs; "
                "the hierarchy analysis needs exact factors"
            )
    reduced_across = any(r in p.reduced for r in nest.spatial if r is not None)
    problem_h = Problem(
        name=p.fact.name,
        dims=tuple((r, p.sizes[r]) for r in p.ranks),
        spaces=tuple(
            DataSpace(name=t, projection=tuple(((r, 1),) for r in sorted(rs)), output=t == p.output)
            for t, rs in p.tensors.items()
        ),
    )
    rf_keep = frozenset(t for t in p.tensors if p.rf_holds and not (t == p.output and reduced_across))
    storages = (
        Storage(name="DRAM"),
        Storage(name="buffer"),  # nest_cost flags a tile over capacity (fits) rather than refusing it
        Storage(name="rf", instances=math.prod(f for _r, f in spatial)),
    )
    mappings = (
        LevelMapping(
            target="DRAM",
            temporal=tuple((r, outer[r]) for r in nest.order if outer[r] > 1),
            keep=frozenset(t for t in p.tensors if t not in p.on_chip) if p.on_chip else None,
        ),
        LevelMapping(
            target="buffer",
            temporal=tuple((r, nest.tiles[r]) for r in nest.order if nest.tiles[r] > 1),
            spatial=spatial,
        ),
        LevelMapping(target="rf", keep=rf_keep),
    )
    return problem_h, storages, mappings


def spatial_choices(problem: NestProblem) -> list[tuple[str | None, ...]]:
    """Every way to put the Einsum's ranks across the array: distinct ranks on rows and columns
    (a reduced rank included), or one rank and the other dimension unused."""
    ranks = list(problem.ranks)
    if not problem.array.is_2d:
        return [(r,) for r in ranks] or [(None,)]
    out: list[tuple[str | None, ...]] = [(a, b) for a, b in itertools.permutations(ranks, 2)]
    out += [(r, None) for r in ranks] + [(None, r) for r in ranks]
    return out or [(None, None)]


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def lower_bound(problem: NestProblem, spatial: Sequence[str | None] | None = None) -> tuple[float, float]:
    """(latency, energy) no loop nest can beat (with ``spatial`` fixed, or over every choice):
    compute at the occupancy achieved (at best every PE busy), compulsory traffic at DRAM and the
    buffer, every action priced."""
    p = problem
    if spatial is None:
        compute = math.ceil(p.busiest_ops / p.array.pes) if p.busiest_ops else 0
    else:
        compute = (
            math.ceil(math.prod(trips(p, spatial).values()) * p.cycles_per_point) if p.busiest_ops else 0
        )
    out = p.tensor_words[p.output]
    ins = p.compulsory_words() - out
    ins_off = sum(w for t, w in p.tensor_words.items() if t != p.output and t not in p.on_chip)
    out_off = out if p.output not in p.on_chip else 0
    reads = ins + out_off  # every input read once by the array; an output off chip drained once
    writes = ins_off + out  # every input off chip filled once; the output written once
    latency = max(
        compute,
        (ins_off + out_off) * p.word_bytes / p.dram_bytes_per_cycle,
        (reads + writes) / p.buffer_words_per_cycle,
    )
    # the output register's read and write of every reducing operation (temporal or spatial)
    rf = p.rf_pj
    energy = (
        p.action_energy_pj
        + rf
        + reads * p.buffer_read_pj
        + writes * p.buffer_write_pj
        + (ins_off + out_off) * p.dram_pj_per_word
    )
    return float(latency), energy


@dataclasses.dataclass(frozen=True)
class NestSearch:
    """What :func:`search_nests` found: the best nests (``top``, best first, with their costs), the
    latency-energy Pareto set, the lower bound of the objective over the space and whether the
    optimum is certified (every point evaluated or pruned by the bound)."""

    top: tuple[tuple[LoopNest, NestCost], ...]
    pareto: tuple[tuple[LoopNest, NestCost], ...]
    objective: str
    evaluated: int
    pruned: int
    space: int
    bound: float
    certified: bool
    seconds: float

    @property
    def best(self) -> tuple[LoopNest, NestCost]:
        return self.top[0]

    @property
    def gap(self) -> float:
        """(best - bound) / bound: how far the optimum is from what no mapping can beat."""
        best = self.best[1].objective(self.objective) if self.objective in OBJECTIVES else 0.0
        return best / self.bound - 1 if self.bound else 0.0


def check_objective(objective: str | Mapping[str, float]) -> None:
    if isinstance(objective, str):
        if objective not in OBJECTIVES:
            raise ScheduleError(
                f"unknown objective {objective!r}; expected one of {', '.join(OBJECTIVES)} or weights"
            )
        return
    bad = [k for k in objective if k not in ("latency", "energy")]
    if bad or not objective:
        raise ScheduleError(f"objective weights must name latency and/or energy, found {dict(objective)!r}")
    for k, w in objective.items():
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
            raise ScheduleError(f"objective weight of {k} must be a number >= 0, found {w!r}")


def _points(
    problem: NestProblem, spatial: tuple[str | None, ...]
) -> Iterator[tuple[dict[str, int], tuple[str, ...]]]:
    """The tiles x loop orders of one spatial choice. A rank whose loop runs once at both levels
    (its tile is 1 and its trips fit one tile) cannot change any refetch, so only the orders of
    the other ranks are distinct points; the rest follow in a fixed order."""
    t_all = trips(problem, spatial)
    ranks = problem.ranks
    options = [_divisors(t_all[r]) for r in ranks]
    for tiles in itertools.product(*options):
        tile_map = dict(zip(ranks, tiles, strict=True))
        moving = [r for r in ranks if tile_map[r] > 1 or t_all[r] > tile_map[r]]
        still = tuple(r for r in ranks if r not in moving)
        for order in itertools.permutations(moving):
            yield tile_map, order + still


def _count(problem: NestProblem, spatial: tuple[str | None, ...]) -> int:
    """Distinct points of one spatial choice (as :func:`_points` yields them)."""
    t_all = trips(problem, spatial)
    # per rank: how many tile sizes leave it still (tile 1 of 1 trip) or moving
    n = 0
    ranks = problem.ranks
    options = [_divisors(t_all[r]) for r in ranks]
    for tiles in itertools.product(*options):
        moving = sum(1 for r, t in zip(ranks, tiles, strict=True) if t > 1 or t_all[r] > t)
        n += math.factorial(moving)
    return n


def space_size(problem: NestProblem) -> int:
    """Distinct loop nests of ``problem``: spatial choices x tiles x loop orders."""
    return sum(_count(problem, sp) for sp in spatial_choices(problem))


def search_nests(
    problem: NestProblem,
    *,
    objective: str | Mapping[str, float] = "latency",
    top_n: int = 1,
    max_latency_cycles: float | None = None,
    max_buffer_bytes: int | None = None,
    budget: int | None = None,
    seed: int = 0,
    pareto: bool = False,
    spatial: Sequence[tuple[str | None, ...]] | None = None,
    progress: Callable[[int, int], None] | None = None,
    max_points: int = 2_000_000,
) -> NestSearch:
    """Search the loop nests of ``problem``.

    Exhaustive (``budget=None``): every spatial choice whose lower bound cannot beat the ``top_n``-th
    best found so far is pruned whole; the rest is evaluated, so the optimum is certified over the
    space. With ``budget`` it evaluates that many random points (seeded; not certified); a space
    larger than ``max_points`` is sampled so (``max_points // 40`` points) even without a budget,
    and the result says it is not certified.
    ``objective`` is ``latency``, ``energy``, ``edp`` or weights such as ``{"latency": 1,
    "energy": 0.5}`` (a weighted sum of latency and energy, each divided by its lower bound).
    Constraints: ``max_latency_cycles``, ``max_buffer_bytes`` (the tiles held on chip; the buffer's
    capacity always applies). ``pareto`` keeps the latency-energy Pareto set (and turns pruning off).
    """
    check_objective(objective)
    if not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 1:
        raise ScheduleError(f"top_n must be a positive integer, found {top_n!r}")
    t0 = time.perf_counter()
    p = problem
    cap_words = p.buffer_capacity_words
    if max_buffer_bytes is not None:
        cap_words = min(cap_words, max_buffer_bytes // p.word_bytes)
    choices = list(spatial) if spatial is not None else spatial_choices(p)
    if budget is None:
        # a space too large to enumerate (many ranks with many divisors) is sampled instead
        upper = sum(
            math.prod(len(_divisors(v)) for v in trips(p, sp).values()) * math.factorial(len(p.ranks))
            for sp in choices
        )
        if upper > max_points:
            budget = max(1, max_points // 40)
    norm = lower_bound(p)
    bounds = {sp: lower_bound(p, sp) for sp in choices}

    def key_of(lat: float, en: float) -> tuple[float, float]:
        # ties on the objective go to the lower energy (latency, for the energy objective)
        return (objective_value(objective, lat, en, norm), lat if objective == "energy" else en)

    def bound_score(sp: tuple[str | None, ...]) -> tuple[float, float]:
        return key_of(*bounds[sp])

    global_bound = min(bound_score(sp)[0] for sp in choices)
    best: list[tuple[tuple[float, float], int, LoopNest, NestCost]] = []  # sorted, top_n long
    front: list[tuple[LoopNest, NestCost]] = []
    evaluated = pruned = 0
    serial = 0
    counts = {sp: _count(p, sp) for sp in choices} if budget is None else {}
    total = sum(counts.values()) if budget is None else budget

    def consider(nest: LoopNest, cost: NestCost) -> None:
        nonlocal serial
        if cost.buffer_words_held > cap_words:
            return
        if max_latency_cycles is not None and cost.latency_cycles > max_latency_cycles:
            return
        k = key_of(cost.latency_cycles, cost.energy_pj)
        serial += 1
        if len(best) < top_n or k < best[-1][0]:
            bisect.insort(best, (k, serial, nest, cost), key=lambda x: (x[0], x[1]))
            del best[top_n:]
        if pareto:
            _pareto_add(front, nest, cost)

    def full() -> bool:
        return not pareto and len(best) == top_n

    if budget is None:
        for sp in sorted(choices, key=bound_score):
            floor = bound_score(sp)
            if full() and floor >= best[-1][0]:  # nothing here can beat the top_n found
                pruned += counts[sp]
                continue
            size = counts[sp]
            done = 0
            for tiles, order in _points(p, sp):
                nest = LoopNest(p.fact.name, p.array.name, sp, tiles, order)
                consider(nest, nest_cost(p, nest))
                evaluated += 1
                done += 1
                if progress and evaluated % 20000 == 0:
                    progress(evaluated + pruned, total)
                # the top_n meet this spatial choice's bound: nothing left here can beat them
                if full() and best[-1][0] <= floor:
                    pruned += size - done
                    break
    else:
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
            raise ScheduleError(f"budget must be a positive integer, found {budget!r}")
        rng = random.Random(seed)
        orders = list(itertools.permutations(p.ranks))
        divs = {sp: {r: _divisors(v) for r, v in trips(p, sp).items()} for sp in choices}
        for _ in range(budget):
            sp = rng.choice(choices)
            tiles = {r: rng.choice(divs[sp][r]) for r in p.ranks}
            nest = LoopNest(p.fact.name, p.array.name, sp, tiles, rng.choice(orders))
            consider(nest, nest_cost(p, nest))
            evaluated += 1
    if not best:
        raise ScheduleError(
            f"no loop nest of Einsum {p.fact.name} on array {p.array.name!r} meets the constraints "
            f"(buffer {cap_words * p.word_bytes} bytes"
            + (f", latency <= {max_latency_cycles:g} cycles" if max_latency_cycles is not None else "")
            + ")"
        )
    top = tuple((n, c) for _k, _i, n, c in best)
    return NestSearch(
        top=top,
        pareto=tuple(sorted(front, key=lambda nc: nc[1].latency_cycles)),
        objective=objective if isinstance(objective, str) else "weighted",
        evaluated=evaluated,
        pruned=pruned,
        space=total,
        bound=global_bound,
        certified=budget is None,
        seconds=time.perf_counter() - t0,
    )


def _pareto_add(front: list[tuple[LoopNest, NestCost]], nest: LoopNest, cost: NestCost) -> None:
    lat, en = cost.latency_cycles, cost.energy_pj
    for _n, c in front:
        if c.latency_cycles <= lat and c.energy_pj <= en:
            return
    front[:] = [(n, c) for n, c in front if not (lat <= c.latency_cycles and en <= c.energy_pj)]
    front.append((nest, cost))


def schedule_nests(
    cascade: einsum.Cascade,
    schedule: Schedule,
    arch: ArchSpec,
    sizes: Mapping[str, int],
    *,
    sram_model: object = None,
    systolic: bool = False,
) -> dict[str, tuple[NestProblem, NestCost]]:
    """The problem and cost of every loop nest of ``schedule`` at ``sizes`` (one instance). A
    tensor the schedule keeps in the ``buffer`` between nests takes its words of the buffer and
    moves no DRAM words."""
    if not schedule.nests:
        return {}
    facts = {f.name: f for f in einsum_facts(cascade)}
    tsizes = tensor_sizes(cascade)
    kept = {t for t in schedule.nests if schedule.residency.get(t) == "buffer"}
    resident = sum(tsizes[t].at(sizes) for t in kept)
    out: dict[str, tuple[NestProblem, NestCost]] = {}
    for name, nest in schedule.nests.items():
        prob = nest_problem(
            cascade,
            facts[name],
            arch.array(nest.array),
            arch,
            sizes,
            sram_model=sram_model,
            on_chip=frozenset(kept),
            resident_words=resident,
        )
        prob = dataclasses.replace(prob, on_chip=frozenset(t for t in prob.tensors if t in kept))
        out[name] = (prob, nest_cost(prob, nest, systolic=systolic))
    return out
