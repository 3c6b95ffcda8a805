"""A Chrome / Perfetto trace of a simulated schedule (the JSON trace-event format).

One track per array and one for DRAM; a slice per Einsum per tile (and per DRAM transfer),
timestamps in microseconds at the architecture's clock. The first ``max_tiles`` tiles of each
kernel are simulated one by one (the report's figures come from the whole run, where the engine
jumps over repeating tiles); loop nests appear as one slice each, before the kernels. Load the
file in https://ui.perfetto.dev or chrome://tracing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import einsum
from mapper.arch import ArchSpec
from mapper.masks import schedule_skip
from mapper.nest import schedule_nests
from mapper.schedule import Schedule, einsum_facts, layout
from sim.engine import simulate_kernel
from sim.workloads import Workload

__all__ = ["trace", "validate_trace"]


def trace(
    cascade: einsum.Cascade,
    schedule: Schedule,
    arch: ArchSpec,
    workload: Workload,
    path: str | Path | None = None,
    *,
    max_tiles: int = 64,
    systolic: bool = False,
) -> dict[str, Any]:
    """The trace of ``schedule`` (the first ``max_tiles`` tiles of each kernel); written to
    ``path`` as JSON when given. ``systolic`` as in :func:`sim.evaluate` (physical accounting)."""
    from mapper.engine import live_steps
    from mapper.timing import kernel_tasks as _tasks
    from sim.model import _sizes, traffic

    lay = layout(cascade)
    full, tile = _sizes(cascade, schedule, workload)
    facts = {f.name: f for f in einsum_facts(cascade)}
    q_tiles = math.prod(-(-full[r] // tile[r]) for r in schedule.tile if not (r == lay.key and lay.whole))
    steps = full[lay.step] if lay.step else 1
    us_per_cycle = 1e6 / arch.clock_hz
    tracks = [a.name for a in arch.arrays] + ["dram"]
    events: list[dict[str, Any]] = [
        {"name": "process_name", "ph": "M", "pid": 1, "args": {"name": f"{cascade.name} on {arch.name}"}}
    ]
    for i, name in enumerate(tracks):
        events.append({"name": "thread_name", "ph": "M", "pid": 1, "tid": i + 1, "args": {"name": name}})
        events.append(
            {"name": "thread_sort_index", "ph": "M", "pid": 1, "tid": i + 1, "args": {"sort_index": i}}
        )
    tid = {n: i + 1 for i, n in enumerate(tracks)}
    clock = 0.0
    for name, (_prob, cost) in schedule_nests(cascade, schedule, arch, full, systolic=systolic).items():
        events.append(
            {
                "name": name,
                "cat": "loop nest",
                "ph": "X",
                "pid": 1,
                "tid": tid[schedule.nests[name].array],
                "ts": clock * us_per_cycle,
                "dur": cost.latency_cycles * us_per_cycle,
                "args": {"mapping": schedule.nests[name].describe(), "bound_by": cost.bound_by},
            }
        )
        clock += cost.latency_cycles
    skip, skipping = schedule_skip(cascade, schedule, arch, full=full, tile=tile, lay=lay)
    live = {n: skip.live_fraction for n in skipping}
    moved = traffic(
        cascade, schedule, full=full, tile=tile, instances=1, word_bytes=arch.word_bytes, lay=lay, live=live
    )
    bpc = arch.dram.bandwidth_bytes_per_s / arch.clock_hz
    for ki, kernel in enumerate(schedule.kernels):
        tasks = _tasks(kernel, facts, schedule, arch, tile, systolic, lay, cascade, False, live)
        run = steps
        if arch.dram.transfers != "tile":  # as mapper.timing.schedule_timing times them
            tasks, run = live_steps(tasks, steps, live)
        shown_q = max(1, min(q_tiles, -(-max_tiles // run)))
        record: list[tuple[int, str, str, float, float]] = []
        timing = simulate_kernel(
            tasks,
            query_tiles=shown_q,
            steps=run,
            lookahead=schedule.lookahead,
            interleave=schedule.interleave,
            dram_cycles_per_tile=moved.dram_bytes[ki] / bpc / (q_tiles * run),
            extrapolate=False,
            record=record,
        )
        for g, name, unit, start, end in record:
            events.append(
                {
                    "name": name if unit == "dram" else f"{name} [{g // run}.{g % run}]",
                    "cat": f"kernel {ki}",
                    "ph": "X",
                    "pid": 1,
                    "tid": tid[unit],
                    "ts": (clock + start) * us_per_cycle,
                    "dur": (end - start) * us_per_cycle,
                    "args": {"query_tile": g // run, "step": g % run, "cycles": end - start},
                }
            )
        clock += timing.cycles
    out = {
        "traceEvents": events,
        "displayTimeUnit": "ns",
        "otherData": {
            "cascade": cascade.name,
            "arch": arch.name,
            "clock_hz": arch.clock_hz,
            "note": f"the first {max_tiles} tiles of each kernel, one instance (batch x heads = 1)",
        },
    }
    validate_trace(out)
    if path is not None:
        Path(path).write_text(json.dumps(out), encoding="utf-8")
    return out


def validate_trace(data: Any) -> None:
    """Check ``data`` against the trace-event format: a ``traceEvents`` list of events, each with
    a name, a phase, a pid (and a tid), complete events ('X') with numeric ``ts`` and ``dur`` >= 0,
    metadata events ('M') with ``args``; slices on one track never overlap. Raises ValueError."""
    if not isinstance(data, dict) or not isinstance(data.get("traceEvents"), list):
        raise ValueError("a trace is an object with a traceEvents list")
    by_track: dict[tuple[int, int], list[tuple[float, float, str]]] = {}
    for i, e in enumerate(data["traceEvents"]):
        if not isinstance(e, dict) or not isinstance(e.get("name"), str) or e.get("ph") not in ("X", "M"):
            raise ValueError(f"event {i}: needs a name and a phase 'X' or 'M', found {e!r}")
        if not isinstance(e.get("pid"), int):
            raise ValueError(f"event {i} ({e['name']}): pid must be an integer")
        if e["ph"] == "M":
            if not isinstance(e.get("args"), dict):
                raise ValueError(f"metadata event {i} ({e['name']}) needs args")
            continue
        for key in ("ts", "dur"):
            v = e.get(key)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
                raise ValueError(f"event {i} ({e['name']}): {key} must be a number >= 0, found {v!r}")
        if not isinstance(e.get("tid"), int):
            raise ValueError(f"event {i} ({e['name']}): tid must be an integer")
        by_track.setdefault((e["pid"], e["tid"]), []).append((e["ts"], e["ts"] + e["dur"], e["name"]))
    for track, slices in by_track.items():
        slices.sort()
        for (_s0, e0, n0), (s1, _e1, n1) in zip(slices, slices[1:], strict=False):
            if s1 < e0 - 1e-6 * max(1.0, e0):
                raise ValueError(f"track {track}: {n1} starts at {s1} before {n0} ends at {e0}")
