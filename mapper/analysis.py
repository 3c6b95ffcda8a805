"""Access counts of one Einsum mapped over a storage hierarchy of any depth, by Timeloop's rules.

The data (all frozen): a :class:`Problem` (dimensions with their sizes; data spaces whose ranks
are affine projections of the dimensions, such as a convolution's input ``W = P + R``; one
read-write output), a hierarchy of :class:`Storage` levels, outermost (DRAM) first, and one
:class:`LevelMapping` per level (temporal loops, outermost first; spatial loops across the level's
fanout to the next level inward; the tensors the level keeps). :func:`analyze` returns, per level
and tensor, the scalar reads, fills and updates over all instances, and the computes, cycles,
utilisation and energy.

The rules (Timeloop's uniform, dense model; checked against its reference outputs in the tests):

- The tile a level keeps spans the loops of that level and every level inside it; a rank of the
  tensor spans ``sum(coef * (span - 1)) + 1`` indices.
- **Fills** of a level (per instance): its tile, then, for each advance of a temporal loop above it,
  the words the new tile does not share with the old. An advance moves the loop's dimension by
  its stride and resets every loop inside it, so a loop over a dimension the tensor does not
  project onto refetches nothing when it is innermost, and everything when a relevant loop sits
  inside it; a sliding window (``P + R``) fetches only the new halo when its loop is the innermost
  running loop above the level, and is fetched anew otherwise (Timeloop resets its deltas when
  the tile's stride changes). An output's first visit of each word needs no fill (Timeloop v0.4;
  ``cold_output_fills=True`` counts it, as Timeloop's earlier releases did).
- **Reads** of a level: what the next level inward that keeps the tensor fills (over all its
  instances), or, where no level inside keeps it, one per compute; a spatial loop over a
  dimension the tensor does not project onto multicasts (one read serves its instances).
- **The output**: a level's updates are the fills of the next keeper inward (or one per compute
  at the innermost keeper), divided by the spatial reduction across dimensions the output does
  not project onto; its reads are its updates less its partition (the words one instance holds
  over the run): the first update of each word an instance holds over the run reads nothing.
- **Capacity**: the tiles of the tensors a level keeps must fit one instance's capacity, else the
  mapping is a :class:`~mapper.errors.ScheduleError` (Timeloop rejects it too).
- Cycles: the computes over the utilised compute instances, or, where more, the cycles a level's
  bandwidth needs (per instance: reads over ``read_bandwidth``, fills and updates over
  ``write_bandwidth``, all of them over ``shared_bandwidth``; tiles are multiple-buffered, so
  transfers overlap the computes and the slowest bounds).
- Energy: per level, tensor and action, ``ceil(accesses per instance / block size)`` vector
  accesses at that action's energy, times the instances; plus each level's leakage per instance
  in use and cycle; plus computes at the compute energy.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence

from einsum.errors import MAX_RANK_SIZE, suggest
from mapper.errors import ArchError, ScheduleError
from mapper.network import NetworkStats, fanout_hops, place

__all__ = [
    "Analysis",
    "DataSpace",
    "LevelMapping",
    "Problem",
    "Storage",
    "TensorStats",
    "analyze",
]


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataSpace:
    """A tensor: each rank a sum of ``(dimension, coefficient)`` terms (``W = P + R``)."""

    name: str
    projection: tuple[tuple[tuple[str, int], ...], ...]
    output: bool = False

    @property
    def dims(self) -> frozenset[str]:
        return frozenset(d for rank in self.projection for d, _c in rank)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Problem:
    """One Einsum as Timeloop describes it: dimensions and their sizes, and data spaces. ``ops``:
    the operations of one compute point by category (``mac``, ``add``, ``max``, ``exp``, ``div``,
    ``other``), where known (an Einsum of a cascade; empty: one MAC)."""

    name: str
    dims: tuple[tuple[str, int], ...]
    spaces: tuple[DataSpace, ...]
    ops: tuple[tuple[str, float], ...] = ()
    #: an Einsum of a cascade: ``contraction``, ``reduce`` or ``map`` (:class:`mapper.schedule.
    #: EinsumFacts`), and the contraction it only scales, if any (its epilogue); empty: unknown
    kind: str = ""
    epilogue_of: str = ""
    #: operations of one point, among ``ops``, that cost no energy but take their cycles (an
    #: accounting that leaves them unpriced: the FuseMax artifact's constant scalings)
    unpriced: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        names = [d for d, _n in self.dims]
        problems = []
        for d, n in self.dims:
            if isinstance(n, bool) or not isinstance(n, int) or not 0 < n <= MAX_RANK_SIZE:
                problems.append(f"dimension {d} must be an integer in 1 .. 2**40, found {n!r}")
        for s in self.spaces:
            for d in s.dims:
                if d not in names:
                    problems.append(
                        f"data space {s.name} projects onto {d!r}, which is no dimension{suggest(d, names)}"
                    )
            for rank in s.projection:
                for d, c in rank:
                    if isinstance(c, bool) or not isinstance(c, int) or c < 1:
                        problems.append(
                            f"data space {s.name}: coefficient of {d} must be a positive integer, found {c!r}"
                        )
        outs = [s.name for s in self.spaces if s.output]
        if len(outs) != 1:
            problems.append(f"exactly one data space must be read-write (the output), found {outs or 'none'}")
        if problems:
            raise ScheduleError(f"problem {self.name}: " + "; ".join(problems))

    @property
    def size(self) -> dict[str, int]:
        return dict(self.dims)

    @property
    def output(self) -> DataSpace:
        return next(s for s in self.spaces if s.output)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Storage:
    """One storage level: its name, instances (at most), block size (words per vector access),
    capacity of one instance in words (``None``: unbounded, as DRAM) and the energy of one vector
    access per action (pJ)."""

    name: str
    instances: int = 1
    block_size: int = 1
    capacity: int | None = None
    read_pj: float = 0.0
    fill_pj: float = 0.0
    update_pj: float = 0.0
    leak_pj: float = 0.0  # per instance in use, per cycle
    read_bandwidth: float | None = None  # words per cycle per instance; None: unbounded
    write_bandwidth: float | None = None
    shared_bandwidth: float | None = None
    # the network across its fanout to the next level's instances (mapper.network)
    fanout_mesh: tuple[int, int] | None = None  # X x Y; None: as the mapping's loops span
    hop_pj: float = 0.0  # per word and hop
    router_pj: float = 0.0  # per word and router passed
    reduction_pj: float = 0.0  # per spatial reduction (an add of two partial sums)

    @property
    def prices_network(self) -> bool:
        return bool(self.hop_pj or self.router_pj or self.reduction_pj)

    def __post_init__(self) -> None:
        for f in ("instances", "block_size"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 < v <= MAX_RANK_SIZE:
                raise ArchError(f"storage {self.name!r}: {f} must be an integer in 1 .. 2**40, found {v!r}")
        c = self.capacity
        if c is not None and (isinstance(c, bool) or not isinstance(c, int) or not 0 < c <= 2**62):
            raise ArchError(
                f"storage {self.name!r}: capacity must be a word count in 1 .. 2**62 or None, found {c!r}"
            )
        for f in ("read_bandwidth", "write_bandwidth", "shared_bandwidth"):
            v = getattr(self, f)
            if v is not None and (
                isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0
            ):
                raise ArchError(f"storage {self.name!r}: {f} must be a positive number or None, found {v!r}")
        for f in ("read_pj", "fill_pj", "update_pj", "leak_pj", "hop_pj", "router_pj", "reduction_pj"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
                raise ArchError(f"storage {self.name!r}: {f} must be a finite number >= 0, found {v!r}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LevelMapping:
    """A level's loops: ``temporal`` outermost first, ``spatial`` across its fanout (outermost
    first; the innermost ``split`` of them along the fanout's X axis, the others along Y,
    Timeloop's ``split``; ``None``: as many as fit along X), and the tensors it keeps
    (``None``: all)."""

    target: str
    temporal: tuple[tuple[str, int], ...] = ()
    spatial: tuple[tuple[str, int], ...] = ()
    keep: frozenset[str] | None = None
    split: int | None = None


@dataclasses.dataclass(frozen=True)
class TensorStats:
    """Scalar accesses of one tensor at one level, over all its instances."""

    reads: float
    fills: float
    updates: float

    @property
    def accesses(self) -> float:
        return self.reads + self.fills + self.updates


@dataclasses.dataclass(frozen=True)
class Analysis:
    computes: int
    cycles: float  # the most of the compute cycles and every level's bandwidth cycles
    utilization: float
    compute_instances: int
    levels: Mapping[str, Mapping[str, TensorStats]]
    level_energy_pj: Mapping[str, float]
    compute_energy_pj: float
    instances: Mapping[str, int]
    compute_cycles: float = 0.0
    level_cycles: Mapping[str, float] = dataclasses.field(default_factory=dict)
    #: per level with a fanout in use, per tensor crossing it (mapper.network); empty unless
    #: asked for or priced
    networks: Mapping[str, Mapping[str, NetworkStats]] = dataclasses.field(default_factory=dict)
    network_energy_pj: Mapping[str, float] = dataclasses.field(default_factory=dict)

    @property
    def bound_by(self) -> str:
        """What sets the cycles: ``compute`` or the level whose bandwidth does."""
        worst = max(self.level_cycles.items(), key=lambda kv: kv[1], default=("compute", 0.0))
        return worst[0] if worst[1] > self.compute_cycles else "compute"

    @property
    def energy_pj(self) -> float:
        return (
            self.compute_energy_pj + sum(self.level_energy_pj.values()) + sum(self.network_energy_pj.values())
        )

    def scalar_accesses(self, level: str) -> float:
        return sum(s.accesses for s in self.levels[level].values())

    def to_dict(self) -> dict[str, object]:
        return {
            "cycles": self.cycles,
            "energy_pj": self.energy_pj,
            "computes": self.computes,
            "utilization": self.utilization,
            "levels": {
                name: {
                    "scalar_accesses": self.scalar_accesses(name),
                    "per_tensor": {
                        t: {"reads": s.reads, "fills": s.fills, "updates": s.updates}
                        for t, s in stats.items()
                    },
                    "energy_pj": self.level_energy_pj[name],
                }
                for name, stats in self.levels.items()
            },
            **(
                {
                    "networks": {
                        name: {
                            "energy_pj": self.network_energy_pj.get(name, 0.0),
                            "per_tensor": {t: dataclasses.asdict(n) for t, n in stats.items()},
                        }
                        for name, stats in self.networks.items()
                    }
                }
                if self.networks
                else {}
            ),
        }


@dataclasses.dataclass(frozen=True)
class _Loop:
    level: int
    dim: str
    factor: int
    spatial: bool


def _check(
    problem: Problem,
    storages: Sequence[Storage],
    mappings: Sequence[LevelMapping],
    produced: frozenset[str] = frozenset(),
) -> None:
    names = [s.name for s in storages]
    if len(set(names)) != len(names):
        raise ArchError(f"storage level names repeat: {names}")
    problems = []
    if [m.target for m in mappings] != names:
        problems.append(
            f"one mapping per level, outermost first, expected targets {names}, "
            f"found {[m.target for m in mappings]}"
        )
    size = problem.size
    product = {d: 1 for d in size}
    tensors = [s.name for s in problem.spaces]
    for m in mappings:
        for d, f in (*m.temporal, *m.spatial):
            if d not in size:
                problems.append(f"mapping of {m.target}: no dimension {d!r}{suggest(d, list(size))}")
                continue
            if isinstance(f, bool) or not isinstance(f, int) or not 0 < f <= MAX_RANK_SIZE:
                problems.append(
                    f"mapping of {m.target}: factor of {d} must be an integer in 1 .. 2**40, found {f!r}"
                )
                continue
            product[d] *= f
        for t in m.keep or ():
            if t not in tensors:
                problems.append(
                    f"mapping of {m.target}: keeps {t!r}, which is no data space{suggest(t, tensors)}"
                )
    for d, n in size.items():
        if product[d] < n:
            problems.append(
                f"the factors of {d} multiply to {product[d]}, but {d} = {n}: they must cover it "
                f"(exactly, or more with a shorter last trip)"
            )
        elif product[d] > n:
            # imperfect: a loop of d steps over its inner tile (the product of d's factors inside
            # it), its last trip short; each loop's last trip must start within d
            own = [
                f for m in mappings for dd, f in (*m.temporal, *m.spatial) if dd == d and isinstance(f, int)
            ]
            for j, f in enumerate(own):
                inner = math.prod(own[j + 1 :])
                if (f - 1) * inner >= n:
                    problems.append(
                        f"the factors of {d} ({' x '.join(map(str, own))}) multiply to {product[d]} for "
                        f"{d} = {n}, but the loop of factor {f} over tiles of {inner} would start trips "
                        f"past {n}: at most {-(-n // inner)} cover it (imperfect factors leave only a "
                        "last trip short, none empty)"
                    )
                    break
    for t in produced:
        if t not in tensors:
            problems.append(f"produced names {t!r}, which is no data space{suggest(t, tensors)}")
        elif not any(m.keep is None or t in m.keep for m in mappings):
            problems.append(f"{t} is made on chip (produced) but no level keeps it")
    outer = set(tensors) - set(produced)
    if mappings and mappings[0].keep is not None and not outer <= set(mappings[0].keep):
        problems.append(f"the outermost level {names[0]} must keep every tensor not made on chip")
    if problems:
        raise ScheduleError("mapping: " + "; ".join(problems))


def _extent(space: DataSpace, spans: Mapping[str, int]) -> list[int]:
    return [sum(c * (spans.get(d, 1) - 1) for d, c in rank) + 1 for rank in space.projection]


def _fills(space: DataSpace, inner: Sequence[_Loop], above: Sequence[_Loop]) -> int:
    """Words one instance fills: the tile spanned by ``inner``, then each advance of a temporal
    loop in ``above`` (outermost first) brings what the moved tile does not share."""
    spans: dict[str, int] = {}
    for lp in inner:
        spans[lp.dim] = spans.get(lp.dim, 1) * lp.factor
    ext = _extent(space, spans)
    tile = math.prod(ext)
    total = tile
    loops = [lp for lp in above if not lp.spatial]
    # the stride of each loop: the span of its dimension under it (the level's tile, and every
    # loop between, a spatial one too: an instance's tile steps over its siblings' tiles)
    strides = []
    for j, lp in enumerate(above):
        if lp.spatial:
            continue
        s = spans.get(lp.dim, 1)
        for later in above[j + 1 :]:
            if later.dim == lp.dim:
                s *= later.factor
        strides.append(s)
    outer = 1
    for i, lp in enumerate(loops):
        if lp.factor > 1:
            shift: dict[str, int] = {lp.dim: strides[i]}
            for j in range(i + 1, len(loops)):
                inn = loops[j]
                shift[inn.dim] = shift.get(inn.dim, 0) - (inn.factor - 1) * strides[j]
            moved = [sum(c * shift.get(d, 0) for d, c in rank) for rank in space.projection]
            # a window that slides forward under the innermost loop keeps its overlap; one that
            # moves back, or advances past a running inner loop, is fetched anew (Timeloop's
            # deltas reset when the tile's stride changes)
            innermost = all(inn.factor == 1 for inn in loops[i + 1 :])
            if not any(moved):
                overlap = tile  # stationary
            elif any(m < 0 for m in moved) or not innermost:
                overlap = 0
            else:
                overlap = math.prod(max(0, e - m) for e, m in zip(ext, moved, strict=True))
            total += (lp.factor - 1) * outer * (tile - overlap)
        outer *= lp.factor
    return total


def loops_of(mappings: Sequence[LevelMapping], level: int = 0) -> list[_Loop]:
    """The loops of ``mappings[level:]``, outermost first (temporal, then spatial, per level)."""
    loops: list[_Loop] = []
    for i, m in enumerate(mappings):
        if i >= level:
            loops += [_Loop(i, d, f, False) for d, f in m.temporal]
            loops += [_Loop(i, d, f, True) for d, f in m.spatial]
    return loops


def _systolic(
    problem: Problem, storages: Sequence[Storage], mappings: Sequence[LevelMapping], loops: Sequence[_Loop]
) -> float | None:
    """Compute cycles of a contraction on a systolic mesh, with its fill and drain as SCALE-Sim
    counts them (:func:`mapper.schedule.systolic_gemm_cycles`), block by block: a block is what
    the loops at the last level that fans out (and below) span, one rank along each axis of its
    mesh; the temporal loops above repeat it. A rank the block reduces down the Y axis is weight
    stationary (the block of the operand the X rank indexes stays; the other output ranks
    stream), and along the X axis the same with the mesh turned; else output stationary (the
    reduced ranks stream), as :func:`mapper.schedule.einsum_cycles` times a tile with
    ``systolic``. None where the contraction is not spread over one rank per axis (no fill)."""
    from mapper.network import place
    from mapper.schedule import systolic_gemm_cycles

    if problem.kind != "contraction":
        return None
    last = next((i for i in range(len(mappings) - 1, -1, -1) if mappings[i].spatial), None)
    if last is None:
        return None
    mesh = storages[last].fanout_mesh
    x, y = place(
        [(d, f) for d, f in mappings[last].spatial if f > 1], mappings[last].split, mesh[0] if mesh else None
    )
    if len(x) != 1 or len(y) != 1:
        return None
    cols_rank, rows_rank = x[0][0], y[0][0]
    cols, rows = mesh if mesh else (x[0][1], y[0][1])
    block: dict[str, int] = {}
    outer = 1
    for lp in loops:
        if lp.level >= last:
            block[lp.dim] = block.get(lp.dim, 1) * lp.factor
        elif not lp.spatial:
            outer *= lp.factor
    out = set(problem.output.dims)
    reduced = [d for d in block if d not in out and d not in (rows_rank, cols_rank)]
    others = [d for d in block if d in out and d not in (rows_rank, cols_rank)]
    temporal = math.prod(block[d] for d in reduced)
    extra = math.prod(block[d] for d in others)
    m = block.get(cols_rank, 1)
    # weight stationary: a rank the block also reduces in time loads a block of weights per step
    if rows_rank not in out:  # reduced down the rows: weight stationary
        per = temporal * systolic_gemm_cycles(extra, m, block[rows_rank], rows, cols, "ws")
    elif cols_rank not in out:  # reduced along the columns: the same, the mesh turned
        per = temporal * systolic_gemm_cycles(extra, block[rows_rank], m, cols, rows, "ws")
    else:
        per = extra * systolic_gemm_cycles(m, block[rows_rank], temporal, cols, rows, "os")
    return float(outer * per)


def tile_words(problem: Problem, inner: Sequence[_Loop], kept: Sequence[str]) -> int:
    """Words of the tiles of ``kept`` tensors that the loops ``inner`` span (one instance; the
    largest tile where factors are imperfect: a span at most the dimension)."""
    spans: dict[str, int] = {}
    for lp in inner:
        spans[lp.dim] = spans.get(lp.dim, 1) * lp.factor
    size = problem.size
    spans = {d: min(v, size[d]) for d, v in spans.items()}
    return sum(math.prod(_extent(s, spans)) for s in problem.spaces if s.name in kept)


def analyze(
    problem: Problem,
    storages: Sequence[Storage],
    mappings: Sequence[LevelMapping],
    *,
    compute_pj: float = 0.0,
    compute_instances: int | None = None,
    point_cycles: float = 1.0,
    cold_output_fills: bool = False,
    network_stats: bool = False,
    produced: frozenset[str] = frozenset(),
    in_place: Mapping[str, str] | None = None,
    live: float = 1.0,
    systolic: bool = False,
) -> Analysis:
    """Per level and tensor: reads, fills and updates; computes, cycles, energy (module text).

    ``cold_output_fills`` reproduces the bookkeeping of Timeloop before v0.4 (the 2021 exercises'
    reference outputs): a level's output fills count the first visit of each word too, which no
    level above reads. The networks across the fanouts (:mod:`mapper.network`) are analysed when
    a level prices them or ``network_stats`` asks.

    ``point_cycles``: the cycles a compute unit spends on one point (1: a MAC a cycle; an Einsum
    whose exponential runs on the MAC over several cycles takes more, :meth:`Compute.point_cycles`).

    ``produced`` names tensors another Einsum of a fused group makes on chip (:mod:`mapper.fusion`):
    the outermost level that keeps one has no parent, so nothing fills it from above (an input)
    and its updates go no further (an output). ``in_place`` maps the output to the input it
    overwrites element by element (:attr:`mapper.fusion.FusedMapping.in_place`): a level that
    keeps both holds one tile of the two. ``live``: the fraction of the Einsum's tiles computed
    where a mask leaves the others wholly masked (:attr:`mapper.fusion.FusedMapping.live`): the
    computes' energy and cycles, and the on-chip levels' reads and updates and the fills below the
    level under the outermost, scale by it; the outermost level's traffic, and the fills it
    makes, do not (a skipped tile's inputs are fetched for the tiles beside it)."""
    produced = frozenset(produced)
    _check(problem, storages, mappings, produced)
    loops = loops_of(mappings)
    n = len(storages)
    computes = math.prod(problem.size.values())
    instances = [math.prod(lp.factor for lp in loops if lp.spatial and lp.level < i) for i in range(n)]
    for s, inst in zip(storages, instances, strict=True):
        if inst > s.instances:
            raise ScheduleError(
                f"mapping: the spatial factors above {s.name} use {inst} instances, but it has {s.instances}"
            )
    pes = math.prod(lp.factor for lp in loops if lp.spatial)
    if compute_instances is not None and pes > compute_instances:
        raise ScheduleError(
            f"mapping: the spatial factors use {pes} compute units, but there are {compute_instances}"
        )
    keeps = [[s.name for s in problem.spaces if m.keep is None or s.name in m.keep] for m in mappings]
    for i, st in enumerate(storages):
        if st.capacity is not None:
            words = tile_words(problem, loops_of(mappings, i), keeps[i])
            for out, over in (in_place or {}).items():
                if out in keeps[i] and over in keeps[i]:
                    words -= tile_words(problem, loops_of(mappings, i), [over])
            if words > st.capacity:
                raise ScheduleError(
                    f"mapping: the tiles {st.name} keeps ({', '.join(keeps[i])}) take {words} words, "
                    f"but one instance holds {st.capacity}"
                )

    imperfect = _imperfect_dims(problem, loops)
    if imperfect and systolic and problem.kind == "contraction":
        raise ScheduleError(
            f"mapping: {problem.name} runs on a systolic mesh with imperfect factors of "
            f"{', '.join(sorted(imperfect))}: its fill and drain per block is modelled for exact factors "
            "only (factors that divide each dimension)"
        )
    if imperfect:
        _check_imperfect(problem, storages, mappings, loops, imperfect, network_stats)
        totals, used, compute_cycles = _general(problem, n, loops, keeps, cold_output_fills, False)
        compute_cycles *= point_cycles
        # the first instance's own accesses, for the bandwidths (it holds the largest tiles)
        limited = any(st.read_bandwidth or st.write_bandwidth or st.shared_bandwidth for st in storages)
        first = _general(problem, n, loops, keeps, cold_output_fills, True)[0] if limited else totals
        instances = used
        stats_at = {i: totals[i] for i in range(n)}
        per_instance = {
            i: (
                sum(x.reads for x in first[i].values()),
                sum(x.fills + x.updates for x in first[i].values()),
            )
            for i in range(n)
        }
    else:
        stats_at = _perfect(problem, n, loops, keeps, instances, cold_output_fills)
        compute_cycles = computes / pes * point_cycles
        if systolic:
            compute_cycles = _systolic(problem, storages, mappings, loops) or compute_cycles
        per_instance = {
            i: (
                sum(x.reads for x in stats_at[i].values()) / instances[i],
                sum(x.fills + x.updates for x in stats_at[i].values()) / instances[i],
            )
            for i in range(n)
        }
    if not 0.0 < live <= 1.0:
        raise ScheduleError(f"analysis: live must be a fraction in (0, 1], found {live!r}")
    if live < 1.0:
        for i in range(1, n):
            stats_at[i] = {
                t: TensorStats(
                    reads=x.reads * live, fills=x.fills * (live if i > 1 else 1.0), updates=x.updates * live
                )
                for t, x in stats_at[i].items()
            }
            per_instance[i] = (per_instance[i][0] * live, per_instance[i][1] * live)
        compute_cycles *= live
    levels: dict[str, dict[str, TensorStats]] = {}
    energy: dict[str, float] = {}
    energy_no_leak: dict[str, float] = {}
    level_cycles: dict[str, float] = {}
    for i, st in enumerate(storages):
        stats = stats_at[i]
        k = instances[i]
        e = 0.0
        for s in stats.values():
            e += k * (
                math.ceil(s.reads / k / st.block_size) * st.read_pj
                + math.ceil(s.fills / k / st.block_size) * st.fill_pj
                + math.ceil(s.updates / k / st.block_size) * st.update_pj
            )
        levels[st.name] = stats
        reads, writes = per_instance[i]
        need = [
            reads / st.read_bandwidth if st.read_bandwidth else 0.0,
            writes / st.write_bandwidth if st.write_bandwidth else 0.0,
            (reads + writes) / st.shared_bandwidth if st.shared_bandwidth else 0.0,
        ]
        level_cycles[st.name] = max(need)
        energy_no_leak[st.name] = e
    networks: dict[str, dict[str, NetworkStats]] = {}
    network_energy: dict[str, float] = {}
    if network_stats or any(st.prices_network for st in storages):
        networks, network_energy = _networks(problem, storages, mappings, keeps, levels)
    cycles = max(compute_cycles, *level_cycles.values())
    for i, st in enumerate(storages):
        energy[st.name] = energy_no_leak[st.name] + st.leak_pj * instances[i] * cycles
    units = compute_instances if compute_instances is not None else pes
    return Analysis(
        computes=computes,
        cycles=cycles,
        utilization=pes / units
        if not imperfect
        else computes * live * point_cycles / (compute_cycles * units),
        compute_instances=units,
        levels=levels,
        level_energy_pj=energy,
        compute_energy_pj=computes * compute_pj * live,
        instances={s.name: k for s, k in zip(storages, instances, strict=True)},
        compute_cycles=compute_cycles,
        level_cycles=level_cycles,
        networks=networks,
        network_energy_pj=network_energy,
    )


def _perfect(
    problem: Problem,
    n: int,
    loops: Sequence[_Loop],
    keeps: Sequence[Sequence[str]],
    instances: Sequence[int],
    cold_output_fills: bool,
) -> dict[int, dict[str, TensorStats]]:
    """The counts of :func:`analyze` where every dimension's factors multiply to its size (the
    closed forms, per instance times the instances): per level (by index) and tensor."""

    def spatial_between(lo: int, hi: int, relevant: frozenset[str]) -> int:
        """The spatial factor of levels lo .. hi-1 over dimensions not in ``relevant``."""
        return math.prod(
            lp.factor for lp in loops if lp.spatial and lo <= lp.level < hi and lp.dim not in relevant
        )

    computes = math.prod(problem.size.values())
    per_inst: dict[tuple[int, str], int] = {}  # fills per instance
    for i in range(n):
        for t in keeps[i]:
            space = next(s for s in problem.spaces if s.name == t)
            has_parent = any(t in keeps[j] for j in range(i))
            inner = [lp for lp in loops if lp.level >= i]
            above = [lp for lp in loops if lp.level < i]
            per_inst[(i, t)] = _fills(space, inner, above) if has_parent else 0
    out: dict[int, dict[str, TensorStats]] = {}
    for i in range(n):
        stats: dict[str, TensorStats] = {}
        for t in keeps[i]:
            space = next(s for s in problem.spaces if s.name == t)
            child = next((k for k in range(i + 1, n) if t in keeps[k]), None)
            if child is None:  # feeds the computes
                flow = computes / spatial_between(i, n, space.dims)
            else:
                flow = per_inst[(child, t)] * instances[child] / spatial_between(i, child, space.dims)
            fills = per_inst[(i, t)] * instances[i]
            if space.output:
                # the words an instance ever holds (its partition): the first update of each
                # reads nothing, and the first visit of each needs no fill
                spans: dict[str, int] = {}
                for lp in loops:
                    if lp.level >= i or not lp.spatial:
                        spans[lp.dim] = spans.get(lp.dim, 1) * lp.factor
                fresh = math.prod(_extent(space, spans)) * instances[i]
                if fills and not cold_output_fills:
                    fills -= fresh
                stats[t] = TensorStats(reads=flow - fresh, fills=fills, updates=flow)
            else:
                stats[t] = TensorStats(reads=flow, fills=fills, updates=0.0)
        out[i] = stats
    return out


# ---- imperfect factors ----------------------------------------------------------------------
#
# A dimension's factors over every loop of the nest (temporal and spatial, outermost first) may
# multiply to more than its size, as AccelForge's and Timeloop's imperfect factorisations: each
# loop steps over tiles of its nominal inner size (the product of the dimension's factors inside
# it), and the last of its trips is cut to what remains. The outermost factor must be the
# ceiling, so that no trip is empty at the top. Every count is a sum over the points of the loop
# nest of a product over dimensions, so it factorises: per dimension, the paths through its
# loops above a level fall into a few classes by the span they leave the level (full tiles, and
# the cut ones), each with a count (:class:`_Paths`).


class _Paths:
    """Per dimension, its loops (positions in the nest's list of loops, outermost first) and
    nominal inner tiles, and the spans its paths leave a level with."""

    def __init__(self, size: Mapping[str, int], loops: Sequence[_Loop]) -> None:
        self.size = dict(size)
        self.chain: dict[str, list[tuple[int, _Loop, int]]] = {}
        for d in self.size:
            own = [(k, lp) for k, lp in enumerate(loops) if lp.dim == d]
            tiles = [math.prod(lp.factor for _k, lp in own[j + 1 :]) for j in range(len(own))]
            self.chain[d] = [(k, lp, t) for (k, lp), t in zip(own, tiles, strict=True)]
        self._dists: dict[tuple[str, int, tuple[str | None, ...]], dict[int, int]] = {}
        self._above: dict[tuple[str, int], tuple[int, ...]] = {}
        self.exact = {
            d: math.prod(lp.factor for _k, lp, _t in self.chain[d]) == n for d, n in self.size.items()
        }

    def dist(self, d: str, cut: int, cons: Mapping[int, str]) -> dict[int, int]:
        """The spans ``d``'s paths through its loops above level ``cut`` leave it with, and how
        many paths leave each. ``cons`` (by loop position): ``zero`` keeps a loop at its first
        trip, ``pos`` at the others, ``one`` at its first where it takes one trip alone (its
        dimension's outer loops left it one tile or less); any other loop runs every trip."""
        chain = self.chain[d]
        above = self._above.get((d, cut))
        if above is None:
            above = self._above[(d, cut)] = tuple(pos for pos, lp, _t in chain if lp.level < cut)
        mine = tuple(map(cons.get, above))
        hit = self._dists.get((d, cut, mine))
        if hit is not None:
            return hit
        if self.exact[d]:  # every loop takes its factor's trips everywhere: one class
            count, span = 1, self.size[d]
            for (_pos, lp, _t), c in zip(chain, mine, strict=False):
                f = lp.factor
                span //= f
                count *= {"zero": 1, "pos": f - 1, "one": 1 if f == 1 else 0}.get(c, f)  # type: ignore[arg-type]
            out = {span: count} if count else {}
            self._dists[(d, cut, mine)] = out
            return out
        # the spans the paths reach each loop with, and how many reach it with each
        frontier = {self.size[d]: 1}
        for (_pos, _lp, tile), c in zip(chain, mine, strict=False):
            nxt: dict[int, int] = {}
            for rem, cnt in frontier.items():
                full, part = divmod(rem, tile)  # trips of the whole tile, then one of ``part``
                if c == "one":  # at its first trip, in a context where it takes no other
                    if full + (1 if part else 0) == 1:
                        nxt[rem] = nxt.get(rem, 0) + cnt
                    continue
                if c == "zero":
                    ext = tile if full else part
                    nxt[ext] = nxt.get(ext, 0) + cnt
                    continue
                n = full - 1 if c == "pos" else full
                if n > 0:
                    nxt[tile] = nxt.get(tile, 0) + cnt * n
                if part and (full or c != "pos"):
                    nxt[part] = nxt.get(part, 0) + cnt
            frontier = nxt
        self._dists[(d, cut, mine)] = frontier
        return frontier

    def count(self, d: str, cut: int, cons: Mapping[int, str]) -> int:
        return sum(self.dist(d, cut, cons).values())


def _imperfect_dims(problem: Problem, loops: Sequence[_Loop]) -> list[str]:
    """The dimensions whose factors multiply to more than their size (checked: the outermost
    factor is the ceiling, and no window rank uses them)."""
    out = []
    for d, n in problem.dims:
        own = [lp for lp in loops if lp.dim == d]
        if math.prod(lp.factor for lp in own) == n:
            continue
        out.append(d)
    return out


def _check_imperfect(
    problem: Problem,
    storages: Sequence[Storage],
    mappings: Sequence[LevelMapping],
    loops: Sequence[_Loop],
    imperfect: Sequence[str],
    network_stats: bool,
) -> None:
    """What imperfect factors are modelled with: dimensions that no window rank uses, an output
    of plain ranks, and no network analysed across a fanout with a short trip."""
    problems = []
    for d in imperfect:
        for s in problem.spaces:
            for rank in s.projection:
                if len(rank) > 1 and any(dd == d for dd, _c in rank):
                    terms = " + ".join(f"{c}*{dd}" if c != 1 else dd for dd, c in rank)
                    problems.append(
                        f"{d} has imperfect factors, but {s.name}'s rank {terms} is a window over it "
                        "(windows need exact factors)"
                    )
    out = problem.output
    if any(len(rank) > 1 or rank[0][1] != 1 for rank in out.projection):
        problems.append(
            f"the output {out.name} has a window or strided rank (imperfect factors need plain ones)"
        )
    short = {lp.level for lp in loops if lp.spatial and lp.dim in imperfect and lp.factor > 1}
    for i in sorted(short):
        if network_stats or storages[i].prices_network:
            problems.append(
                f"{storages[i].name}'s network is analysed, but a spatial loop across its fanout has "
                "imperfect factors (network counts need exact ones)"
            )
    if problems:
        raise ScheduleError(f"mapping of {problem.name}: " + "; ".join(problems))


def _ranks(space: DataSpace) -> tuple[dict[str, list[int]], list[tuple[tuple[str, int], ...]]]:
    """A data space's single-dimension ranks (per dimension, their coefficients) and its window
    ranks (sums over several dimensions)."""
    single: dict[str, list[int]] = {}
    windows = []
    for rank in space.projection:
        if len(rank) == 1:
            single.setdefault(rank[0][0], []).append(rank[0][1])
        else:
            windows.append(rank)
    return single, windows


def _general(
    problem: Problem,
    n: int,
    loops: Sequence[_Loop],
    keeps: Sequence[Sequence[str]],
    cold_output_fills: bool,
    inst0: bool,
) -> tuple[dict[int, dict[str, TensorStats]], list[int], float]:
    """The counts of :func:`analyze` where factors may be imperfect: per level (by index) and
    tensor, the reads, fills and updates over every instance (``inst0``: of the first instance
    alone, which holds the largest tiles); the instances in use per level; the compute cycles."""
    paths = _Paths(problem.size, loops)
    dims = list(problem.size)
    spaces = {s.name: s for s in problem.spaces}
    shapes = {s.name: _ranks(s) for s in problem.spaces}

    def nominal(lo: int) -> dict[str, int]:
        spans: dict[str, int] = {}
        for lp in loops:
            if lp.level >= lo:
                spans[lp.dim] = spans.get(lp.dim, 1) * lp.factor
        return {d: min(s, problem.size[d]) for d, s in spans.items()}

    def spatial(lo: int, hi: int, keep: Callable[[_Loop], bool]) -> dict[int, str]:
        return {k: "zero" for k, lp in enumerate(loops) if lp.spatial and lo <= lp.level < hi and keep(lp)}

    def value(t: str, cut: int, cons: Mapping[int, str], wf: float) -> float:
        """The sum over the points the constraints allow (paths of every dimension's loops above
        ``cut``) of the words of t's tile: per dimension, the paths' counts times the extents of
        its single ranks; ``wf`` the window ranks' factor (their dimensions' factors are exact)."""
        single, _w = shapes[t]
        total = float(wf)
        for d in dims:
            dist = paths.dist(d, cut, cons)
            coefs = single.get(d)
            if coefs:
                total *= sum(m * math.prod(c * (s - 1) + 1 for c in coefs) for s, m in dist.items())
            else:
                total *= sum(dist.values())
        return total

    def fills(t: str, lvl: int, base: Mapping[int, str]) -> float:
        """The words the instances of level ``lvl`` fetch of ``t`` (module text: the tile, then
        what each advance of a temporal loop above brings)."""
        space = spaces[t]
        _s, windows = shapes[t]
        spans = nominal(lvl)
        ext = {w: sum(c * (spans.get(d, 1) - 1) for d, c in w) + 1 for w in windows}
        wf = math.prod(ext.values())
        temporal = [k for k, lp in enumerate(loops) if lp.level < lvl and not lp.spatial]
        total = value(t, lvl, {**base, **{k: "zero" for k in temporal}}, wf)
        tl = [loops[k] for k in temporal]
        strides = []  # each loop's step: the span of its dimension under it, spatial loops too
        for k in temporal:
            s = spans.get(loops[k].dim, 1)
            for later in loops[k + 1 :]:
                if later.level < lvl and later.dim == loops[k].dim:
                    s *= later.factor
            strides.append(s)
        single = set(shapes[t][0])  # dimensions of t's plain ranks
        for j, k in enumerate(temporal):
            lp = tl[j]
            if lp.factor == 1:
                continue
            # An advance of loop k resets the loops inside it. A plain rank of t moves where k or
            # an inner loop over its dimension moved; an inner loop moved where it took more
            # than one trip, which a short last trip of its dimension can deny it (the ``one``
            # constraint counts those points). A window rank moves by the shifts of its
            # dimensions (their factors are exact), and may come back to where it was.
            inner = temporal[j + 1 :]
            cons = {**base, k: "pos", **{kk: "zero" for kk in inner}}
            every = value(t, lvl, cons, wf)
            if lp.dim in single:
                total += every
                continue
            plain = [kk for kk in inner if loops[kk].dim in single]
            still_plain = value(t, lvl, {**cons, **{kk: "one" for kk in plain}}, wf) if plain else every
            total += every - still_plain  # a plain rank moved: the whole tile
            shift: dict[str, int] = {lp.dim: strides[j]}
            for jj in range(j + 1, len(tl)):
                if tl[jj].dim not in single:
                    shift[tl[jj].dim] = shift.get(tl[jj].dim, 0) - (tl[jj].factor - 1) * strides[jj]
            moved = {r: sum(c * shift.get(d, 0) for d, c in r) for r in windows}
            moving = [(r, m) for r, m in moved.items() if m]
            if not moving:
                continue  # the tile did not move
            window_inner = any(
                loops[kk].factor > 1 and loops[kk].dim in space.dims and loops[kk].dim not in single
                for kk in inner
            )
            halo_ok = (
                not window_inner and all(m > 0 for _r, m in moving) and all(ext[r] > m for r, m in moving)
            )
            if not halo_ok:
                total += still_plain
                continue
            # a sliding window's halo, where every inner loop takes one trip (Timeloop's deltas
            # reset when the tile's stride changes, so a running inner loop refetches it whole)
            still = math.prod(ext[r] for r in windows if r not in dict(moving))
            halo = still * (
                math.prod(ext[r] for r, _m in moving) - math.prod(max(0, ext[r] - m) for r, m in moving)
            )
            one = {**cons, **{kk: "one" for kk in inner}}
            total += still_plain - value(t, lvl, one, wf) + value(t, lvl, one, halo)
        return total

    above0 = (lambda hi: spatial(0, hi, lambda lp: True)) if inst0 else (lambda hi: {})
    levels: dict[int, dict[str, TensorStats]] = {}
    for i in range(n):
        stats: dict[str, TensorStats] = {}
        for t in keeps[i]:
            space = spaces[t]
            has_parent = any(t in keeps[j] for j in range(i))
            raw = fills(t, i, above0(i)) if has_parent else 0.0
            child = next((k for k in range(i + 1, n) if t in keeps[k]), None)
            multicast = spatial(i, n if child is None else child, lambda lp, s=space: lp.dim not in s.dims)
            base = {**above0(i), **multicast}
            if child is None:  # one access per compute, one per multicast (or reduction) group
                flow = math.prod(paths.count(d, n, base) for d in dims)
            else:
                flow = fills(t, child, base)
            if space.output:
                temporal_off = {
                    k: "zero"
                    for k, lp in enumerate(loops)
                    if lp.level < i and not lp.spatial and lp.dim not in space.dims
                }
                fresh = value(t, i, {**above0(i), **temporal_off}, 1.0)
                f = raw - fresh if raw and not cold_output_fills else raw
                stats[t] = TensorStats(reads=flow - fresh, fills=f, updates=flow)
            else:
                stats[t] = TensorStats(reads=flow, fills=raw, updates=0.0)
        levels[i] = stats
    used = []
    for i in range(n):
        first = {k: "zero" for k, lp in enumerate(loops) if lp.level < i and not lp.spatial}
        used.append(math.prod(paths.count(d, i, first) for d in dims))
    every = {k: "zero" for k, lp in enumerate(loops) if lp.spatial}
    cycles = float(math.prod(paths.count(d, n, every) for d in dims))
    return levels, used, cycles


def _networks(
    problem: Problem,
    storages: Sequence[Storage],
    mappings: Sequence[LevelMapping],
    keeps: Sequence[Sequence[str]],
    levels: Mapping[str, Mapping[str, TensorStats]],
) -> tuple[dict[str, dict[str, NetworkStats]], dict[str, float]]:
    """Each tensor from the level that keeps it across every fanout down to the next level that
    keeps it (or to the computes): the words entering each fanout, their multicast and hops, and
    an output's spatial reductions (mapper.network)."""
    n = len(storages)
    out: dict[str, dict[str, NetworkStats]] = {}
    energy: dict[str, float] = {}
    for i in range(n):
        for t in keeps[i]:
            space = next(s for s in problem.spaces if s.name == t)
            child = next((k for k in range(i + 1, n) if t in keeps[k]), n)
            s = levels[storages[i].name][t]
            words = s.reads + s.updates if space.output else s.reads
            reduced = s.updates if space.output else 0.0
            reach = 1  # instances of the fanout's level one word of level i reaches
            for j in range(i, child):
                m, st = mappings[j], storages[j]
                if not m.spatial:
                    continue
                x, y = place(m.spatial, m.split, st.fanout_mesh[0] if st.fanout_mesh else None)
                f = fanout_hops(x, y, relevant=space.dims, mesh=st.fanout_mesh)
                w = words * reach
                hops = w * f.hops_per_word
                routers = w * (1 + math.floor(f.hops_per_word))
                reductions = reduced * reach * (f.multicast - 1)
                out.setdefault(st.name, {})[t] = NetworkStats(
                    words=w, multicast=f.multicast, hops=hops, routers=routers, reductions=reductions
                )
                energy[st.name] = (
                    energy.get(st.name, 0.0)
                    + hops * st.hop_pj
                    + routers * st.router_pj
                    + reductions * st.reduction_pj
                )
                reach *= f.multicast
    return out, energy
