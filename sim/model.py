"""``evaluate``: latency, traffic, energy and utilisation of a schedule on an architecture.

Per-operation energy is registered here, keyed by the IR's action categories (``ENERGY_OF``):
the simulator decides what an ``exp`` costs on a PE (an exp unit, or ``exp_macs`` MACs), the IR
only counts it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import einsum
from einsum.errors import ConfigError
from mapper.arch import ArchSpec, PEArray
from mapper.cost import traffic
from mapper.errors import ScheduleError
from mapper.masks import schedule_skip
from mapper.nest import schedule_nests
from mapper.schedule import (
    Layout,
    Schedule,
    actions_at,
    check,
    complete_partitions,
    einsum_cycles,
    einsum_facts,
    fu_ops,
    layout,
    read_tensors,
    split_sizes,
)
from mapper.sram import SRAMModel
from mapper.timing import read_latency, schedule_timing
from sim.accounting import Accounting, constant_scalings
from sim.accounting import accounting as _accounting
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
    """Full rank sizes and the sizes of one tile. Ragged ranks (a length that is not a multiple of
    its tile) get ``ceil`` tiles; the last one is costed as the part it holds (:func:`actions_at`)
    where the actions are counted, and as a full tile where the array's time is (its idle PEs)."""
    lay = layout(cascade)
    full = complete_partitions(cascade, workload.sizes, lay)
    missing = [r for r in cascade.ranks if r not in full and r not in (lay.key, lay.outer)]
    if missing:
        raise EvaluationError(
            f"workload {workload.model} gives no size for rank(s) {', '.join(missing)} "
            f"of {cascade.name}; it gives {', '.join(f'{k}={v}' for k, v in full.items())}"
        )
    try:
        return split_sizes(schedule, full, lay)
    except ScheduleError as exc:
        raise EvaluationError(str(exc)) from None


