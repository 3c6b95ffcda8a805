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
from collections.abc import Mapping

import einsum
from einsum.errors import suggest
from mapper.arch import ArchSpec, PEArray
from mapper.cost import traffic
from mapper.errors import ScheduleError
from mapper.schedule import (
    EinsumFacts,
    Layout,
    Schedule,
    check,
    einsum_cycles,
    einsum_facts,
    exposed_latency,
    fu_ops,
    layout,
)

__all__ = ["SearchOptions", "search", "layout"]

OBJECTIVES = ("latency", "energy")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SearchOptions:
    """What the mapper optimises and what it may do.

    Attributes:
        sizes: rank sizes of the workload (for example ``{"P": 1024, "M": 1024, "E": 64, "F": 64}``).
        objective: ``"latency"`` (default) or ``"energy"``.
        interleave: overlap consecutive tiles across the arrays.
        fuse: run the cascade as one fused kernel; ``False`` gives one kernel per array run.
        bind: Einsums whose array is fixed by the user.
        score_rows: on an architecture with ``score_row_blocks`` (FLAT), fix the query rows whose
            score rows share one pass over K and V (a block, or the whole query rank for FLAT's
            head granularity) instead of letting the search choose.
    """

    sizes: Mapping[str, int]
    objective: str = "latency"
    interleave: bool = True
    fuse: bool = True
    bind: Mapping[str, str] = dataclasses.field(default_factory=dict)
    score_rows: int | None = None

    def __post_init__(self) -> None:
        if self.score_rows is not None and (
            isinstance(self.score_rows, bool) or not isinstance(self.score_rows, int) or self.score_rows <= 0
        ):
            raise ScheduleError(f"score_rows must be a positive integer, found {self.score_rows!r}")
        if self.objective not in OBJECTIVES:
            raise ScheduleError(
                f"unknown objective {self.objective!r}; expected one of {', '.join(OBJECTIVES)}"
            )
        for r, v in self.sizes.items():
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ScheduleError(f"size of rank {r} must be a positive integer, found {v!r}")


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
        t[lay.key] = rows
        if lay.step is not None:
            t[lay.step] = 1
    elif lay.key is not None and lay.key in outputs:
        t[lay.key] = min(rows, sizes[lay.key])
    return t


