"""Fused mappings over a storage hierarchy: a chain of Einsums that share the loops above one
level, so the tensors one makes and the next reads stay on chip.

A fused mapping of Einsums ``E1 .. En`` (each reading what an earlier one writes) names a
**fusion level** L of the hierarchy and the **shared loops** above it: temporal loops of the
levels outside L over the *fused ranks* (the ranks every Einsum of the group keeps in its output,
so no partial result crosses a shared loop). For each iteration of the shared loops, each Einsum
in turn computes its tile under its own mapping of L and the levels inside it. The
**intermediates** (tensors made by one Einsum of the group and read by a later one) are kept first
at L: no level outside L holds them, nothing fills them from above, and their updates go no
further. This is the fused-mapping space of LoopTree and AccelForge (Timeloop's successors),
restricted to shared temporal loops. An on-chip tensor may instead be kept at a level below the
fusion level (``FusedMapping.kept``: a branch's register files, where FuseMax keeps a tile's
scores) when its writer and readers share that path, spread it over the instances alike and
run no temporal loop over its ranks above it (:func:`_kept_levels`).

The figures: each Einsum is analysed by :func:`mapper.analysis.analyze` with the shared loops and
its own loops; the group's accesses and energy are the sums, its cycles the simulator's tile
engine's on those numbers (:func:`timed`: the Einsums of a tile one after another on their
array, each tile's DRAM transfer ahead of its compute, arrays at once). L holds, at once,
every intermediate's tile and the largest of the Einsums' own tiles there; a mapping whose
tiles exceed its capacity is refused.

The search (:func:`search`) tries every fusion level below the outermost and every split of the
fused ranks over the levels outside it; for each, it maps each Einsum below the shared loops with
:func:`mapper.hsearch.search` and keeps the group with the best metric. Each Einsum's own mapping
is chosen by the metric on its own: exact for ``energy`` and ``cycles`` (sums of the Einsums'),
a heuristic for ``edp``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from einsum.errors import suggest
from mapper import hsearch
from mapper.analysis import Analysis, LevelMapping, Problem, loops_of, tile_words
from mapper.cost import depends
from mapper.errors import ArchError, CapacityError, ScheduleError

__all__ = ["FusedMapping", "FusedResult", "evaluate", "fused_ranks", "intermediates", "search"]


#: tiles an array's first Einsums may run ahead of the others (the template's default)
LOOKAHEAD = 3


@dataclasses.dataclass(frozen=True)
class FusedMapping:
    """Where a group is fused (``level``), the shared loops above it (per outer level, outermost
    first: ``(rank, factor)`` temporal loops), and each Einsum's own mappings (one per level; the
    levels outside ``level`` carry only the shared loops)."""

    level: str
    shared: tuple[tuple[tuple[str, int], ...], ...]
    mappings: tuple[tuple[LevelMapping, ...], ...]
    #: on a hierarchy with branches, the branch each Einsum runs on (empty: one path)
    binding: tuple[str, ...] = ()
    #: tensors the group keeps below the fusion level, each at a level of the one path its
    #: writer and readers share (a branch's register files: FuseMax's scores in its PEs);
    #: ``(tensor, level)``; every other on-chip tensor is kept at the fusion level
    kept: tuple[tuple[str, str], ...] = ()
    #: inputs of the group loaded whole into the fusion level once, before its tiles, and read
    #: there by every tile (FuseMax's query tiles and K/V blocks held on chip for the kernel)
    preload: tuple[str, ...] = ()
    #: shared spatial loops (per outer level, as ``shared``): fused ranks spread across the
    #: instances below that level, every Einsum of the group alike, so that each instance of the
    #: fusion level runs the group on its own part (a Simba-like design's PE buffers); empty:
    #: none (the group runs on one instance of the fusion level)
    shared_spatial: tuple[tuple[tuple[str, int], ...], ...] = ()
    #: the tile engine's schedule (:func:`timed`): how many tiles an array's first Einsums may
    #: run ahead of the others, and whether the arrays interleave tiles at all (False: each waits
    #: for its consumers on other arrays to take a tile's results, FuseMax without interleaving)
    lookahead: int = LOOKAHEAD
    interleave: bool = True
    #: how many of the outermost shared loops the preloads repeat under (each iteration loads
    #: its slice again: FuseMax's K and V once per group of query tiles held on chip); None: the
    #: shared loops over the tensor's own ranks outside the first over a rank it lacks
    preload_outside: int | None = None
    #: ``(output, input)`` pairs: an Einsum that overwrites an on-chip input with its output, element
    #: by element (an elementwise Einsum, its last reader: FuseMax's SLN over BQK, FLAT's A over
    #: SN); the level that keeps both holds one tile of the two
    in_place: tuple[tuple[str, str], ...] = ()
    #: ``(einsum, fraction)``: the share of the group's tiles an Einsum computes, where a mask
    #: leaves the others wholly masked (the template's causal tiles); its compute and on-chip
    #: accesses scale by it, averaged over the tiles as the tile engine runs them
    #: (:func:`mapper.analysis.analyze`'s ``live``)
    live: tuple[tuple[str, float], ...] = ()
    #: ``(tensor, reader)`` pairs: the reader takes an on-chip tensor kept at the fusion level from
    #: its writer's register files (the innermost level of the branch they share) as it is made,
    #: the two in lockstep over its ranks below the fusion level (as :attr:`kept` requires), and
    #: not from the fusion level, where the group's other readers find it: the 3-pass cascade's
    #: SD sums SN as SN is written, while A, which needs SD whole, reads SN later
    forward: tuple[tuple[str, str], ...] = ()
    #: tensors read after the group (drained) that their writer sends from its register files
    #: straight to the outermost level, never held at the fusion level (Timeloop's bypass): no
    #: read there to drain them, no room taken (the Unfused baseline's S and A on their way to DRAM)
    bypass: tuple[str, ...] = ()
    #: tensors the group makes that go through the outermost level between its passes: the writer
    #: sends each from its register files to the outermost level (as ``bypass``), and each later
    #: reader that does not take it from the writer's registers (``forward``) reads it back from
    #: there, as it reads an input, under its own loops: a tensor read after one that needs it
    #: whole (FuseMax's 2-pass SLN, read by A after SD, the sum over every key block) whose rows do
    #: not fit at the fusion level. Never held there: no room taken
    through: tuple[str, ...] = ()
    #: runs of consecutive Einsums (by name) whose own loops above the fusion level are the same
    #: and step together, one step of each in turn (LoopTree's loops shared by part of a group):
    #: a tensor made and read within a run is held one step at a time at the fusion level, not
    #: whole across the loops (FuseMax's 2-pass A and AV over the key blocks, A a block at a time).
    #: A tensor sent ``through`` the outermost level that two or more Einsums of a run read back is
    #: read back once a step, by the first of them, into the fusion level, where the others read
    #: it (FLAT's S from 256K: GM and SN step a few query rows at a time, the rows loaded once)
    together: tuple[tuple[str, ...], ...] = ()
    #: tensors the group keeps at the fusion level of which a fraction does not fit there: that
    #: share of the tensor goes to the outermost level as it is made and comes back for each reader
    #: that does not take it from its writer's registers (``forward``), as FLAT spills the part of
    #: its rows of scores its buffer cannot hold (the FuseMax artifact's ``proportion_spilled``);
    #: the fusion level holds the rest of the tensor's tile. ``(tensor, fraction)``, fraction in
    #: (0, 1)
    spill: tuple[tuple[str, float], ...] = ()

    def spatial_at(self, i: int) -> tuple[tuple[str, int], ...]:
        """The shared spatial loops at outer level ``i``."""
        return self.shared_spatial[i] if i < len(self.shared_spatial) else ()

    @property
    def tiles(self) -> int:
        """Iterations of the shared loops: the tiles the group runs one after another."""
        return math.prod(f for loops in self.shared for _r, f in loops)


@dataclasses.dataclass(frozen=True)
class FusedResult:
    """A fused group's figures: per Einsum its analysis, and the sums."""

    names: tuple[str, ...]
    mapping: FusedMapping
    analyses: tuple[Analysis, ...]
    intermediates: tuple[str, ...]
    footprint_words: int  # what the fusion level holds at once
    evaluated: int = 0  # candidate groups costed by the search
    #: on-chip tensors read after the group, written out once from the fusion level to the
    #: outermost: (tensor, words); a recurrence's state only its last step
    drained: tuple[tuple[str, int], ...] = ()
    drain_pj: float = 0.0
    #: recurrences' running states kept on chip across the shared loops: tensor -> rank stepped
    states: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: on several branches: the tile engine's cycles (:func:`timed`); -1: one after another
    engine_cycles: float = -1.0
    #: levels below the fusion level that keep some of the group's tensors (``mapping.kept``):
    #: (level, words one instance holds at once)
    held_below: tuple[tuple[str, int], ...] = ()
    #: inputs loaded whole into the fusion level before the tiles (``mapping.preload``): (tensor,
    #: words), and the energy of reading them at the outermost level and filling the fusion level
    loaded: tuple[tuple[str, int], ...] = ()
    load_pj: float = 0.0
    #: the preloads' and drains' transfer cycles at the outermost level's bandwidth
    load_cycles: float = 0.0
    #: tensors kept below the fusion level that cross a link between branches: (tensor, from, to,
    #: words), the fills they make at the receiving levels (level, words), and the energy of both
    linked: tuple[tuple[str, str, str, int], ...] = ()
    link_fills: tuple[tuple[str, int], ...] = ()
    link_pj: float = 0.0
    #: the outermost level's transfers run tile by tile (``transfers: tile``): its reads and
    #: the drains use channels of their own, and :attr:`bound` leaves them out
    tile_transfers: bool = False
    #: the spilled shares (``mapping.spill``): (tensor, words written out, words read back), and
    #: the energy of both at the outermost level; their transfer cycles are in :attr:`load_cycles`
    spilled: tuple[tuple[str, float, float], ...] = ()
    spill_pj: float = 0.0

    @property
    def cycles(self) -> float:
        """The tile engine's time for the tiles flowing through the group's arrays
        (:func:`timed`): each tile's DRAM transfer ahead of its compute, overlap across the arrays,
        fill and drain, stalls on producers. (-1 set by hand: the sum of the Einsums'.)"""
        if self.engine_cycles >= 0:
            return self.engine_cycles
        return float(sum(a.cycles for a in self.analyses))

    @property
    def bound(self) -> float:
        """A lower bound of :attr:`cycles`: the busiest branch's work, or the DRAM's
        (:func:`busiest`)."""
        return busiest(
            self.analyses,
            self.mapping.binding,
            extra_dram=self.load_cycles,
            with_dram=not self.tile_transfers,
        )

    @property
    def energy_pj(self) -> float:
        return (
            sum(a.energy_pj for a in self.analyses)
            + self.drain_pj
            + self.load_pj
            + self.link_pj
            + self.spill_pj
        )

    def scalar_accesses(self, level: str) -> float:
        own = sum(a.scalar_accesses(level) for a in self.analyses if level in a.levels)
        outer = self.mapping.mappings[0][0].target
        if level in (outer, self.mapping.level):  # drains and loads: at the one and the other
            own += sum(w for _t, w in self.drained) + sum(w for _t, w in self.loaded)
        if level == outer:  # spills: written out and read back there
            own += sum(o + b for _t, o, b in self.spilled)
        return own + dict(self.link_fills).get(level, 0)

    def describe(self) -> str:
        shared = ", ".join(
            f"{lv}: "
            + (
                " ".join(
                    [f"{r}{f}" for r, f in loops]
                    + [f"{r}{f} across" for r, f in self.mapping.spatial_at(i) if f > 1]
                )
                or "-"
            )
            for i, (lv, loops) in enumerate(zip(self._outer_names(), self.mapping.shared, strict=True))
        )
        below = dict(self.mapping.kept)
        at_level = [t for t in self.intermediates if t not in below]
        lines = [
            f"fused {' -> '.join(self.names)} at {self.mapping.level} (shared loops {shared}); "
            f"on chip: {', '.join(at_level) or 'nothing'}"
            + "".join(
                f"; in {lv}: {', '.join(t for t in self.intermediates if below.get(t) == lv)}"
                for lv in dict.fromkeys(below.values())
            ),
            f"{self.cycles:,.0f} cycles, {self.energy_pj:,.0f} pJ; {self.mapping.level} holds "
            f"{self.footprint_words:,} words at once"
            + "".join(f", {lv} {w:,} per instance" for lv, w in self.held_below),
        ]
        if self.states:
            lines.append(
                "running states kept on chip: "
                + ", ".join(f"{t} (over {r}, one step a tile)" for t, r in self.states.items())
            )
        if self.loaded:
            lines.append(
                f"loaded whole into {self.mapping.level} before the tiles: "
                + ", ".join(f"{t} ({w:,} words)" for t, w in self.loaded)
                + f", {self.load_pj:,.0f} pJ"
            )
        own = self.own_loops()
        if any(own.values()):
            lines.append(
                f"loops of their own above {self.mapping.level} (streaming a block at a time): "
                + ", ".join(
                    f"{n} " + " ".join(f"{r}{f}" for r, f in loops) for n, loops in own.items() if loops
                )
            )
        if self.mapping.in_place:
            lines.append("written in place: " + ", ".join(f"{o} over {i}" for o, i in self.mapping.in_place))
        if self.mapping.bypass:
            lines.append(
                f"sent from the registers past {self.mapping.level}: " + ", ".join(self.mapping.bypass)
            )
        if self.mapping.through:
            lines.append(
                f"through {self._outer_names()[0]} between passes (sent from the registers, read back): "
                + ", ".join(self.mapping.through)
            )
        if self.mapping.together:
            lines.append(
                "stepping their own loops together: "
                + "; ".join(", ".join(run) for run in self.mapping.together)
            )
        if self.mapping.spill:
            lines.append(
                f"spilling to {self._outer_names()[0]} (written out and read back): "
                + ", ".join(f"{f:.4g} of {t}" for t, f in self.mapping.spill)
            )
        if self.mapping.forward:
            lines.append(
                "taken from the writer's registers as made: "
                + ", ".join(f"{t} by {r}" for t, r in self.mapping.forward)
            )
        if self.linked:
            lines.append(
                "across links: "
                + ", ".join(f"{t} {a} -> {b} ({w:,} words)" for t, a, b, w in self.linked)
                + f", {self.link_pj:,.0f} pJ with the fills at the far end"
            )
        if self.spilled:
            lines.append(
                "spilled: "
                + ", ".join(f"{t} ({o:,.0f} words out, {b:,.0f} back)" for t, o, b in self.spilled)
                + f", {self.spill_pj:,.0f} pJ"
            )
        if self.drained:
            lines.append(
                "written out after the group: "
                + ", ".join(f"{t} ({w:,} words)" for t, w in self.drained)
                + f", {self.drain_pj:,.0f} pJ"
            )
        on = self.mapping.binding or ("",) * len(self.names)
        for n, a, b in zip(self.names, self.analyses, on, strict=True):
            where = f" on {b}" if b else ""
            lines.append(f"  {n}{where}: {a.cycles:,.0f} cycles, {a.energy_pj:,.0f} pJ")
        arrays = list(dict.fromkeys(self.mapping.binding))
        lines.append(
            f"  {self.mapping.tiles:,} tiles "
            + (f"through {', '.join(arrays)} at once" if len(arrays) > 1 else "one after another, DRAM ahead")
            + f" (the tile engine): {self.cycles:,.0f} cycles; lower bound {self.bound:,.0f} "
            f"(the busiest array's work, or DRAM's); each Einsum on its own "
            f"{sum(a.cycles for a in self.analyses):,.0f}"
        )
        return "\n".join(lines)

    def own_loops(self) -> dict[str, tuple[tuple[str, int], ...]]:
        """Each Einsum's own loops above the fusion level, below the shared loops."""
        k = len(self.mapping.shared)
        out = {}
        for n, ms in zip(self.names, self.mapping.mappings, strict=True):
            loops: tuple[tuple[str, int], ...] = ()
            if k:
                shared = self.mapping.shared[k - 1]
                temporal = tuple(ms[k - 1].temporal)
                # a final's shared loops leave the recurrences' ranks (none here: own loops are
                # refused beside recurrences), so the shared loops are a prefix
                loops = (
                    tuple((r, f) for r, f in temporal[len(shared) :] if f > 1)
                    if temporal[: len(shared)] == tuple(shared)
                    else ()
                )
            out[n] = loops
        return out

    def _outer_names(self) -> list[str]:
        first = self.mapping.mappings[0]
        k = [m.target for m in first].index(self.mapping.level)
        return [m.target for m in first[:k]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "einsums": list(self.names),
            "fusion_level": self.mapping.level,
            "shared_loops": {
                lv: [[r, f] for r, f in loops]
                for lv, loops in zip(self._outer_names(), self.mapping.shared, strict=True)
            },
            "shared_spatial_loops": {
                lv: [[r, f] for r, f in self.mapping.spatial_at(i) if f > 1]
                for i, lv in enumerate(self._outer_names())
                if any(f > 1 for _r, f in self.mapping.spatial_at(i))
            },
            "intermediates": list(self.intermediates),
            "own_loops": {n: [[r, f] for r, f in loops] for n, loops in self.own_loops().items() if loops},
            "in_place": dict(self.mapping.in_place),
            "forward": [[t, r] for t, r in self.mapping.forward],
            "bypass": list(self.mapping.bypass),
            "through": list(self.mapping.through),
            "together": [list(run) for run in self.mapping.together],
            "spill": [[t, f] for t, f in self.mapping.spill],
            "kept_below": dict(self.mapping.kept),
            "held_below_words": dict(self.held_below),
            "binding": dict(zip(self.names, self.mapping.binding, strict=True))
            if self.mapping.binding
            else {},
            "running_states": dict(self.states),
            "drained": dict(self.drained),
            "preloaded": dict(self.loaded),
            "linked": [{"tensor": t, "from": a, "to": b, "words": w} for t, a, b, w in self.linked],
            "link_pj": self.link_pj,
            "load_pj": self.load_pj,
            "drain_pj": self.drain_pj,
            "spilled": [{"tensor": t, "out": o, "back": b} for t, o, b in self.spilled],
            "spill_pj": self.spill_pj,
            "footprint_words": self.footprint_words,
            "cycles": self.cycles,
            "energy_pj": self.energy_pj,
            "per_einsum": {n: a.to_dict() for n, a in zip(self.names, self.analyses, strict=True)},
        }


