"""The template's schedules stated in the presets' trees: one cost model under both.

The cascade search (:func:`mapper.search.explore`) enumerates schedules of a fixed template (two
arrays under one buffer): bindings, tiles, kernels, where each tensor lives. :func:`fused`
states such a schedule, a kernel of the whole cascade fused under the buffer (FuseMax's and
FLAT's), as a fused mapping of the architecture's tree (:meth:`mapper.arch.ArchSpec.
branched_hierarchy`), so the hierarchy analysis and the tile engine (:func:`mapper.fusion.
evaluate`) cost it:

- **Shared loops** at DRAM: the instances (batch x heads, :data:`mapper.fusion.INSTANCE_RANK`),
  the query tiles, then the recurrence's steps (the key blocks), innermost.
- **Each Einsum** below them: on its array (the schedule's binding), the template's spatial
  ranks across the array's rows and columns (as far as the tile spans them), the rest of its
  tile in time at the buffer; its register files below.
- **Inputs** over the key rank are preloaded (fetched once per instance and kept for every query
  tile) where the template holds all of an instance's query tiles on chip.
- **What stays in the PEs**: the intermediates the template keeps in the arrays (``residency:
  array``) are kept in the register files of their writer's array, where the tree's rules allow
  (:attr:`mapper.fusion.FusedMapping.kept`).
- **K and V streamed past a group of query tiles** (a cascade without recurrences whose
  schedule holds the score rows of some of the query tiles, FLAT's at 4K): a tile is the group;
  the Einsums that read K or V, and those on the same array that take their results from the
  PEs, run their own loop over the key blocks above the buffer, so the buffer holds one block
  of K or V at a time and the score rows whole (``coarser``).
- **Same-pass readers**: a tensor the template keeps in the buffer reaches the readers it lets
  take it from the PEs as it is made (FLAT's SD summing SN) from its writer's register files
  (:attr:`mapper.fusion.FusedMapping.forward`), where the tree's rules allow.
- **Loop order**: each Einsum's time at the buffer runs its array's ranks first, then the ranks it
  reduces innermost or outermost, whichever costs less energy at no longer latency (outermost: a
  PE holds an operand across the output's ranks, AV's A across F). One Einsum alone in a kernel
  may also keep that operand in its register files (:func:`kernels`).
- The tile engine's ``lookahead`` and ``interleave`` are the schedule's.

``tests/mapper/test_as_tree.py`` checks that FuseMax's and FLAT's fused schedules, the RTL tile's
among them, take the template's latency to the last digit and move its DRAM bytes, with FuseMax's
energy within 0.1%.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import einsum
from mapper import fusion
from mapper.analysis import LevelMapping, Problem
from mapper.arch import ArchSpec
from mapper.cost import _in_turn, dram_readers, same_pass_readers
from mapper.errors import ScheduleError
from mapper.masks import schedule_skip
from mapper.schedule import Schedule, complete_partitions, einsum_facts, layout, split_sizes

__all__ = [
    "Bookkeeping",
    "KernelsResult",
    "PHYSICAL",
    "TreeKernels",
    "TreeNests",
    "TreeSchedule",
    "fused",
    "kernels",
    "layerwise",
]


@dataclasses.dataclass(frozen=True)
class Bookkeeping:
    """An accounting's switches as the tree states them; all off (the default): what the hardware
    does. :meth:`sim.accounting.Accounting.bookkeeping` makes the FuseMax artifact's for a cascade:

    - ``rf_one_instance``: each register file's energy per access divided by its array's PEs (the
      artifact charges one instance);
    - ``exp_unpriced``: the arrays' exp units cost nothing (its 1-pass models' misspelt key);
    - ``serial``: a PE's functional units do not overlap in a tiled kernel, a point takes the sum
      of their cycles (its 1-pass models; loop nests keep the busiest unit's);
    - ``buffer_one_port_one_bank``: the buffer priced as one bank with one read/write port;
    - ``scalings``: per Einsum, its operation counts with and without a scaling by a constant of
      the cascade (:func:`sim.accounting.constant_scalings`); the difference costs no energy and
      keeps its cycles."""

    rf_one_instance: bool = False
    exp_unpriced: bool = False
    serial: bool = False
    buffer_one_port_one_bank: bool = False
    scalings: Mapping[str, tuple[Any, Any]] = dataclasses.field(default_factory=dict)


#: what the hardware does: every switch off
PHYSICAL = Bookkeeping()


def _priced(arch: ArchSpec, book: Bookkeeping) -> ArchSpec:
    """``arch`` with its buffer as ``book`` prices it."""
    if not book.buffer_one_port_one_bank:
        return arch
    return arch.replace(buffer=dataclasses.replace(arch.buffer, ports=1, banks=1))


def _booked(h: Any, arch: ArchSpec, book: Bookkeeping, array: str | None = None, tiled: bool = True) -> Any:
    """The hierarchy ``h`` (a preset's tree, or the path of ``array``) with ``book``'s register
    files, exp units and functional-unit overlap."""
    if book == PHYSICAL:
        return h

    def branch(levels: Any, compute: Any, name: str) -> tuple[Any, Any]:
        arr = arch.array(name)
        share = 1 / arr.pes if book.rf_one_instance else 1.0
        rf = levels[-1]
        rf = dataclasses.replace(rf, read_pj=rf.read_pj * share, write_pj=rf.write_pj * share)
        units = dict(compute.units or {})
        if book.exp_unpriced and "exp" in arr.units:
            units["exp"] = 0.0
        compute = dataclasses.replace(compute, units=units or None, serial=book.serial and tiled)
        return (*levels[:-1], rf), compute

    if h.branches:
        branches = []
        for b in h.branches:
            levels, compute = branch(b.levels, b.compute, b.name)
            branches.append(dataclasses.replace(b, levels=levels, compute=compute))
        return dataclasses.replace(h, branches=tuple(branches))
    levels, compute = branch(h.levels, h.compute, array or "")
    return dataclasses.replace(h, levels=levels, compute=compute)


def _tree(arch: ArchSpec, book: Bookkeeping, systolic: bool) -> Any:
    """``arch``'s tree (:meth:`ArchSpec.branched_hierarchy`) with ``book``'s pricing and, where
    ``systolic``, its 2D arrays' compute units systolic (the template's ``systolic`` option: a
    contraction pays the array's fill and drain, :attr:`mapper.hierarchy.Compute.systolic`)."""
    h = _booked(_priced(arch, book).branched_hierarchy(), arch, book)
    if not systolic:
        return h
    branches = tuple(
        dataclasses.replace(b, compute=dataclasses.replace(b.compute, systolic=arch.array(b.name).is_2d))
        for b in h.branches
    )
    return dataclasses.replace(h, branches=branches)


def _unpriced(
    problems: Sequence[Problem], names: Sequence[str], full: Mapping[str, int], book: Bookkeeping
) -> list[Problem]:
    """``problems`` with ``book``'s unpriced scalings (the MACs a scaling adds, per point)."""
    out = []
    for p, n in zip(problems, names, strict=True):
        if n in book.scalings:
            with_scale, without = book.scalings[n]
            points = math.prod(p.size.values())
            extra = (
                (with_scale.at(full)["mac"] - without.at(full)["mac"])
                / points
                * (p.size.get(fusion.INSTANCE_RANK, 1))
            )
            if extra:
                p = dataclasses.replace(p, unpriced=(("mac", extra),))
        out.append(p)
    return out


@dataclasses.dataclass(frozen=True)
class TreeSchedule:
    """A template schedule as a fused mapping of a tree, with what :func:`mapper.fusion.evaluate`
    needs besides. ``coarser``: the tree's tiles are several of the template's (a group of query
    tiles at one key block, where the template streams each key block past them), so the tile
    engine's fill and drain differ from the template's: the DRAM traffic is the same, the latency
    longer by at most two tiles of the busiest array's work (a few parts in a million at the
    artifact's points). Also set where, with the systolic fill, the tree's contractions stream the
    key blocks: it charges the fill per block where the template charges one GEMM per tile
    (SCALE-Sim's count of the whole tile), within a fill a tile (FLAT at 64K: 1.4e-3)."""

    hierarchy: Any
    problems: tuple[Problem, ...]
    names: tuple[str, ...]
    mapping: fusion.FusedMapping
    steps: Mapping[str, str]
    drain: frozenset[str]
    coarser: bool = False

    @property
    def live(self) -> tuple[tuple[str, float], ...]:
        """The Einsums a mask lets skip tiles, with the share they compute."""
        return self.mapping.live

    def evaluate(self, **options: Any) -> fusion.FusedResult:
        return fusion.evaluate(
            self.hierarchy,
            self.problems,
            self.mapping,
            names=self.names,
            steps=self.steps,
            drain=self.drain,
            **options,
        )


def _sizes(
    cascade: einsum.Cascade, schedule: Schedule, sizes: Mapping[str, int]
) -> tuple[dict[str, int], dict[str, int]]:
    """Full rank sizes (the key rank split as the schedule tiles it) and one tile's
    (:func:`mapper.schedule.split_sizes`), every rank a whole number of tiles."""
    lay = layout(cascade)
    whole = complete_partitions(cascade, sizes, lay)
    full, tile = split_sizes(schedule, whole, lay)
    for r, size in schedule.tile.items():
        rank = lay.whole if r == lay.key and lay.whole is not None else r
        if whole[rank] % size:
            raise ScheduleError(
                f"as_tree: {rank} = {whole[rank]} is not a multiple of its tile {size}: ragged tiles are "
                "not stated in the tree yet"
            )
    return full, tile


def fused(
    cascade: einsum.Cascade,
    schedule: Schedule,
    arch: ArchSpec,
    sizes: Mapping[str, int],
    instances: int = 1,
    *,
    bookkeeping: Bookkeeping = PHYSICAL,
    systolic: bool = False,
) -> TreeSchedule:
    """``schedule`` (one kernel of the whole cascade, fused under the buffer) as a fused mapping
    of ``arch``'s tree for a workload of rank ``sizes`` and ``instances`` (module text). Other
    schedules (loop nests, several kernels, spills, ragged tiles, a share of the query tiles on
    chip) are typed errors that say what is not stated yet."""
    names = tuple(e.output for e in cascade.einsums if not e.init and e.output in schedule.binding)
    if schedule.nests or len(schedule.kernels) != 1 or set(schedule.kernels[0]) != set(names):
        raise ScheduleError(
            "as_tree: fused states a schedule that fuses the whole cascade in one kernel (kernels: "
            "as_tree.kernels, loop nests alone: as_tree.layerwise); this one has kernels "
            f"{[list(k) for k in schedule.kernels]} and loop nests {sorted(schedule.nests) or 'none'}"
        )
    # what the template streams through DRAM between a kernel's passes: its writer sends it from the
    # PEs, a same-pass reader takes it there, the others read it back (FusedMapping.through); one
    # that only same-pass readers take (sigmoid attention's SG, by AV) never reaches DRAM in the
    # template, and stays in the PEs as what it keeps in the arrays does (_in_the_pes)
    lay = layout(cascade)
    facts = {f.name: f for f in einsum_facts(cascade)}
    through = tuple(
        t
        for t in names
        if schedule.residency.get(t) == "dram"
        and t not in cascade.outputs
        and dram_readers(facts, schedule, t, lay.key)
    )
    full, tile = _sizes(cascade, schedule, sizes)
    live = _live(cascade, schedule, arch, full, tile)
    problems = _unpriced(fusion.problems_of(cascade, names, full, instances), names, full, bookkeeping)
    steps = fusion.steps_of(cascade)
    q = full[lay.query] // tile[lay.query] if lay.query else 1
    nsteps = full[lay.step] if lay.step else 1
    on_chip = min(q, schedule.query_tiles_on_chip[0])
    # without recurrences, a schedule that holds the score rows of a group of query tiles streams
    # K and V past them, once per group: in the tree a tile is the group, and each Einsum that reads
    # a key-side input runs its own loop over the key blocks above the buffer
    blocks = not lay.step and on_chip < q
    if q % on_chip:
        raise ScheduleError(
            f"as_tree: the schedule holds {on_chip} of {q} query tiles on chip, which does not divide them: "
            "not stated in the tree yet"
        )
    # the instances, the groups of query tiles that share a pass over the keys, the query tiles of
    # a group, the key blocks
    outer: list[tuple[str, int]] = []
    if instances > 1:
        outer.append((fusion.INSTANCE_RANK, instances))
    groups = len(outer)
    if q // on_chip > 1:
        outer.append((lay.query, q // on_chip))
        groups += 1
    streamed = (bool(lay.step) or blocks) and 1 < on_chip < q
    if streamed:
        # the template streams each key block past the group's query tiles: in the tree a tile is
        # the group's query tiles at one key block (their states held, the block fetched once)
        tile = {**tile, lay.query: tile[lay.query] * on_chip}
    elif on_chip > 1:
        outer.append((lay.query, on_chip))
    if nsteps > 1:
        outer.append((lay.step, nsteps))
    last = fusion.finals(problems, steps)
    fwd = _forward(cascade, schedule, names)
    run = _one_d_run(facts, schedule, arch, names, through, fwd, lay) if not lay.step else ()
    _check_read_back(facts, schedule, names, through, fwd, lay.key, run)
    streams = _streams(problems, names, schedule, lay, fwd, through) if blocks else set()
    streams -= {names.index(n) for n in run}
    mappings = _own(problems, names, schedule, arch, tile, outer, last, lay, streams=streams)
    if run:
        return _rows_in_turn(
            cascade, schedule, arch, bookkeeping, systolic, problems, names, mappings, tile, outer, run,
            through, fwd, live, streams,
        )  # fmt: skip
    made = {p.output.name for p in problems}
    key_side = (
        [
            s.name
            for p in problems
            for s in p.spaces
            if not s.output and s.name not in made and lay.step in s.dims
        ]
        if lay.step and on_chip > 1 and not streamed
        else []
    )
    mapping = fusion.FusedMapping(
        level="buffer",
        shared=(tuple(outer),),
        mappings=tuple(mappings),
        binding=tuple(schedule.binding[n] for n in names),
        preload=tuple(dict.fromkeys(key_side)),
        preload_outside=groups if key_side else None,
        lookahead=schedule.lookahead,
        interleave=schedule.interleave,
        live=tuple((n, f) for n, f in live if n in names),
        through=through,
        together=_together(problems, names, schedule, streams),
        spill=_spills(cascade, schedule, names),
    )
    tree = TreeSchedule(
        hierarchy=_tree(arch, bookkeeping, systolic),
        problems=tuple(problems),
        names=names,
        mapping=mapping,
        steps=steps,
        drain=fusion.read_after(cascade, names),
        coarser=streamed or (systolic and bool(streams)),
    )
    try:
        stated = _in_the_pes(tree, schedule, fwd)
        _check_taken(stated, fwd, through)
        return stated
    except ScheduleError as exc:
        # where a tensor sent through DRAM is read back by one Einsum of a run on a 1D array (FLAT's
        # S from QK with the systolic fill: S, then GM and SN read S), the run may hold its rows
        loose = _one_d_run(facts, schedule, arch, names, through, fwd, lay, readers=1) if not lay.step else ()
        instead = ""
        if loose:
            rest = streams - {names.index(n) for n in loose}
            try:
                return _rows_in_turn(
                    cascade, schedule, arch, bookkeeping, systolic, problems, names,
                    _own(problems, names, schedule, arch, tile, outer, last, lay, streams=rest), tile, outer,
                    loose, through, fwd, live, rest,
                )  # fmt: skip
            except ScheduleError as other:
                instead = (
                    f"; nor with {', '.join(loose)} holding rows: {str(other).removeprefix('as_tree: ')}"
                )
        how = (
            f" (it streams {', '.join(sorted(through))} through DRAM between passes, each reader that runs "
            "after the writer's pass reading it back)"
            if through
            else ""
        )
        raise ScheduleError(
            f"as_tree: the schedule as the tree states it{how} does not fit or run: {exc}{instead}"
        ) from None


@dataclasses.dataclass(frozen=True)
class KernelsResult:
    """A schedule of several kernels in the tree: each kernel's names, cycles, energy and the
    words it moves at DRAM; the kernels run one after another (cycles and energy add)."""

    parts: tuple[tuple[tuple[str, ...], float, float, float], ...]

    @property
    def cycles(self) -> float:
        return float(sum(c for _n, c, _e, _w in self.parts))

    @property
    def energy_pj(self) -> float:
        return float(sum(e for _n, _c, e, _w in self.parts))

    @property
    def dram_words(self) -> float:
        return float(sum(w for _n, _c, _e, w in self.parts))


@dataclasses.dataclass(frozen=True)
class TreeKernels:
    """A template schedule of several kernels, each a fused group of the tree (:class:`TreeSchedule`)
    or one Einsum alone on its branch: ``(path, problem, name, mappings, lookahead, interleave)``."""

    kernels: tuple[Any, ...]
    coarser: bool = False  # the kernels' tiles are the template's (:attr:`TreeSchedule.coarser`)
    #: the lone Einsums a mask lets skip tiles, with the share they compute (the fused groups
    #: carry theirs in their mapping)
    alone_live: tuple[tuple[str, float], ...] = ()

    @property
    def live(self) -> tuple[tuple[str, float], ...]:
        """The Einsums a mask lets skip tiles, with the share they compute (:attr:`TreeSchedule.live`)."""
        grouped = tuple(x for k in self.kernels if isinstance(k, TreeSchedule) for x in k.live)
        return grouped + self.alone_live

    def evaluate(self) -> KernelsResult:
        from mapper import staged

        parts = []
        for k in self.kernels:
            if isinstance(k, TreeSchedule):
                r = k.evaluate()
                outer = k.hierarchy.levels[0].name
                parts.append((k.names, r.cycles, r.energy_pj, r.scalar_accesses(outer)))
            else:
                path, p, n, ms, lookahead, interleave = k
                a = path.analyze(p, ms, live=dict(self.alone_live).get(n, 1.0))
                cyc = staged.engine_cycles(path, p, n, a, ms, lookahead, interleave)
                parts.append(((n,), cyc, a.energy_pj, a.scalar_accesses(path.levels[0].name)))
        return KernelsResult(parts=tuple(parts))


def kernels(
    cascade: einsum.Cascade,
    schedule: Schedule,
    arch: ArchSpec,
    sizes: Mapping[str, int],
    instances: int = 1,
    *,
    bookkeeping: Bookkeeping = PHYSICAL,
    systolic: bool = False,
) -> TreeKernels:
    """``schedule``'s kernels (the Unfused baseline's: QK with S, the softmax, AV), each as a
    fused group of ``arch``'s tree, or one Einsum alone on its branch, one after another; what
    crosses between kernels goes through DRAM, as the template's kernels pass it. Each kernel
    loads an input once: one that several of its Einsums read, or that its query tiles share (K
    and V across the query tiles), is preloaded. Where the schedule has a kernel's query tiles
    share a pass over K and V in groups, a tile of the tree is a group and K and V stream past it
    a block at a time (as :func:`fused` states FLAT's). What a kernel's Einsums hand one another
    in the arrays stays in their register files where the rules allow (QK to S). A 1D kernel whose
    query tile's rows of what it reads from DRAM do not fit the buffer holds fewer rows, the keys
    across its PEs (:func:`_rows_held`); a spill is the kernel's (:func:`_spills`). Without
    recurrences only (the 3-pass cascades); loop nests are typed errors."""
    names = tuple(e.output for e in cascade.einsums if not e.init and e.output in schedule.binding)
    if schedule.nests:
        raise ScheduleError("as_tree: loop nests beside tiled kernels are not stated in the tree yet")
    lay = layout(cascade)
    if lay.step:
        raise ScheduleError(
            "as_tree: kernels of a cascade with recurrences are not stated in the tree yet (fused: one "
            "kernel)"
        )
    full, tile = _sizes(cascade, schedule, sizes)
    live = _live(cascade, schedule, arch, full, tile)
    q = full[lay.query] // tile[lay.query] if lay.query else 1
    tree = _tree(arch, bookkeeping, systolic)
    out: list[Any] = []
    coarser = False
    for k, kernel in enumerate(schedule.kernels):
        ns = tuple(n for n in names if n in kernel)
        ps = _unpriced(fusion.problems_of(cascade, ns, full, instances), ns, full, bookkeeping)
        # the query tiles that share a pass over K and V: all of them (K and V preloaded once), or
        # a group (a tile of the tree, K and V streamed past it a block at a time, once per group)
        on_chip = min(q, schedule.query_tiles_on_chip[k])
        if q % on_chip:
            raise ScheduleError(
                f"as_tree: kernel {k + 1} holds {on_chip} of {q} query tiles on chip, which does not divide "
                "them: not stated in the tree yet"
            )
        grouped = on_chip < q
        ktile = {**tile, lay.query: tile[lay.query] * on_chip} if grouped else tile
        coarser = coarser or (grouped and on_chip > 1)
        outer: list[tuple[str, int]] = []
        if instances > 1:
            outer.append((fusion.INSTANCE_RANK, instances))
        if (q // on_chip if grouped else q) > 1:
            outer.append((lay.query, q // on_chip if grouped else q))
        streams = _streams(ps, ns, schedule, lay) if grouped else set()
        ms = _own(ps, ns, schedule, arch, ktile, outer, frozenset(), lay, streams=streams)
        if len(ns) == 1:
            alone = (
                tree.branch(schedule.binding[ns[0]]),
                ps[0],
                ns[0],
                ms[0],
                schedule.lookahead,
                schedule.interleave,
            )
            # of its orders at the buffer, with or without the operands the innermost loop does not
            # index held in the PEs, the one of less energy, the latency no longer (as _orders)
            swapped = _reduced_outside(ps[0], ns[0], ms[0], schedule)
            tries = [ms[0], *(() if swapped is None else (swapped,))]
            tries += [h for m in tries if (h := _held(alone[0], ps[0], m)) != m]
            if schedule.residency.get(ns[0]) == "dram" and ns[0] not in cascade.outputs:
                # what the template sends to DRAM goes from the PEs past the buffer (bypass)
                tries = [_past_buffer(alone[0], ps[0], m) for m in tries]
            mine = tuple((x, f) for x, f in live if x == ns[0])
            if not _fits(alone[0], ps[0], tries[0]):
                # a tile of the tree is a query tile over the whole key rank, or a group's query tiles
                # at one key block; an input from DRAM the query rank indexes (A, by AV) is taken a
                # block at a time in the template, never held whole: it goes from DRAM to the PEs
                # past the buffer
                streamed_in = frozenset(
                    s.name
                    for s in ps[0].spaces
                    if not s.output
                    and schedule.residency.get(s.name) == "dram"
                    and {lay.query, lay.key} <= set(s.dims)
                )
                tries = [_past_buffer(alone[0], ps[0], m, streamed_in) for m in tries]
            parts = (
                TreeKernels(kernels=tuple((*alone[:3], m, *alone[4:]) for m in tries), alone_live=mine)
                .evaluate()
                .parts
            )
            c0 = parts[0][1]
            pick = min(range(len(tries)), key=lambda i: (parts[i][1] > c0, parts[i][2]))
            alone = (*alone[:3], tries[pick], *alone[4:])
            out.append(alone)
            continue
        try:
            out.append(_group(cascade, schedule, tree, ps, ns, ms, outer, live, q > 1 and not grouped))
        except ScheduleError as exc:
            how = (
                f"a tile the {on_chip} query tiles that share a pass over the keys, K and V streamed past "
                "them, what it reads from DRAM over the keys whole in the buffer"
                if grouped
                else "whole rows of the keys in the buffer"
            )
            rows = _rows_held(cascade, schedule, arch, tree, ps, ns, full, tile, instances, live)
            if rows is None:
                spills = _spills(cascade, schedule, ns)
                made_ = {q.output.name for q in ps}
                over_loaded = any(
                    not sp.output and sp.name not in made_ and sp.projection == q.output.projection
                    for q in ps
                    if q.output.name in dict(spills)
                    for sp in q.spaces
                )
                if over_loaded:
                    how += (
                        "; the template writes what it makes over the rows it loads, in place, and spills "
                        f"{schedule.spill_fraction:.4g} of {', '.join(t for t, _f in spills)}: in place over "
                        "a loaded input is not stated in the tree yet"
                    )
                raise ScheduleError(
                    f"as_tree: kernel {k + 1} ({', '.join(ns)}) does not fit or run as the tree states it "
                    f"({how}); not stated in the tree yet ({exc})"
                ) from None
            out.append(rows)
            coarser = True  # a few rows a tile, not the template's query tiles: the fill differs
    lone = {k[2] for k in out if not isinstance(k, TreeSchedule)}
    stated = TreeKernels(
        kernels=tuple(out), coarser=coarser, alone_live=tuple((x, f) for x, f in live if x in lone)
    )
    try:
        stated.evaluate()
    except ScheduleError as exc:
        raise ScheduleError(f"as_tree: a kernel does not fit or run as the tree states it: {exc}") from None
    return stated


def _group(
    cascade: einsum.Cascade,
    schedule: Schedule,
    tree: Any,
    ps: Sequence[Problem],
    ns: tuple[str, ...],
    ms: Sequence[tuple[LevelMapping, ...]],
    outer: Sequence[tuple[str, int]],
    live: Sequence[tuple[str, float]],
    tiles_share: bool,
) -> TreeSchedule:
    """One kernel of several Einsums as a fused group of ``tree``: each input several of its
    Einsums read, or (``tiles_share``: the query tiles share a pass) one the query rank does not
    index, preloaded once; what the template sends to DRAM goes from the PEs."""
    lay = layout(cascade)
    made = {p.output.name for p in ps}
    ins = [s.name for p in ps for s in p.spaces if not s.output and s.name not in made]
    again = tuple(
        dict.fromkeys(
            t for t in ins if ins.count(t) > 1 or (tiles_share and lay.query not in _dims_of(ps, t))
        )
    )
    mapping = fusion.FusedMapping(
        level="buffer",
        shared=(tuple(outer),),
        mappings=tuple(ms),
        binding=tuple(schedule.binding[n] for n in ns),
        preload=again,
        lookahead=schedule.lookahead,
        interleave=schedule.interleave,
        live=tuple((n, f) for n, f in live if n in ns),
        spill=_spills(cascade, schedule, ns),
    )
    group = TreeSchedule(
        hierarchy=tree,
        problems=tuple(ps),
        names=ns,
        mapping=mapping,
        steps={},
        drain=fusion.read_after(cascade, ns),
    )
    # what the template sends to DRAM (S, A) goes from the PEs, never written into the buffer
    sent = tuple(t for t in ns if schedule.residency.get(t) == "dram" and t in group.drain)
    fwd = _forward(cascade, schedule, ns)
    stated = _in_the_pes(group, schedule, fwd, sent)
    _check_taken(stated, fwd, ())
    return stated


def _check_taken(stated: TreeSchedule, forward: Sequence[tuple[str, str]], through: Sequence[str]) -> None:
    """The template's same-pass readers (``forward``) of a tensor that goes through DRAM, or whose
    share spills there, take it from the PEs in the tree too: one the tree's rules refuse would
    read it (or its spilled share) back from DRAM, where the template does not (a typed error)."""
    out = set(through) | {t for t, _f in stated.mapping.spill}
    lost = [(t, r) for t, r in forward if t in out and (t, r) not in stated.mapping.forward]
    if lost:
        raise ScheduleError(
            "; ".join(f"{r} cannot take {t} from the PEs as it is made" for t, r in lost)
            + ", so it would read it (or its spilled share) back from DRAM, where the template does not"
        )


def _rows_held(
    cascade: einsum.Cascade,
    schedule: Schedule,
    arch: ArchSpec,
    tree: Any,
    ps: Sequence[Problem],
    ns: tuple[str, ...],
    full: Mapping[str, int],
    tile: Mapping[str, int],
    instances: int,
    live: Sequence[tuple[str, float]],
) -> TreeSchedule | None:
    """A kernel on one 1D array that reads a tensor from DRAM over the query and key ranks for its
    passes (the Unfused softmax's GM and SN reading S; in the masked variants S reads QK, and GM
    and SN read S), where the template's query tile's rows of it do not fit the buffer: the
    template loads it once and holds its rows for every pass (:func:`mapper.cost.dram_readers`).
    The tree states that as the FuseMax artifact's softmax maps it (``stable_softmax.py``): the
    key rank across the array's PEs, and as many query rows at a time as the buffer holds whole,
    each loaded once from DRAM and kept there for the passes. The array does the same work per
    cycle (a query tile's rows across its PEs, or a row's keys), so the cycles and DRAM words are
    the template's. ``None`` where that does not apply or fit."""
    lay = layout(cascade)
    arrays = {schedule.binding[n] for n in ns}
    if len(arrays) != 1 or arch.array(next(iter(arrays))).is_2d or not lay.query or not lay.key:
        return None
    if _spills(cascade, schedule, ns):
        # the template holds its query tile's rows in place, less what spills: fewer rows a step
        # would not spill, nor time its tiles as the template does
        return None
    if _beyond_rows(ps, lay):
        return None
    made_ = {p.output.name for p in ps}
    if any(
        not sp.output and sp.name not in made_ and lay.query not in sp.dims for p in ps for sp in p.spaces
    ):
        # an input the query rank does not index (document masks' DK) would stay in the buffer
        # across the groups of rows, where the template reads it again for each query tile
        return None
    arr = arch.array(next(iter(arrays)))
    made = {p.output.name for p in ps}
    ins = [s for p in ps for s in p.spaces if not s.output and s.name not in made]
    # the rows it reads from DRAM (the scores: S read by GM and SN, or QK read by S, whose rows
    # GM and SN read in turn)
    held = {s.name: s for s in ins if lay.key in s.dims and lay.query in s.dims}
    if not held or full.get(lay.key, 1) % arr.cols:
        return None
    per_row = sum(
        math.prod(full[d] for d in s.dims if d not in (lay.query, fusion.INSTANCE_RANK))
        for s in held.values()
    )
    cap = arch.buffer.capacity_bytes // arch.word_bytes
    rows = tile[lay.query]
    while rows > 1 and rows * per_row > cap:
        rows //= 2
    if rows * per_row > cap or tile[lay.query] % rows:
        return None
    spread = dataclasses.replace(schedule, spatial={**schedule.spatial, arr.name: (lay.key,)})
    # the most rows that fit beside what else the buffer keeps for them (their statistics)
    while rows >= 1:
        rtile = {**tile, lay.query: rows}
        outer: list[tuple[str, int]] = []
        if instances > 1:
            outer.append((fusion.INSTANCE_RANK, instances))
        if full[lay.query] // rows > 1:
            outer.append((lay.query, full[lay.query] // rows))
        ms = _own(ps, ns, spread, arch, rtile, outer, frozenset(), lay)
        try:
            return _group(cascade, spread, tree, ps, ns, ms, outer, live, False)
        except ScheduleError:
            rows //= 2
    return None


def _streams(
    problems: Sequence[Problem],
    names: Sequence[str],
    schedule: Schedule,
    lay: Any,
    forward: Sequence[tuple[str, str]] = (),
    through: Sequence[str] = (),
) -> set[int]:
    """The Einsums of a group that run their own loop over the key blocks above the buffer, where
    the template streams K and V through it: those that read a key-side input (over the key rank,
    not the query rank, made by no Einsum of the group) or read back, over the blocks, a tensor
    the template sends through DRAM (``through``: the 3-pass's SN, A and AV); those that take what they make
    from the PEs, a block at a time, keeping the blocks' rank (FLAT's S beside QK, FuseMax's LM and
    SLN beside BQK); and a same-pass reader (``forward``) of one of them, which may reduce the
    blocks as they come (the 2-pass SLD beside SLN, the 3-pass GM beside S)."""
    made = {p.output.name for p in problems}
    block = lay.outer if any(lay.outer in p.output.dims for p in problems) else lay.key
    # what the template sends through DRAM between passes is read back a block at a time
    back = set(through)
    streams = {
        j
        for j, p in enumerate(problems)
        if any(
            (not s.output and s.name not in made and lay.key in s.dims and lay.query not in s.dims)
            or (not s.output and s.name in back and block in s.dims and block in p.output.dims)
            for s in p.spaces
        )
    }
    grew = True
    while grew:
        grew = False
        for j, p in enumerate(problems):
            if j in streams:
                continue
            reads = {s.name for s in p.spaces if not s.output}
            for i in streams:
                t = problems[i].output.name
                # a same-pass reader steps with its writer, reducing the blocks as they come (the
                # 3-pass's GM and SD); what the PEs hand on keeps the blocks' rank (LM, SLN)
                if t in reads and (
                    (t, names[j]) in forward
                    or (schedule.residency.get(t) == "array" and block in p.output.dims)
                ):
                    streams.add(j)
                    grew = True
                    break
    return streams


def _spills(
    cascade: einsum.Cascade, schedule: Schedule, names: Sequence[str]
) -> tuple[tuple[str, float], ...]:
    """The template's spill as the tree states it (:attr:`mapper.fusion.FusedMapping.spill`): the
    spilled fraction of each buffer-resident intermediate it covers (``Schedule.spilled``; empty:
    all of them), written out once and read back by each reader that does not take it in the same
    pass (:func:`mapper.cost.traffic`)."""
    f = schedule.spill_fraction
    if not f:
        return ()
    return tuple(
        (t, f)
        for t in names
        if schedule.residency.get(t) == "buffer"
        and t not in cascade.iterative
        and (not schedule.spilled or t in schedule.spilled)
    )


def _beyond_rows(problems: Sequence[Problem], lay: Any) -> list[str]:
    """The outputs among ``problems`` indexed by a rank other than the query and key ranks (and the
    instances): landmark attention's AV[p, f], a contraction over the keys. Spread over the keys
    a few rows at a time, such an Einsum reduces each output word across the PEs, which is not
    how the template runs it (a query a PE, the keys in time)."""
    plain = {lay.query, lay.key, fusion.INSTANCE_RANK}
    return [p.output.name for p in problems if set(p.output.dims) - plain]


def _one_d_run(
    facts: Mapping[str, Any],
    schedule: Schedule,
    arch: ArchSpec,
    names: Sequence[str],
    through: Sequence[str],
    forward: Sequence[tuple[str, str]],
    lay: Any,
    readers: int = 2,
) -> tuple[str, ...]:
    """The Einsums of a fused schedule on one 1D array that the template has load a tensor sent
    through DRAM once and hold its rows for several passes (FLAT's GM and SN reading S from 256K;
    :func:`mapper.cost.dram_readers`): the run of consecutive Einsums on that array around those
    readers (GM, SN, SD, A), or none. ``readers``: how many of them read it back at least (with
    1, a run of two or more Einsums around one reader: FLAT's S reading QK, then GM and SN S)."""
    for t in through:
        back = [n for n in names if n != t and t in facts[n].reads and (t, n) not in forward]
        arrays = {schedule.binding[n] for n in back}
        if len(back) < readers or len(arrays) != 1:
            continue
        arr = next(iter(arrays))
        if arch.array(arr).is_2d or not lay.query or not lay.key:
            continue
        kernel = next(i for i, k in enumerate(schedule.kernels) if back[0] in k)
        if not _in_turn(facts, schedule, (kernel, arr), back):
            continue  # the template loads it once per pass there (mapper.cost.dram_readers)
        first, last_ = names.index(back[0]), names.index(back[-1])
        while first > 0 and schedule.binding[names[first - 1]] == arr:
            first -= 1
        while last_ + 1 < len(names) and schedule.binding[names[last_ + 1]] == arr:
            last_ += 1
        if last_ > first:
            return tuple(names[first : last_ + 1])
    return ()


def _rows_in_turn(
    cascade: einsum.Cascade,
    schedule: Schedule,
    arch: ArchSpec,
    bookkeeping: Bookkeeping,
    systolic: bool,
    problems: Sequence[Problem],
    names: tuple[str, ...],
    mappings: list[tuple[LevelMapping, ...]],
    tile: Mapping[str, int],
    outer: Sequence[tuple[str, int]],
    run: tuple[str, ...],
    through: tuple[str, ...],
    forward: Sequence[tuple[str, str]],
    live: Sequence[tuple[str, float]],
    streams: set[int],
) -> TreeSchedule:
    """A fused schedule whose 1D array loads what it reads from DRAM once for several passes
    (``run``: :func:`_one_d_run`) as the tree states it: the run's Einsums step their own loop over
    the tile's query rows together (:attr:`mapper.fusion.FusedMapping.together`), a few rows at a
    time, the keys across the array's PEs; the first of them reads the rows back into the buffer
    and the others read them there (FLAT's 1D array from 256K, as the FuseMax artifact's
    ``stable_softmax.py`` maps its softmax: a row of scores a step, the keys across the PEs). The
    most rows a step that fit. The array does the same work a cycle as the template's, a row of
    queries across its PEs."""
    lay = layout(cascade)
    idx = [names.index(n) for n in run]
    wide = _beyond_rows([problems[j] for j in idx], lay)
    if wide:
        raise ScheduleError(
            f"as_tree: {', '.join(run)} make {', '.join(wide)} over more than the query and key ranks: "
            "with the keys across the PEs each would reduce across them a word at a time; not stated in "
            "the tree yet"
        )
    made = {p.output.name for p in problems}
    keyed = sorted(
        {
            sp.name
            for j in idx
            for sp in problems[j].spaces
            if not sp.output and sp.name not in made and lay.query not in sp.dims
        }
    )
    if keyed:
        # the run would hold them across the groups of query rows (the key rank whole in the
        # buffer), where the template streams them past each group
        raise ScheduleError(
            f"as_tree: {', '.join(run)} read {', '.join(keyed)}, which the template streams past each group "
            "of query rows and the run would hold across them: not stated in the tree yet"
        )
    arr = arch.array(schedule.binding[run[0]])
    spread = dataclasses.replace(schedule, spatial={**schedule.spatial, arr.name: (lay.key,)})
    full_rows = tile[lay.query]
    rows = full_rows
    why = "no rows fit"
    while rows >= 1:
        mine = [*outer, *(((lay.query, full_rows // rows),) if full_rows > rows else ())]
        sub = _own(
            [problems[j] for j in idx], list(run), spread, arch, {**tile, lay.query: rows}, mine,
            frozenset(), lay,
        )  # fmt: skip
        ms = list(mappings)
        for j, m in zip(idx, sub, strict=True):
            ms[j] = m
        mapping = fusion.FusedMapping(
            level="buffer",
            shared=(tuple(outer),),
            mappings=tuple(ms),
            binding=tuple(schedule.binding[n] for n in names),
            lookahead=schedule.lookahead,
            interleave=schedule.interleave,
            live=tuple((n, f) for n, f in live if n in names),
            through=through,
            together=(*_together(problems, names, schedule, streams), *((run,) if full_rows > rows else ())),
        )
        tree = TreeSchedule(
            hierarchy=_tree(arch, bookkeeping, systolic),
            problems=tuple(problems),
            names=names,
            mapping=mapping,
            steps={},
            drain=fusion.read_after(cascade, names),
            coarser=True,  # the run's tiles are a few rows, not the template's query tiles
        )
        try:
            return _in_the_pes(tree, schedule, forward)
        except ScheduleError as exc:
            why = str(exc)
            rows //= 2
    raise ScheduleError(
        f"as_tree: {', '.join(run)} hold no rows of {', '.join(through)} in the buffer as the tree states "
        f"it: not stated in the tree yet ({why})"
    )


def _check_read_back(
    facts: Mapping[str, Any],
    schedule: Schedule,
    names: Sequence[str],
    through: Sequence[str],
    forward: Sequence[tuple[str, str]],
    key: str | None,
    run: Sequence[str] = (),
) -> None:
    """In the tree each reader of a tensor sent through DRAM that does not take it from the PEs
    reads it back on its own, but a run that holds the rows in turn (``run``) reads them once; the
    template loads it once per kernel and array that reads it where that array can take the rows
    in turn, else once per pass (:func:`mapper.cost.dram_readers`). Where the two differ, the tree
    does not state the schedule yet: a typed error that says which."""
    for t in through:
        back = [n for n in names if n != t and t in facts[n].reads and (t, n) not in forward]
        # a run that holds the rows it reads back reads them once (_rows_in_turn)
        back = [n for i, n in enumerate(back) if n not in run or not any(b in run for b in back[:i])]
        loads = dram_readers(
            facts, schedule, t, key, [facts[n] for n in names if n != t and t in facts[n].reads]
        )
        arrays = sorted(schedule.binding[n] for n in back)
        if sorted(a for _k, a in loads) != arrays:
            raise ScheduleError(
                f"as_tree: {', '.join(back) or 'no Einsum'} read{'s' if len(back) == 1 else ''} {t} back "
                f"from DRAM in the tree ({', '.join(arrays) or 'none'}), while the template loads it "
                f"{len(loads)} time{'' if len(loads) == 1 else 's'} "
                f"({', '.join(sorted(a for _k, a in loads)) or 'none'}): not stated in the tree yet"
            )


def _together(
    problems: Sequence[Problem], names: Sequence[str], schedule: Schedule, streams: set[int]
) -> tuple[tuple[str, ...], ...]:
    """The runs of streamed Einsums that step the key blocks together
    (:attr:`mapper.fusion.FusedMapping.together`): a writer and its readers of a tensor the
    template keeps in the buffer a block at a time, consecutive and all streamed (FuseMax's 2-pass
    A and AV, where SLN goes through DRAM), merged where they overlap."""
    runs: list[set[int]] = []
    for w, p in enumerate(problems):
        t = p.output.name
        if w not in streams or schedule.residency.get(t) != "buffer":
            continue
        readers = [j for j, q in enumerate(problems) if j != w and any(s.name == t for s in q.spaces)]
        if not readers:
            continue
        span = set(range(w, max(readers) + 1))
        if not span <= streams:
            continue
        for run in [r for r in runs if r & span]:
            runs.remove(run)
            span |= run
        runs.append(span)
    return tuple(tuple(names[j] for j in sorted(run)) for run in sorted(runs, key=min))


@dataclasses.dataclass(frozen=True)
class TreeNests:
    """A layer-by-layer schedule in the tree: each Einsum's loop nest as a mapping of DRAM, the
    buffer and its array's register files (:func:`mapper.nest.nest_hierarchy`), analysed on its
    array's path of the preset's hierarchy (:meth:`mapper.arch.ArchSpec.hierarchy`), the tensors
    kept in the buffer between nests made on chip; the nests one after another, each instance's
    in turn: ``(name, hierarchy, problem, mappings, produced)``."""

    nests: tuple[tuple[str, Any, Problem, tuple[LevelMapping, ...], frozenset[str]], ...]
    instances: int = 1
    coarser: bool = False
    live: tuple[tuple[str, float], ...] = ()

    def evaluate(self) -> KernelsResult:
        parts = []
        for name, h, p, ms, produced in self.nests:
            a = h.analyze(p, ms, produced=produced)
            n = self.instances
            parts.append(((name,), a.cycles * n, a.energy_pj * n, a.scalar_accesses(h.levels[0].name) * n))
        return KernelsResult(parts=tuple(parts))


def layerwise(
    cascade: einsum.Cascade,
    schedule: Schedule,
    arch: ArchSpec,
    sizes: Mapping[str, int],
    instances: int = 1,
    *,
    bookkeeping: Bookkeeping = PHYSICAL,
    systolic: bool = False,
) -> TreeNests:
    """A schedule that runs every Einsum as a loop nest (the template's layer-by-layer schedules)
    as mappings of the tree (:class:`TreeNests`). Each nest's cycles are the analysis's (the most
    of its compute and its levels' bandwidth cycles), as the template's nest cost takes them; the
    schedule's latency is their sum. Tiled kernels beside the nests are a typed error."""
    names = tuple(e.output for e in cascade.einsums if not e.init and e.output in schedule.binding)
    if schedule.kernels or set(schedule.nests) != set(names):
        raise ScheduleError(
            "as_tree: layerwise states a schedule whose Einsums all run as loop nests; this one has "
            f"kernels {[list(k) for k in schedule.kernels]}"
        )
    from mapper.nest import nest_hierarchy, schedule_nests

    if systolic:
        raise ScheduleError(
            "as_tree: layerwise states loop nests without the systolic fill and drain: the template times a "
            "systolic nest as SCALE-Sim's count of its whole GEMM (mapper.nest.systolic_cycles), the tree "
            "block by block under the nest's loops; not stated in the tree yet"
        )
    full, _tile = _sizes(cascade, schedule, sizes)
    out = []
    priced = _priced(arch, bookkeeping)
    for name, (prob, _cost) in schedule_nests(cascade, schedule, priced, full).items():
        nest = schedule.nests[name]
        _p, _storages, ms = nest_hierarchy(prob, nest, resident=True)
        # the Einsum with its operations (the nest's problem has its ranks and tensors only)
        p = _unpriced(fusion.problems_of(cascade, [name], full), [name], full, bookkeeping)[0]
        h = _booked(priced.hierarchy(nest.array), arch, bookkeeping, nest.array, tiled=False)
        ms = tuple(dataclasses.replace(m, target=lv.name) for m, lv in zip(ms, h.levels, strict=True))
        out.append((name, h, p, _nest_keeps(h, p, ms, frozenset(prob.on_chip)), frozenset(prob.on_chip)))
    stated = TreeNests(nests=tuple(out), instances=instances)
    try:
        stated.evaluate()
    except ScheduleError as exc:
        raise ScheduleError(
            f"as_tree: a loop nest does not fit or run as the tree states it: {exc}"
        ) from None
    return stated


def _nest_keeps(
    h: Any, p: Problem, ms: tuple[LevelMapping, ...], produced: frozenset[str]
) -> tuple[LevelMapping, ...]:
    """``ms`` with the register files keeping what a PE holds (Timeloop's keep and bypass): the
    output where the Einsum reduces a rank (its accumulator, read and written at each operation,
    the reduction across the array's PEs too, as AccelForge charges it), not where it reduces
    none; of the operands, those whose keep costs less energy than reading them from the level
    above at every use, at no longer latency (a register that holds an operand across the loops
    below pays its fills and reads back; one whose operand changes at every step only adds them)."""
    rf = len(ms) - 1
    out = next(s.name for s in p.spaces if s.output)
    reduces = any(d not in next(s.dims for s in p.spaces if s.output) for d, n in p.size.items() if n > 1)
    kept = [s.name for s in p.spaces if (ms[rf].keep is None or s.name in ms[rf].keep) and not s.output]
    if reduces:
        kept.append(out)
    ms = (*ms[:rf], dataclasses.replace(ms[rf], keep=tuple(kept)))
    ins = [t for t in kept if t != out]
    base = h.analyze(p, ms, produced=produced)
    best, best_pj = ms, base.energy_pj
    for n in range(len(ins)):
        for drop in itertools.combinations(ins, n + 1):
            keep = tuple(t for t in kept if t not in drop)
            trial = (*ms[:rf], dataclasses.replace(ms[rf], keep=keep))
            try:
                a = h.analyze(p, trial, produced=produced)
            except ScheduleError:
                continue
            if a.energy_pj < best_pj and a.cycles <= base.cycles:
                best, best_pj = trial, a.energy_pj
    return best


def _live(
    cascade: einsum.Cascade,
    schedule: Schedule,
    arch: ArchSpec,
    full: Mapping[str, int],
    tile: Mapping[str, int],
) -> tuple[tuple[str, float], ...]:
    """The share of its tiles each Einsum computes where a mask leaves the others wholly masked
    (:func:`mapper.masks.schedule_skip`, the template's (query tile, key block) pairs)."""
    skip, skipping = schedule_skip(cascade, schedule, arch, full=full, tile=tile, lay=layout(cascade))
    if not skipping or skip.live_fraction >= 1.0:
        return ()
    return tuple((n, skip.live_fraction) for n in sorted(skipping))


def _dims_of(problems: Sequence[Problem], tensor: str) -> frozenset[str]:
    return next(s.dims for p in problems for s in p.spaces if s.name == tensor)


def _own(
    problems: Sequence[Problem],
    names: Sequence[str],
    schedule: Schedule,
    arch: ArchSpec,
    tile: Mapping[str, int],
    outer: Sequence[tuple[str, int]],
    last: frozenset[int],
    lay: Any,
    streams: set[int] | frozenset[int] = frozenset(),
) -> list[tuple[LevelMapping, ...]]:
    """Each Einsum's mappings: the shared loops at DRAM (a final's without the recurrence's
    steps), at the buffer the template's spatial ranks across its array as far as the tile spans
    them and the rest of the tile in time, the array's ranks first; its register files below. The
    Einsums in ``streams`` (those that read K or V, which the template streams through the buffer
    one block at a time, or make a tensor over the keys) run their time over the key rank at
    DRAM, below the shared loops: the buffer holds one block of keys (one pass of the array) at a
    time, and the score rows whole. Each streams the key blocks the arrays that spread the keys
    make (the fewest an Einsum of ``streams`` has): one on an array that does not spread them (the
    3-pass's A on the 1D array) runs a block's keys in time inside the buffer."""
    parts = []
    for j, (p, n) in enumerate(zip(problems, names, strict=True)):
        arr = arch.array(schedule.binding[n])
        dims = p.size
        own_outer = tuple((r, f) for r, f in outer if not (j in last and r == lay.step))
        spatial = []
        # one tile of each rank: the instances and the recurrence's steps are all in the shared loops
        left = {r: 1 if r == fusion.INSTANCE_RANK else tile.get(r, dims[r]) for r in dims}
        extents = (arr.rows, arr.cols) if arr.is_2d else (arr.cols,)
        for rank, extent in zip(schedule.spatial[arr.name], extents, strict=False):
            if rank in dims and left[rank] > 1:
                used = min(extent, left[rank])
                spatial.append((rank, used))
                left[rank] = -(-left[rank] // used)
        # the rest of the tile in time, the array's ranks first (FLAT's M blocks outside E), the
        # ranks it reduces innermost (each PE accumulates an output in its register across them)
        first = [r for r in schedule.spatial[arr.name] if r in left]
        rest = [r for r in left if r not in first]
        order = [
            *first,
            *(r for r in rest if r in p.output.dims),
            *(r for r in rest if r not in p.output.dims),
        ]
        # the key blocks: the rank over the blocks where the cascade partitions the keys (M1 of
        # BK[m1, m0, e]), a block the template's key tile; else the key rank's time
        block = lay.outer if lay.outer in left else lay.key
        parts.append((arr, own_outer, spatial, left, order, block))
    counts = [left[block] for j, (_a, _o, _s, left, _r, block) in enumerate(parts) if j in streams]
    nblocks = min((c for c in counts if c > 1), default=1)
    mappings = []
    for j, (arr, own_outer, spatial, left, order, block) in enumerate(parts):
        stream: tuple[tuple[str, int], ...] = ()
        if j in streams and left.get(block, 1) > 1:
            if left[block] % nblocks:
                raise ScheduleError(
                    f"as_tree: {names[j]} runs {left[block]} steps of {block} in time, which the "
                    f"{nblocks} key blocks the others stream do not divide: not stated in the tree yet"
                )
            stream = ((block, nblocks),)
            left[block] //= nblocks
        temporal = tuple((r, left[r]) for r in order if left[r] > 1)
        mappings.append(
            (
                LevelMapping(target="DRAM", temporal=(*own_outer, *stream)),
                LevelMapping(target="buffer", temporal=temporal, spatial=tuple(spatial)),
                LevelMapping(target=f"rf_{arr.name}"),
            )
        )
    return mappings


def _forward(cascade: einsum.Cascade, schedule: Schedule, names: Sequence[str]) -> list[tuple[str, str]]:
    """The template's same-pass readers (:func:`mapper.cost.same_pass_readers`) of the tensors it
    keeps in the buffer, among ``names``: ``(tensor, reader)``, the reader taking the tensor from
    the PEs as it is made (:attr:`mapper.fusion.FusedMapping.forward`)."""
    facts = {f.name: f for f in einsum_facts(cascade)}
    key = layout(cascade).key
    return [
        (n, r)
        for n in names
        if schedule.residency.get(n, "array") in ("buffer", "dram") and n not in cascade.iterative
        for r in sorted(same_pass_readers(facts, schedule, n, key))
        if r in names
    ]


def _in_the_pes(
    tree: TreeSchedule,
    schedule: Schedule,
    forward: Sequence[tuple[str, str]] = (),
    bypass: Sequence[str] = (),
) -> TreeSchedule:
    """``tree`` with the intermediates the template keeps in the arrays kept in their writer's
    register files where the tree's rules allow: all of them first, then without each one a rule
    refuses (the error names it), until the group evaluates. An elementwise Einsum writes its
    output over the input it reads last, where both stay at one level
    (:attr:`mapper.fusion.FusedMapping.in_place`): the template holds one copy of the score rows.
    The ``forward`` pairs (:func:`_forward`) take their tensor from the writer's registers where the
    rules allow, likewise, and the ``bypass`` tensors go from their writer's registers to DRAM."""
    wanted = [
        (p.output.name, f"rf_{schedule.binding[n]}")
        for p, n in zip(tree.problems, tree.names, strict=True)
        if p.output.name not in tree.drain
        and (
            schedule.residency.get(p.output.name) == "array"
            or (schedule.residency.get(p.output.name) == "dram" and p.output.name not in tree.mapping.through)
        )
    ]
    states = fusion.carried(tree.problems, tree.steps)
    made = (*fusion.intermediates(tree.problems), *states)
    pairs = fusion.in_place_pairs(tree.problems, made, set(states) | set(tree.drain))
    kept = list(wanted)
    fwd = [(t, r) for t, r in forward if t not in dict(kept)]
    sent = [t for t in bypass if t not in dict(kept)]
    while True:
        where = dict(kept)
        away = {*sent, *tree.mapping.through}
        over = tuple((o, i) for o, i in pairs if where.get(o) == where.get(i) and not {o, i} & away)
        trial = dataclasses.replace(
            tree,
            mapping=dataclasses.replace(
                tree.mapping, kept=tuple(kept), in_place=over, forward=tuple(fwd), bypass=tuple(sent)
            ),
        )
        try:
            trial.evaluate()
        except ScheduleError as exc:
            text = str(exc)
            refused = next((k for k in kept if text.startswith(f"fusion: {k[0]} ")), None)
            if refused is not None:
                kept.remove(refused)
                continue
            # a pair the rules refuse (the error is one of the pair's two tensors kept at the
            # writer's registers: its name, or the pair's) goes; the others stay
            named = {x: (f"fusion: forward ({x[0]}, {x[1]})", f"fusion: {x[0]} ") for x in fwd}
            gone = next((x for x in fwd if text.startswith(named[x])), None)
            if gone is not None:
                fwd.remove(gone)
                continue
            if sent and text.startswith("fusion: bypass names"):
                sent.clear()  # sent through the buffer, as drained tensors are
                continue
            raise
        return _orders(trial, schedule)


def _orders(tree: TreeSchedule, schedule: Schedule) -> TreeSchedule:
    """``tree`` with each Einsum's time at the buffer in the order of less energy, where the
    template's schedule leaves it open: after its array's ranks, the ranks it reduces innermost
    (a PE accumulates its output across them in its register; an operand not indexed by them is
    read again for each output rank's step) or outermost (the PE holds an operand across the
    output ranks' steps, AV's A across F, and the partial sums go back to the buffer once per
    step of the reduced ranks); and with or without the operands the innermost loop does not index
    held in the PEs (:func:`_held`). Kept where the energy is lower and the latency no longer."""
    best, result = tree, tree.evaluate()
    for i, (p, n) in enumerate(zip(tree.problems, tree.names, strict=True)):
        path = tree.hierarchy.branch(schedule.binding[n])
        ms = best.mapping.mappings[i]
        swapped = _reduced_outside(p, n, ms, schedule)
        tries = [ms, *(() if swapped is None else (swapped,))]
        tries = [*tries[1:], *(h for m in tries if (h := _held(path, p, m)) != m)]
        for alt in tries:
            mappings = (*best.mapping.mappings[:i], alt, *best.mapping.mappings[i + 1 :])
            trial = dataclasses.replace(best, mapping=dataclasses.replace(best.mapping, mappings=mappings))
            try:
                r = trial.evaluate()
            except ScheduleError:
                continue
            if r.energy_pj < result.energy_pj and r.cycles <= result.cycles:
                best, result = trial, r
    return best


def _held(path: Any, p: Problem, ms: tuple[LevelMapping, ...]) -> tuple[LevelMapping, ...]:
    """``ms`` with the register files below the buffer keeping, beside what their level keeps,
    the operands that the buffer's innermost loop does not index: a PE holds such an operand (AV's
    A across F) in a register rather than reading it from the buffer again at each step."""
    at = next(j for j, m in enumerate(ms) if m.target == "buffer")
    loops = ms[at].temporal
    if not loops or at + 1 >= len(ms):
        return ms
    inner = loops[-1][0]
    rf = ms[at + 1]
    level = next(lv for lv in path.levels if lv.name == rf.target)
    base = path._keep(level, p)
    held = {s.name for s in p.spaces if not s.output and inner not in s.dims}
    if base is None or held <= base:
        return ms
    return (*ms[: at + 1], dataclasses.replace(rf, keep=tuple(sorted(base | held))), *ms[at + 2 :])


def _past_buffer(
    path: Any, p: Problem, ms: tuple[LevelMapping, ...], tensors: frozenset[str] | None = None
) -> tuple[LevelMapping, ...]:
    """``ms`` with the buffer not keeping ``tensors`` (default: the output; Timeloop's bypass): the
    register files below accumulate the output and send it on to DRAM, or take an input from
    DRAM, never written into the buffer nor read there."""
    at = next(j for j, m in enumerate(ms) if m.target == "buffer")
    level = next(lv for lv in path.levels if lv.name == "buffer")
    base = ms[at].keep if ms[at].keep is not None else path._keep(level, p)
    keep = (base if base is not None else frozenset(s.name for s in p.spaces)) - (
        tensors if tensors is not None else {p.output.name}
    )
    return (*ms[:at], dataclasses.replace(ms[at], keep=keep), *ms[at + 1 :])


def _fits(path: Any, p: Problem, ms: tuple[LevelMapping, ...]) -> bool:
    """Whether the mapping ``ms`` of ``p`` on ``path`` fits every level's capacity."""
    try:
        path.analyze(p, ms)
    except ScheduleError:
        return False
    return True


def _reduced_outside(
    p: Problem, name: str, ms: tuple[LevelMapping, ...], schedule: Schedule
) -> tuple[LevelMapping, ...] | None:
    """``ms`` with the ranks the Einsum reduces outside its output's ranks in its time at the
    buffer (after its array's ranks); None where that is the order it has, or no other."""
    at = next((j for j, m in enumerate(ms) if m.target == "buffer"), None)
    if at is None:
        return None
    loops = ms[at].temporal
    first = [x for x in loops if x[0] in schedule.spatial[schedule.binding[name]]]
    rest = [x for x in loops if x not in first]
    outs = [x for x in rest if x[0] in p.output.dims]
    reduced = [x for x in rest if x[0] not in p.output.dims]
    alt = (*first, *reduced, *outs)
    if not outs or not reduced or alt == loops:
        return None
    return (*ms[:at], dataclasses.replace(ms[at], temporal=alt), *ms[at + 1 :])
