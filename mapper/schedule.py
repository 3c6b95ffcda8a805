"""``Schedule``: how one cascade runs on one architecture, as data.

A schedule binds each Einsum that does work to a PE array, maps ranks onto the arrays' rows and
columns, tiles the ranks, says which tensors live in the PE registers, the global buffer or DRAM,
how many query tiles are held on chip, how the Einsums are grouped into kernels (one kernel =
fused; consecutive kernels talk through DRAM) and whether consecutive tiles are interleaved across
the arrays. :func:`mapper.search` derives one; a user may write one by hand and have it checked
with :func:`check`.

This module also holds the facts about a cascade that both the mapper and the simulator need
(:func:`einsum_facts`): each Einsum's kind (contraction, reduction, map), iteration ranks, reduced
ranks, the tensors it reads and the operations it costs per point.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import einsum
from einsum._expr import Access, Expr, Reduce, walk
from mapper.arch import ArchSpec, PEArray, row_reduction_latency
from mapper.errors import ArchError, ScheduleError

__all__ = [
    "EinsumFacts",
    "Layout",
    "layout",
    "einsum_cycles",
    "exposed_latency",
    "systolic_gemm_cycles",
    "LoopNest",
    "Schedule",
    "check",
    "einsum_facts",
    "fu_ops",
    "actions_at",
    "RESIDENCIES",
]

RESIDENCIES = ("array", "buffer", "dram")


@dataclasses.dataclass(frozen=True)
class EinsumFacts:
    """What the mapper and the simulator need to know about one Einsum that does work."""

    name: str
    kind: str  # "contraction" (sum of products), "reduce" (max/sum of one operand) or "map"
    ranks: tuple[str, ...]  # iteration ranks (output and reduced), upper case
    reduced: tuple[str, ...]
    reads: tuple[str, ...]  # tensors read, in order of first appearance
    reads_previous: tuple[str, ...]  # recurrence tensors read at the previous step (m1, not m1 + 1)
    counts: einsum.OpCounts
    step: bool  # iterates over the cascade's iterative rank (runs once per step of a tile)
    epilogue_of: str | None  # a map that only scales the output of this contraction


@functools.lru_cache(maxsize=4096)
def _accesses(expr: Expr) -> tuple[Access, ...]:
    """The tensor accesses of an expression (cached: the IR is immutable, the search asks often)."""
    return tuple(n for n in walk(expr) if isinstance(n, Access))


@functools.lru_cache(maxsize=64)
def read_tensors(cascade: einsum.Cascade) -> frozenset[str]:
    """Every tensor some Einsum of ``cascade`` reads (an input nothing reads moves no data)."""
    return frozenset(a.tensor for e in cascade.einsums for a in _accesses(e.expr))


@functools.lru_cache(maxsize=64)
def tensor_sizes(cascade: einsum.Cascade) -> Mapping[str, Any]:
    """:func:`einsum.tensor_sizes`, cached per cascade."""
    return einsum.tensor_sizes(cascade)


def _index_vars(expr: Expr) -> list[str]:
    out: list[str] = []
    for node in walk(expr):
        if isinstance(node, einsum.Var) and node.name not in out:
            out.append(node.name)
    return out


def _kind(expr: Expr, reduced: list[str]) -> str:
    if isinstance(expr, Reduce):
        return "reduce"
    if reduced:
        return "contraction" if len(_accesses(expr)) >= 2 else "reduce"
    return "map"


@functools.lru_cache(maxsize=64)
def einsum_facts(cascade: einsum.Cascade) -> tuple[EinsumFacts, ...]:
    """Facts about every Einsum of ``cascade`` that does work (layout views and inits excluded).
    Cached per cascade: the IR is immutable, and the search and the simulator ask often."""
    twos = _twos(cascade)
    counts = einsum.op_counts(cascade)
    step_vars = {e.step for e in cascade.einsums if e.step is not None}
    facts: list[EinsumFacts] = []
    for e, c in zip(cascade.einsums, counts, strict=True):
        if e.init or not any(c.at(twos).values()):
            continue
        vars_ = list(e.indices)
        for v in _index_vars(e.expr):
            if v not in vars_:
                vars_.append(v)
        reduced = [v for v in vars_ if v not in e.indices]
        reads: list[str] = []
        previous: list[str] = []
        for a in _accesses(e.expr):
            if a.tensor not in reads:
                reads.append(a.tensor)
            # RM[p, m1] (a bare step index) reads the value the previous step wrote at m1 + 1
            if a.tensor in cascade.iterative and any(
                isinstance(i, einsum.Var) and i.name in step_vars for i in a.indices
            ):
                if a.tensor not in previous:
                    previous.append(a.tensor)
        facts.append(
            EinsumFacts(
                name=e.output,
                kind=_kind(e.expr, reduced),
                ranks=tuple(v.upper() for v in vars_),
                reduced=tuple(v.upper() for v in reduced),
                reads=tuple(reads),
                reads_previous=tuple(previous),
                counts=c,
                step=bool(step_vars & set(vars_)),
                epilogue_of=None,
            )
        )
    # a map whose only tensor operand is a contraction's output (times parameters) is an epilogue
    by_name = {f.name: f for f in facts}
    out: list[EinsumFacts] = []
    for f in facts:
        producer = by_name.get(f.reads[0]) if len(f.reads) == 1 else None
        at = f.counts.at(twos)
        if (
            f.kind == "map"
            and producer is not None
            and producer.kind == "contraction"
            and set(f.ranks) <= set(producer.ranks)
            and not (at["exp"] or at["div"] or at["max"])
        ):
            f = dataclasses.replace(f, epilogue_of=producer.name)
        out.append(f)
    return tuple(out)


def _twos(cascade: einsum.Cascade) -> dict[str, int]:
    return {r: 2 for r in cascade.ranks}


def fu_ops(actions: Mapping[str, int], array: PEArray) -> dict[str, int] | str:
    """Operations per functional unit for ``actions`` (IR action counts) on one PE of ``array``,
    or, where the PE cannot execute them, a string naming the operation it lacks."""
    ops = {u: 0 for u in array.units}
    ops["mac"] += actions.get("mac", 0) + actions.get("add", 0) + actions.get("other", 0)
    if actions.get("max", 0):
        if "max" not in array.units:
            return "max"
        ops["max"] += actions["max"]
    if actions.get("exp", 0):
        if "exp" in array.units:
            ops["exp"] += actions["exp"]
        elif array.exp_on_mac:
            ops["mac"] += array.exp_macs * actions["exp"]
        else:
            return "exp"
    if actions.get("div", 0):
        if "div" not in array.units:
            return "div"
        ops["div"] += actions["div"]
    return ops


@dataclasses.dataclass(frozen=True)
class LoopNest:
    """One mapping of one Einsum: ``spatial`` ranks on the array's (rows, columns) (one entry on a
    1D array; ``None`` leaves that dimension unused), buffer ``tiles`` (rank -> trips held in the
    buffer, after the spatial split) and the loop ``order``, outermost first."""

    einsum: str
    array: str
    spatial: tuple[str | None, ...]
    tiles: Mapping[str, int]
    order: tuple[str, ...]

    def describe(self) -> str:
        sp = " x ".join(r or "-" for r in self.spatial)
        tiles = ", ".join(f"{r}:{self.tiles[r]}" for r in self.order)
        return (
            f"{self.einsum} on {self.array}: spatial {sp}; buffer tiles {tiles}; order {'>'.join(self.order)}"
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "einsum": self.einsum,
            "array": self.array,
            "spatial": list(self.spatial),
            "tiles": dict(self.tiles),
            "order": list(self.order),
        }


@dataclasses.dataclass(frozen=True, kw_only=True)
class Schedule:
    """How a cascade runs on an architecture.

    Attributes:
        cascade: the cascade's name.
        binding: Einsum -> the PE array that runs it.
        spatial: array -> the ranks mapped onto its (rows, columns); a 1D array has one entry.
        tile: rank -> tile size for the ranks cut into tiles (for example ``{"P": 256}``).
        query_tiles_on_chip: per kernel, how many query tiles share one pass over K and V
            (FuseMax's P1).
        residency: tensor -> ``"array"`` (PE registers), ``"buffer"`` or ``"dram"``.
        spill_fraction: the fraction of buffer-resident intermediates that does not fit and goes
            to DRAM and back.
        spilled: the buffer-resident intermediates that fraction covers (the score rows and the
            tiles staged beside them); empty: every buffer-resident intermediate.
        kernels: Einsums grouped into kernels run one after the other (one group = fully fused).
        interleave: consecutive tiles overlap across the arrays (FuseMax's "waterfall").
        lookahead: with interleaving, how many tiles ahead the arrays' first Einsums run.
        score_rows: where the arrays' control fuses whole rows of scores (FLAT), how many query
            rows share one pass over K and V (a head, or a row block); ``None`` otherwise.
        nests: Einsums that run on their own, each as one loop nest over its whole iteration
            space (:class:`LoopNest`: spatial ranks, buffer tiles, loop order), one after the other
            and before the tiled kernels: the Einsums that do not iterate over the query rank
            (linear attention's ``KV``), or every Einsum of a layer-by-layer schedule (then
            ``kernels`` is empty). Their intermediates stay in the buffer where ``residency`` says
            so.
    """

    cascade: str
    binding: Mapping[str, str]
    spatial: Mapping[str, tuple[str, ...]]
    tile: Mapping[str, int]
    query_tiles_on_chip: tuple[int, ...] = (1,)
    residency: Mapping[str, str]
    spill_fraction: float = 0.0
    spilled: tuple[str, ...] = ()
    kernels: tuple[tuple[str, ...], ...]
    interleave: bool = True
    lookahead: int = 1
    score_rows: int | None = None
    nests: Mapping[str, LoopNest] = dataclasses.field(default_factory=dict)

    @property
    def fusion(self) -> str:
        """``"fused"`` (one tiled kernel), ``"kernels"`` (several tiled kernels through DRAM) or
        ``"layerwise"`` (every Einsum its own loop nest)."""
        if not self.kernels:
            return "layerwise"
        return "fused" if len(self.kernels) == 1 else "kernels"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["binding"] = dict(self.binding)
        d["spatial"] = {k: list(v) for k, v in self.spatial.items()}
        d["tile"] = dict(self.tile)
        d["residency"] = dict(self.residency)
        d["kernels"] = [list(k) for k in self.kernels]
        d["query_tiles_on_chip"] = list(self.query_tiles_on_chip)
        d["nests"] = {k: v.to_dict() for k, v in self.nests.items()}
        d["fusion"] = self.fusion
        return d

    def describe(self) -> str:
        lines = [f"schedule of {self.cascade} ({self.fusion}):"]
        for n in self.nests.values():
            lines.append("  nest " + n.describe())
        if not self.kernels:
            return "\n".join(lines)
        for arr in sorted(set(self.binding.values())):
            names = [e for e, a in self.binding.items() if a == arr and e not in self.nests]
            lines.append(
                f"  {arr}: {', '.join(names)}  (rows x cols <- {' x '.join(self.spatial.get(arr, ()))})"
            )
        lines.append(
            "  tiles: "
            + ", ".join(f"{r}0 = {s}" for r, s in self.tile.items())
            + f"; query tiles on chip per kernel: {', '.join(map(str, self.query_tiles_on_chip))}"
        )
        lines.append("  kernels: " + " | ".join(", ".join(k) for k in self.kernels))
        lines.append(
            f"  interleave: {self.interleave} (lookahead {self.lookahead})"
            + (f"; spill fraction {self.spill_fraction:.4f}" if self.spill_fraction else "")
            + (f" of {', '.join(self.spilled)}" if self.spill_fraction and self.spilled else "")
        )
        if self.score_rows is not None:
            lines.append(f"  score rows fused per pass over K and V: {self.score_rows}")
        return "\n".join(lines)


def check(cascade: einsum.Cascade, schedule: Schedule, arch: ArchSpec) -> None:
    """Raise :class:`ScheduleError` if ``schedule`` cannot run ``cascade`` on ``arch``."""
    facts = {f.name: f for f in einsum_facts(cascade)}
    twos = _twos(cascade)
    problems: list[str] = []
    if schedule.cascade != cascade.name:
        problems.append(f"schedule is for cascade {schedule.cascade!r}, not {cascade.name!r}")
    for name, f in facts.items():
        arr_name = schedule.binding.get(name)
        if arr_name is None:
            problems.append(f"Einsum {name} is not bound to any array")
            continue
        try:
            arr = arch.array(arr_name)
        except ArchError as exc:  # names the arrays there are, with a did-you-mean
            problems.append(f"Einsum {name}: {exc}")
            continue
        ops = fu_ops(f.counts.at(twos), arr)
        if isinstance(ops, str):
            problems.append(
                f"Einsum {name} needs '{ops}', which array {arr_name!r} cannot execute "
                f"(its PEs have {', '.join(arr.units)})"
            )
        elif f.kind not in arr.einsum_kinds and not (
            f.epilogue_of is not None and schedule.binding.get(f.epilogue_of) == arr_name
        ):
            problems.append(
                f"Einsum {name} is a {f.kind}, which array {arr_name!r} does not run "
                f"(it runs {', '.join(arr.einsum_kinds)})"
            )
    for name in schedule.binding:
        if name not in facts:
            problems.append(
                f"binding names {name!r}, which is not an Einsum of {cascade.name} that does work"
            )
    seen = [e for k in schedule.kernels for e in k] + list(schedule.nests)
    if sorted(seen) != sorted(facts):
        problems.append(
            f"kernels and nests must list every Einsum once: found {seen}, expected {list(facts)}"
        )
    for name, n in schedule.nests.items():
        f = facts.get(name)
        if f is None:
            continue
        if n.einsum != name or n.array != schedule.binding.get(name):
            problems.append(
                f"nest of {name} names Einsum {n.einsum!r} on {n.array!r}; "
                f"the binding says {schedule.binding.get(name)!r}"
            )
            continue
        try:
            arr = arch.array(n.array)
        except ArchError:
            continue
        dims = 2 if arr.is_2d else 1
        sp = [r for r in n.spatial if r is not None]
        if len(n.spatial) != dims or len(set(sp)) != len(sp) or any(r not in f.ranks for r in sp):
            problems.append(
                f"nest of {name}: spatial {list(n.spatial)} must give {dims} distinct rank(s) of "
                f"{name} ({', '.join(f.ranks)}) or None for array {arr.name!r}"
            )
        if sorted(n.order) != sorted(f.ranks):
            problems.append(
                f"nest of {name}: loop order {list(n.order)} must list its ranks {list(f.ranks)} once"
            )
        if sorted(n.tiles) != sorted(f.ranks) or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in n.tiles.values()
        ):
            problems.append(
                f"nest of {name}: tiles {dict(n.tiles)} must give a positive integer per rank {list(f.ranks)}"
            )
    for t, where in schedule.residency.items():
        if where not in RESIDENCIES:
            problems.append(f"tensor {t}: residency {where!r} is not one of {', '.join(RESIDENCIES)}")
    for r, s in schedule.tile.items():
        if not isinstance(s, int) or s <= 0:
            problems.append(f"tile size of {r} must be a positive integer, found {s!r}")
    if len(schedule.query_tiles_on_chip) != max(1, len(schedule.kernels)) or any(
        not isinstance(p, int) or p < 1 for p in schedule.query_tiles_on_chip
    ):
        problems.append(
            f"query_tiles_on_chip must give a positive integer per kernel "
            f"({len(schedule.kernels)}), found {schedule.query_tiles_on_chip}"
        )
    if not 0 <= schedule.spill_fraction <= 1:
        problems.append(f"spill_fraction must be in [0, 1], found {schedule.spill_fraction}")
    for t in schedule.spilled:
        if schedule.residency.get(t) != "buffer":
            problems.append(
                f"spilled names {t!r}, which is not a buffer-resident tensor "
                f"(residency {schedule.residency.get(t, 'none')!r})"
            )
    if schedule.lookahead < 0:
        problems.append(f"lookahead must be >= 0, found {schedule.lookahead}")
    if schedule.score_rows is not None and (
        isinstance(schedule.score_rows, bool)
        or not isinstance(schedule.score_rows, int)
        or schedule.score_rows < 1
    ):
        problems.append(f"score_rows must be a positive integer or None, found {schedule.score_rows!r}")
    if problems:
        raise ScheduleError("invalid schedule:\n" + "\n".join(f"  - {p}" for p in problems))


def systolic_gemm_cycles(m: int, n: int, k: int, rows: int, cols: int, dataflow: str) -> int:
    """Cycles of an ``m x k`` by ``k x n`` GEMM on a ``rows x cols`` systolic array, with fill and
    drain, as SCALE-Sim counts them.

    Output stationary maps the ``m x n`` outputs onto the array and streams ``T = k``:
    ``folds x (R + C + T - 2) - 1``. Weight stationary holds a ``k x n`` weight block and streams
    ``T = m`` inputs; input stationary holds a ``k x m`` input block and streams ``T = n`` weights:
    both ``folds x (2R + C + T - 2) - 1``. ``folds`` is the number of array-sized blocks of the
    stationary operand.

    >>> systolic_gemm_cycles(4, 4, 8, 4, 4, "os")
    13
    """
    for name, v in (("m", m), ("n", n), ("k", k), ("rows", rows), ("cols", cols)):
        if not isinstance(v, int) or v <= 0:
            raise ScheduleError(f"systolic GEMM: {name} must be a positive integer, found {v!r}")
    if dataflow == "os":
        sr, sc, t = m, n, k
    elif dataflow == "ws":
        sr, sc, t = k, n, m
    elif dataflow == "is":
        sr, sc, t = k, m, n
    else:
        raise ScheduleError(f"systolic GEMM: unknown dataflow {dataflow!r}; expected 'os', 'ws' or 'is'")
    folds = -(-sr // rows) * -(-sc // cols)
    fill = rows + cols + t - 2 if dataflow == "os" else 2 * rows + cols + t - 2
    return folds * fill - 1


def _dims(array: PEArray) -> tuple[int, ...]:
    return (array.rows, array.cols) if array.is_2d else (array.cols,)


def einsum_cycles(
    fact: EinsumFacts,
    array: PEArray,
    spatial: tuple[str, ...],
    sizes: Mapping[str, int],
    *,
    systolic: bool = False,
    summed: bool = False,
) -> int:
    """Cycles one Einsum occupies ``array`` for one tile whose rank sizes are ``sizes``.

    The array's rows and columns take the ranks in ``spatial``; each PE's functional units start
    one operation per cycle and work in parallel (a subtract feeding a separate exp unit costs one
    cycle per element, an exponential on the MAC costs ``exp_macs``). With ``systolic`` a
    contraction on a 2D array also pays the array's fill and drain (:func:`systolic_gemm_cycles`).
    With ``summed`` the units do not overlap: the Einsum takes the sum of its units' cycles (the
    FuseMax artifact's bookkeeping of the 1-pass cascade, :mod:`sim.accounting`).
    """
    ops = fu_ops(fact.counts.at(sizes), array)
    if isinstance(ops, str):
        raise ScheduleError(f"Einsum {fact.name} needs '{ops}', which array {array.name!r} cannot execute")
    par = 1
    used: list[tuple[int, int]] = []
    for dim, rank in zip(_dims(array), spatial, strict=False):
        extent = min(dim, sizes[rank]) if rank in fact.ranks else 1
        used.append((dim, extent))
        par *= extent
    per_unit = [-(-n // par) for n in ops.values() if n]
    cycles = sum(per_unit) if summed else max(per_unit, default=0)
    if ops.get("div") and array.div_latency:
        cycles += array.div_latency  # the divider's pipeline drains once a tile
    if systolic and array.is_2d and fact.kind == "contraction" and len(spatial) == 2:
        rows_rank, cols_rank = spatial[0], spatial[1]
        temporal = 1
        for r in fact.reduced:
            if r not in spatial:
                temporal *= sizes[r]
        out_rank = [r for r in fact.ranks if r not in fact.reduced and r not in spatial]
        extra = 1
        for r in out_rank:
            extra *= sizes[r]
        m_ = sizes[cols_rank] if cols_rank in fact.ranks else 1
        if rows_rank in fact.reduced:  # reduction across the rows: weight stationary
            # the k x n block across the array (k down the rows, the columns' rank across) stays;
            # the other output ranks stream, one step a cycle (AV: A stays, V streams over F); a
            # rank it also reduces in time loads a block of weights per step (the 2-pass's AV
            # over the key blocks M1), each filled and drained
            cycles = temporal * systolic_gemm_cycles(
                extra, m_, sizes[rows_rank], array.rows, array.cols, "ws"
            )
        else:
            n_ = sizes[rows_rank] if rows_rank in fact.ranks else 1
            cycles = extra * systolic_gemm_cycles(m_, n_, temporal, array.cols, array.rows, "os")
    return cycles


def exposed_latency(f: EinsumFacts, arr: PEArray, spatial: Mapping[str, tuple[str, ...]]) -> int:
    """A max reduced across a 2D array's rows takes the array's ``row_reduction`` latency (a chain
    of comparators, one per row, as FuseMax's: ``rows``; ``rtl.Array2D`` builds the same); sums
    ride the MACs' accumulation (their fill and drain is the systolic option)."""
    if not arr.is_2d:
        return 0
    rows_rank = spatial[arr.name][0]
    if rows_rank in f.reduced and f.kind == "reduce" and f.counts.at({r: 2 for r in f.ranks})["max"]:
        return row_reduction_latency(arr.row_reduction, arr.rows)
    return 0


@dataclasses.dataclass(frozen=True)
class Layout:
    """The ranks a cascade's schedule is built around."""

    query: str  # cut into query tiles, across the 2D array's columns and the 1D array's PEs
    key: str | None  # across the 2D array's rows
    whole: str | None  # the rank the key rank is part of (M for M0), if partitioned
    step: str | None  # the iterative rank (M1), stepped through one slice at a time
    outer: str | None = None  # the partition's outer part (M1), iterative or not


def split_sizes(
    schedule: Schedule, full: Mapping[str, int], lay: Layout
) -> tuple[dict[str, int], dict[str, int]]:
    """Full rank sizes with the layout's key rank split as ``schedule`` tiles it (``full``:
    :func:`complete_partitions`'), and the sizes of one tile. Ragged ranks (a length that is not
    a multiple of its tile) get ``ceil`` tiles."""
    full = dict(full)
    tile = dict(full)
    if lay.whole is not None and lay.key is not None:
        m0 = schedule.tile.get(lay.key)
        if m0 is None:
            raise ScheduleError(f"schedule gives no tile for {lay.key}")
        full[lay.key] = tile[lay.key] = m0
        if lay.outer is not None:
            full[lay.outer] = tile[lay.outer] = -(-full[lay.whole] // m0)
        if lay.step is not None:
            tile[lay.step] = 1
    for r, size in schedule.tile.items():
        if r == lay.key and lay.whole is not None:
            continue
        tile[r] = min(size, full[r])
    return full, tile


def complete_partitions(cascade: einsum.Cascade, sizes: Mapping[str, int], lay: Layout) -> dict[str, int]:
    """``sizes`` with the parts of every partition but the layout's (whose key part the mapper
    chooses): the outer part from the whole and the inner (``P1 = ceil(P / P0)``) or the inner from
    the outer. Raises ScheduleError when neither part is given."""
    full = dict(sizes)
    for part in cascade.partitions:
        if part.rank == lay.whole or part.rank not in full:
            continue
        outer, inner = part.parts[0], part.parts[-1]
        if inner in full and outer not in full:
            full[outer] = -(-full[part.rank] // full[inner])
        elif outer in full and inner not in full:
            full[inner] = -(-full[part.rank] // full[outer])
        elif inner not in full:
            raise ScheduleError(
                f"{cascade.name or 'cascade'} partitions {part.rank} -> {outer}, {inner}: give the block "
                f"size {inner} (or {outer}) in the workload's sizes, e.g. {inner}=64"
            )
    return full


def actions_at(
    counts: einsum.OpCounts, ranks: tuple[str, ...], full: Mapping[str, int], lay: Layout
) -> dict[str, int]:
    """An Einsum's actions at the workload's sizes. Where the partitioned rank is ragged (M is not
    a multiple of the key tile M0), the last step holds only the remaining ``M mod M0`` keys: the
    actions of the full steps plus those of the last, not those of a padded step."""
    w, key, outer = lay.whole, lay.key, lay.outer
    if w is None or key is None or outer is None or outer not in ranks or w not in full:
        return counts.at(full)
    q, r = divmod(full[w], full[key])
    if not r:
        return counts.at(full)
    a = counts.at({**full, outer: q}) if q else dict.fromkeys(counts.at(full), 0)
    b = counts.at({**full, outer: 1, key: r})
    return {k: a[k] + b[k] for k in a}


def layout(cascade: einsum.Cascade) -> Layout:
    out = cascade.einsums[-1]
    for e in cascade.einsums:
        if e.output in cascade.outputs:
            out = e
    query = out.indices[0].upper()
    step_vars = {e.step for e in cascade.einsums if e.step is not None}
    step = next(iter(sorted(v.upper() for v in step_vars)), None)
    # the key rank's partition: not one the queries are blocked by (agent attention pools the
    # queries, SeerAttention blocks both); such a partition's block size is the user's to give
    parts = [p for p in cascade.partitions if query not in (p.rank, *p.parts)]
    if parts:
        part = parts[0]
        return Layout(query=query, key=part.parts[-1], whole=part.rank, step=step, outer=part.parts[0])
    # the other rank of the first contraction's output (QK[p, m] -> M; Z[m, n] -> N)
    for f in einsum_facts(cascade):
        if f.kind == "contraction":
            others = [r for r in f.ranks if r != query and r not in f.reduced]
            if others:
                return Layout(query=query, key=others[0], whole=None, step=step)
    return Layout(query=query, key=None, whole=None, step=step)
