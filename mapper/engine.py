"""The cycle-level timing engine: tiles flowing through the arrays that a schedule binds.

Each array runs its tasks (one Einsum on one tile) in program order, one at a time, each for the
cycles its operation counts need. A task starts when its array is free and its inputs are ready:
the Einsums it reads in the same tile, the recurrence values of the previous step (RM, RD, RNV
along m1), and, for tasks that read DRAM, the tile's transfer. A max reduced across a 2D array's
rows is ready ``rows`` cycles after it ends. With interleaving, the arrays' first Einsums (those
needing nothing from another array) run ``lookahead`` tiles ahead; without it, an array starts
tile ``i + 1`` only after the other arrays have consumed what it produced for tile ``i``. DRAM is
one more unit: a tile's transfer may start once the tile two back has started (double buffering).

The simulation is exact and needs no per-tile loop over the whole workload: every start time is a
max of sums, so once the state (times relative to the newest) repeats from one tile to the next,
every later tile adds the same number of cycles; the engine jumps over those tiles and simulates
the last few (and the tiles where a query tile ends) in full.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from mapper.errors import ScheduleError

__all__ = ["KernelTiming", "Task", "Transfers", "live_steps", "simulate_kernel"]


@dataclasses.dataclass(frozen=True)
class Task:
    """One Einsum of a kernel, as the engine sees it."""

    name: str
    unit: str
    cycles: float
    latency: float  # extra cycles before consumers may use the result
    deps: tuple[str, ...]  # same-tile producers
    prev: tuple[str, ...]  # producers in the previous step (recurrence values)
    final: bool  # runs once per query tile, after its last step
    head: bool  # needs nothing from another array in the same tile: may run ahead
    reads_dram: bool


@dataclasses.dataclass(frozen=True)
class Transfers:
    """DRAM transfers tile by tile (``DRAM.transfers = "tile"``), in cycles of the read channel:
    ``query`` at the first step of each query tile, ``key`` at every step of the first query tile
    of each group of ``group`` query tiles (what stays in the buffer is not fetched again). A
    transfer's data arrive ``latency`` cycles after its last request. The last query tile's
    output leaves on the write channel in ``drain`` cycles, a cycle behind its final task."""

    query: float
    key: float
    group: int
    latency: float = 0.0
    drain: float = 0.0

    def cycles(self, g: int, steps: int) -> float:
        q, s = divmod(g, steps)
        return (self.query if s == 0 else 0.0) + (self.key if q % self.group == 0 else 0.0)


@dataclasses.dataclass(frozen=True)
class KernelTiming:
    cycles: float
    simulated_tiles: int


def _programs(
    tasks: Sequence[Task], units: Sequence[str]
) -> dict[str, tuple[list[Task], list[Task], list[Task]]]:
    out = {}
    for u in units:
        mine = [t for t in tasks if t.unit == u]
        out[u] = (
            [t for t in mine if t.head and not t.final],
            [t for t in mine if not t.head and not t.final],
            [t for t in mine if t.final],
        )
    return out


def simulate_kernel(
    tasks: Sequence[Task],
    *,
    query_tiles: int,
    steps: int,
    lookahead: int,
    interleave: bool,
    dram_cycles_per_tile: float | Transfers,
    extrapolate: bool = True,
    record: list[tuple[int, str, str, float, float]] | None = None,
) -> KernelTiming:
    """Total cycles of ``query_tiles`` x ``steps`` tiles through ``tasks``.

    ``extrapolate=False`` simulates every tile (slow on long sequences; the tests' oracle for the
    jumps). ``record`` (with ``extrapolate=False``) receives one ``(tile, task, unit, start, end)``
    per task run and per DRAM transfer (unit ``"dram"``): the schedule as a timeline.
    ``dram_cycles_per_tile`` is every tile's transfer, or :class:`Transfers` tile by tile."""
    units = sorted({t.unit for t in tasks})
    progs = _programs(tasks, units)
    by_name = {t.name: t for t in tasks}
    total = query_tiles * steps
    d = lookahead if interleave else 0
    per_tile = dram_cycles_per_tile if isinstance(dram_cycles_per_tile, Transfers) else None
    # query tiles repeat one another only past the first group (tile by tile transfers)
    same_query_tiles = per_tile is None or per_tile.group >= query_tiles
    # consumers (on other units) of each unit's outputs: the non-interleaved barrier
    barrier: dict[str, list[str]] = {u: [] for u in units}
    if not interleave:
        for t in tasks:
            for p in t.deps:
                if by_name[p].unit != t.unit and t.name not in barrier[by_name[p].unit]:
                    barrier[by_name[p].unit].append(t.name)

    ready: dict[tuple[int, str], float] = {}  # (tile, task) -> time its result can be used
    start: dict[tuple[int, str], float] = {}
    free = {u: 0.0 for u in units}
    dram_free = 0.0
    dram_done: dict[int, float] = {}
    simulated = 0

    def run(g: int, t: Task) -> None:
        nonlocal dram_free
        s = free[t.unit]
        for p in t.deps:
            s = max(s, ready[(g, p)])
        if t.prev and g % steps:
            for p in t.prev:
                s = max(s, ready[(g - 1, p)])
        if t.reads_dram and not t.final:
            if g not in dram_done:
                ds = max(dram_free, min((v for (gg, _), v in start.items() if gg == g - 2), default=0.0))
                moved = per_tile.cycles(g, steps) if per_tile else float(dram_cycles_per_tile)  # type: ignore[arg-type]
                dram_free = ds + moved
                dram_done[g] = dram_free + (per_tile.latency if per_tile and moved > 0 else 0.0)
                if record is not None and moved > 0:
                    record.append((g, f"tile {g} transfer", "dram", ds, dram_done[g]))
            s = max(s, dram_done[g])
        if not interleave and g > 0:
            first = progs[t.unit]
            is_first = (first[0] + first[1])[:1] == [t]
            if is_first:
                for c in barrier[t.unit]:
                    if (g - 1, c) in ready:
                        s = max(s, ready[(g - 1, c)] - by_name[c].latency)
        start[(g, t.name)] = s
        if record is not None and t.cycles > 0:
            record.append((g, t.name, t.unit, s, s + t.cycles))
        free[t.unit] = s + t.cycles
        ready[(g, t.name)] = s + t.cycles + t.latency

    def slot(g: int) -> None:
        """Issue, on every unit, the head tasks of tile g + d, then the rest of tile g."""
        queue: dict[str, list[tuple[int, Task]]] = {u: [] for u in units}
        for u in units:
            heads, rest, finals = progs[u]
            if g == 0:
                for ahead in range(0, min(d, total)):
                    queue[u] += [(ahead, t) for t in heads]
            if g + d < total:
                queue[u] += [(g + d, t) for t in heads]
            queue[u] += [(g, t) for t in rest]
            if g % steps == steps - 1:
                queue[u] += [(g, t) for t in finals]
        pending = sum(len(q) for q in queue.values())
        while pending:
            progressed = False
            for u in units:
                while queue[u]:
                    g2, t = queue[u][0]
                    deps = [(g2, p) for p in t.deps]
                    if t.prev and g2 % steps:
                        deps += [(g2 - 1, p) for p in t.prev]
                    if not all(k in ready for k in deps):
                        break
                    run(g2, t)
                    queue[u].pop(0)
                    pending -= 1
                    progressed = True
            if not progressed:
                stuck = {u: q[0][1].name for u, q in queue.items() if q}
                waits = ", ".join(f"{u}: {n}" for u, n in stuck.items())
                raise ScheduleError(
                    f"the schedule cannot make progress at tile {g}: each array waits on a result "
                    f"that comes later in another's program ({waits})"
                )

    # A time further behind the newest than every task and transfer of the tiles the state spans
    # could add can no longer decide any start (every use is a max with a later time): an array
    # that runs ahead on its own (a fast head array beside a slow one, with no back-pressure)
    # falls further behind each tile, and its times are clamped here so the state still repeats.
    dram_tile = (
        per_tile.query + per_tile.key + per_tile.latency + per_tile.drain
        if per_tile
        else float(dram_cycles_per_tile)  # type: ignore[arg-type]
    )
    horizon = (sum(t.cycles + t.latency for t in tasks) + dram_tile + 1.0) * (d + 5)

    def state(g: int) -> tuple[float, tuple[float, ...]]:
        ref = max(free.values())

        def rel(v: float) -> float:
            return max(round(v - ref, 9), -horizon)

        vals = [rel(v) for v in free.values()] + [rel(dram_free)]
        for off in range(-2, d + 1):
            for t in tasks:
                v = ready.get((g + off, t.name))
                vals.append(rel(v) if v is not None else float("nan"))
        return ref, tuple(vals)

    def shift(k: int, delta: float) -> None:
        nonlocal ready, start, dram_done, dram_free
        ready = {(g + k, n): v + delta for (g, n), v in ready.items()}
        start = {(g + k, n): v + delta for (g, n), v in start.items()}
        dram_done = {g + k: v + delta for g, v in dram_done.items()}
        dram_free += delta
        for u in units:
            free[u] += delta

    def prune(g: int) -> None:
        for dct in (ready, start):
            for key in [k for k in dct if k[0] < g - 3]:
                del dct[key]
        for key in [k for k in dram_done if k < g - 3]:
            del dram_done[key]

    g = 0
    prev_state: tuple[float, tuple[float, ...]] | None = None
    q_states: dict[int, tuple[float, tuple[float, ...]]] = {}
    while g < total:
        s_in_q = g % steps
        if s_in_q == 0:
            q = g // steps
            st = state(g)
            q_states[q] = st
            old = q_states.get(q - 1)
            remaining = query_tiles - q
            if (
                extrapolate
                and same_query_tiles
                and old is not None
                and _same(old[1], st[1])
                and remaining > 3
            ):
                k = remaining - 2
                shift(k * steps, k * (st[0] - old[0]))
                g += k * steps
                q_states = {}
                prev_state = None
                continue
        slot(g)
        simulated += 1
        g += 1
        prune(g)
        st = state(g)
        to_end = steps - (g % steps) if g % steps else 0
        if extrapolate and prev_state is not None and _same(prev_state[1], st[1]) and to_end > d + 4:
            k = to_end - (d + 3)
            shift(k, k * (st[0] - prev_state[0]))
            g += k
            prev_state = None
            continue
        prev_state = st
    end = max(list(free.values()) + [dram_free] + list(ready.values()))
    if per_tile:  # the last query tile's output leaves a cycle after it is computed, at the channel's pace
        for (g, n), v in start.items():
            if g == total - 1 and by_name[n].final:
                end = max(end, v + 1 + max(by_name[n].cycles, per_tile.drain))
    return KernelTiming(cycles=end, simulated_tiles=simulated)


def _same(a: Sequence[float], b: Sequence[float]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x != x and y != y:  # both missing
            continue
        if abs(x - y) > 1e-6:
            return False
    return True


def live_steps(tasks: Sequence[Task], steps: int, live: Mapping[str, float] | None) -> tuple[list[Task], int]:
    """A kernel's tasks and steps per query tile as the engine times them where a mask skips
    wholly masked (query tile, key block) pairs: a query tile runs only the steps it computes, one
    after another, each at its whole cost (``round(steps x live)`` steps, the largest share of its
    skipping tasks), rather than every step at ``live`` times its cost, which would leave the
    arrays waiting on each other's per-step latencies as no schedule that skips a step does. Every
    task's cycles over the query tile are kept (a task's per-step cycles times the steps); the
    finals run once per query tile as before. Without steps or a mask: unchanged."""
    shares = [(live or {}).get(t.name, 1.0) for t in tasks if not t.final]
    skipping = [x for x in shares if x < 1.0]
    if steps <= 1 or not skipping:
        return list(tasks), steps
    kept = max(1, min(steps, round(steps * max(skipping))))
    scale = steps / kept
    return [t if t.final else dataclasses.replace(t, cycles=t.cycles * scale) for t in tasks], kept
