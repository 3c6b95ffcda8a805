"""The latency of a schedule: loop nests one after the other, then the tiled kernels through the
cycle-level engine (:mod:`mapper.engine`), bounded by the buffer's bandwidth.

This is the one latency figure of einforge: :func:`mapper.cost.estimate` ranks the search's
candidates by it and :func:`sim.evaluate` reports it (physical accounting; the FuseMax artifact's
accounting sums an Einsum's units, ``summed``). Nothing here re-derives traffic: DRAM bytes per
kernel and buffer words come from :func:`mapper.cost.traffic`, the nests' cycles from
:func:`mapper.nest.nest_cost`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import einsum
from mapper.arch import ArchSpec
from mapper.engine import KernelTiming, Task, Transfers, live_steps, simulate_kernel
from mapper.schedule import EinsumFacts, Layout, Schedule, einsum_cycles, einsum_facts, exposed_latency

__all__ = [
    "ScheduleTiming",
    "kernel_tasks",
    "kernel_transfers",
    "latency_lower_bound",
    "read_latency",
    "schedule_timing",
]


def read_latency(
    f: EinsumFacts, cascade: einsum.Cascade, facts: Mapping[str, EinsumFacts], arch: ArchSpec
) -> int:
    """The buffer's read latency, paid once per tile by an Einsum that streams a cascade input
    (or a view of one) from the buffer; none for the others (their operands are in the PEs)."""
    inputs = {i.name for i in cascade.inputs}
    streams = any(r in inputs or r not in facts for r in f.reads)
    return arch.buffer.read_latency if streams else 0


def kernel_transfers(
    cascade: einsum.Cascade,
    schedule: Schedule,
    kernel: int,
    full: Mapping[str, int],
    query_tiles: int,
    steps: int,
    word: int,
    lay: Layout,
    arch: ArchSpec,
) -> Transfers:
    """Tile-by-tile DRAM transfers of one instance's kernel ``kernel`` (``DRAM.transfers = "tile"``):
    the query-side inputs it reads, split over the query tiles; the key-side ones, over the steps;
    its outputs, over the query tiles (drained on the write channel)."""
    sizes = einsum.tensor_sizes(cascade)
    names = set(schedule.kernels[kernel])
    facts = {f.name: f for f in einsum_facts(cascade)}
    graph = einsum.dependency_graph(cascade)
    read = set()
    for n in names:
        for r in facts[n].reads:
            if r in facts:
                continue
            # a partition view (BK) reads its input through its own Einsum
            producers = [p for p in graph.predecessors(r) if isinstance(p, tuple)]
            read |= {t for p in producers for t in graph.predecessors(p)} if producers else {r}
    bpc = arch.dram.bandwidth_bytes_per_s / arch.clock_hz
    query = key = out = 0.0
    for inp in cascade.inputs:
        if inp.name not in read:
            continue
        words = sizes[inp.name].at(full)
        if lay.query in inp.ranks:
            query += words / query_tiles
        else:
            key += words / steps
    for o in cascade.outputs:
        if o in names:
            out += sizes[o].at(full) / query_tiles
    return Transfers(
        query=query * word / bpc,
        key=key * word / bpc,
        group=max(1, schedule.query_tiles_on_chip[kernel]),
        latency=arch.dram.latency_cycles,
        drain=out * word / bpc,
    )


def kernel_tasks(
    kernel: Sequence[str],
    facts: Mapping[str, EinsumFacts],
    schedule: Schedule,
    arch: ArchSpec,
    tile: Mapping[str, int],
    systolic: bool,
    lay: Layout,
    cascade: einsum.Cascade,
    summed: bool = False,
    live: Mapping[str, float] | None = None,
) -> list[Task]:
    """The engine's tasks of one fused kernel: one per Einsum, with its cycles per tile (averaged
    over the tiles where a mask skips some, ``live``), its producers and where it waits."""
    names = set(kernel)
    tasks: list[Task] = []
    unit_of = {n: schedule.binding[n] for n in kernel}
    # which tasks need something from another unit in the same tile (transitively)?
    needs_other: dict[str, bool] = {}
    for n in kernel:
        f = facts[n]
        other = any(p in names and unit_of[p] != unit_of[n] for p in f.reads) or bool(f.reads_previous)
        other = other or any(needs_other.get(p, False) for p in f.reads if p in names)
        needs_other[n] = other
    inputs = {i.name for i in cascade.inputs}
    for n in kernel:
        f = facts[n]
        arr = arch.array(unit_of[n])
        deps = tuple(p for p in f.reads if p in names and p not in f.reads_previous)
        prev = tuple(p for p in f.reads_previous if p in names)
        final = bool(lay.step) and not f.step
        reads_dram = any(
            schedule.residency.get(r) == "dram" or r in inputs or r not in facts for r in f.reads
        )
        tasks.append(
            Task(
                name=n,
                unit=arr.name,
                cycles=(
                    einsum_cycles(f, arr, schedule.spatial[arr.name], tile, systolic=systolic, summed=summed)
                    + read_latency(f, cascade, facts, arch)
                )
                * (live or {}).get(n, 1.0),  # averaged over the tiles: wholly masked ones skipped
                latency=exposed_latency(f, arr, schedule.spatial),
                deps=deps,
                prev=prev,
                final=final,
                head=not needs_other[n] and not final,
                reads_dram=reads_dram,
            )
        )
    return tasks


def _tiles(
    schedule: Schedule, full: Mapping[str, int], tile: Mapping[str, int], lay: Layout, instances: int
) -> tuple[int, int]:
    """Query tiles (over every instance) and steps per query tile of a schedule's kernels."""
    q_tiles = instances * math.prod(
        -(-full[r] // tile[r]) for r in schedule.tile if not (r == lay.key and lay.whole)
    )
    return q_tiles, (full[lay.step] if lay.step else 1)


@dataclasses.dataclass(frozen=True)
class ScheduleTiming:
    """The latency of a schedule and its parts. ``kernels`` holds, per tiled kernel, its tasks and
    the engine's timing (for breakdowns); ``tiled_cycles`` is the kernels' total after the buffer's
    bandwidth bound; ``nest_cycles`` the loop nests' total; ``cycles`` their sum."""

    cycles: float
    tiled_cycles: float
    nest_cycles: float
    kernels: tuple[tuple[tuple[Task, ...], KernelTiming], ...]
    query_tiles: int
    steps: int

    @property
    def simulated_tiles(self) -> int:
        return sum(t.simulated_tiles for _tasks, t in self.kernels)


def schedule_timing(
    cascade: einsum.Cascade,
    schedule: Schedule,
    arch: ArchSpec,
    *,
    full: Mapping[str, int],
    tile: Mapping[str, int],
    lay: Layout,
    instances: int,
    dram_bytes: Sequence[float],
    buffer_words: float,
    nest_cycles: float,
    live: Mapping[str, float],
    systolic: bool = False,
    summed: bool = False,
) -> ScheduleTiming:
    """Cycles of ``schedule`` for ``instances`` instances: the nests' ``nest_cycles`` (already for
    every instance), then every kernel's tiles through the engine with ``dram_bytes[k]`` spread
    over its tiles (or tile by tile, ``DRAM.transfers = "tile"``), at least ``buffer_words`` at the
    buffer's bandwidth."""
    facts = {f.name: f for f in einsum_facts(cascade)}
    q_tiles, steps = _tiles(schedule, full, tile, lay, instances)
    bpc = arch.dram.bandwidth_bytes_per_s / arch.clock_hz
    cycles = 0.0
    kernels: list[tuple[tuple[Task, ...], KernelTiming]] = []
    for ki, kernel in enumerate(schedule.kernels):
        tasks = kernel_tasks(kernel, facts, schedule, arch, tile, systolic, lay, cascade, summed, live)
        run = steps
        if arch.dram.transfers != "tile":  # (tile by tile, each step's key-side transfer is its own)
            tasks, run = live_steps(tasks, steps, live)
        per_tile: float | Transfers = dram_bytes[ki] / bpc / (q_tiles * run)
        if arch.dram.transfers == "tile":
            per_tile = kernel_transfers(
                cascade, schedule, ki, full, q_tiles // instances, steps, arch.word_bytes, lay, arch
            )
        timing = simulate_kernel(
            tasks,
            query_tiles=q_tiles,
            steps=run,
            lookahead=schedule.lookahead,
            interleave=schedule.interleave,
            dram_cycles_per_tile=per_tile,
        )
        cycles += timing.cycles
        kernels.append((tuple(tasks), timing))
    # a buffer with a bounded bandwidth (Buffer.bandwidth) cannot serve the tiles faster than this
    tiled = max(cycles, buffer_words / arch.buffer.words_per_cycle(arch.word_bits))
    return ScheduleTiming(
        cycles=tiled + nest_cycles,
        tiled_cycles=tiled,
        nest_cycles=nest_cycles,
        kernels=tuple(kernels),
        query_tiles=q_tiles,
        steps=steps,
    )


def latency_lower_bound(
    cascade: einsum.Cascade,
    schedule: Schedule,
    arch: ArchSpec,
    *,
    full: Mapping[str, int],
    tile: Mapping[str, int],
    lay: Layout,
    instances: int,
    dram_bytes: Sequence[float],
    buffer_words: float,
    nest_cycles: float,
    live: Mapping[str, float],
    systolic: bool = False,
    summed: bool = False,
) -> float:
    """A proven lower bound of :func:`schedule_timing`'s ``cycles``, without the engine: each array
    runs its tasks one at a time (a kernel takes at least its busiest array's task cycles), and
    the DRAM channel moves one tile's transfer after another (at least the kernel's DRAM bytes at
    the channel's rate, where a task reads DRAM every tile); then the same buffer bound and nests.
    The search prunes by it: a candidate whose bound exceeds the best timed latency is never
    timed, and cannot be better."""
    facts = {f.name: f for f in einsum_facts(cascade)}
    q_tiles, steps = _tiles(schedule, full, tile, lay, instances)
    bpc = arch.dram.bandwidth_bytes_per_s / arch.clock_hz
    total = 0.0
    for ki, kernel in enumerate(schedule.kernels):
        tasks = kernel_tasks(kernel, facts, schedule, arch, tile, systolic, lay, cascade, summed, live)
        per_unit: dict[str, float] = {}
        for t in tasks:
            per_unit[t.unit] = per_unit.get(t.unit, 0.0) + t.cycles * (
                q_tiles if t.final else q_tiles * steps
            )
        dram = dram_bytes[ki] / bpc
        streams = arch.dram.transfers != "tile" and any(t.reads_dram and not t.final for t in tasks)
        total += max(max(per_unit.values(), default=0.0), dram if streams else 0.0)
    return max(total, buffer_words / arch.buffer.words_per_cycle(arch.word_bits)) + nest_cycles