def _full_sizes(
    cascade: einsum.Cascade, lay: Layout, sizes: Mapping[str, int], arch: ArchSpec
) -> dict[str, int]:
    """Workload sizes completed with the partition's parts (M0 from the array, M1 = M / M0)."""
    full = dict(sizes)
    missing = [r for r in cascade.ranks if r not in full and not (lay.whole and r in (lay.key, lay.step))]
    if missing:
        raise ScheduleError(
            f"workload gives no size for rank(s) {', '.join(missing)} of {cascade.name}; "
            f"it gives {', '.join(f'{k}={v}' for k, v in sizes.items())}"
        )
    if lay.whole is not None and lay.key is not None:
        rows = max((a.rows for a in arch.arrays if a.is_2d), default=max(a.cols for a in arch.arrays))
        m = full[lay.whole]
        if m % rows:
            raise ScheduleError(
                f"{lay.whole} = {m} is not divisible by the key tile {lay.key} = {rows} "
                f"(the 2D array's rows); choose a multiple of {rows}"
            )
        full[lay.key] = rows
        if lay.step is not None:
            full[lay.step] = m // rows
    q = full[lay.query]
    cols = max(a.cols for a in arch.arrays)
    if q > cols and q % cols:
        raise ScheduleError(
            f"{lay.query} = {q} is not divisible by the query tile {cols} "
            f"(the arrays' columns); choose a multiple of {cols}"
        )
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
    """The best schedule of ``cascade`` on ``arch`` by ``options.objective``."""
    lay = layout(cascade)
    sizes = _full_sizes(cascade, lay, options.sizes, arch)
    out_ranks = tuple(r for e in cascade.einsums if e.output in cascade.outputs for r in e.indices)
    tile = _tile_sizes(lay, sizes, arch, tuple(r.upper() for r in out_ranks))
    facts = einsum_facts(cascade)
    spatial: dict[str, tuple[str, ...]] = {}
    for a in arch.arrays:
        if a.is_2d:
            spatial[a.name] = (lay.key or lay.query, lay.query)
        else:
            spatial[a.name] = (lay.query,)

    names = [f.name for f in facts]
    for name, array in options.bind.items():
        if name not in names:
            raise ScheduleError(
                f"bind names Einsum {name!r}{suggest(name, names)}, which {cascade.name} does not have "
                f"(its Einsums that do work: {', '.join(names)})"
            )
        arch.array(array)  # an unknown array: ArchError with a did-you-mean
    choices: list[list[str]] = []
    for f in facts:
        if f.name in options.bind:
            arch.array(options.bind[f.name])
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

    best: tuple[float, int, dict[str, str]] | None = None
    for combo in itertools.product(*choices):
        binding = {f.name: a for f, a in zip(facts, combo, strict=True)}
        if not all(_allowed(f, arch.array(binding[f.name]), binding) for f in facts):
            continue
        cost = _estimate(facts, binding, arch, spatial, tile, options)
        crossings = sum(1 for f in facts for r in f.reads if r in binding and binding[r] != binding[f.name])
        key = (cost, crossings, binding)
        if best is None or key[:2] < best[:2]:
            best = key
    if best is None:
        raise ScheduleError(
            f"no binding of {cascade.name} fits the kinds of Einsum the arrays of {arch.name!r} run"
        )
    binding = best[2]

    kernels = _kernels(facts, binding, options.fuse)
    lookahead = 0
    if options.interleave:
        load = max(_loads(facts, binding, arch, spatial, tile).values())
        latency = max((exposed_latency(f, arch.array(binding[f.name]), spatial) for f in facts), default=0)
        lookahead = 1 + (math.ceil(latency / load) if latency and load else 0)
    kept_tile = {
        r: tile[r]
        for r in (lay.query, lay.key)
        if r is not None and (r == lay.query or lay.whole is not None or tile.get(r) != sizes.get(r))
    }

    def schedule_for(score_rows: int | None) -> Schedule:
        residency, spill, p1 = _residency(
            cascade, facts, binding, kernels, arch, lay, sizes, tile, score_rows=score_rows
        )
        return Schedule(
            cascade=cascade.name,
            binding=binding,
            spatial=spatial,
            tile=kept_tile,
            query_tiles_on_chip=p1,
            residency=residency,
            spill_fraction=spill,
            kernels=kernels,
            interleave=options.interleave,
            lookahead=lookahead,
            score_rows=score_rows,
        )

    grains = _granularities(cascade, facts, binding, kernels, arch, lay, sizes, tile)
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
    if not grains:
        schedule = schedule_for(None)
    else:
        ranked = []
        problems = []
        for g in grains:
            try:
                cand = schedule_for(g)
            except ScheduleError as exc:
                problems.append(f"{g} rows: {exc}")
                continue
            ranked.append((_rank(cascade, cand, facts, arch, spatial, sizes, tile, lay, options), -g, cand))
        if not ranked:
            raise ScheduleError(f"no fusion granularity of {arch.name!r} fits: " + "; ".join(problems))
        schedule = min(ranked, key=lambda t: t[:2])[2]
    check(cascade, schedule, arch)
    return schedule


def _granularities(cascade, facts, binding, kernels, arch, lay, sizes, tile) -> list[int]:  # type: ignore[no-untyped-def]
    """FLAT's fusion granularities for this workload: the head (every query row) and the row blocks
    that divide the query rank into whole query tiles; empty where the architecture has none or
    the cascade keeps no whole rows of scores in one kernel."""
    if not arch.score_row_blocks or not _long_tensors(cascade, facts, binding, kernels, lay, sizes, tile):
        return []
    p, q_tile = sizes[lay.query], tile[lay.query]
    blocks = [b for b in sorted(set(arch.score_row_blocks)) if b < p and p % b == 0 and b % q_tile == 0]
    return [*blocks, p]