def evaluate(
    cascade: einsum.Cascade,
    schedule: Schedule,
    arch: ArchSpec,
    workload: Workload,
    *,
    systolic: bool = False,
    accounting: str | Accounting = "physical",
    leakage: bool = False,
    sram_model: SRAMModel | None = None,
) -> Report:
    """Simulate ``schedule`` of ``cascade`` on ``arch`` for ``workload``; see :class:`sim.Report`.

    With ``systolic`` the 2D array's fill and drain are charged to every contraction it runs (off
    for the FuseMax reproduction, which ignores them); in a loop nest as SCALE-Sim counts them for
    the nest's dataflow (:func:`mapper.nest.systolic_cycles`). ``accounting`` is ``"physical"`` (the
    default) or ``"fusemax-artifact"`` (:mod:`sim.accounting`); ``leakage`` adds the buffer's
    leakage over the latency (physical accounting only). ``sram_model`` prices the buffer's
    geometry (default: the shipped CACTI table, :func:`mapper.sram.cacti_table`).
    """
    acct = _accounting(accounting)
    if leakage and not acct.allows_leakage:
        raise ConfigError(
            f"accounting {acct.name!r} charges no leakage (the FuseMax artifact does not); "
            "use accounting='physical' with leakage=True"
        )
    check(cascade, schedule, arch)
    workload = workload.for_cascade(cascade)
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
    one_pass = bool(cascade.iterative)
    summed = acct.summed_op_cycles_one_pass and one_pass
    buffer = acct.priced_buffer(arch.buffer)
    buf = buffer.costs(arch.word_bits, sram_model)
    scalings = constant_scalings(cascade) if acct.scaling_unpriced else {}

    # -- traffic ------------------------------------------------------------------------------------
    # -- masks: (query tile, key block) pairs a structured mask leaves empty are skipped --------------
    skip, skipping = schedule_skip(cascade, schedule, arch, full=full, tile=tile, lay=lay)
    live = {n: skip.live_fraction for n in skipping}
    moved = traffic(
        cascade, schedule, full=full, tile=tile, instances=inst, word_bytes=word, lay=lay, live=live
    )
    dram = list(moved.dram_bytes)
    nests = schedule_nests(
        cascade, schedule, arch.replace(buffer=buffer), full, sram_model=sram_model, systolic=systolic
    )
    nest_reads = sum(c.buffer_reads for _p, c in nests.values()) * inst
    nest_writes = sum(c.buffer_writes for _p, c in nests.values()) * inst
    nest_dram = sum(c.dram_words for _p, c in nests.values()) * inst * word
    for name, (prob, cost) in nests.items():
        if not cost.fits:
            raise EvaluationError(
                f"the loop nest of {name} holds {cost.buffer_words_held} words in the buffer, which has "
                f"room for {prob.buffer_capacity_words} beside what stays on chip: "
                f"{schedule.nests[name].describe()}"
            )

    # -- compute, per Einsum ----------------------------------------------------------------------
    per_einsum: dict[str, dict[str, float | str]] = {}
    comp: dict[str, float] = {}
    busy = {a.name: 0.0 for a in arch.arrays}
    useful = {a.name: 0.0 for a in arch.arrays}  # busiest unit's operations, per array
    macs_total = 0
    for name, f in facts.items():
        arr = arch.array(schedule.binding[name])
        counts = actions_at(f.counts, f.ranks, full, lay)
        unpriced_exp = acct.exp_unit_unpriced_one_pass and one_pass and "exp" in arr.units

        def pj(k: str, arr: PEArray = arr, unpriced_exp: bool = unpriced_exp) -> float:
            return 0.0 if (k == "exp" and unpriced_exp) else ENERGY_OF[k](arr, arch)

        share = live.get(name, 1.0)  # the fraction of its tiles that is computed
        priced = {k: v * share for k, v in counts.items()}  # the actions charged energy
        if acct.scaling_unpriced:
            with_scale, without = scalings[name]
            priced["mac"] -= (with_scale.at(full)["mac"] - without.at(full)["mac"]) * share
        energy = sum(priced[k] * pj(k) for k in priced) * inst
        nest = schedule.nests.get(name)
        spatial = nest.spatial if nest is not None else schedule.spatial[arr.name]
        # the output register's read and write of every reducing operation, whether the reduced
        # rank runs in time or across the array (Timeloop's and AccelForge's charge)
        rf_ops = (counts["mac"] + counts["add"] + counts["max"]) * inst * share if f.reduced else 0
        rf_pj = rf_ops * (arr.rf_read_pj + arr.rf_write_pj) * acct.rf_share(arr)
        if nest is not None:
            cyc = nests[name][1].compute_cycles
            n_tasks = inst
        else:
            cyc = einsum_cycles(f, arr, spatial, tile, systolic=systolic, summed=summed)
            cyc = (cyc + read_latency(f, cascade, facts, arch)) * share
            n_tasks = q_tiles if (not f.step and lay.step) else q_tiles * steps
        busy[arr.name] += cyc * n_tasks
        ops = fu_ops(counts, arr)
        busiest = max(ops.values(), default=0) * inst * share if isinstance(ops, dict) else 0
        useful[arr.name] += busiest
        macs_total += counts["mac"] * inst
        per_einsum[name] = {
            "unit": arr.name,
            "spatial": " x ".join(r or "-" for r in spatial),
            "cycles_per_tile": cyc,
            "busy_cycles": cyc * n_tasks,
            "spatial_utilization": busiest / (arr.pes * cyc * n_tasks) if cyc else 0.0,
            "energy_pj": energy + rf_pj,
            "macs": counts["mac"] * inst,
            "macs_executed": counts["mac"] * inst * share,
        }
        if nest is not None:
            per_einsum[name]["mapping"] = nest.describe()
            per_einsum[name]["bound_by"] = nests[name][1].bound_by
            per_einsum[name]["latency_cycles"] = nests[name][1].latency_cycles * inst
        for k, v in priced.items():
            if v:
                unit = "exp" if k == "exp" and "exp" in arr.units else "mac" if k in ("other", "exp") else k
                key = f"{arr.name}.{unit}"
                comp[key] = comp.get(key, 0.0) + v * pj(k) * inst
        if rf_pj:
            comp[f"{arr.name}.rf"] = comp.get(f"{arr.name}.rf", 0.0) + rf_pj
    buffer_reads = moved.buffer_reads + nest_reads
    buffer_writes = moved.buffer_writes + nest_writes
    comp["buffer"] = buffer_reads * buf.read_pj_per_word + buffer_writes * buf.write_pj_per_word
    total_dram = sum(dram) + nest_dram
    comp["dram"] = total_dram * 8 * arch.dram.pj_per_bit

    # -- timing -------------------------------------------------------------------------------------
    # the nests run one after the other, each as fast as its slowest of compute, DRAM and buffer
    nest_cycles = sum(c.latency_cycles for _p, c in nests.values()) * inst
    # where the time goes: the busiest array's work, DRAM (or buffer) time beyond it, the pipeline's
    # fill and drain, and the rest: arrays waiting on each other
    split = {"compute": 0.0, "memory": 0.0, "fill_drain": 0.0, "stalls": 0.0}
    for _p, c in nests.values():
        split["compute"] += c.compute_cycles * inst
        split["memory"] += (c.latency_cycles - c.compute_cycles) * inst
    timing = schedule_timing(
        cascade,
        schedule,
        arch,
        full=full,
        tile=tile,
        lay=lay,
        instances=inst,
        dram_bytes=dram,
        buffer_words=moved.buffer_words,
        nest_cycles=nest_cycles,
        live=live,
        systolic=systolic,
        summed=summed,
    )
    for ki, (tasks, kt) in enumerate(timing.kernels):
        per_unit: dict[str, float] = {}
        per_tile: dict[str, float] = {}
        for t in tasks:
            count = q_tiles if t.final else q_tiles * steps
            per_unit[t.unit] = per_unit.get(t.unit, 0.0) + t.cycles * count
            per_tile[t.unit] = per_tile.get(t.unit, 0.0) + t.cycles
        busiest = max(per_unit.values(), default=0.0)
        memory = max(0.0, min(kt.cycles, dram[ki] / bpc) - busiest)
        # one tile through every array, less the busiest array's share of it: the pipeline's depth
        depth = sum(per_tile.values()) - max(per_tile.values(), default=0.0) + sum(t.latency for t in tasks)
        rest = max(0.0, kt.cycles - busiest - memory)
        split["compute"] += min(busiest, kt.cycles)
        split["memory"] += memory
        split["fill_drain"] += min(depth, rest)
        split["stalls"] += rest - min(depth, rest)
    split["memory"] += timing.tiled_cycles - sum(kt.cycles for _t, kt in timing.kernels)
    cycles = timing.cycles
    simulated = timing.simulated_tiles
    latency_s = cycles / arch.clock_hz
    if leakage:
        comp["buffer.leakage"] = buf.leakage_mw * latency_s * 1e9  # mW x s = mJ = 1e9 pJ
    energy = sum(comp.values())
    area = arch.replace(buffer=buffer).area_um2(sram_model)
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
        buffer_traffic_bytes=(buffer_reads + buffer_writes) * word,
        buffer_reads=buffer_reads,
        buffer_writes=buffer_writes,
        utilization={a: b / cycles for a, b in busy.items()} if cycles else {a: 0.0 for a in busy},
        spatial_utilization={
            a.name: useful[a.name] / (a.pes * busy[a.name]) if busy[a.name] else 0.0 for a in arch.arrays
        },
        pe_utilization={a.name: useful[a.name] / (a.pes * cycles) if cycles else 0.0 for a in arch.arrays},
        fusion=schedule.fusion,
        latency_breakdown=split,
        tiles_skipped=skip.skipped,
        tiles_total=skip.total,
        macs_executed=sum(float(e["macs_executed"]) for e in per_einsum.values()),
        busy_cycles=busy,
        per_einsum=per_einsum,
        per_component_pj=comp,
        memory_bound_fraction=min(1.0, (total_dram / bpc) / cycles) if cycles else 0.0,
        macs=macs_total,
        simulated_tiles=simulated,
        interleave=schedule.interleave,
        accounting=acct.name,
        leakage=leakage,
        area_mm2=sum(area.values()) / 1e6,
        per_component_area_mm2={k: v / 1e6 for k, v in area.items()},
        score_rows=schedule.score_rows,
    )
    _self_check(report, cascade, full, inst, word, lay, {a.name: a.pes for a in arch.arrays}, useful)
    return report


