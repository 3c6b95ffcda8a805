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
from collections.abc import Mapping

import einsum
from mapper.schedule import EinsumFacts, Layout, Schedule, _accesses, einsum_facts

__all__ = ["Traffic", "traffic"]


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


def _depends(facts: Mapping[str, EinsumFacts], tensor: str, on: str) -> bool:
    """Whether ``tensor`` is computed (transitively) from ``on``."""
    seen: set[str] = set()
    todo = [tensor]
    while todo:
        t = todo.pop()
        if t == on:
            return True
        if t in seen or t not in facts:
            continue
        seen.add(t)
        todo.extend(facts[t].reads)
    return False


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
        later = any(
            r != tensor
            and r in facts
            and (key not in facts[r].ranks or key in facts[r].reduced)
            and _depends(facts, r, tensor)
            for r in g.reads
        )
        if not later:
            out.add(g.name)
    return out


def traffic(
    cascade: einsum.Cascade,
    schedule: Schedule,
    *,
    full: Mapping[str, int],
    tile: Mapping[str, int],
    instances: int,
    word_bytes: int,
    lay: Layout,
) -> Traffic:
    """DRAM and buffer traffic of ``schedule`` at rank sizes ``full`` (one tile: ``tile``),
    ``instances`` times over (batch x heads); ``lay`` is the cascade's layout
    (:func:`mapper.schedule.layout`)."""
    query, key, step, whole = lay.query, lay.key, lay.step, lay.whole
    facts = {f.name: f for f in einsum_facts(cascade)}
    q_tiles = instances * math.prod(-(-full[r] // tile[r]) for r in schedule.tile if not (r == key and whole))
    steps = full[step] if step else 1
    tsizes = einsum.tensor_sizes(cascade)
    size_of = {t: tsizes[t].at(full) * instances for t in tsizes}
    kernel_of = {e: i for i, k in enumerate(schedule.kernels) for e in k}
    dram = [0.0 for _ in schedule.kernels]
    reads = 0.0
    writes = 0.0
    consumers = {t: [f for f in facts.values() if t in f.reads] for t in size_of}
    for inp in cascade.inputs:
        uses = consumers.get(inp.name, [])
        # partition views (BK, BV) read the input; their consumers are the real readers
        readers = list(uses) + [
            g
            for e in cascade.einsums
            if inp.name in {a.tensor for a in _accesses(e.expr)} and e.output not in facts
            for g in consumers.get(e.output, [])
        ]
        query_side = query in inp.ranks
        k = kernel_of[readers[0].name] if readers else 0
        p1 = schedule.query_tiles_on_chip[k]
        loads = 1 if query_side else max(1, (q_tiles // instances) // p1)
        dram[k] += size_of[inp.name] * word_bytes * loads
        writes += size_of[inp.name] * loads  # fill
        per_use = steps if query_side else p1
        reads += size_of[inp.name] * loads * per_use * max(1, len({kernel_of[r.name] for r in readers}))
    for out in cascade.outputs:
        dram[kernel_of[out]] += size_of[out] * word_bytes
        writes += size_of[out]
    for name in facts:
        where = schedule.residency.get(name, "array")
        if name in cascade.outputs:
            continue
        readers = consumers.get(name, [])
        if where == "dram":
            away = {
                (kernel_of[g.name], schedule.binding[g.name])
                for g in readers
                if kernel_of[g.name] != kernel_of[name] or schedule.binding[g.name] != schedule.binding[name]
            }
            if away:
                dram[kernel_of[name]] += size_of[name] * word_bytes
                for kk, _arr in away:
                    dram[kk] += size_of[name] * word_bytes
                writes += size_of[name] * len(away)
                reads += size_of[name] * len(away)
            else:
                writes += size_of[name]
                reads += size_of[name] * (len(readers) - len(same_pass_readers(facts, schedule, name, key)))
        elif where == "buffer":
            if name in cascade.iterative:
                reads += size_of[name]  # the running value, read and
                writes += size_of[name]  # written once per step
            else:
                n_reads = len(readers) - len(same_pass_readers(facts, schedule, name, key))
                writes += size_of[name]
                reads += size_of[name] * n_reads
                if schedule.spill_fraction:
                    dram[kernel_of[name]] += (
                        schedule.spill_fraction * size_of[name] * word_bytes * (1 + n_reads)
                    )
    return Traffic(dram_bytes=tuple(dram), buffer_reads=reads, buffer_writes=writes)