def _rank(cascade, schedule, facts, arch, spatial, sizes, tile, lay, options) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(objective, tie-break) of one candidate schedule: latency bounded by the busiest array and
    by DRAM, and the energy of its data movement (buffer accesses at the buffer's geometry, DRAM),
    from the cost model (:mod:`mapper.cost`); per head, which scales every candidate alike."""
    moved = traffic(
        cascade, schedule, full=sizes, tile=tile, instances=1, word_bytes=arch.word_bytes, lay=lay
    )
    q_tiles = -(-sizes[lay.query] // tile[lay.query])
    steps = sizes[lay.step] if lay.step else 1
    loads = _loads(facts, schedule.binding, arch, spatial, tile)
    compute = (max(loads.values()) if options.interleave else sum(loads.values())) * q_tiles * steps
    bpc = arch.dram.bandwidth_bytes_per_s / arch.clock_hz
    latency = max(compute, moved.dram_total / bpc)
    buf = arch.buffer.costs(arch.word_bits)
    energy = (
        moved.buffer_reads * buf.read_pj_per_word
        + moved.buffer_writes * buf.write_pj_per_word
        + moved.dram_total * 8 * arch.dram.pj_per_bit
    )
    return (latency, energy) if options.objective == "latency" else (energy, latency)


def _loads(facts, binding, arch, spatial, tile) -> dict[str, float]:  # type: ignore[no-untyped-def]
    loads = {a.name: 0.0 for a in arch.arrays}
    for f in facts:
        arr = arch.array(binding[f.name])
        loads[arr.name] += einsum_cycles(f, arr, spatial[arr.name], tile)
    return loads


def _estimate(facts, binding, arch, spatial, tile, options) -> float:  # type: ignore[no-untyped-def]
    if options.objective == "latency":
        loads = _loads(facts, binding, arch, spatial, tile)
        return max(loads.values()) if options.interleave else sum(loads.values())
    e = arch.energy
    total = 0.0
    for f in facts:
        arr = arch.array(binding[f.name])
        a = f.counts.at(tile)
        exp_pj = e.exp_pj if "exp" in arr.units else arr.exp_macs * e.mac_pj
        total += (
            (a["mac"] + a["other"]) * e.mac_pj
            + a["add"] * e.add_pj
            + a["max"] * e.max_pj
            + a["exp"] * exp_pj
            + a["div"] * e.div_pj
        )
    return total


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


def _classify(cascade, facts, binding, kernels, lay, sizes, tile):  # type: ignore[no-untyped-def]
    """Where each intermediate goes before the buffer is sized: ``dram`` (crosses kernels),
    ``buffer`` (running state, staged crossing tiles), ``long`` (whole rows of scores) or
    ``array``; and the staged crossing tensors."""
    kernel_of = {e: i for i, k in enumerate(kernels) for e in k}
    where: dict[str, str] = {}
    crossing: list[str] = []
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
        else:
            where[f.name] = "array"
    return where, crossing


def _long_tensors(cascade, facts, binding, kernels, lay, sizes, tile) -> list[str]:  # type: ignore[no-untyped-def]
    where, _ = _classify(cascade, facts, binding, kernels, lay, sizes, tile)
    return [t for t, w in where.items() if w == "long"]


def _residency(cascade, facts, binding, kernels, arch, lay, sizes, tile, *, score_rows=None):  # type: ignore[no-untyped-def]
    """Residency of every tensor, the spilled fraction and the query tiles per kernel that share
    a pass over K and V. With ``score_rows`` (FLAT's granularity) the score rows of that many
    queries are held on chip together; otherwise one query tile's at a time."""
    word = arch.word_bytes
    cap = arch.buffer.capacity_bytes
    kernel_of = {e: i for i, k in enumerate(kernels) for e in k}
    residency: dict[str, str] = {}
    for inp in cascade.inputs:
        residency[inp.name] = "dram"
    for out in cascade.outputs:
        residency[out] = "dram"
    produced = {f.name for f in facts}
    e_f = sum(sizes.get(r, 1) for r in ("E", "F"))
    # streaming buffers for the key tile (K and V), double-buffered
    rows = max((a.rows for a in arch.arrays if a.is_2d), default=1)
    key_rows = min(rows, tile.get(lay.key, 1)) if lay.key else 1
    kv_bytes = 2 * key_rows * e_f * word
    where, crossing = _classify(cascade, facts, binding, kernels, lay, sizes, tile)
    long_tensors = [t for t, w in where.items() if w == "long"]
    for t, w in where.items():
        if w != "long":
            residency[t] = w
    spill = 0.0
    q_tile = tile[lay.query]
    n_tiles = max(1, sizes[lay.query] // q_tile)
    fused = bool(long_tensors) and score_rows is not None  # FLAT's granularity: rows held together
    held = score_rows if fused else q_tile
    if long_tensors:
        # the score rows of the queries held (q_tile x M words each) stay on chip while the softmax
        # passes over them, beside the key tile and the held queries' Q and output rows
        row = sizes[lay.key] * word
        need = held * row
        avail = cap - kv_bytes - held * e_f * word
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
        per_query = e_f * word  # the Q and output rows of the queries in flight
        avail = cap - kv_bytes - staged
    elif cascade.iterative:
        state = sum(_per_query_words(cascade, t, lay, sizes) for t in cascade.iterative if t in produced)
        state += len(crossing) * tile[lay.key]  # the staged tiles' words per query
        per_query = (sizes.get("E", 0) + state) * word
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
        (fused_tiles or fit(avail, per_query)) if i in busy_kernels else fit(cap - kv_bytes, e_f * word)
        for i in range(len(kernels))
    )
    return residency, spill, p1s


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