def _self_check(
    r: Report,
    cascade: einsum.Cascade,
    full: Mapping[str, int],
    inst: int,
    word: int,
    lay: Layout,
    pes: Mapping[str, int],
    useful: Mapping[str, float],
) -> None:
    problems = []
    for a, ops in useful.items():
        # an array cannot do more than one operation per PE and unit per cycle
        if r.busy_cycles[a] * pes[a] < ops * (1 - 1e-12):
            problems.append(
                f"array {a} is busy {r.busy_cycles[a]} cycles for {ops} operations on its busiest "
                f"unit, fewer than operations / PEs = {ops / pes[a]}"
            )
    parts = sum(r.latency_breakdown.values())
    if r.latency_breakdown and (
        abs(parts - r.latency_cycles) > 1e-6 * max(1.0, r.latency_cycles)
        or min(r.latency_breakdown.values()) < 0
    ):
        problems.append(
            f"latency breakdown {dict(r.latency_breakdown)} does not add up to {r.latency_cycles} cycles"
        )
    for name, table in (("spatial", r.spatial_utilization), ("PE", r.pe_utilization)):
        for a, u in table.items():
            if not 0 <= u <= 1 + 1e-9:
                problems.append(f"{name} utilization of {a} = {u} (must be in [0, 1])")
    sizes = einsum.tensor_sizes(cascade)
    read = read_tensors(cascade)
    inputs = sum(sizes[t.name].at(full) for t in cascade.inputs if t.name in read) * inst
    outputs = sum(sizes[t].at(full) for t in cascade.outputs) * inst
    if r.traffic_bytes < (inputs + outputs) * word * (1 - 1e-12):
        problems.append(
            f"DRAM traffic {r.traffic_bytes} bytes is below the compulsory {(inputs + outputs) * word} "
            "(every input read once, every output written once)"
        )
    if r.buffer_reads < inputs * (1 - 1e-12) or r.buffer_writes < (inputs + outputs) * (1 - 1e-12):
        problems.append(
            f"buffer reads {r.buffer_reads} / writes {r.buffer_writes} are below the compulsory "
            f"{inputs} / {inputs + outputs} words"
        )
    total = sum(r.per_component_pj.values())
    if abs(total - r.energy_pj) > 1e-9 * max(1.0, abs(total)):
        problems.append(f"energy {r.energy_pj} pJ is not the sum of its components {total} pJ")
    if not r.area_mm2 > 0:
        problems.append(f"area {r.area_mm2} mm^2 must be positive")
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
    ranks = {f.name: f.ranks for f in einsum_facts(cascade)}
    expected = (
        sum(
            actions_at(c, ranks[e.output], full, lay)["mac"]
            for e, c in zip(cascade.einsums, einsum.op_counts(cascade), strict=True)
            if e.output in ranks
        )
        * inst
    )
    if not 0 <= r.macs_executed <= r.macs * (1 + 1e-12):
        problems.append(f"MACs executed {r.macs_executed} must lie in [0, {r.macs}] (the cascade's count)")
    if expected != r.macs:
        problems.append(f"MACs {r.macs} differ from the cascade's operation count {expected}")
    if problems:
        raise EvaluationError("report failed its self-checks: " + "; ".join(problems))


