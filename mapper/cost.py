"""The data-movement cost of a schedule: DRAM bytes per kernel and buffer reads and writes.

This is the cost model's traffic half, below the search: :func:`mapper.search` asks it to compare
schedules, and the simulator (:mod:`sim`) charges energy and DRAM time from it. A tensor's trips:

- an input is loaded from DRAM into the buffer (a write) once, or once per group of query tiles
  that shares a pass over it (key-side inputs such as K and V), and read by the arrays once per
  use (per step for query-side inputs, per query tile for key-side ones);
- an output is written to the buffer once and drained to DRAM;
- an intermediate kept in the buffer is written once and read once per consumer, except by a
  consumer on the same array in the same pass over the key rank, which takes it from the PE
  registers as it is produced (the 3-pass cascade's SD sums SN while SN is written); a
  consumer needs a later pass when it also reads something reduced over the key rank from the
  intermediate (A = SN / SD);
- a running value (a recurrence) is read and written once per step;
- a spilled fraction of a buffer intermediate goes to DRAM and back once per access;
- an intermediate that lives in DRAM is written there and read back by each kernel or array that
  consumes it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence

import einsum
from mapper.arch import ArchSpec
from mapper.masks import schedule_skip
from mapper.nest import action_pj, objective_value, schedule_nests
from mapper.schedule import (
    EinsumFacts,
    Layout,
    Schedule,
    _accesses,
    actions_at,
    einsum_facts,
    tensor_sizes,
)
from mapper.sram import SRAMError
from mapper.timing import latency_lower_bound, schedule_timing

__all__ = ["Estimate", "Traffic", "estimate", "traffic"]


@dataclasses.dataclass(frozen=True)
class Traffic:
    """DRAM bytes per kernel and buffer accesses in words (reads and writes)."""

    dram_bytes: tuple[float, ...]
    buffer_reads: float
    buffer_writes: float

    @property
    def dram_total(self) -> float:
        return sum(self.dram_bytes)

    @property
    def buffer_words(self) -> float:
        return self.buffer_reads + self.buffer_writes


def depends(reads: Mapping[str, Iterable[str]], tensor: str, on: str) -> bool:
    """Whether ``tensor`` is computed (transitively) from ``on``; ``reads``: what each computed
    tensor is made from."""
    seen: set[str] = set()
    todo = [tensor]
    while todo:
        t = todo.pop()
        if t == on:
            return True
        if t in seen or t not in reads:
            continue
        seen.add(t)
        todo.extend(reads[t])
    return False


def _depends(facts: Mapping[str, EinsumFacts], tensor: str, on: str) -> bool:
    return depends({n: f.reads for n, f in facts.items()}, tensor, on)


def in_a_later_pass(facts: Mapping[str, EinsumFacts], reader: EinsumFacts, tensor: str, key: str) -> bool:
    """Whether ``reader`` reads ``tensor`` in a later pass than the one that makes it: beside
    something made from ``tensor`` and reduced over ``key`` (A = SN / SD, SD the sum of SN), which
    is complete only once that pass ends."""
    return any(
        r != tensor
        and r in facts
        and (key not in facts[r].ranks or key in facts[r].reduced)
        and _depends(facts, r, tensor)
        for r in reader.reads
    )


def same_pass_readers(
    facts: Mapping[str, EinsumFacts], schedule: Schedule, tensor: str, key: str | None
) -> set[str]:
    """Consumers of ``tensor`` that take it from the PE registers: on its producer's array, in
    its kernel, and reading nothing reduced over ``key`` from it (so in the same pass)."""
    if key is None or tensor not in facts:
        return set()
    producer = facts[tensor]
    kernel_of = {e: i for i, k in enumerate(schedule.kernels) for e in k}
    out = set()
    for g in facts.values():
        if tensor not in g.reads or g.name == tensor:
            continue
        if schedule.binding[g.name] != schedule.binding[producer.name]:
            continue
        if kernel_of[g.name] != kernel_of[producer.name]:
            continue
        if not in_a_later_pass(facts, g, tensor, key):
            out.add(g.name)
    return out


def dram_readers(
    facts: Mapping[str, EinsumFacts],
    schedule: Schedule,
    tensor: str,
    key: str | None,
    readers: Sequence[EinsumFacts] | None = None,
) -> list[tuple[int, str]]:
    """The loads of a DRAM-resident ``tensor`` back from DRAM, one ``(kernel, array)`` entry each.
    Each kernel and array that reads it loads it once and holds its rows for its passes, a few
    rows at a time where need be (FLAT's 1D array from 256K, the Unfused softmax: the keys across
    the PEs, as the FuseMax artifact's ``stable_softmax.py`` maps it), where it can take the rows
    in turn: where nothing its Einsums there make between the first reader and the last is read
    on chip by another array of the kernel. Else it loads it once per pass that reads it (FuseMax's
    2-pass with the systolic binding: SLD and A on the 1D array read SLN, and A, made there, goes
    to the 2D array's AV a key block at a time). The writer's own array reads it back in a later
    pass, unless it made it from rows it holds so (FLAT's SN from S on the 1D array), where it
    keeps it in their place."""
    kernel_of = {e: i for i, k in enumerate(schedule.kernels) for e in k}
    if readers is None:
        readers = [f for f in facts.values() if tensor in f.reads and f.name != tensor]
    home = (kernel_of[tensor], schedule.binding[tensor])
    same = same_pass_readers(facts, schedule, tensor, key)
    held = any(schedule.residency.get(r) == "dram" for r in facts[tensor].reads)
    groups: dict[tuple[int, str], list[EinsumFacts]] = {}
    for g in readers:
        at = (kernel_of[g.name], schedule.binding[g.name])
        if at != home or (g.name not in same and not held):
            groups.setdefault(at, []).append(g)
    loads: list[tuple[int, str]] = []
    for at, group in sorted(groups.items()):
        passes = {key is not None and in_a_later_pass(facts, g, tensor, key) for g in group}
        turns = _in_turn(facts, schedule, at, [g.name for g in group])
        loads.extend([at] * (1 if turns else len(passes)))
    return loads


def _in_turn(
    facts: Mapping[str, EinsumFacts], schedule: Schedule, at: tuple[int, str], names: Sequence[str]
) -> bool:
    """Whether the Einsums of kernel ``at[0]`` on array ``at[1]`` from the first of ``names`` to the
    last can run a few query rows at a time: nothing they make is read on chip (in the array or
    the buffer) by an Einsum of the kernel on another array."""
    kernel = list(schedule.kernels[at[0]])
    idx = [kernel.index(n) for n in names if n in kernel]
    if not idx:
        return True
    span = [n for n in kernel[min(idx) : max(idx) + 1] if schedule.binding[n] == at[1]]
    return not any(
        schedule.residency.get(n, "array") != "dram" and n in facts[g].reads
        for n in span
        for g in kernel
        if schedule.binding[g] != at[1]
    )


def traffic(
    cascade: einsum.Cascade,
    schedule: Schedule,
    *,
    full: Mapping[str, int],
    tile: Mapping[str, int],
    instances: int,
    word_bytes: int,
    lay: Layout,
    live: Mapping[str, float] | None = None,
) -> Traffic:
    """DRAM and buffer traffic of ``schedule`` at rank sizes ``full`` (one tile: ``tile``),
    ``instances`` times over (batch x heads); ``lay`` is the cascade's layout
    (:func:`mapper.schedule.layout`). ``live``: per Einsum that skips the (query tile, key block)
    pairs a mask leaves empty (:func:`mapper.masks.schedule_skip`), the fraction it computes: its
    reads and writes in the buffer scale by it (a skipped pair's tiles are neither read nor made),
    the fills from DRAM and the DRAM bytes do not (a skipped tile's K and V are fetched for the
    tiles beside it)."""
    share = dict(live or {})
    query, key, step, whole = lay.query, lay.key, lay.step, lay.whole
    facts = {f.name: f for f in einsum_facts(cascade)}
    steps = full[step] if step else 1
    tsizes = tensor_sizes(cascade)
    size_of = {t: tsizes[t].at(full) * instances for t in tsizes}
    kernel_of = {e: i for i, k in enumerate(schedule.kernels) for e in k}
    dram = [0.0 for _ in schedule.kernels]
    reads = 0.0
    writes = 0.0
    # Einsums run as loop nests (:mod:`mapper.nest`) account for their own traffic; here only the
    # tiled kernels' reads of what the nests leave behind
    nested = set(schedule.nests)
    consumers = {t: [f for f in facts.values() if t in f.reads and f.name not in nested] for t in size_of}
    staged = [t for t in nested if consumers.get(t)]
    for inp in [*cascade.inputs, *staged]:
        name = inp if isinstance(inp, str) else inp.name
        uses = consumers.get(name, [])
        # partition views (BK, BV) read the input; their consumers are the real readers
        readers = list(uses) + [
            g
            for e in cascade.einsums
            if name in {a.tensor for a in _accesses(e.expr)} and e.output not in facts
            for g in consumers.get(e.output, [])
        ]
        if not readers:
            continue
        ranks = facts[name].ranks if name in facts else inp.ranks  # type: ignore[union-attr]
        query_side = query in ranks
        # tiles over ranks the input does not index each need all of it again; the tiles over
        # a rank it does index (a GEMM's N tiles of B) each need only their own slice
        other = math.prod(
            -(-full[r] // tile[r])
            for r in schedule.tile
            if not (r == key and whole) and r not in ranks and r in full
        )
        on_chip = name in nested and schedule.residency.get(name) == "buffer"
        # each kernel that reads it loads it: the kernels run one after another over every tile
        # (landmark attention's Q, read by LS's kernel and by BS's)
        for k in sorted({kernel_of[r.name] for r in readers}):
            p1 = schedule.query_tiles_on_chip[k]
            loads = 1 if query_side else max(1, other // p1)
            per_use = steps * other if query_side else p1
            # read for the pairs any of the kernel's readers computes
            needed = max(share.get(r.name, 1.0) for r in readers if kernel_of[r.name] == k)
            reads += size_of[name] * loads * per_use * needed
            if on_chip:
                continue  # already in the buffer
            dram[k] += size_of[name] * word_bytes * loads
            writes += size_of[name] * loads  # fill
    for out in cascade.outputs:
        if out in nested:
            continue
        dram[kernel_of[out]] += size_of[out] * word_bytes
        writes += size_of[out]
    for name in facts:
        where = schedule.residency.get(name, "array")
        if name in cascade.outputs or name in nested:
            continue
        readers = consumers.get(name, [])
        if where == "dram":
            away = dram_readers(facts, schedule, name, key, readers)
            if away:
                dram[kernel_of[name]] += size_of[name] * word_bytes
                for kk, _arr in away:
                    dram[kk] += size_of[name] * word_bytes
                writes += size_of[name] * len(away)  # filled from DRAM for each
                for kk, arr in away:  # read for the pairs any of its readers there computes
                    there = [
                        g.name for g in readers if (kernel_of[g.name], schedule.binding[g.name]) == (kk, arr)
                    ]
                    reads += size_of[name] * max((share.get(g, 1.0) for g in there), default=1.0)
            else:
                taking = same_pass_readers(facts, schedule, name, key)
                writes += size_of[name] * share.get(name, 1.0)
                reads += size_of[name] * sum(share.get(g.name, 1.0) for g in readers if g.name not in taking)
        elif where == "buffer":
            made = share.get(name, 1.0)
            if name in cascade.iterative:
                reads += size_of[name] * made  # the running value, read and
                writes += size_of[name] * made  # written once per step it computes
            else:
                taking = same_pass_readers(facts, schedule, name, key)
                n_reads = len(readers) - len(taking)
                writes += size_of[name] * made
                reads += size_of[name] * sum(share.get(g.name, 1.0) for g in readers if g.name not in taking)
                if schedule.spill_fraction and (not schedule.spilled or name in schedule.spilled):
                    dram[kernel_of[name]] += (
                        schedule.spill_fraction * size_of[name] * word_bytes * (1 + n_reads)
                    )
    return Traffic(dram_bytes=tuple(dram), buffer_reads=reads, buffer_writes=writes)


@dataclasses.dataclass(frozen=True)
class Estimate:
    """The cost model's figures for one schedule at ``instances`` instances of the workload (batch x
    heads): what the search ranks by, and what :func:`sim.evaluate` reports (physical accounting).
    ``latency_cycles`` is the loop nests' time plus the tiled kernels through the cycle-level
    engine (:func:`mapper.timing.schedule_timing`); ``energy_pj`` every action, register-file
    access, buffer access and DRAM bit priced."""

    latency_cycles: float
    energy_pj: float
    dram_bytes: float
    instances: int = 1
    timed: bool = True  # False: latency_cycles is the proven lower bound (not timed by the engine)

    def objective(
        self, objective: str | Mapping[str, float], norm: tuple[float, float] = (1.0, 1.0)
    ) -> float:
        return objective_value(objective, self.latency_cycles, self.energy_pj, norm)


def estimate(
    cascade: einsum.Cascade,
    schedule: Schedule,
    arch: ArchSpec,
    *,
    full: Mapping[str, int],
    tile: Mapping[str, int],
    lay: Layout,
    sram_model: object = None,
    instances: int = 1,
    systolic: bool = False,
    timed: bool = True,
) -> Estimate:
    """Latency and energy of ``schedule`` for ``instances`` instances (heads x sequences). With
    ``timed=False`` the latency is :func:`mapper.timing.latency_lower_bound` (no engine run); the
    energy does not depend on it."""
    facts = {f.name: f for f in einsum_facts(cascade)}
    word = arch.word_bytes
    inst = instances
    skip, skipping = schedule_skip(cascade, schedule, arch, full=full, tile=tile, lay=lay)
    live = {n: skip.live_fraction for n in skipping}
    moved = traffic(
        cascade, schedule, full=full, tile=tile, instances=inst, word_bytes=word, lay=lay, live=live
    )
    nests = schedule_nests(cascade, schedule, arch, full, sram_model=sram_model, systolic=systolic)
    timing = (schedule_timing if timed else latency_lower_bound)(
        cascade,
        schedule,
        arch,
        full=full,
        tile=tile,
        lay=lay,
        instances=inst,
        dram_bytes=moved.dram_bytes,
        buffer_words=moved.buffer_words,
        nest_cycles=sum(c.latency_cycles for _p, c in nests.values()) * inst,
        live=live,
        systolic=systolic,
    )
    energy = 0.0
    for name, f in facts.items():
        arr = arch.array(schedule.binding[name])
        counts = actions_at(f.counts, f.ranks, full, lay)
        share = live.get(name, 1.0)
        pj = action_pj(arr, arch)
        energy += sum(counts[k] * share * pj[k] for k in counts) * inst
        if f.reduced:  # the output register's read and write of every reducing operation
            rf_ops = (counts["mac"] + counts["add"] + counts["max"]) * inst * share
            energy += rf_ops * (arr.rf_read_pj + arr.rf_write_pj)
    try:
        buf = arch.buffer.costs(arch.word_bits, sram_model)  # type: ignore[arg-type]
        read_pj, write_pj = buf.read_pj_per_word, buf.write_pj_per_word
    except SRAMError:  # a buffer the SRAM model cannot price: latency only (energy is NaN)
        read_pj = write_pj = math.nan
    reads = moved.buffer_reads + sum(c.buffer_reads for _p, c in nests.values()) * inst
    writes = moved.buffer_writes + sum(c.buffer_writes for _p, c in nests.values()) * inst
    dram = moved.dram_total + sum(c.dram_words for _p, c in nests.values()) * inst * word
    energy += reads * read_pj + writes * write_pj + dram * 8 * arch.dram.pj_per_bit
    return Estimate(
        latency_cycles=timing if isinstance(timing, float) else timing.cycles,
        energy_pj=energy,
        dram_bytes=dram,
        instances=inst,
        timed=timed,
    )