def _busy(c: float | Analysis) -> tuple[float, float]:
    """An Einsum's (on-array, DRAM) cycles: its compute and on-chip levels' cycles, and its
    outermost level's; a bare number is all on the array."""
    if not isinstance(c, Analysis):
        return float(c), 0.0
    outer = next(iter(c.level_cycles), None)
    on_chip = [v for lv, v in c.level_cycles.items() if lv != outer]
    return max([c.compute_cycles, *on_chip]), (c.level_cycles.get(outer, 0.0) if outer is not None else 0.0)


def latency(path: Any, problem: Problem, mappings: Sequence[LevelMapping]) -> float:
    """Cycles after ``problem`` ends on ``path`` (a hierarchy of one branch) before its result may
    be used: its compute units' :meth:`~mapper.hierarchy.Compute.reduction_latency` on the mesh
    of the last level whose loops fan out."""
    last = next((i for i in range(len(mappings) - 1, -1, -1) if mappings[i].spatial), None)
    if last is None:
        return 0.0
    mesh = path.storages(problem, priced=False)[last].fanout_mesh
    return float(path._path().reduction_latency(problem, mappings, mesh[0] if mesh else None))


def busiest(
    cycles: Sequence[float | Analysis],
    binding: Sequence[str],
    extra_dram: float = 0.0,
    with_dram: bool = True,
) -> float:
    """A lower bound of a group's cycles (the tile engine's, :func:`timed`): at least each
    branch's work (it runs its Einsums one at a time) and the DRAM's (its transfers go one at a
    time; ``extra_dram``: a preload's): the largest of those. ``binding`` empty: one path.
    ``with_dram=False``: the branches' work only (transfers tile by tile)."""
    binding = binding or ("",) * len(cycles)
    per: dict[str, float] = {}
    dram = extra_dram
    for c, b in zip(cycles, binding, strict=True):
        on, off = _busy(c)
        per[b] = per.get(b, 0.0) + on
        dram += off
    return max(*per.values(), dram if with_dram else 0.0)