def gemm_report(
    m: int,
    k: int,
    n: int,
    arch: ArchSpec,
    name: str = "gemm",
    *,
    accounting: str | Accounting = "physical",
    sram_model: SRAMModel | None = None,
) -> dict[str, float]:
    """One GEMM (``m x k`` times ``k x n``) on the architecture's 2D array, output stationary:
    the cycles, DRAM bytes and energy of the end-to-end layer's projections and FFN.

    Physical accounting charges every PE's register file and the buffer: A and B are filled from
    DRAM once, each fold of the output streams ``k`` columns of A and rows of B out of the buffer,
    and the output is written once. The FuseMax artifact's GEMMs (``matmul.py``) bypass the buffer
    (``check_llb`` is false) and charge one register-file instance."""
    acct = _accounting(accounting)
    arr = next((a for a in arch.arrays if a.is_2d), arch.arrays[0])
    rows, cols = arr.rows, arr.cols
    folds_m, folds_n = -(-m // cols), -(-n // rows)
    cycles = folds_m * folds_n * k
    word = arch.word_bytes
    traffic = (m * k + k * n + m * n) * word
    bpc = arch.dram.bandwidth_bytes_per_s / arch.clock_hz
    latency = max(cycles, traffic / bpc)
    macs = m * k * n
    e = arch.energy
    rf = (arr.rf_read_pj + arr.rf_write_pj) * acct.rf_share(arr)
    buffer_pj = 0.0
    if not acct.gemms_bypass_buffer:
        buf = acct.priced_buffer(arch.buffer).costs(arch.word_bits, sram_model)
        reads = k * (m * folds_n + n * folds_m)
        writes = m * k + k * n + m * n
        buffer_pj = reads * buf.read_pj_per_word + writes * buf.write_pj_per_word
    energy = macs * (e.mac_pj + rf) + buffer_pj + traffic * 8 * arch.dram.pj_per_bit
    return {
        "name": name,
        "cycles": latency,
        "latency_s": latency / arch.clock_hz,
        "traffic_bytes": traffic,
        "energy_pj": energy,
        "macs": macs,
        "busy_cycles": cycles,
        "memory_cycles": traffic / bpc,
    }
