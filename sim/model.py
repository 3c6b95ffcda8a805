"""``evaluate``: latency, traffic, energy and utilisation of a schedule on an architecture.

Per-operation energy is registered here, keyed by the IR's action categories (``ENERGY_OF``):
the simulator decides what an ``exp`` costs on a PE (an exp unit, or ``exp_macs`` MACs), the IR
only counts it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import einsum
from mapper.arch import ArchSpec, PEArray
from mapper.schedule import EinsumFacts, Schedule, check, einsum_cycles, einsum_facts, exposed_latency
from mapper.search import layout
from sim.engine import Task, simulate_kernel
from sim.errors import EvaluationError
from sim.report import Report
from sim.workloads import Workload

__all__ = ["ENERGY_OF", "evaluate", "gemm_report"]


def _exp_pj(arr: PEArray, arch: ArchSpec) -> float:
    return arch.energy.exp_pj if "exp" in arr.units else arr.exp_macs * arch.energy.mac_pj


#: pJ per IR action on a PE of an array: the simulator's cost table, keyed by the IR's categories.
ENERGY_OF: dict[str, Callable[[PEArray, ArchSpec], float]] = {
    "mac": lambda arr, arch: arch.energy.mac_pj,
    "add": lambda arr, arch: arch.energy.add_pj,
    "max": lambda arr, arch: arch.energy.max_pj,
    "exp": _exp_pj,
    "div": lambda arr, arch: arch.energy.div_pj,
    "other": lambda arr, arch: arch.energy.mac_pj,
}


def _sizes(
    cascade: einsum.Cascade, schedule: Schedule, workload: Workload
) -> tuple[dict[str, int], dict[str, int]]:
    """Full rank sizes and the sizes of one tile."""
    lay = layout(cascade)
    full = {r: v for r, v in workload.sizes.items()}
    missing = [r for r in cascade.ranks if r not in full and r not in (lay.key, lay.step)]
    if missing:
        raise EvaluationError(
            f"workload {workload.model} gives no size for rank(s) {', '.join(missing)} "
            f"of {cascade.name}; it gives {', '.join(f'{k}={v}' for k, v in full.items())}"
        )
    tile = dict(full)
    if lay.whole is not None and lay.key is not None:
        m0 = schedule.tile.get(lay.key)
        if m0 is None:
            raise EvaluationError(f"schedule gives no tile for {lay.key}")
        if full[lay.whole] % m0:
            raise EvaluationError(
                f"sequence length {lay.whole} = {full[lay.whole]} is not divisible by the "
                f"key tile {lay.key} = {m0}"
            )
        full[lay.key] = tile[lay.key] = m0
        if lay.step is not None:
            full[lay.step] = full[lay.whole] // m0
            tile[lay.step] = 1
    for r, size in schedule.tile.items():
        if r == lay.key and lay.whole is not None:
            continue
        if full[r] % size and full[r] > size:
            raise EvaluationError(f"{r} = {full[r]} is not divisible by the tile {r}0 = {size}")
        tile[r] = min(size, full[r])
    return full, tile


def evaluate(
    cascade: einsum.Cascade, schedule: Schedule, arch: ArchSpec, workload: Workload, *, systolic: bool = False
) -> Report:
    """Simulate ``schedule`` of ``cascade`` on ``arch`` for ``workload``; see :class:`sim.Report`.

    With ``systolic`` the 2D array's fill and drain are charged to every contraction it runs (off
    for the FuseMax reproduction, which ignores them).
    """
    check(cascade, schedule, arch)
    lay = layout(cascade)
    full, tile = _sizes(cascade, schedule, workload)
    facts = {f.name: f for f in einsum_facts(cascade)}
    inst = workload.instances
    word = arch.word_bytes
    q_tiles = inst * math.prod(
        -(-full[r] // tile[r]) for r in schedule.tile if not (r == lay.key and lay.whole)
    )
    steps = full[lay.step] if lay.step else 1
    bpc = arch.dram.bandwidth_bytes_per_s / arch.clock_hz

    # -- traffic ------------------------------------------------------------------------------------
    tsizes = einsum.tensor_sizes(cascade)
    size_of = {t: tsizes[t].at(full) * inst for t in tsizes}
    kernel_of = {e: i for i, k in enumerate(schedule.kernels) for e in k}
    dram = [0.0 for _ in schedule.kernels]  # bytes per kernel
    buffer_words = 0.0
    consumers = {t: [f for f in facts.values() if t in f.reads] for t in size_of}
    for inp in cascade.inputs:
        uses = consumers.get(inp.name, [])
        # partition views (BK, BV) read the input; their consumers are the real readers
        readers = list(uses) + [
            g
            for e in cascade.einsums
            if inp.name in _reads(e) and e.output not in facts
            for g in consumers.get(e.output, [])
        ]
        query_side = lay.query in inp.ranks
        k = kernel_of[readers[0].name] if readers else 0
        p1 = schedule.query_tiles_on_chip[k]
        loads = 1 if query_side else max(1, (q_tiles // inst) // p1)
        dram[k] += size_of[inp.name] * word * loads
        buffer_words += size_of[inp.name] * loads  # fill
        per_use = steps if query_side else p1
        buffer_words += (
            size_of[inp.name] * loads * per_use * max(1, len({kernel_of[r.name] for r in readers}))
        )
    for out in cascade.outputs:
        dram[kernel_of[out]] += size_of[out] * word
        buffer_words += size_of[out]
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
                dram[kernel_of[name]] += size_of[name] * word
                for kk, _arr in away:
                    dram[kk] += size_of[name] * word
                buffer_words += size_of[name] * 2 * len(away)
            else:
                buffer_words += size_of[name] * (1 + len(readers))
        elif where == "buffer":
            if name in cascade.iterative:
                buffer_words += 2 * size_of[name]  # read the running value, write the next one
            else:
                buffer_words += size_of[name] * (1 + len(readers))
                if schedule.spill_fraction:
                    dram[kernel_of[name]] += (
                        schedule.spill_fraction * size_of[name] * word * (1 + len(readers))
                    )

    # -- compute, per Einsum ----------------------------------------------------------------------
    per_einsum: dict[str, dict[str, float | str]] = {}
    comp: dict[str, float] = {}
    busy = {a.name: 0.0 for a in arch.arrays}
    macs_total = 0
    for name, f in facts.items():
        arr = arch.array(schedule.binding[name])
        counts = f.counts.at(full)
        energy = sum(counts[k] * ENERGY_OF[k](arr, arch) for k in counts) * inst
        spatial = schedule.spatial[arr.name]
        temporal_reduction = bool(f.reduced) and not any(r in spatial for r in f.reduced)
        rf_ops = (counts["mac"] + counts["add"] + counts["max"]) * inst if temporal_reduction else 0
        rf_pj = rf_ops * (arr.rf_read_pj + arr.rf_write_pj)
        cyc = einsum_cycles(f, arr, spatial, tile, systolic=systolic)
        n_tasks = q_tiles if (not f.step and lay.step) else q_tiles * steps
        busy[arr.name] += cyc * n_tasks
        macs_total += counts["mac"] * inst
        per_einsum[name] = {
            "unit": arr.name,
            "cycles_per_tile": cyc,
            "busy_cycles": cyc * n_tasks,
            "energy_pj": energy + rf_pj,
            "macs": counts["mac"] * inst,
        }
        for k, v in counts.items():
            if v:
                unit = "exp" if k == "exp" and "exp" in arr.units else "mac" if k in ("other", "exp") else k
                key = f"{arr.name}.{unit}"
                comp[key] = comp.get(key, 0.0) + v * ENERGY_OF[k](arr, arch) * inst
        if rf_pj:
            comp[f"{arr.name}.rf"] = comp.get(f"{arr.name}.rf", 0.0) + rf_pj
    comp["buffer"] = buffer_words * (arch.buffer.read_pj_per_word + arch.buffer.write_pj_per_word) / 2
    total_dram = sum(dram)
    comp["dram"] = total_dram * 8 * arch.dram.pj_per_bit

    # -- timing -------------------------------------------------------------------------------------
    cycles = 0.0
    simulated = 0
    for ki, kernel in enumerate(schedule.kernels):
        tasks = _tasks(kernel, facts, schedule, arch, tile, systolic, lay, cascade)
        n = q_tiles * steps
        timing = simulate_kernel(
            tasks,
            query_tiles=q_tiles,
            steps=steps,
            lookahead=schedule.lookahead,
            interleave=schedule.interleave,
            dram_cycles_per_tile=dram[ki] / bpc / n,
        )
        cycles += timing.cycles
        simulated += timing.simulated_tiles
    latency_s = cycles / arch.clock_hz
    energy = sum(comp.values())
    report = Report(
        cascade=cascade.name,
        arch=arch.name,
        model=workload.model,
        seq=workload.seq,
        batch=workload.batch,
        latency_cycles=cycles,
        latency_s=latency_s,
        energy_pj=energy,
        traffic_bytes=total_dram,
        buffer_traffic_bytes=buffer_words * word,
        utilization={a: b / cycles for a, b in busy.items()} if cycles else {a: 0.0 for a in busy},
        busy_cycles=busy,
        per_einsum=per_einsum,
        per_component_pj=comp,
        memory_bound_fraction=min(1.0, (total_dram / bpc) / cycles) if cycles else 0.0,
        macs=macs_total,
        simulated_tiles=simulated,
        interleave=schedule.interleave,
    )
    _self_check(report, cascade, full, inst)
    return report


def _reads(e: einsum.Einsum) -> set[str]:
    from einsum._expr import Access, walk

    return {n.tensor for n in walk(e.expr) if isinstance(n, Access)}


def _tasks(kernel, facts, schedule, arch, tile, systolic, lay, cascade) -> list[Task]:  # type: ignore[no-untyped-def]
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
    for n in kernel:
        f: EinsumFacts = facts[n]
        arr = arch.array(unit_of[n])
        deps = tuple(p for p in f.reads if p in names and p not in f.reads_previous)
        prev = tuple(p for p in f.reads_previous if p in names)
        final = bool(lay.step) and not f.step
        reads_dram = any(
            schedule.residency.get(r) == "dram" or r in {i.name for i in cascade.inputs} or r not in facts
            for r in f.reads
        )
        tasks.append(
            Task(
                name=n,
                unit=arr.name,
                cycles=einsum_cycles(f, arr, schedule.spatial[arr.name], tile, systolic=systolic),
                latency=exposed_latency(f, arr, schedule.spatial),
                deps=deps,
                prev=prev,
                final=final,
                head=not needs_other[n] and not final,
                reads_dram=reads_dram,
            )
        )
    return tasks


def _self_check(r: Report, cascade: einsum.Cascade, full: Mapping[str, int], inst: int) -> None:
    problems = []
    for field in (
        "latency_cycles",
        "latency_s",
        "energy_pj",
        "traffic_bytes",
        "buffer_traffic_bytes",
        "macs",
    ):
        v = getattr(r, field)
        if not math.isfinite(v) or v < 0:
            problems.append(f"{field} = {v} (must be finite and >= 0)")
    for name, v in r.per_component_pj.items():
        if not math.isfinite(v) or v < 0:
            problems.append(f"energy of {name} = {v}")
    for a, u in r.utilization.items():
        if u > 1 + 1e-9 or u < 0:
            problems.append(f"utilization of {a} = {u} (must be in [0, 1])")
    expected = sum(c.at(full)["mac"] for c in einsum.op_counts(cascade)) * inst
    if expected != r.macs:
        problems.append(f"MACs {r.macs} differ from the cascade's operation count {expected}")
    if problems:
        raise EvaluationError("report failed its self-checks: " + "; ".join(problems))


def gemm_report(m: int, k: int, n: int, arch: ArchSpec, name: str = "gemm") -> dict[str, float]:
    """One GEMM (``m x k`` times ``k x n``) on the architecture's 2D array, output stationary:
    the cycles, DRAM bytes and energy of the end-to-end layer's projections and FFN."""
    arr = next((a for a in arch.arrays if a.is_2d), arch.arrays[0])
    rows, cols = arr.rows, arr.cols
    cycles = -(-m // cols) * -(-n // rows) * k
    word = arch.word_bytes
    traffic = (m * k + k * n + m * n) * word
    bpc = arch.dram.bandwidth_bytes_per_s / arch.clock_hz
    latency = max(cycles, traffic / bpc)
    macs = m * k * n
    e = arch.energy
    energy = macs * (e.mac_pj + arr.rf_read_pj + arr.rf_write_pj) + traffic * 8 * arch.dram.pj_per_bit
    return {
        "name": name,
        "cycles": latency,
        "latency_s": latency / arch.clock_hz,
        "traffic_bytes": traffic,
        "energy_pj": energy,
        "macs": macs,
        "busy_cycles": cycles,
    }