def timed(
    problems: Sequence[Problem],
    names: Sequence[str],
    cycles: Sequence[float | Analysis],
    binding: Sequence[str],
    shared: tuple[tuple[tuple[str, int], ...], ...],
    steps: Mapping[str, str],
    latencies: Sequence[float] | None = None,
    extra_dram: float = 0.0,
    preloaded: frozenset[str] = frozenset(),
    *,
    lookahead: int = LOOKAHEAD,
    interleave: bool = True,
    per_tile: Sequence[float] | None = None,
    transfers: Any = None,
    live: Mapping[str, float] | None = None,
) -> float:
    """A group's cycles on several branches by the simulator's tile engine
    (:func:`mapper.engine.simulate_kernel`), on the analysis's numbers: each Einsum a task on its
    branch for its cycles over the tiles, waiting for the Einsums of the group it reads in the
    same tile and, for a recurrence, for the previous step's state; the arrays' first Einsums
    run up to :data:`LOOKAHEAD` tiles ahead; ``latencies``: cycles after an Einsum ends before its
    result may be used (a max reduced along a chain of rows, :func:`latency`). Given the Einsums'
    analyses, the outermost level
    (DRAM) is the engine's own unit: a task takes its compute and on-chip levels' cycles, and
    each tile's DRAM transfer (the Einsums' DRAM cycles over the tiles) runs ahead, double
    buffered, as the template's. The recurrences' rank must be the innermost shared loop (its
    steps are consecutive tiles). ``per_tile``: cycles each Einsum adds to every tile (a stream's
    read latency, a pipeline's drain, :func:`tile_overheads`); ``transfers``: the outermost
    level's transfers tile by tile (:class:`mapper.engine.Transfers`, :func:`tile_transfers`)
    instead of spread evenly; ``lookahead``, ``interleave``: :class:`FusedMapping`'s. ``live``:
    per Einsum that skips wholly masked tiles, the share it computes (:attr:`FusedMapping.live`):
    a query tile runs only the steps it computes, each at its whole cost
    (:func:`mapper.engine.live_steps`, as the template's engine)."""
    from mapper.engine import Task, live_steps, simulate_kernel

    tiles = math.prod(f for loops in shared for _r, f in loops)
    state = carried(problems, steps)
    ranks = {steps[p.output.name] for p in problems if p.output.name in steps} | set(state.values())
    order = [r for loops in shared for r, f in loops if f > 1]
    nsteps = 1
    if ranks:
        inner = [r for r in order if r in ranks]
        if inner and order[-len(inner) :] != inner:
            raise ScheduleError(
                f"fusion: the recurrences step over {', '.join(sorted(ranks))}, which must be the "
                f"innermost shared loops (found {order})"
            )
        nsteps = math.prod(f for loops in shared for r, f in loops if r in ranks)
    made = {p.output.name: n for p, n in zip(problems, names, strict=True)}
    unit = dict(zip(names, binding, strict=True))
    last = finals(problems, steps)
    dram = 0.0
    busy: list[float] = []
    reads_dram: list[bool] = []
    for c in cycles:
        on, off = _busy(c)
        busy.append(on)
        dram += off
        outer = next(iter(c.level_cycles), None) if isinstance(c, Analysis) else None
        reads_dram.append(
            isinstance(c, Analysis) and outer is not None and any(s.reads for s in c.levels[outer].values())
        )
    for j, p in enumerate(problems):  # the Einsums that read a preloaded input wait on its transfers
        if preloaded & {s.name for s in p.spaces if not s.output}:
            reads_dram[j] = True
    dram += extra_dram
    needs_other: dict[str, bool] = {}
    tasks = []
    for j, (p, n) in enumerate(zip(problems, names, strict=True)):
        reads = [s.name for s in p.spaces if not s.output]
        earlier = {q.output.name for q in problems[:j]}
        deps = tuple(made[t] for t in reads if t in earlier)
        prev = tuple(made[t] for t in reads if t in state)
        if p.output.name in steps:  # a recurrence reads its own previous step
            prev = (*prev, n)
        # a task that waits on another branch in its tile, or on a previous step, may not run ahead
        other = any(unit[d] != unit[n] for d in deps) or bool(prev)
        other = other or any(needs_other.get(d, False) for d in deps)
        needs_other[n] = other
        tasks.append(
            Task(
                name=n,
                unit=unit[n],
                # a final runs once per query tile (its cycles over the query tiles)
                cycles=busy[j] / (tiles // nsteps if j in last else tiles)
                + (per_tile[j] if per_tile else 0.0),
                latency=float(latencies[j]) if latencies is not None else 0.0,
                deps=deps,
                prev=tuple(dict.fromkeys(prev)),
                final=j in last,
                head=not other and j not in last,
                reads_dram=reads_dram[j] and dram > 0,
            )
        )
    run = nsteps
    if transfers is None:  # (tile by tile, each step's key-side transfer is its own)
        tasks, run = live_steps(tasks, nsteps, live)
    return simulate_kernel(
        tasks,
        query_tiles=tiles // nsteps,
        steps=run,
        lookahead=lookahead,
        interleave=interleave,
        dram_cycles_per_tile=transfers if transfers is not None else dram / (tiles // nsteps * run),
    ).cycles


def _nsteps(problems: Sequence[Problem], shared: Any, steps: Mapping[str, str]) -> tuple[int, set[str]]:
    """The steps of the group's recurrences per query tile, and the ranks they step over."""
    state = carried(problems, steps)
    ranks = {steps[p.output.name] for p in problems if p.output.name in steps} | set(state.values())
    return math.prod(f for loops in shared for r, f in loops if r in ranks), ranks


def tile_overheads(
    paths: Sequence[Any], problems: Sequence[Problem], analyses: Sequence[Analysis]
) -> list[float]:
    """Cycles each Einsum of a group adds to every tile in the tile engine: the largest
    ``latency_cycles`` of the on-chip levels it streams one of the group's inputs from (a
    tensor no Einsum of the group writes, read there), and the longest ``pipeline`` drain of
    the operations it issues (:class:`mapper.hierarchy.Compute`)."""
    made = {p.output.name for p in problems}
    out = []
    for path, p, a in zip(paths, problems, analyses, strict=True):
        stream = 0.0
        for lv in path.levels[1:]:
            stats = a.levels.get(lv.name, {})
            if lv.latency_cycles and any(t not in made and s.reads for t, s in stats.items()):
                stream = max(stream, float(lv.latency_cycles))
        pipe = path._path().pipeline or {}
        drain = max((float(pipe.get(op, 0)) for op, n in p.ops if n), default=0.0)
        out.append(stream + drain)
    return out


def tile_transfers(
    hierarchy: Any,
    problems: Sequence[Problem],
    mapping: FusedMapping,
    analyses: Sequence[Analysis],
    loaded: Sequence[tuple[str, int]],
    drained: Sequence[tuple[str, int]],
    steps: Mapping[str, str],
) -> Any:
    """The outermost level's transfers tile by tile (``transfers: tile``), as
    :class:`mapper.engine.Transfers`: each query tile's inputs without the recurrences' rank at
    its first step, the inputs with it at every step (of the first query tile only, where they
    are preloaded: they stay in the fusion level for the others), the outputs after each query
    tile (on the write channel); in cycles of the level's bandwidth, arriving ``latency_cycles``
    after their last request."""
    from mapper.engine import Transfers

    outer = hierarchy.levels[0]
    read_bw = outer.read_bandwidth or hierarchy._shared_bandwidth(outer)
    write_bw = outer.write_bandwidth or hierarchy._shared_bandwidth(outer)
    if not read_bw or not write_bw:
        raise ScheduleError(
            f"fusion: {outer.name} times its transfers tile by tile (transfers: tile) but has no bandwidth"
        )
    nsteps, ranks = _nsteps(problems, mapping.shared, steps)
    query_tiles = mapping.tiles // max(1, nsteps)
    query = key = out = 0.0
    for p, a in zip(problems, analyses, strict=True):
        dims = {s.name: s.dims for s in p.spaces}
        for t, s in a.levels.get(outer.name, {}).items():
            if s.reads:
                if ranks & set(dims[t]):
                    key += s.reads
                else:
                    query += s.reads
            out += s.updates
    held = 0.0
    copies = set()
    for t, words in loaded:
        dims = next(s.dims for p in problems for s in p.spaces if s.name == t)
        if ranks & set(dims):
            held += words
            copies.add(_preload_copies(problems, mapping, t))
        else:
            query += words
    if (held and key) or len(copies) > 1:
        raise ScheduleError(
            "fusion: with transfers tile by tile, the inputs over the recurrences' rank are preloaded all "
            "or none, alike (their first pass fills the fusion level for the query tiles that share it, "
            "or each query tile fetches its own)"
        )
    reps = copies.pop() if copies else 1
    out += sum(w for _t, w in drained)
    return Transfers(
        query=query / query_tiles / read_bw,
        key=(held / reps / max(1, nsteps) if held else key / (query_tiles * max(1, nsteps))) / read_bw,
        group=query_tiles // reps if held else 1,
        latency=float(outer.latency_cycles),
        drain=out / query_tiles / write_bw,
    )


def intermediates(problems: Sequence[Problem]) -> tuple[str, ...]:
    """Tensors one problem of the chain writes and a later one reads."""
    out = []
    for i, p in enumerate(problems):
        name = p.output.name
        if any(name in {s.name for s in q.spaces if not s.output} for q in problems[i + 1 :]):
            out.append(name)
    return tuple(out)


def carried(problems: Sequence[Problem], steps: Mapping[str, str]) -> dict[str, str]:
    """The running states of the chain's recurrences: tensors one problem writes and an earlier
    one reads (the reader takes the previous step's value), each with the rank it steps over,
    from ``steps`` (tensor -> rank; :func:`steps_of`)."""
    out = {}
    for j, p in enumerate(problems):
        name = p.output.name
        if any(name in {s.name for s in q.spaces if not s.output} for q in problems[:j]):
            if name not in steps:
                raise ScheduleError(
                    f"fusion: {name} is read by an Einsum before the one that writes it, but it is no "
                    "recurrence's state (a fused group runs its Einsums in order within each tile)"
                )
            out[name] = steps[name]
    return out


def steps_of(cascade: Any) -> dict[str, str]:
    """Each recurrence's state tensor of ``cascade`` and the rank it steps over (upper case):
    ``RM[p, m1 + 1] = max(RM[p, m1], LM[p, m1])`` steps ``RM`` over ``M1``."""
    return {e.output: e.step.upper() for e in cascade.einsums if e.step is not None and not e.init}


def read_after(cascade: Any, names: Sequence[str]) -> frozenset[str]:
    """The tensors the Einsums ``names`` write that an Einsum of ``cascade`` outside them reads,
    or that are the cascade's outputs: what the group must write out."""
    group = set(names)
    made = {e.output for e in cascade.einsums if e.output in group}
    out = {t for t in made if t in cascade.outputs}
    for e in cascade.einsums:
        if e.output in group or e.init:
            continue
        out |= {t for t in made if t in e.reads}
    return frozenset(out)


def fused_ranks(problems: Sequence[Problem], steps: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The ranks every problem of the chain has in its output (so no shared loop splits a
    reduction), in the first problem's order; the group's finals (:func:`finals`) left out."""
    last = finals(problems, steps or {})
    sets = [p.output.dims for i, p in enumerate(problems) if i not in last]
    first = [d for d, _n in problems[0].dims]
    return tuple(d for d in first if all(d in s for s in sets))


def stepped(problems: Sequence[Problem], steps: Mapping[str, str]) -> frozenset[str]:
    """The ranks the group's recurrences step over (``M1``)."""
    return frozenset(steps[p.output.name] for p in problems if p.output.name in steps)


def finals(problems: Sequence[Problem], steps: Mapping[str, str]) -> frozenset[int]:
    """The group's **finals**: Einsums after its recurrences that read their last step and do not
    keep the rank they step over (FuseMax's ``AV = RNV[M1] / RD[M1]``). They run once per query
    tile, after its last step (the shared loops without the recurrences' rank)."""
    ranks = stepped(problems, steps)
    if not ranks:
        return frozenset()
    states = {p.output.name for p in problems if p.output.name in steps}
    out = set()
    for i, p in enumerate(problems):
        reads = {s.name for s in p.spaces if not s.output}
        if reads & states and not ranks & p.output.dims and p.output.name not in steps:
            out.add(i)
    return frozenset(out)


def _own_shared(
    shared: tuple[tuple[tuple[str, int], ...], ...], final: bool, ranks: frozenset[str]
) -> tuple[tuple[tuple[str, int], ...], ...]:
    """The shared loops an Einsum of the group runs under: a final's leave the recurrences'."""
    if not final:
        return shared
    return tuple(tuple((r, f) for r, f in loops if r not in ranks) for loops in shared)


def _check_chain(
    problems: Sequence[Problem], names: Sequence[str], steps: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    """The tensors the group keeps on chip (intermediates, and recurrences' running states),
    after checking it is a chain over ranks every Einsum keeps."""
    if len(problems) < 2:
        raise ScheduleError("a fused group needs at least two Einsums")
    state = carried(problems, steps or {})
    made = (*intermediates(problems), *(t for t in state if t not in intermediates(problems)))
    for i, p in enumerate(problems[1:], 1):
        reads = {s.name for s in p.spaces if not s.output}
        if not reads & ({q.output.name for q in problems[:i]} | set(state)):
            raise ScheduleError(
                f"fusion: {names[i]} reads nothing that {', '.join(names[:i])} write(s), nor a running "
                "state of the group; a fused group is a chain whose Einsums read what earlier ones write"
            )
    ranks = fused_ranks(problems, steps)
    if not ranks:
        raise ScheduleError(
            f"fusion: {', '.join(names)} share no rank in all their outputs; nothing to fuse over"
        )
    last = finals(problems, steps or {})
    over = stepped(problems, steps or {})
    for i in last:
        missing = [r for r in ranks if r not in over and r not in problems[i].output.dims]
        if missing or any(j > i and j not in last for j in range(len(problems))):
            raise ScheduleError(
                f"fusion: {names[i]} reads the recurrences' last step, so it runs once they are done: it "
                "must come after every other Einsum of the group and keep its ranks but "
                f"{', '.join(sorted(over))}" + (f" (it lacks {', '.join(missing)})" if missing else "")
            )
    for r in ranks:
        sizes = {dict(p.dims)[r] for p in problems if r in dict(p.dims)}
        if len(sizes) > 1:
            raise ScheduleError(f"fusion: rank {r} has different sizes in the group: {sorted(sizes)}")
    for t, r in state.items():
        if r not in ranks:
            raise ScheduleError(
                f"fusion: the recurrence of {t} steps over {r}, which is not a rank every Einsum of the "
                f"group keeps ({', '.join(ranks)}): its steps cannot be the group's tiles"
            )
    return made


def _check_shared_spatial(
    mapping: FusedMapping, levels: Sequence[str], k: int, ranks: set[str], stepped_ranks: set[str]
) -> None:
    """The shared spatial loops: at most one entry per level outside the fusion level, over fused
    ranks that no recurrence steps (a state steps its rank one tile at a time), and no preload
    beside them (each instance would hold its own copy)."""
    if len(mapping.shared_spatial) > k:
        raise ScheduleError(
            f"fusion: shared_spatial gives {len(mapping.shared_spatial)} levels, but only {k} lie outside "
            f"the fusion level {mapping.level}"
        )
    for lv, loops in zip(levels, mapping.shared_spatial, strict=False):
        for r, f in loops:
            if r not in ranks:
                raise ScheduleError(
                    f"fusion: the shared spatial loop over {r} at {lv}: {r} is not a fused rank "
                    f"({sorted(ranks)})"
                )
            if r in stepped_ranks and f > 1:
                raise ScheduleError(
                    f"fusion: the shared spatial loop over {r} at {lv}: a recurrence steps {r} one tile at a "
                    "time, so its steps cannot run side by side"
                )
    if mapping.preload and any(f > 1 for loops in mapping.shared_spatial for _r, f in loops):
        raise ScheduleError(
            "fusion: preload with shared spatial loops: each instance of the fusion level would load "
            f"{', '.join(mapping.preload)} whole; preload goes with temporal shared loops only"
        )


def _keeps(
    hierarchy: Any,
    problem: Problem,
    level: int,
    made: Sequence[str],
    kept: Mapping[str, int] | None = None,
    own: Sequence[str] = (),
) -> list[frozenset[str]] | None:
    """Each level's keep for one Einsum of the group: the hierarchy's, without the group's
    on-chip tensors (``made``: those it makes, and inputs resident or preloaded at the fusion
    level) outside the level that keeps them, and with them at it (the fusion level, or
    ``kept``'s level index below it). The ``on_chip`` role names the tensors the group makes
    itself (``own``): inputs stream past such a level. None: the hierarchy does not let that level
    keep one."""
    names = [s.name for s in problem.spaces]
    mine = [t for t in made if t in names]
    at = {t: (kept or {}).get(t, level) for t in mine}
    out = []
    for i, lv in enumerate(hierarchy.levels):
        base = hierarchy._keep(lv, problem)
        if base is not None and lv.keep is not None and "on_chip" in lv.keep:
            base = frozenset(base | {t for t in own if t in names})  # the role: what the group makes
        kept_here = {t for t in mine if at[t] == i}
        kept_set = set(names if base is None else base)
        kept_set -= {t for t in mine if i < at[t]}
        if base is not None and not kept_here <= set(base):
            return None
        kept_set |= kept_here
        out.append(frozenset(kept_set))
    return out


def _tensors(problem: Problem) -> frozenset[str]:
    return frozenset(s.name for s in problem.spaces)


def _footprint(
    problems: Sequence[Problem],
    mappings: Sequence[Sequence[LevelMapping]],
    level: int,
    made: Sequence[str],
    kept: Mapping[str, int],
    paths: Sequence[Any],
    own_loops: Sequence[tuple[tuple[str, int], ...]] = (),
    lasting: frozenset[str] | set[str] = frozenset(),
    in_place: Mapping[str, str] | None = None,
    back: Mapping[int, frozenset[str]] | None = None,
    together: Sequence[frozenset[int]] = (),
    spill: Mapping[str, float] | None = None,
) -> dict[str, tuple[Any, int]]:
    """Words each level that keeps the group's on-chip tensors holds at once (one instance): the
    fusion level, and each level below it in ``kept`` (on the path of the Einsums that use it).
    The Einsums of a tile run one after another; while one runs, the level holds its own tiles
    and the on-chip tensors it keeps that are live: made by it or an earlier Einsum of the tile
    and read by it or a later one (``lasting``: the running states and the tensors read after the
    group, live throughout). The footprint is the most over the Einsums. At the fusion level an
    on-chip tensor's tile spans its users' own loops above it (``own_loops``: it stays whole
    while they step through it), an Einsum's other tiles only its loops at and below it. An
    Einsum that writes its output over an input (``in_place``: output -> input) holds one tile of
    the two. An Einsum that reads one of them back from the outermost level (``back``, per Einsum:
    :attr:`FusedMapping.through`) holds its own tile of it, as of an input. A tensor made and
    read within one run of Einsums that step their own loops together (``together``, index sets)
    is held one step at a time, and lives from the writer's step to the last reader's. A tensor
    that spills (``spill``: tensor -> fraction) holds the rest of its tile."""
    users_of = {
        t: {j for j, p in enumerate(problems) if t in _tensors(p) and t not in (back or {}).get(j, ())}
        for t in made
    }
    stepwise = {
        t for t in made if t not in lasting and any(users_of[t] <= run for run in together) and users_of[t]
    }
    where = {level} | set(kept.values())
    out: dict[str, tuple[Any, int]] = {}
    for i in sorted(where):
        # every Einsum that reaches the level runs its own tiles there while the kept ones wait
        users = [j for j, pa in enumerate(paths) if len(pa.levels) > i]
        # levels of that index on different branches are different memories
        by_name: dict[str, list[int]] = {}
        for j in users:
            by_name.setdefault(paths[j].levels[i].name, []).append(j)
        for name, js in by_name.items():
            words: dict[str, int] = {}
            span: dict[str, tuple[int, int]] = {}
            own: dict[int, int] = {}
            for j in js:
                p, ms = problems[j], mappings[j]
                here = [s.name for s in p.spaces if ms[i].keep is None or s.name in ms[i].keep]
                mine = [
                    t
                    for t in here
                    if t in made and kept.get(t, level) == i and t not in (back or {}).get(j, ())
                ]
                for t in mine:
                    # the largest of its users' tiles (with their own loops above the level)
                    above = [] if t in stepwise else _above(own_loops, j, i == level)
                    tile = tile_words(p, [*above, *loops_of(ms, i)], [t])
                    if i == level and t in (spill or {}):
                        tile = math.ceil(tile * (1 - (spill or {})[t]))
                    words[t] = max(words.get(t, 0), tile)
                    first, _last = span.get(t, (j, j))
                    span[t] = (first, j)
                own[j] = tile_words(p, loops_of(ms, i), [t for t in here if t not in mine])
            if i != level and not words:
                continue
            for t in words:
                # live from its making (on another branch, where it crosses a link) to its last read
                writer = next((j for j, p in enumerate(problems) if p.output.name == t), span[t][0])
                span[t] = (min(writer, span[t][0]), span[t][1])
                if t in lasting:
                    span[t] = (min(js[0], span[t][0]), js[-1])

            held = 0
            for j in js:
                live = own[j] + sum(w for t, w in words.items() if span[t][0] <= j <= span[t][1])
                made_here = problems[j].output.name
                over = (in_place or {}).get(made_here)
                if over is not None and made_here in words and over in words:
                    live -= min(words[made_here], words[over])  # one tile of the two
                held = max(held, live)
            out[name] = (paths[js[0]].levels[i], held)
    return out


def _spill(
    problems: Sequence[Problem],
    names: Sequence[str],
    mapping: FusedMapping,
    made: Sequence[str],
    kept_at: Mapping[str, int],
    states: set[str],
    sent: Mapping[int, str],
    back: Mapping[int, frozenset[str]],
) -> dict[str, float]:
    """``mapping.spill`` checked: each an on-chip tensor of the group held at the fusion level (not
    kept below it, sent from the registers, read back through the outermost level, nor a running
    state), named once, with a fraction in (0, 1)."""
    out: dict[str, float] = {}
    gone = set(sent.values()) | {t for ts in back.values() for t in ts}
    for t, f in mapping.spill:
        held = [x for x in made if x not in kept_at and x not in gone and x not in states]
        if t not in held:
            why = (
                "kept below the fusion level"
                if t in kept_at
                else "sent from the registers or through the outermost level"
                if t in gone
                else "a running state"
                if t in states
                else "none of the group's on-chip tensors"
            )
            raise ScheduleError(
                f"fusion: spill names {t!r}, which is {why}: only a tensor held at the fusion level spills "
                f"(here {', '.join(held) or 'none'}){suggest(t, held)}"
            )
        if t in out:
            raise ScheduleError(f"fusion: spill names {t} twice")
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 < f < 1.0:
            raise ScheduleError(f"fusion: spill fraction of {t} must be in (0, 1), found {f!r}")
        out[t] = float(f)
    return out


def _spilled(
    problems: Sequence[Problem],
    names: Sequence[str],
    mapping: FusedMapping,
    paths: Sequence[Any],
    spill: Mapping[str, float],
    priced: bool,
) -> tuple[tuple[tuple[str, float, float], ...], float]:
    """The spilled share of each tensor (``spill``) at the outermost level: written out once as it
    is made, and read back once by each reader that does not take it from the writer's registers
    (``forward``): ``(tensor, words out, words back)``, and their energy there. The group moves
    them as it moves its loads and drains, spread over the tiles (the template's spill: a share
    of the kernel's DRAM bytes)."""
    from mapper.analysis import _extent

    taken = set(mapping.forward)
    out: list[tuple[str, float, float]] = []
    pj = 0.0
    for t, f in spill.items():
        w = next(j for j, p in enumerate(problems) if p.output.name == t)
        p = problems[w]
        space = next(x for x in p.spaces if x.name == t)
        words = f * math.prod(_extent(space, dict(p.size)))
        readers = [
            j for j, q in enumerate(problems) if j != w and t in _tensors(q) and (t, names[j]) not in taken
        ]
        back = words * len(readers)
        st = paths[w].storages(p, priced=priced)[0]
        pj += words / st.block_size * st.update_pj + back / st.block_size * st.read_pj
        out.append((t, words, back))
    return tuple(out), pj


def _spill_cycles(outer: Any, spilled: Sequence[tuple[str, float, float]]) -> float:
    """The spills' transfer cycles at the outermost level's bandwidths."""
    out = sum(o for _t, o, _b in spilled)
    back = sum(b for _t, _o, b in spilled)
    if not out and not back:
        return 0.0
    need = [
        back / outer.read_bandwidth if outer.read_bandwidth else 0.0,
        out / outer.write_bandwidth if outer.write_bandwidth else 0.0,
        (out + back) / outer.shared_bandwidth if outer.shared_bandwidth else 0.0,
    ]
    return max(need)


def _live(mapping: FusedMapping, names: Sequence[str]) -> dict[str, float]:
    """``mapping.live`` checked: Einsums of the group, once each, fractions in (0, 1]."""
    out: dict[str, float] = {}
    for n, f in mapping.live:
        if n not in names:
            raise ScheduleError(
                f"fusion: live names {n!r}, which is no Einsum of the group{suggest(n, list(names))}"
            )
        if n in out:
            raise ScheduleError(f"fusion: live names {n} twice")
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 < f <= 1.0:
            raise ScheduleError(f"fusion: live share of {n} must be a fraction in (0, 1], found {f!r}")
        out[n] = float(f)
    return out


def in_place_pairs(
    problems: Sequence[Problem], made: Sequence[str], lasting: frozenset[str] | set[str]
) -> tuple[tuple[str, str], ...]:
    """Every ``(output, input)`` pair of the group that may be written in place
    (:func:`_check_in_place`'s rules), at most one input per output."""
    out = []
    for j, p in enumerate(problems):
        for s in p.spaces:
            if s.output or s.name not in made or s.name in lasting or p.output.name not in made:
                continue
            if s.projection != p.output.projection or _last_reader(problems, s.name) != j:
                continue
            out.append((p.output.name, s.name))
            break
    return tuple(out)


def _last_reader(problems: Sequence[Problem], tensor: str) -> int:
    return max(
        (j for j, p in enumerate(problems) if any(s.name == tensor and not s.output for s in p.spaces)),
        default=-1,
    )


def _check_in_place(
    problems: Sequence[Problem],
    names: Sequence[str],
    mapping: FusedMapping,
    made: Sequence[str],
    kept_at: Mapping[str, int],
    lasting: set[str],
    through: set[str] | None = None,
) -> None:
    """``mapping.in_place``: each output written over an on-chip input of its Einsum, element by
    element (the same ranks, indexed alike), its last reader in the group, not read after it nor
    a running state, kept at the same level, neither going through the outermost level."""
    writer = {p.output.name: j for j, p in enumerate(problems)}
    seen: set[str] = set()
    for out, over in mapping.in_place:
        j = writer.get(out)
        if j is None or out not in made:
            raise ScheduleError(
                f"fusion: in_place names {out!r}, which is none of the group's on-chip tensors "
                f"({', '.join(made) or 'none'}){suggest(out, list(made))}"
            )
        if out in seen:
            raise ScheduleError(f"fusion: in_place writes {out} over two inputs")
        seen.add(out)
        p, n = problems[j], names[j]
        space = next((s for s in p.spaces if s.name == over and not s.output), None)
        why = None
        if space is None:
            why = f"{n} does not read {over}"
        elif over not in made:
            why = f"{over} is not one of the group's on-chip tensors"
        elif space.projection != p.output.projection:
            why = f"{n} does not read {over} element by element as it writes {out} (the same ranks, alike)"
        elif _last_reader(problems, over) != j:
            why = f"{names[_last_reader(problems, over)]} reads {over} after {n}"
        elif over in lasting:
            why = f"{over} is read after the group or carried across tiles"
        elif {out, over} & (through or set()):
            gone = sorted({out, over} & (through or set()))
            verb = "goes" if len(gone) == 1 else "go"
            why = f"{', '.join(gone)} {verb} through the outermost level (through)"
        elif kept_at.get(over, -1) != kept_at.get(out, -1):
            why = f"{out} and {over} are kept at different levels"
        if why:
            raise ScheduleError(f"fusion: {out} cannot be written over {over} in place: {why}")


def _above(own_loops: Sequence[tuple[tuple[str, int], ...]], j: int, here: bool) -> list[Any]:
    """Einsum ``j``'s own loops above the fusion level (none where ``here`` is false)."""
    if not here or not own_loops or not own_loops[j]:
        return []
    return loops_of([LevelMapping(target="", temporal=own_loops[j])])


def _check_own_loops(
    problem: Problem,
    name: str,
    own: tuple[tuple[str, int], ...],
    level: str,
    made: Sequence[str],
    recurrent: bool,
    away: Mapping[str, str] | None = None,
) -> None:
    """An Einsum's own loops at the level just outside the fusion level, below the shared loops
    (LoopTree's loops of one Einsum above the level where the group's tensors stay): over its own
    ranks, in a group without running states. Over a rank it reduces only where its output stays
    at the fusion level (made there: its tile spans the loop, so the partial sums stay there, read
    and updated once a step) or leaves the group; not where it is held below the fusion level or
    sent from the registers (``away``: the partial sums would cross a loop above the level that
    keeps them). A tensor kept below the fusion
    level changes under such a loop over its ranks, so its writer and readers step it together
    (:func:`_check_lockstep`). Each on-chip tensor
    stays whole at the fusion level while the loop steps through it (:func:`_footprint`); the
    Einsum's other tiles there are one step's (the inputs it streams)."""
    if not own:
        return
    dims = dict(problem.dims)
    for r, _f in own:
        if r not in dims:
            raise ScheduleError(
                f"fusion: {name}'s own loop over {r} at {level}: {name} has no rank {r} "
                f"({', '.join(dims)}){suggest(r, list(dims))}"
            )
    if recurrent:
        raise ScheduleError(
            f"fusion: {name} runs loops of its own at {level} ({own}), in a group with running states: not "
            "supported (a state steps one tile at a time under the shared loops)"
        )
    out = problem.output
    reduced = sorted({r for r, _f in own if r not in out.dims})
    if reduced and out.name in made and out.name in (away or {}):
        raise ScheduleError(
            f"fusion: {name} runs loops of its own over {', '.join(reduced)} at {level}, which it reduces, "
            f"but its output {out.name} is {(away or {})[out.name]}: its partial sums would cross a loop "
            "above the level that keeps them (move the loop below the fusion level)"
        )


def _kept_levels(
    problems: Sequence[Problem],
    names: Sequence[str],
    mapping: FusedMapping,
    paths: Sequence[Any],
    made: Sequence[str],
    k: int,
    drain: frozenset[str],
    hierarchy: Any = None,
    own_loops: Sequence[tuple[tuple[str, int], ...]] = (),
) -> dict[str, int]:
    """``mapping.kept`` as level indices (on its writer's path), after checking each: one of the
    group's on-chip tensors, not read after the group, at a level below the fusion level that its
    writer and readers reach with no temporal loop over its ranks above it (the tile stays whole
    until it is read). Readers on the writer's path use the same spatial loops, all over its ranks
    (every PE reads what it wrote). A reader on another branch needs a link from the writer's
    branch (:attr:`mapper.hierarchy.Branch.links`) and reads it at the same depth of its own
    path, spread over the instances by the writer's spatial loops over the tensor's ranks (the
    writer may reduce across its instances first, the reader multicast across its own)."""
    out: dict[str, int] = {}
    for t, lvname in mapping.kept:
        if t not in made:
            raise ScheduleError(
                f"fusion: kept names {t!r}, which is none of the group's on-chip tensors "
                f"({', '.join(made) or 'none'}){suggest(t, list(made))}"
            )
        if t in out:
            raise ScheduleError(f"fusion: kept names {t} twice")
        if t in drain:
            raise ScheduleError(
                f"fusion: {t} is read after the group, so it is written out from the fusion level "
                f"{mapping.level}; it cannot be kept at {lvname}"
            )
        users = [j for j, p in enumerate(problems) if t in _tensors(p)]
        writer = next(j for j in users if problems[j].output.name == t)
        on = mapping.binding or ("",) * len(problems)
        lvs = [lv.name for lv in paths[writer].levels]
        if lvname not in lvs[k + 1 :]:
            where = f" (on {on[writer]})" if on[writer] else ""
            raise ScheduleError(
                f"fusion: {t} cannot be kept at {lvname}: {names[writer]}, which writes it, reaches no such "
                f"level below the fusion level {mapping.level}{where}: its levels there are "
                f"{', '.join(lvs[k + 1 :]) or 'none'}{suggest(lvname, lvs[k + 1 :])}"
            )
        i = lvs.index(lvname)
        ranks = next(s for s in problems[writer].spaces if s.name == t).dims
        loops: dict[int, tuple[tuple[tuple[str, int], ...], ...]] = {}
        stepped: dict[int, tuple[tuple[int, str, int], ...]] = {}
        for j in users:
            if on[j] != on[writer]:
                links = _links(hierarchy, on[writer])
                if on[j] not in links:
                    raise ScheduleError(
                        f"fusion: {t} is kept at {lvname} on {on[writer]}, but {names[j]} reads it on "
                        f"{on[j]}, and no link runs from {on[writer]} to {on[j]}: a tensor kept below the "
                        "fusion level stays on its branch, or crosses a link (branches' links:)"
                    )
                if len(paths[j].levels) <= i:
                    raise ScheduleError(
                        f"fusion: {t} crosses from {on[writer]} to {on[j]}, but {on[j]} has no level at the "
                        f"depth of {lvname} for {names[j]} to read it from"
                    )
            ms = mapping.mappings[j]
            mine = []
            for m in ms[k:i]:
                mine.append(tuple((d, f) for d, f in m.spatial if f > 1))
            loops[j] = tuple(mine)
            stepped[j] = _lockstep(ms, k, i, ranks, own_loops[j] if own_loops else ())
        _check_lockstep(t, lvname, names, users, writer, stepped, mapping.mappings, ranks)
        _check_nested_readers(t, lvname, problems, names, users, writer, stepped[writer])
        same = [j for j in users if on[j] == on[writer]]
        if len(same) > 1:  # readers on the writer's own instances: each reads what it wrote
            for j in same:
                off = [d for lv in loops[j] for d, _f in lv if d not in ranks]
                if off:
                    raise ScheduleError(
                        f"fusion: {t} is kept at {lvname}, but {names[j]} spreads {', '.join(off)} (none of "
                        f"{t}'s ranks) across the instances above it: {t}'s elements would not be where "
                        "its other users find them"
                    )
                if loops[j] != loops[writer]:
                    raise ScheduleError(
                        f"fusion: {t} is kept at {lvname}, but {names[writer]} and {names[j]} spread it "
                        f"across the instances differently ({list(loops[writer])} and {list(loops[j])}): "
                        "each instance must read what it wrote"
                    )

        over = {j: tuple(tuple((d, f) for d, f in lv if d in ranks) for lv in loops[j]) for j in users}
        for j in users:
            if on[j] != on[writer] and over[j] != over[writer]:
                raise ScheduleError(
                    f"fusion: {t} crosses the link from {on[writer]} to {on[j]}, but {names[j]} spreads its "
                    f"ranks differently from {names[writer]} ({list(over[j])} and {list(over[writer])}): "
                    "each instance must receive what it reads"
                )
        out[t] = i
    return out


def _bypassed(
    problems: Sequence[Problem],
    names: Sequence[str],
    mapping: FusedMapping,
    paths: Sequence[Any],
    made: Sequence[str],
    k: int,
    states: set[str],
    drain: frozenset[str],
) -> dict[int, str]:
    """``mapping.bypass`` as writer index -> tensor, after checking each: a tensor the group makes
    and drains (read after the group), or one of its outputs that the writer's analysis writes to
    the outermost level; not a running state, read by no other Einsum of the group, not written in
    place, and with a level below the fusion level on its writer's path to send it from."""
    out: dict[int, str] = {}
    over = {x for pair in mapping.in_place for x in pair}
    finals = [p.output.name for p in problems if p.output.name not in made]
    for t in mapping.bypass:
        if not ((t in made and t in drain) or t in finals) or t in states:
            what = [x for x in made if x in drain and x not in states] + finals
            raise ScheduleError(
                f"fusion: bypass names {t!r}, which is none of the tensors the group makes and writes out "
                f"({', '.join(what) or 'none'}){suggest(t, what)}"
            )
        w = next(i for i, p in enumerate(problems) if p.output.name == t)
        readers = [names[j] for j, p in enumerate(problems) if j != w and t in _tensors(p)]
        # (a tensor kept below the fusion level is never drained: _kept_levels refuses that)
        if readers or t in over or w in out:
            why = (
                f"{', '.join(readers)} read{'s' if len(readers) == 1 else ''} it in the group"
                if readers
                else "it is written in place"
                if t in over
                else "it is named twice"
            )
            raise ScheduleError(f"fusion: bypass names {t}, but {why}: only its writer may send it out")
        if len(paths[w].levels) <= k + 1:
            raise ScheduleError(
                f"fusion: bypass names {t}, but {names[w]} has no level below the fusion level "
                f"{mapping.level} to send it from"
            )
        out[w] = t
    return out


def _together(
    mapping: FusedMapping, names: Sequence[str], own_loops: Sequence[tuple[tuple[str, int], ...]]
) -> list[frozenset[int]]:
    """``mapping.together`` as index sets, after checking each run: at least two Einsums of the
    group, each named once, consecutive, with the same own loops above the fusion level (not
    none)."""
    out: list[frozenset[int]] = []
    seen: set[str] = set()
    for run in mapping.together:
        for n in run:
            if n not in names:
                raise ScheduleError(
                    f"fusion: together names {n!r}, which is no Einsum of the group{suggest(n, list(names))}"
                )
            if n in seen:
                raise ScheduleError(f"fusion: together names {n} twice")
            seen.add(n)
        idx = sorted(names.index(n) for n in run)
        if len(idx) < 2 or idx != list(range(idx[0], idx[0] + len(idx))):
            raise ScheduleError(
                f"fusion: together runs {', '.join(run)}: a run is two or more consecutive Einsums of the "
                f"group ({', '.join(names)})"
            )
        loops = {own_loops[j] for j in idx}
        if len(loops) != 1 or not next(iter(loops)):
            raise ScheduleError(
                f"fusion: together runs {', '.join(run)}, whose own loops above {mapping.level} differ or "
                f"are none ({'; '.join(f'{names[j]}: {list(own_loops[j])}' for j in idx)}): a run steps "
                "the same loops together"
            )
        out.append(frozenset(idx))
    return out


def _through(
    problems: Sequence[Problem],
    names: Sequence[str],
    mapping: FusedMapping,
    paths: Sequence[Any],
    made: Sequence[str],
    k: int,
    states: set[str],
    kept_at: Mapping[str, int],
) -> dict[int, frozenset[str]]:
    """``mapping.through`` checked: each a tensor the group makes, not a running state, named once,
    neither kept below the fusion level nor in ``bypass``, read by a later Einsum of the group,
    with a level below the fusion level on its writer's path to send it from. Per Einsum, the
    tensors it reads back from the outermost level: every reader that does not take them from the
    writer's registers (``forward``)."""
    out: dict[int, set[str]] = {}
    taken = set(mapping.forward)
    seen: set[str] = set()
    for t in mapping.through:
        if t not in made or t in states:
            what = [x for x in made if x not in states]
            raise ScheduleError(
                f"fusion: through names {t!r}, which is none of the tensors the group makes other than "
                f"running states ({', '.join(what) or 'none'}){suggest(t, what)}"
            )
        if t in seen:
            raise ScheduleError(f"fusion: through names {t} twice")
        seen.add(t)
        if t in kept_at or t in mapping.bypass:
            where = "kept below the fusion level" if t in kept_at else "in bypass"
            raise ScheduleError(
                f"fusion: through names {t}, which is {where} too; a tensor goes through the outermost "
                "level, or is held on chip, or only sent out"
            )
        w = next(i for i, p in enumerate(problems) if p.output.name == t)
        readers = [j for j, p in enumerate(problems) if j != w and t in _tensors(p)]
        if not readers:
            raise ScheduleError(
                f"fusion: through names {t}, which no Einsum of the group reads: a tensor only read after "
                "the group is drained, or sent out with bypass"
            )
        if len(paths[w].levels) <= k + 1:
            raise ScheduleError(
                f"fusion: through names {t}, but {names[w]} has no level below the fusion level "
                f"{mapping.level} to send it from"
            )
        for j in readers:
            if (t, names[j]) not in taken:
                out.setdefault(j, set()).add(t)
    return {j: frozenset(v) for j, v in out.items()}


def _forwarded(
    problems: Sequence[Problem],
    names: Sequence[str],
    mapping: FusedMapping,
    paths: Sequence[Any],
    made: Sequence[str],
    k: int,
    kept_at: Mapping[str, int],
    states: set[str],
    hierarchy: Any = None,
    own_loops: Sequence[tuple[tuple[str, int], ...]] = (),
) -> dict[int, dict[str, int]]:
    """``mapping.forward`` as, per reader (its index), the tensors it takes from its writer's
    register files and their level index, after checking each pair: an on-chip tensor of the
    group kept at the fusion level, not a running state, read by a later Einsum on the writer's
    branch that reads nothing else the group makes from it (SD sums SN as SN is made; A, which
    reads SD too, cannot), the two as :func:`_kept_levels` requires of a tensor kept at the
    branch's innermost level (in lockstep over its ranks, every PE reading what it wrote)."""
    out: dict[int, dict[str, int]] = {}
    on = mapping.binding or ("",) * len(problems)
    for t, reader in mapping.forward:
        if t not in made or t in states:
            what = [x for x in made if x not in states]
            raise ScheduleError(
                f"fusion: forward names {t!r}, which is none of the group's on-chip tensors other than "
                f"running states ({', '.join(what) or 'none'}){suggest(t, what)}"
            )
        if t in kept_at:
            raise ScheduleError(
                f"fusion: forward names {t}, which is kept below the fusion level already (every reader "
                "takes it there)"
            )
        if reader not in names:
            raise ScheduleError(
                f"fusion: forward names {reader!r}, which is no Einsum of the group"
                f"{suggest(reader, list(names))}"
            )
        j = names.index(reader)
        writer = next(i for i, p in enumerate(problems) if p.output.name == t)
        if j <= writer or t not in _tensors(problems[j]):
            raise ScheduleError(
                f"fusion: forward ({t}, {reader}): {reader} is no later Einsum that reads {t}"
            )
        if t in out.get(j, {}):
            raise ScheduleError(f"fusion: forward names ({t}, {reader}) twice")
        # what the group makes from t (transitively): a reader of one of them needs t whole first
        after = {t}
        for q in problems[writer + 1 :]:
            if any(s.name in after for s in q.spaces if not s.output):
                after.add(q.output.name)
        late = sorted(s.name for s in problems[j].spaces if not s.output and s.name in after - {t})
        if late:
            raise ScheduleError(
                f"fusion: forward ({t}, {reader}): {reader} also reads {', '.join(late)}, made from {t}, "
                f"so it runs after {t} is whole, not as {t} is made"
            )
        if on[j] != on[writer]:
            raise ScheduleError(
                f"fusion: forward ({t}, {reader}): {reader} runs on {on[j]}, {names[writer]} on "
                f"{on[writer]}; a reader takes a tensor from its writer's registers on their branch only"
            )
        inner = paths[writer].levels[-1].name
        if len(paths[writer].levels) <= k + 1:
            raise ScheduleError(
                f"fusion: forward ({t}, {reader}): {names[writer]} has no level below the fusion level "
                f"{mapping.level} to hand {t} over in"
            )
        lv = paths[writer].levels[-1]
        may = paths[writer]._keep(lv, problems[writer])
        if may is not None and t not in may and "on_chip" not in (lv.keep or ()):
            raise ScheduleError(
                f"fusion: forward ({t}, {reader}): {inner} does not keep {t} for {names[writer]} (its keep: "
                f"{', '.join(sorted(may)) or 'nothing'}), so there is nothing to hand over there"
            )
        pair = dataclasses.replace(
            mapping,
            mappings=(mapping.mappings[writer], mapping.mappings[j]),
            binding=(on[writer], on[j]) if mapping.binding else (),
            kept=((t, inner),),
            forward=(),
        )
        loops = (own_loops[writer], own_loops[j]) if own_loops else ()
        at = _kept_levels(
            (problems[writer], problems[j]), (names[writer], reader), pair, (paths[writer], paths[j]),
            (t,), k, frozenset(), hierarchy, loops,
        )  # fmt: skip
        out.setdefault(j, {})[t] = at[t]
    return out


def _lockstep(
    ms: Sequence[LevelMapping],
    k: int,
    i: int,
    ranks: Sequence[str],
    own: tuple[tuple[str, int], ...] = (),
) -> tuple[tuple[int, str, int], ...]:
    """The temporal loops of ``ms`` between levels ``k`` and ``i`` (above ``i``), after the
    Einsum's ``own`` loops just outside ``k``, outermost first, up to the innermost one over
    ``ranks``: the steps over which a tile kept at ``i`` changes. Empty: the tile stays whole."""
    seq = [(k - 1, d, f) for d, f in own if f > 1]
    seq += [(lv, d, f) for lv in range(k, i) for d, f in ms[lv].temporal if f > 1]
    last = max((n for n, (_lv, d, _f) in enumerate(seq) if d in ranks), default=-1)
    return tuple(seq[: last + 1])


def _check_lockstep(
    t: str,
    lvname: str,
    names: Sequence[str],
    users: Sequence[int],
    writer: int,
    stepped: Mapping[int, tuple[tuple[int, str, int], ...]],
    mappings: Sequence[Sequence[LevelMapping]],
    ranks: Sequence[str],
) -> None:
    """A tile kept below the fusion level may change under temporal loops above it only if its
    writer and every reader step those loops together (a group nested in the group: the writer
    makes one slice, the readers read it, then the next): the same loops, factors and order, down
    to the innermost one over the tensor's ranks."""
    for j in users:
        if stepped[j] == stepped[writer]:
            continue
        a, b = stepped[j], stepped[writer]
        n = next((n for n, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        own, other = (j, writer) if n < len(a) else (writer, j)
        lv, d, f = next(x for x in stepped[own][n:] if x[1] in ranks)
        raise ScheduleError(
            f"fusion: {t} is kept at {lvname}, but {names[own]} runs a temporal loop over {d} ({f}) at "
            f"{mappings[own][lv].target}, above it, which {names[other]} does not step with it: {t}'s "
            f"tile there would be replaced before {names[other]} is done with it (its writer and readers "
            "may step such loops only together: the same loops, factors and order above the level, "
            f"down to the innermost over {t}'s ranks)"
        )


def _depends(problems: Sequence[Problem], tensor: str, on: str) -> bool:
    """Whether the group makes ``tensor`` (transitively) from ``on``."""
    reads = {p.output.name: [s.name for s in p.spaces if s.name != p.output.name] for p in problems}
    return depends(reads, tensor, on)


def _check_nested_readers(
    t: str,
    lvname: str,
    problems: Sequence[Problem],
    names: Sequence[str],
    users: Sequence[int],
    writer: int,
    stepped: tuple[tuple[int, str, int], ...],
) -> None:
    """A reader that steps with the writer of ``t`` reads each slice as it is made, so it may not
    also read a tensor made from ``t`` over the stepped loops' ranks (a sum over them is complete
    only after the last step: FLAT's ``A`` reads ``SN`` and ``SD``, the sum of ``SN`` over M)."""
    if not stepped:
        return
    ranks = {d for _lv, d, _f in stepped}
    for j in users:
        if j == writer:
            continue
        for s in problems[j].spaces:
            if s.name in (t, problems[j].output.name) or not _depends(problems, s.name, t):
                continue
            missing = sorted(ranks - set(s.dims))
            if missing:
                raise ScheduleError(
                    f"fusion: {t} is kept at {lvname} and made one step of {', '.join(missing)} at a "
                    f"time, but {names[j]} reads it beside {s.name}, which is made from {t} over all of "
                    f"{', '.join(missing)}: {s.name} is complete only after {t}'s last step, when its "
                    f"earlier steps are gone (keep {t} at a level above the loops over {', '.join(missing)})"
                )


def _links(hierarchy: Any, branch: str) -> Mapping[str, float]:
    """The links from ``branch`` of ``hierarchy`` (none on one path)."""
    if hierarchy is None or not branch:
        return {}
    return next((b.links for b in hierarchy.branches if b.name == branch), {})


def _link_costs(
    hierarchy: Any,
    problems: Sequence[Problem],
    mapping: FusedMapping,
    paths: Sequence[Any],
    kept: Mapping[str, int],
    k: int,
    priced: bool,
) -> tuple[tuple[tuple[str, str, str, int], ...], tuple[tuple[str, int], ...], float]:
    """The tensors kept below the fusion level that cross a link: ``(tensor, from, to, words)``
    once per receiving branch (every word the writer makes), the fills at the receiving level
    (each word into every instance its readers multicast it to), and the energy of both."""
    on = mapping.binding or ("",) * len(problems)
    crossed: list[tuple[str, str, str, int]] = []
    fills: dict[str, int] = {}
    pj = 0.0
    for t, i in kept.items():
        users = [j for j, p in enumerate(problems) if t in _tensors(p)]
        writer = next(j for j in users if problems[j].output.name == t)
        ranks = next(s for s in problems[writer].spaces if s.name == t).dims
        words = _whole(problems[writer], t)
        for b in dict.fromkeys(on[j] for j in users if on[j] != on[writer]):
            readers = [j for j in users if on[j] == b]
            crossed.append((t, on[writer], b, words))
            pj += words * _links(hierarchy, on[writer])[b] if priced else 0.0
            # each reader's spatial loops above the level over other ranks copy every word
            copies = max(
                math.prod(f for m in mapping.mappings[j][k:i] for d, f in m.spatial if d not in ranks)
                for j in readers
            )
            level = paths[readers[0]].levels[i].name
            fills[level] = fills.get(level, 0) + words * copies
            if priced:
                st = paths[readers[0]].storages(problems[readers[0]], priced=True)[i]
                pj += math.ceil(words * copies / st.block_size) * st.fill_pj
    return tuple(crossed), tuple(fills.items()), pj


def evaluate(
    hierarchy: Any,
    problems: Sequence[Problem],
    mapping: FusedMapping,
    *,
    names: Sequence[str] | None = None,
    priced: bool = True,
    steps: Mapping[str, str] | None = None,
    drain: frozenset[str] = frozenset(),
    resident: frozenset[str] = frozenset(),
) -> FusedResult:
    """The figures of a fused mapping of the chain ``problems`` over ``hierarchy``. ``steps``:
    the recurrences' state tensors and the ranks they step over (:func:`steps_of`); a state
    read before it is written in the chain stays on chip, one step per tile. ``drain``: the
    group's tensors read after it (:func:`read_after`), written out once. ``resident``: tensors
    that live whole at the fusion level beside the group (made by an earlier group of a staged
    schedule, or read by a later one, :func:`staged`): read and written there, never above."""
    names = tuple(names or [p.name for p in problems])
    made = _check_chain(problems, names, steps)
    loaded = _loads(problems, names, mapping, made, resident)
    onchip = (*made, *(t for t in sorted(resident | set(mapping.preload)) if t not in made))
    state = carried(problems, steps or {})
    levels = [lv.name for lv in hierarchy.levels]
    if mapping.level not in levels[1:]:
        raise ScheduleError(
            f"fusion: level {mapping.level!r} is not a level below the outermost"
            f"{suggest(mapping.level, levels[1:])}"
        )
    k = levels.index(mapping.level)
    if len(mapping.shared) != k or len(mapping.mappings) != len(problems):
        raise ScheduleError(
            f"fusion: expected shared loops for the {k} level(s) outside {mapping.level} and one mapping "
            f"per Einsum ({len(problems)})"
        )
    ranks = set(fused_ranks(problems, steps))
    last = finals(problems, steps or {})
    over = stepped(problems, steps or {})
    for lv, loops in zip(levels, mapping.shared, strict=False):
        for r, _f in loops:
            if r not in ranks:
                raise ScheduleError(
                    f"fusion: the shared loop over {r} at {lv}: {r} is not a fused rank ({sorted(ranks)})"
                )
    _check_shared_spatial(mapping, levels, k, ranks, set(state.values()) | set(over))
    size = dict(problems[0].dims)
    for t, r in state.items():
        shared_r = 1
        for loops in mapping.shared:
            shared_r *= dict(loops).get(r, 1)
        if shared_r != size[r]:
            raise ScheduleError(
                f"fusion: {t} is a running state over {r}: the shared loops must step {r} one at a time "
                f"(their factors of {r} multiply to {shared_r}, but {r} = {size[r]})"
            )
    paths = _paths(hierarchy, mapping, names)
    # the group's tensors not held at the fusion level: kept below it, or sent from the registers
    away = {t: "kept below the fusion level" for t, _lv in mapping.kept} | {
        t: "sent from the registers" for t in (*mapping.through, *mapping.bypass)
    }
    own_loops = []  # each Einsum's own loops above the fusion level, below the shared ones
    recurrent = bool(state) or bool(over) or any(q.output.name in (steps or {}) for q in problems)
    for j, (p, n, ms) in enumerate(zip(problems, names, mapping.mappings, strict=True)):
        mine_shared = _own_shared(mapping.shared, j in last, over)
        extra: tuple[tuple[str, int], ...] = ()
        for i in range(k):
            want = tuple((r, f) for r, f in mapping.spatial_at(i) if f > 1)
            have = tuple(ms[i].temporal)
            base = tuple(mine_shared[i])
            rest = have[len(base) :] if have[: len(base)] == base else None
            if (
                rest is None
                or (rest and i != k - 1)
                or tuple((r, f) for r, f in ms[i].spatial if f > 1) != want
            ):
                raise ScheduleError(
                    f"fusion: {n}'s mapping of {levels[i]} must be the shared loops "
                    f"{list(mine_shared[i])}"
                    + (f" and the shared spatial loops {list(want)}" if want else "")
                    + (
                        f", then (at {levels[k - 1]}, just outside the fusion level) loops of its own"
                        if k >= 1
                        else ""
                    )
                    + f"; found temporal {list(ms[i].temporal)}, spatial {list(ms[i].spatial)}"
                )
            if i == k - 1:
                extra = tuple((r, f) for r, f in rest if f > 1)
        _check_own_loops(p, n, extra, levels[k - 1], made, recurrent, away)
        own_loops.append(extra)
    kept_at = _kept_levels(problems, names, mapping, paths, made, k, drain, hierarchy, own_loops)
    # per Einsum, the tensors it holds in its registers beside mapping.kept: what a reader takes
    # from its writer's (forward), and a drained tensor its writer sends from there (bypass)
    in_regs = _forwarded(problems, names, mapping, paths, made, k, kept_at, set(state), hierarchy, own_loops)
    sent = _bypassed(problems, names, mapping, paths, made, k, set(state), drain)
    back = _through(problems, names, mapping, paths, made, k, set(state), kept_at)
    runs = _together(mapping, names, own_loops)
    # a tensor two or more Einsums of one run read back: the first of them reads it back once a
    # step into the fusion level, where it stays for the step, and the others read it there
    # (FLAT's S from 256K: its 1D array loads a few rows of scores and holds them for the max's
    # pass and the exponent's)
    fills: dict[int, frozenset[str]] = {}
    staged: dict[int, frozenset[str]] = {}
    for run in runs:
        for t in mapping.through:
            rs = sorted(j for j in run if t in back.get(j, ()))
            if len(rs) > 1:
                fills[rs[0]] = fills.get(rs[0], frozenset()) | {t}
                for j in rs[1:]:
                    staged[j] = staged.get(j, frozenset()) | {t}
    sent.update((next(j for j, p in enumerate(problems) if p.output.name == t), t) for t in mapping.through)
    for w, t in sent.items():
        if t in made:
            in_regs.setdefault(w, {})[t] = len(paths[w].levels) - 1
    share = _live(mapping, names)
    _check_in_place(problems, names, mapping, made, kept_at, set(state) | set(drain), set(mapping.through))
    analyses = []
    fixed = []  # each Einsum's mappings with the levels' keep for the group
    group_tensors = sorted({t for p in problems for t in _tensors(p)})
    for j, (p, n, ms, path) in enumerate(zip(problems, names, mapping.mappings, paths, strict=True)):
        # what it reads back from the outermost level (mapping.through) is an input to it (one a
        # run's earlier reader staged at the fusion level is there already)
        mine_on = tuple(t for t in onchip if t not in back.get(j, frozenset()) - staged.get(j, frozenset()))
        # (its register files may hold it, as they may what the group makes: the on_chip role)
        keeps = _keeps(path, p, k, mine_on, {**kept_at, **in_regs.get(j, {})}, own=made)
        if keeps is None:
            where = sorted({path.levels[kept_at.get(t, k)].name for t in made if t in _tensors(p)})
            raise ScheduleError(f"fusion: {', '.join(where)} may not keep {n}'s on-chip tensors")
        if sent.get(j) is not None and sent[j] not in made:  # an output sent past the fusion level
            keeps[k] = keeps[k] - {sent[j]}
        # what it reads back from the outermost level comes past the fusion level into the
        # registers, as its writer sent it (staged there, the readers' tiles of it would be the
        # whole group's, where the pass needs one tile at a time)
        keeps[k] = keeps[k] - (
            back.get(j, frozenset()) - fills.get(j, frozenset()) - staged.get(j, frozenset())
        )
        # below the fusion level, a level the Einsum's mapping names a keep for also holds the
        # inputs it names from outside the group (Timeloop's keep: a PE holds AV's GN across the
        # key steps in a register rather than reading it from the buffer at each one)
        outside = _tensors(p) - {p.output.name} - set(onchip) - set(state) - back.get(j, frozenset())
        # (a reader that takes a tensor from its writer's registers shares the writer's mapping,
        # keeps and all: names of the group's other tensors are not its own to hold)
        for i, m in enumerate(ms):
            unknown = [t for t in (m.keep or ()) if t not in group_tensors] if i > k else []
            if unknown:
                raise ScheduleError(
                    f"fusion: {n}'s mapping of {path.levels[i].name} keeps {unknown[0]!r}, which is none of "
                    f"the group's tensors ({', '.join(group_tensors)}){suggest(unknown[0], group_tensors)}"
                )
        keeps = [
            kp | (frozenset(m.keep) & outside) if i > k and m.keep is not None else kp
            for i, (m, kp) in enumerate(zip(ms, keeps, strict=True))
        ]
        ms = tuple(dataclasses.replace(m, keep=kp) for m, kp in zip(ms, keeps, strict=True))
        fixed.append(ms)
        mine = frozenset(t for t in mine_on if t in {s.name for s in p.spaces})
        beside = _beside(problems, mapping, j)
        over = {o: i for o, i in mapping.in_place if o == p.output.name}
        analyses.append(
            path.analyze(
                p, ms, priced=priced, produced=mine, with_producer=beside, in_place=over or None,
                live=share.get(n, 1.0),
            )
        )  # fmt: skip
    spill = _spill(problems, names, mapping, made, kept_at, set(state), sent, back)
    spilled, spill_pj = _spilled(problems, names, mapping, paths, spill, priced)
    below = {**kept_at, **{t: len(paths[w].levels) - 1 for w, t in sent.items() if t in made}}
    held = _footprint(
        problems, fixed, k, made, below, paths, own_loops, set(state) | set(drain), dict(mapping.in_place),
        back, runs, spill,
    )  # fmt: skip
    for name, (lv, words) in held.items():
        cap = lv.capacity_words
        if cap is not None and words > cap // max(1, int(lv.multiple_buffering)):
            raise CapacityError(
                f"fusion: {name} must hold {words} words at once (while one Einsum of a tile runs: its own "
                f"tiles and the group's tensors kept there that are live), but "
                f"{'it' if name == mapping.level else 'one instance'} holds {cap}"
            )
    foot = held[mapping.level][1]
    if loaded:  # the preloaded inputs' slices stay beside the tiles
        foot += sum(w // _preload_copies(problems, mapping, t) for t, w in loaded)
        lv = hierarchy.levels[k]
        cap = lv.capacity_words
        if cap is not None and foot > cap // max(1, int(lv.multiple_buffering)):
            raise ScheduleError(
                f"fusion: {lv.name} must hold {foot} words at once (what it keeps of the preloaded "
                f"{', '.join(t for t, _w in loaded)}, and the tiles), but it holds {cap}"
            )
    # what goes through the outermost level is written out once, as a drained tensor
    out_once = drain | frozenset(mapping.through)
    drained, drain_pj = _drain(paths[0], problems, made, state, out_once, k, priced, frozenset(sent.values()))
    load_pj, load_cycles = _load_costs(paths, problems, loaded, k, priced)
    # the drain's transfer at the outermost level's write bandwidth, timed with the tiles' own
    outer = paths[0].storages(problems[0], priced=False)[0]
    bw = outer.write_bandwidth or outer.shared_bandwidth
    drain_cycles = sum(w for _t, w in drained) / bw if bw else 0.0
    # the spills at the outermost level's bandwidth, spread over the tiles as the loads
    drain_cycles += _spill_cycles(outer, spilled)
    linked, link_fills, link_pj = _link_costs(hierarchy, problems, mapping, paths, kept_at, k, priced)
    lat = [latency(path, p, ms) for path, p, ms in zip(paths, problems, fixed, strict=True)]
    on = mapping.binding or ("",) * len(problems)
    if isinstance(mapping.lookahead, bool) or not isinstance(mapping.lookahead, int) or mapping.lookahead < 0:
        raise ScheduleError(f"fusion: lookahead must be an integer >= 0, found {mapping.lookahead!r}")
    by_tile = hierarchy.levels[0].transfers == "tile"
    moves = None
    if by_tile:
        moves = tile_transfers(hierarchy, problems, mapping, analyses, loaded, drained, steps or {})
    engine = timed(problems, names, analyses, on, mapping.shared, steps or {}, lat,
                   extra_dram=0.0 if by_tile else load_cycles + drain_cycles,
                   preloaded=frozenset(mapping.preload), lookahead=mapping.lookahead,
                   interleave=mapping.interleave, per_tile=tile_overheads(paths, problems, analyses),
                   transfers=moves, live=share)  # fmt: skip
    return FusedResult(
        names=names,
        mapping=mapping,
        analyses=tuple(analyses),
        intermediates=made,
        footprint_words=foot,
        drained=drained,
        drain_pj=drain_pj,
        states=dict(state),
        engine_cycles=engine,
        held_below=tuple((n, w) for n, (_lv, w) in held.items() if n != mapping.level),
        loaded=loaded,
        load_pj=load_pj,
        load_cycles=load_cycles + drain_cycles,
        linked=linked,
        link_fills=link_fills,
        link_pj=link_pj,
        tile_transfers=by_tile,
        spilled=spilled,
        spill_pj=spill_pj,
    )


def _epilogues_beside(hierarchy: Any, problems: Sequence[Problem], binding: Sequence[str | None]) -> bool:
    """Whether every epilogue of the group bound to units that run it only beside its contraction
    has its contraction on the same branch."""
    if not hierarchy.branches:
        return True
    made = {q.output.name: i for i, q in enumerate(problems)}
    for p, b in zip(problems, binding, strict=True):
        i = made.get(p.epilogue_of) if p.epilogue_of else None
        if i is None or binding[i] == b or b is None:
            continue
        if hierarchy.branch(b)._path().kind_error(p) is not None:
            return False
    return True


def _beside(problems: Sequence[Problem], mapping: FusedMapping, j: int) -> bool:
    """Whether Einsum ``j``, an epilogue, runs beside its contraction (in the group, on the same
    branch)."""
    p = problems[j]
    producer = next((i for i, q in enumerate(problems) if q.output.name == p.epilogue_of), None)
    if producer is None:
        return False
    return not mapping.binding or mapping.binding[producer] == mapping.binding[j]


def _paths(hierarchy: Any, mapping: FusedMapping, names: Sequence[str]) -> list[Any]:
    """Each Einsum's path through the hierarchy: its branch (``mapping.binding``) on a hierarchy
    with branches, else the hierarchy itself."""
    if not hierarchy.branches:
        if mapping.binding:
            raise ScheduleError(f"fusion: {hierarchy.name} has no branches to bind Einsums to")
        return [hierarchy] * len(names)
    if len(mapping.binding) != len(names):
        raise ScheduleError(
            f"fusion: {hierarchy.name} has branches ({', '.join(b.name for b in hierarchy.branches)}): "
            f"bind each of the {len(names)} Einsums to one (found {len(mapping.binding)})"
        )
    return [hierarchy.branch(b) for b in mapping.binding]


def _loads(
    problems: Sequence[Problem],
    names: Sequence[str],
    mapping: FusedMapping,
    made: Sequence[str],
    resident: frozenset[str],
) -> tuple[tuple[str, int], ...]:
    """``mapping.preload`` with each tensor's words, after checking each is an input of the group
    (read by it, made by none of it, not resident already)."""
    out: list[tuple[str, int]] = []
    n_shared = sum(len(loops) for loops in mapping.shared)
    if mapping.preload_outside is not None and (
        isinstance(mapping.preload_outside, bool)
        or not isinstance(mapping.preload_outside, int)
        or not 0 <= mapping.preload_outside <= n_shared
    ):
        raise ScheduleError(
            f"fusion: preload_outside must be an integer in 0 .. {n_shared} (the shared loops), found "
            f"{mapping.preload_outside!r}"
        )
    inputs = {s.name for p in problems for s in p.spaces if not s.output} - set(made)
    for t in mapping.preload:
        if t not in inputs or t in resident:
            raise ScheduleError(
                f"fusion: preload names {t!r}, which is no input of {', '.join(names)} read from outside "
                f"it ({', '.join(sorted(inputs - resident)) or 'none'}){suggest(t, sorted(inputs))}"
            )
        if t in dict(out):
            raise ScheduleError(f"fusion: preload names {t} twice")
        reader = next(p for p in problems if t in {s.name for s in p.spaces})
        dims = next(s.dims for s in reader.spaces if s.name == t)
        outside = _outside(mapping, dims)
        # loaded once per iteration of the loops outside: again where they run over a rank the
        # tensor lacks (the same words), a slice of it where over its own
        again = math.prod(f for r, f in outside if r not in dims)
        out.append((t, _whole(reader, t) * again))
    return tuple(out)


def _outside(mapping: FusedMapping, dims: frozenset[str]) -> list[tuple[str, int]]:
    """The shared loops a preloaded input with ranks ``dims`` is loaded under (once per
    iteration): ``mapping.preload_outside`` of the outermost, or by default those over its own
    ranks outside the first over a rank it lacks (what is loaded then stays for that loop and
    everything inside it: FuseMax's K and V of one head, kept for all its query tiles)."""
    flat = [(r, f) for loops in mapping.shared for r, f in loops]
    if mapping.preload_outside is not None:
        return flat[: mapping.preload_outside]
    n = next((i for i, (r, _f) in enumerate(flat) if r not in dims), len(flat))
    return flat[:n]


def _preload_copies(problems: Sequence[Problem], mapping: FusedMapping, tensor: str) -> int:
    """How many times a preloaded input is loaded (:func:`_outside`): its loaded words over this
    are what the fusion level holds of it at once."""
    dims = next(s.dims for p in problems for s in p.spaces if s.name == tensor)
    return math.prod(f for _r, f in _outside(mapping, dims))


def _whole(p: Problem, tensor: str) -> int:
    """The words of all of ``tensor`` as ``p`` reads or writes it."""
    return tile_words(p, loops_of([LevelMapping(target="x", temporal=tuple(p.dims))]), [tensor])


def _load_costs(
    paths: Sequence[Any],
    problems: Sequence[Problem],
    loaded: Sequence[tuple[str, int]],
    level: int,
    priced: bool,
) -> tuple[float, float]:
    """The preloads' energy (read at the outermost level, filled at the fusion level, per block)
    and their cycles at the outermost level's bandwidth."""
    pj = cycles = 0.0
    for t, words in loaded:
        j = next(i for i, p in enumerate(problems) if t in {s.name for s in p.spaces})
        st = paths[j].storages(problems[j], priced=priced)
        outer, inner = st[0], st[level]
        pj += (
            math.ceil(words / outer.block_size) * outer.read_pj
            + math.ceil(words / inner.block_size) * inner.fill_pj
        )
        bw = outer.read_bandwidth or outer.shared_bandwidth
        cycles += words / bw if bw else 0.0
    return pj, cycles


def _drain(
    hierarchy: Any,
    problems: Sequence[Problem],
    made: Sequence[str],
    state: Mapping[str, str],
    drain: frozenset[str],
    level: int,
    priced: bool,
    bypass: frozenset[str] = frozenset(),
) -> tuple[tuple[tuple[str, int], ...], float]:
    """The on-chip tensors read after the group, written out once: a whole intermediate, or a
    running state's last step; their words, and the energy of reading them at the fusion level
    (not for those sent from the registers, ``bypass``) and writing them at the outermost (per
    block, as the analysis prices accesses)."""
    out = []
    pj = 0.0
    for t in made:
        if t not in drain:
            continue
        writer = next(p for p in problems if p.output.name == t)
        size = dict(writer.dims)
        words = math.prod(size[d] for d in writer.output.dims if d != state.get(t))
        out.append((t, words))
        if priced:
            st = hierarchy.storages(writer, priced=True)
            inner, outer = st[level], st[0]
            if t not in bypass:
                pj += math.ceil(words / inner.block_size) * inner.read_pj
            pj += math.ceil(words / outer.block_size) * outer.update_pj
    return tuple(out), pj


def _spatial_options(
    hierarchy: Any, k: int, ranks: Sequence[str], size: Mapping[str, int], restricted: set[str]
) -> list[tuple[tuple[str, int], ...]]:
    """The shared spatial loops the search tries for fusion level ``k``: none, and where the level
    has several instances under the one above, each fused rank no recurrence steps spread over
    them by its largest factor that fits the fanout."""
    out: list[tuple[tuple[str, int], ...]] = [()]
    levels = hierarchy.levels
    fanout = levels[k].instances // max(1, levels[k - 1].instances) if k > 0 else 1
    if fanout <= 1:
        return out
    for r in ranks:
        if r in restricted:
            continue
        f = max(d for d in range(1, min(fanout, size[r]) + 1) if size[r] % d == 0)
        if f > 1:
            out.append(((r, f),))
    return out


def _splits(n: int, k: int) -> list[tuple[int, ...]]:
    """Every way to write n as an ordered product of k factors (the rest is the last)."""
    if k == 0:
        return [()]
    if k == 1:
        return [(n,)]
    out = []
    for f in range(1, n + 1):
        if n % f == 0:
            out += [(f, *rest) for rest in _splits(n // f, k - 1)]
    return out


def search(
    hierarchy: Any,
    problems: Sequence[Problem],
    *,
    names: Sequence[str] | None = None,
    level: str | None = None,
    metric: str = "edp",
    budget: int = 2000,
    seed: int = 0,
    priced: bool = True,
    progress: Callable[[str], None] | None = None,
    imperfect: bool = False,
    steps: Mapping[str, str] | None = None,
    drain: frozenset[str] = frozenset(),
    resident: frozenset[str] = frozenset(),
) -> FusedResult:
    """The best fused mapping of the chain ``problems`` over ``hierarchy`` (see the module text):
    every fusion level below the outermost (or ``level``), every split of the fused ranks over
    the levels outside it; each Einsum mapped below with ``budget`` candidates (``imperfect``:
    with imperfect factors below the shared loops too, :func:`mapper.hsearch.search`)."""
    if metric not in hsearch.METRICS:
        raise ScheduleError(f"metric must be one of {', '.join(hsearch.METRICS)}, found {metric!r}")
    names = tuple(names or [p.name for p in problems])
    made = _check_chain(problems, names, steps)
    onchip = (*made, *(t for t in sorted(resident) if t not in made))
    state = carried(problems, steps or {})
    ranks = fused_ranks(problems, steps)
    last = finals(problems, steps or {})
    over = stepped(problems, steps or {})
    # a running state, or a final after the recurrences, needs their rank stepped a tile at a time
    restricted = set(state.values()) | (set(over) if last else set())
    recurrent = bool(state) or bool(over) or any(p.output.name in (steps or {}) for p in problems)
    # an elementwise Einsum writes over the on-chip input it reads last: free room, no other cost
    pairs = in_place_pairs(problems, made, set(state) | set(drain))
    size = dict(problems[0].dims)
    levels = [lv.name for lv in hierarchy.levels]
    if level is not None and level not in levels[1:]:
        raise ScheduleError(
            f"fusion: level {level!r} is not a level below the outermost{suggest(level, levels[1:])}"
        )
    where = [levels.index(level)] if level is not None else list(range(1, len(levels)))
    branches: list[str | None] = [b.name for b in hierarchy.branches] or [None]
    best: tuple[float, ...] | None = None
    found: FusedResult | None = None
    evaluated = 0
    problems_left: list[str] = []
    pool: list[tuple[tuple[float, ...], FusedResult, Callable[..., Any]]] = []

    def key_of(res: FusedResult) -> tuple[float, ...]:
        cyc, en = res.cycles, res.energy_pj
        if not priced:
            return (cyc, sum(res.scalar_accesses(lv) for lv in levels[:1]))
        return hsearch.metric_key(cyc, en, metric)

    choices = [(k, sp) for k in where for sp in _spatial_options(hierarchy, k, ranks, size, restricted)]
    for k, across in choices:
        # k outer levels + the rest below; a running state's rank all in the shared loops; a rank
        # spread across the fusion level's instances splits what is left of it
        left = {r: size[r] // dict(across).get(r, 1) for r in ranks}
        per_rank = [[x for x in _splits(left[r], k + 1) if r not in restricted or x[-1] == 1] for r in ranks]
        spatial = tuple(across if i == k - 1 else () for i in range(k)) if across else ()
        for split in itertools.product(*per_rank):
            shared = tuple(
                tuple((r, s[i]) for r, s in zip(ranks, split, strict=True) if s[i] > 1) for i in range(k)
            )
            if progress is not None:
                progress(
                    f"{levels[k]}: shared {[list(x) for x in shared]}"
                    + (f", across {levels[k]}'s instances {list(across)}" if across else "")
                )
            results = []
            for j, (p, n) in enumerate(zip(problems, names, strict=True)):
                options = []
                mine_shared = _own_shared(shared, j in last, over)
                for b in branches:
                    path = hierarchy if b is None else hierarchy.branch(b)
                    r = _map_one(path, p, n, k, levels, mine_shared, onchip, priced, metric, budget, seed,
                                 imperfect, problems_left, spatial=spatial, own=made,
                                 streams=not recurrent)  # fmt: skip
                    if r is not None:
                        options.append((b, r))
                if not options:
                    break
                results.append(options)
            if len(results) != len(problems):
                continue
            lats = {
                (j, id(r)): latency(
                    hierarchy.branch(b) if b is not None else hierarchy, problems[j], r.mappings
                )
                for j, opts in enumerate(results)
                for b, r in opts
            }

            def score(
                binding: Sequence[tuple[str | None, Any]],
                shared: tuple[tuple[tuple[str, int], ...], ...] = shared,
                lats: Mapping[tuple[int, int], float] = lats,
            ) -> tuple[float, ...]:
                """The metric's key of a binding from the Einsums' analyses (the tile engine's
                cycles where it spans several branches); an epilogue away from its contraction
                on units that run it only beside it: no schedule."""
                if not _epilogues_beside(hierarchy, problems, [b for b, _r in binding]):
                    return (math.inf, math.inf, math.inf)
                on = [b or "" for b, _r in binding]
                try:
                    lat = [lats[(j, id(r))] for j, (_b, r) in enumerate(binding)]
                    cyc = timed(
                        problems, names, [r.analysis for _b, r in binding], on, shared, steps or {}, lat
                    )
                except ScheduleError as exc:  # the engine cannot order it: not a schedule
                    problems_left.append(f"binding {on}: {exc}")
                    return (math.inf, math.inf, math.inf)
                if not priced:
                    return (cyc, -math.inf)
                en = sum(r.analysis.energy_pj for _b, r in binding)
                return hsearch.metric_key(cyc, en, metric)

            for binding in _bindings(results, metric, priced, score, best):
                fm = FusedMapping(
                    level=levels[k],
                    shared=shared,
                    mappings=tuple(r.mappings for _b, r in binding),
                    binding=tuple(b for b, _r in binding) if hierarchy.branches else (),
                    shared_spatial=spatial,
                    in_place=pairs,
                )
                try:
                    res = evaluate(
                        hierarchy, problems, fm, names=names, priced=priced, steps=steps, drain=drain,
                        resident=resident,
                    )  # fmt: skip
                except CapacityError as exc:
                    # the group does not fit where each Einsum alone does: stream more of the inputs
                    # through the fusion level, a smaller block at a time
                    narrowed = None if recurrent else _narrowed(hierarchy, problems, fm, names, priced, steps,
                                                                drain, resident, made)  # fmt: skip
                    if narrowed is None:
                        problems_left.append(str(exc))
                        continue
                    fm, res = narrowed
                except (ScheduleError, ArchError) as exc:
                    problems_left.append(str(exc))
                    continue
                evaluated += 1

                def remap(
                    j: int,
                    extra: Sequence[hsearch.Constraint],
                    kept: Mapping[str, int],
                    fm: FusedMapping = fm,
                    k: int = k,
                    shared: tuple[tuple[tuple[str, int], ...], ...] = shared,
                    spatial: tuple[tuple[tuple[str, int], ...], ...] = spatial,
                ) -> Any:
                    b = fm.binding[j] if fm.binding else None
                    path = hierarchy if b is None else hierarchy.branch(b)
                    mine_shared = _own_shared(shared, j in last, over)
                    return _map_one(path, problems[j], names[j], k, levels, mine_shared, onchip, priced,
                                    metric, budget, seed, imperfect, problems_left, extra, kept,
                                    spatial, own=made)  # fmt: skip

                key = key_of(res)
                pool.append((key, res, remap))
                if best is None or key < best:
                    best, found = key, res
                break  # the best binding whose tiles fit
    if found is None:
        why = "; ".join(problems_left[:3]) or "no fusion level can keep the intermediates"
        raise ScheduleError(f"fusion: no fused mapping of {', '.join(names)} fits ({why})")
    # the best few (each improved on those found before it), with their tensors moved into the
    # levels below the fusion level where that pays
    for _key, res, remap in sorted(pool, key=lambda x: x[0])[:SINK_CANDIDATES]:
        if not hierarchy.branches and len(hierarchy.levels) - 1 == levels.index(res.mapping.level):
            continue  # nothing below the fusion level
        res, tried = _preloaded(hierarchy, problems, res, key_of, names=names, priced=priced, steps=steps,
                                drain=drain, resident=resident)  # fmt: skip
        evaluated += tried
        res, tried = _sink(
            hierarchy,
            problems,
            res,
            key_of,
            remap,
            names=names,
            priced=priced,
            steps=steps,
            drain=drain,
            resident=resident,
        )
        evaluated += tried
        res, tried = _forwarding(hierarchy, problems, res, key_of, names=names, priced=priced, steps=steps,
                                 drain=drain, resident=resident)  # fmt: skip
        evaluated += tried
        if best is None or key_of(res) < best:
            best, found = key_of(res), res
    return dataclasses.replace(found, evaluated=evaluated)


def _forwarding(
    hierarchy: Any,
    problems: Sequence[Problem],
    res: FusedResult,
    key_of: Callable[[FusedResult], tuple[float, ...]],
    **options: Any,
) -> tuple[FusedResult, int]:
    """``res`` with each of its on-chip tensors still at the fusion level taken by a later reader
    on its writer's branch from the writer's registers (:attr:`FusedMapping.forward`), in turn, as
    mapped or with the reader on the writer's loops (where its ranks are the writer's); and each
    tensor that leaves the group sent from its writer's registers past the fusion level
    (:attr:`FusedMapping.bypass`); each where that evaluates and the metric improves. Returns the
    result and the mappings evaluated."""
    fm = res.mapping
    on = fm.binding or ("",) * len(problems)
    below = dict(fm.kept)
    states = set(res.states)
    best, best_key, tried = res, key_of(res), 0
    for w, p in enumerate(problems):
        t = p.output.name
        if t not in res.intermediates or t in below or t in states:
            continue
        for j in range(w + 1, len(problems)):
            if on[j] != on[w] or t not in _tensors(problems[j]):
                continue
            cand = dataclasses.replace(best.mapping, forward=(*best.mapping.forward, (t, res.names[j])))
            tries = [cand]
            if dict(problems[j].dims) == dict(p.dims):  # the reader stepping with the writer: its loops
                ms = list(cand.mappings)
                ms[j] = ms[w]
                tries.append(dataclasses.replace(cand, mappings=tuple(ms)))
            for x in tries:
                tried += 1
                try:
                    r = evaluate(hierarchy, problems, x, **options)
                except (ScheduleError, ArchError):
                    continue
                if key_of(r) < best_key:
                    best, best_key = r, key_of(r)
    # what leaves the group, sent from the writer's registers past the fusion level
    drain = options.get("drain", frozenset())
    for w, p in enumerate(problems):
        t = p.output.name
        if t in states or t in below or (t in res.intermediates and t not in drain):
            continue
        if any(t in _tensors(q) for j, q in enumerate(problems) if j != w):
            continue
        cand = dataclasses.replace(best.mapping, bypass=(*best.mapping.bypass, t))
        tried += 1
        try:
            r = evaluate(hierarchy, problems, cand, **options)
        except (ScheduleError, ArchError):
            continue
        if key_of(r) < best_key:
            best, best_key = r, key_of(r)
    return best, tried


#: how many of the fused search's best candidates (by the metric with every on-chip tensor at the
#: fusion level; each one that improved on the best before it) it then tries with tensors kept
#: below the fusion level (:func:`_sink`)
SINK_CANDIDATES = 4


def _preloaded(
    hierarchy: Any,
    problems: Sequence[Problem],
    res: FusedResult,
    key_of: Callable[[FusedResult], tuple[float, ...]],
    **options: Any,
) -> tuple[FusedResult, int]:
    """``res`` with every input of the group that several tiles read loaded whole into the fusion
    level before the tiles, if that fits and the metric improves; and the mappings evaluated."""
    made = set(res.intermediates) | {p.output.name for p in problems}
    resident = options.get("resident", frozenset())
    inputs = [
        s.name
        for p in problems
        for s in p.spaces
        if not s.output and s.name not in made and s.name not in resident
    ]
    inputs = list(dict.fromkeys(inputs))
    if not inputs or res.mapping.tiles < 2:
        return res, 0
    cand = dataclasses.replace(res.mapping, preload=tuple(inputs))
    try:
        r = evaluate(hierarchy, problems, cand, **options)
    except (ScheduleError, ArchError):
        return res, 1
    return (r if key_of(r) < key_of(res) else res), 1


def _sink(
    hierarchy: Any,
    problems: Sequence[Problem],
    res: FusedResult,
    key_of: Callable[[FusedResult], tuple[float, ...]],
    remap: Callable[[int, Sequence[hsearch.Constraint], Mapping[str, int]], Any],
    **options: Any,
) -> tuple[FusedResult, int]:
    """``res`` with its on-chip tensors moved below the fusion level where that pays: each in turn
    (the largest first), to the innermost level of its writer's path where it can stay, its
    readers on other branches reached by links. Its writer is mapped again with no temporal loop
    over its ranks above that level and its spatial loops there over its ranks only (any, when
    every reader is across a link); each reader then with the same spatial loops (over the
    tensor's ranks, across a link) (``remap``: an Einsum's index, constraints, the tensors kept
    below so far). The group is evaluated (:func:`evaluate`) and kept if the metric improves.
    Returns the result and the mappings evaluated."""
    fm = res.mapping
    levels = [lv.name for lv in hierarchy.levels]
    k = levels.index(fm.level)
    paths = _paths(hierarchy, fm, res.names)
    drain = options.get("drain", frozenset())
    best, best_key, tried = res, key_of(res), 0
    extra: dict[int, list[hsearch.Constraint]] = {}
    made_by = {p.output.name: p for p in problems}
    # the largest first: the most buffer traffic to save, before smaller moves constrain them
    for t in sorted(res.intermediates, key=lambda x: -_whole(made_by[x], x)):
        if t in drain:
            continue
        users = [j for j, p in enumerate(problems) if t in _tensors(p)]
        writer = next(j for j in users if problems[j].output.name == t)
        on = fm.binding or ("",) * len(problems)
        links = _links(hierarchy, on[writer])
        if any(on[j] != on[writer] and on[j] not in links for j in users):
            continue  # it crosses to a branch no link reaches: it stays at the fusion level
        path = paths[writer]
        ranks = next(s for s in problems[writer].spaces if s.name == t).dims
        # readers on the writer's own instances read what it wrote; across a link it may reduce first
        alone = all(on[j] != on[writer] for j in users if j != writer)
        # what the group keeps below so far, as depths on each tensor's writer's path
        kept = {}
        for x, lv in best.mapping.kept:
            w = next(j for j, p in enumerate(problems) if p.output.name == x)
            kept[x] = [v.name for v in paths[w].levels].index(lv)
        for i in range(len(path.levels) - 1, k, -1):
            if any(len(paths[j].levels) <= i for j in users):
                continue
            now = {**kept, t: i}
            # as mapped, where its users already step together (a group nested in the group)
            here: tuple[FusedResult, dict[int, list[hsearch.Constraint]]] | None = None
            try:
                tried += 1
                r = evaluate(hierarchy, problems, _keeping(best.mapping, t, path.levels[i].name), **options)
                if key_of(r) < best_key:
                    here = (r, {})
            except (ScheduleError, ArchError):
                pass
            mappings = list(best.mapping.mappings)
            cons: dict[int, list[hsearch.Constraint]] = {}
            ok = True
            for j in [writer, *(u for u in users if u != writer)]:
                dims = [d for d, _n in problems[j].dims]
                names_j = [lv.name for lv in paths[j].levels]
                mine = [
                    hsearch.Constraint(target=names_j[x], factors={d: 1 for d in dims if d in ranks})
                    for x in range(k, i)
                ]
                for x in range(k, i):
                    if j == writer:  # its spatial loops over the tensor's ranks only, or any across a link
                        fac = {} if alone else {d: 1 for d in dims if d not in ranks}
                    elif on[j] == on[writer]:  # the writer's spatial loops, exactly
                        fac = {d: 1 for d in dims} | dict(mappings[writer][x].spatial)
                    else:  # over the tensor's ranks, the writer's; multicast over the others
                        fac = {d: f for d, f in mappings[writer][x].spatial if d in ranks}
                        fac |= {d: 1 for d in dims if d in ranks and d not in fac}
                    mine.append(hsearch.Constraint(target=names_j[x], spatial=True, factors=fac))
                cons[j] = [*extra.get(j, []), *mine]
                r = remap(j, cons[j], now)
                tried += 1
                if r is None:
                    ok = False
                    break
                ms = list(r.mappings)
                if j != writer and on[j] == on[writer]:  # the writer's order across the instances
                    for x in range(k, i):
                        want = tuple((d, f) for d, f in mappings[writer][x].spatial if f > 1)
                        if sorted(want) == sorted((d, f) for d, f in ms[x].spatial if f > 1):
                            ms[x] = dataclasses.replace(ms[x], spatial=want)
                mappings[j] = tuple(ms)
            if ok:
                stepped = dataclasses.replace(best.mapping, mappings=tuple(mappings))
                cand = _keeping(stepped, t, path.levels[i].name)
                try:
                    r = evaluate(hierarchy, problems, cand, **options)
                    if key_of(r) < (key_of(here[0]) if here else best_key):
                        here = (r, cons)
                except (ScheduleError, ArchError):
                    pass
            if here:
                best, best_key = here[0], key_of(here[0])
                extra.update(here[1])
                break
    return best, tried


def _keeping(fm: FusedMapping, t: str, level: str) -> FusedMapping:
    """``fm`` with ``t`` kept at ``level``, below the fusion level; it is written in place over
    nothing, nor anything over it (the two of a pair stay at one level)."""
    in_place = tuple(pair for pair in fm.in_place if t not in pair)
    return dataclasses.replace(fm, kept=(*fm.kept, (t, level)), in_place=in_place)


def _map_one(
    path: Any,
    p: Problem,
    n: str,
    k: int,
    levels: Sequence[str],
    shared: tuple[tuple[tuple[str, int], ...], ...],
    made: Sequence[str],
    priced: bool,
    metric: str,
    budget: int,
    seed: int,
    imperfect: bool,
    problems_left: list[str],
    extra: Sequence[hsearch.Constraint] = (),
    kept: Mapping[str, int] | None = None,
    spatial: tuple[tuple[tuple[str, int], ...], ...] = (),
    own: Sequence[str] = (),
    streams: bool = False,
) -> Any:
    """One Einsum of the group mapped on one path below the shared loops (None where it cannot
    be: the path's units cannot run it, or nothing fits); ``extra`` constraints, the group's
    tensors ``kept`` below the fusion level (level indices), the shared ``spatial`` loops, and
    the tensors the group makes itself (``own``, :func:`_keeps`). With ``streams`` (a group
    without running states), where nothing fits, it is mapped again with loops of its own just
    outside the fusion level (:func:`_streamable`)."""
    keeps = _keeps(path, p, k, made, kept, own=own)
    if keeps is None:
        return None
    dims = [d for d, _n in p.dims]
    cons = []
    for i in range(k):
        fac = {d: 1 for d in dims}
        fac.update(dict(shared[i]))
        cons.append(
            hsearch.Constraint(
                target=levels[i], keep=keeps[i], factors=fac, order=tuple(r for r, _f in shared[i])
            )
        )
        across = {d: 1 for d in dims} | dict(spatial[i] if i < len(spatial) else ())
        cons.append(hsearch.Constraint(target=levels[i], spatial=True, factors=across))
    for i in range(k, len(path.levels)):
        cons.append(hsearch.Constraint(target=path.levels[i].name, keep=keeps[i]))
    cons += extra
    mine = frozenset(t for t in made if t in {s.name for s in p.spaces})

    def attempt(cons: list[hsearch.Constraint], how: str) -> Any:
        try:
            r = path.search(
                p,
                with_producer=bool(p.epilogue_of) and p.epilogue_of in made,  # bound beside it, or refused
                priced=priced,
                metric=metric,
                budget=budget,
                seed=seed,
                constraints=cons,
                produced=mine,
                imperfect=imperfect,
            )
        except (ScheduleError, ArchError) as exc:
            problems_left.append(f"{levels[k]}, shared {shared}: {n} on {path.name}{how}: {exc}")
            return None
        return r if r.evaluated else None

    r = attempt(cons, "")
    if r is not None:
        return r
    free = [] if kept or not k or not streams else _streamable(p, made, shared)
    if not free:
        return None
    # nothing fits below the shared loops: the Einsum streams its inputs through the fusion level
    # with loops of its own just outside it (over its ranks no shared loop covers, none that it
    # reduces into an on-chip output), the group's tensors whole there
    base = cons[2 * (k - 1)]
    fac = {d: f for d, f in base.factors.items() if d not in free}
    cons[2 * (k - 1)] = dataclasses.replace(
        base, factors=fac, order=None, outer=tuple(rank for rank, _f in shared[k - 1])
    )
    return attempt(cons, f", streaming {free}")


#: how many times :func:`_narrowed` makes the streamed blocks smaller before it gives up
NARROWINGS = 16


def _narrowed(
    hierarchy: Any,
    problems: Sequence[Problem],
    fm: FusedMapping,
    names: Sequence[str],
    priced: bool,
    steps: Mapping[str, str] | None,
    drain: frozenset[str],
    resident: frozenset[str],
    made: Sequence[str],
) -> tuple[FusedMapping, FusedResult] | None:
    """``fm`` with its Einsums' streamed blocks made smaller until the group fits: each Einsum's
    temporal loops at the fusion level over the ranks it may stream (:func:`_streamable`) give
    their smallest prime factor to its own loop just outside the level, all at once, up to
    :data:`NARROWINGS` times; the first that fits, evaluated. None: none fits."""
    levels = [lv.name for lv in hierarchy.levels]
    k = levels.index(fm.level)
    if not k:
        return None
    for _ in range(NARROWINGS):
        changed = False
        mappings = []
        for p, ms in zip(problems, fm.mappings, strict=True):
            free = set(_streamable(p, made, fm.shared))
            outer, inner = ms[k - 1], ms[k]
            own = dict(outer.temporal[len(fm.shared[k - 1]) :])
            temporal = list(inner.temporal)
            for i, (r, f) in enumerate(temporal):
                if r in free and f > 1:
                    q = next(d for d in range(2, f + 1) if f % d == 0)
                    temporal[i] = (r, f // q)
                    own[r] = own.get(r, 1) * q
                    changed = True
            new_outer = dataclasses.replace(outer, temporal=(*fm.shared[k - 1], *own.items()))
            new_inner = dataclasses.replace(inner, temporal=tuple((r, f) for r, f in temporal if f > 1))
            mappings.append((*ms[: k - 1], new_outer, new_inner, *ms[k + 1 :]))
        if not changed:
            return None
        fm = dataclasses.replace(fm, mappings=tuple(mappings))
        try:
            res = evaluate(
                hierarchy,
                problems,
                fm,
                names=names,
                priced=priced,
                steps=steps,
                drain=drain,
                resident=resident,
            )
        except CapacityError:
            continue
        except (ScheduleError, ArchError):
            return None
        return fm, res
    return None


def _streamable(
    p: Problem, made: Sequence[str], shared: tuple[tuple[tuple[str, int], ...], ...]
) -> list[str]:
    """The ranks an Einsum of the group may run loops of its own over, above the fusion level
    (:func:`_check_own_loops`): those of an input the group does not make, that no shared loop
    covers and that it does not reduce into an on-chip output."""
    covered = {r for loops in shared for r, _f in loops}
    out = p.output
    streamed = {d for s in p.spaces if not s.output and s.name not in made for d in s.dims}
    return [
        d
        for d, _n in p.dims
        if d in streamed and d not in covered and not (d not in out.dims and out.name in made)
    ]


#: up to this many bindings of Einsums to branches are searched exhaustively (in the order of a
#: lower bound, each timed by the engine until the bound cannot beat the best); past it, a local
#: search moves one Einsum at a time from the best of two starts
EXHAUSTIVE_BINDINGS = 64


def _bindings(
    options: Sequence[Sequence[tuple[str | None, Any]]],
    metric: str,
    priced: bool,
    score: Callable[[Sequence[tuple[str | None, Any]]], tuple[float, ...]],
    best: tuple[float, ...] | None,
) -> list[list[tuple[str | None, Any]]]:
    """The group's bindings of Einsums to branches worth checking in full (footprint, one
    analysis), best first by ``score``: exhaustive over few bindings, pruned by a lower bound (the
    energy is the sum, exact; the cycles at least the busiest branch's work, :func:`busiest`);
    over many, a local search. Only those whose score beats ``best`` (a binding found before)."""

    def bound(binding: Sequence[tuple[str | None, Any]]) -> tuple[float, ...]:
        cyc = busiest([r.analysis for _b, r in binding], [b or "" for b, _r in binding])
        if not priced:  # the search ranks by cycles, then accesses
            return (cyc, -math.inf)
        en = sum(r.analysis.energy_pj for _b, r in binding)
        return hsearch.metric_key(cyc, en, metric)

    scored: list[tuple[tuple[float, ...], list[tuple[str | None, Any]]]] = []
    if math.prod(len(o) for o in options) <= EXHAUSTIVE_BINDINGS:
        top = best
        for b, binding in sorted(
            ((bound(c), list(c)) for c in itertools.product(*options)), key=lambda kb: kb[0]
        ):
            if top is not None and b >= top:
                break
            k = score(binding)
            scored.append((k, binding))
            top = k if top is None or k < top else top
    else:
        own = [min(o, key=lambda br: (br[1].analysis.cycles, br[1].analysis.energy_pj)) for o in options]
        # and the longest Einsums first, each to the branch least loaded after it (balancing)
        load: dict[str | None, float] = {}
        lpt: list[tuple[str | None, Any]] = list(own)
        for i in sorted(range(len(options)), key=lambda j: -own[j][1].analysis.cycles):
            pick = min(options[i], key=lambda br: load.get(br[0], 0.0) + br[1].analysis.cycles)
            lpt[i] = pick
            load[pick[0]] = load.get(pick[0], 0.0) + pick[1].analysis.cycles
        starts = [own, lpt]
        seen: set[tuple[int, ...]] = set()
        for start in starts:
            cur, cur_k = list(start), score(start)
            scored.append((cur_k, list(cur)))
            while True:
                moves = []
                for i, o in enumerate(options):
                    for alt in o:
                        if alt is cur[i]:
                            continue
                        cand = [*cur[:i], alt, *cur[i + 1 :]]
                        ident = tuple(id(x) for x in cand)
                        if ident in seen:
                            continue
                        seen.add(ident)
                        moves.append((score(cand), cand))
                scored += moves
                better = min(moves, key=lambda kb: kb[0], default=None)
                if better is None or better[0] >= cur_k:
                    break
                cur_k, cur = better
    return [b for k, b in sorted(scored, key=lambda kb: kb[0]) if best is None or k < best]


#: the rank :func:`problems_of` adds for independent instances (batch x heads)
INSTANCE_RANK = "INST"


def problems_of(
    cascade: Any, names: Sequence[str], sizes: Mapping[str, int], instances: int = 1
) -> list[Problem]:
    """The analysis problems of the Einsums ``names`` of ``cascade`` (each as
    :func:`mapper.hierarchy.einsum_problem` makes it). ``instances`` > 1: that many independent
    copies (a batch's heads), as a rank :data:`INSTANCE_RANK` that every tensor has (outermost),
    for a fused mapping's shared loops to step."""
    from mapper.hierarchy import einsum_problem

    out = [einsum_problem(cascade, n, sizes) for n in names]
    if isinstance(instances, bool) or not isinstance(instances, int) or instances < 1:
        raise ScheduleError(f"instances must be a positive integer, found {instances!r}")
    if instances == 1:
        return out
    if any(INSTANCE_RANK in p.size for p in out):
        raise ScheduleError(f"instances: the cascade already has a rank {INSTANCE_RANK}")
    return [
        dataclasses.replace(
            p,
            dims=((INSTANCE_RANK, instances), *p.dims),
            spaces=tuple(
                dataclasses.replace(sp, projection=(((INSTANCE_RANK, 1),), *sp.projection)) for sp in p.spaces
            ),
        )
        for p in out
    ]
