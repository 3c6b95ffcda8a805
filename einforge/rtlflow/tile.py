"""The attention tile end to end: RTL on a simulator against the golden model and the spatial model.

``run_attention`` builds ``rtl.AttentionTile`` from a ``fusemax_tile`` ArchSpec, runs a whole head
through the cocotb testbench (DRAM with random latency and back-pressure), compares the output bit
for bit with ``golden.fixed.attention_1pass`` and the measured cycles, per Einsum and in total,
with what ``sim.evaluate`` predicts for the same ArchSpec and schedule::

    >>> r = run_attention(array=4, seq=64, e=8, f=8, seed=1)      # doctest: +SKIP
    >>> r["mismatches"], r["measured_cycles"], r["model_cycles"]   # doctest: +SKIP
    (0, 5302, 5304.0)
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import einsum
import sim
from einsum import Fixed
from mapper import arch as archs
from mapper.schedule import Schedule
from mapper.search import SearchOptions, search
from rtl import runner
from rtl.tile import TASKS, TASKS_2D, AttentionTile
from sim.workloads import Workload

__all__ = ["TOLERANCE", "buffer_for", "model_attention", "run_attention", "tile_arch"]

#: How far the model may be from the measured cycles (a fraction of the measured).
TOLERANCE = 0.01
CASCADE = "attention_1pass"


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def tile_arch(
    *,
    array: int,
    reduction: str = "chain",
    dram_bandwidth: float = 0.8,
    dram_latency: int = 20,
    dram_jitter: int = 10,
    buffer_bytes: int = 256 * archs.KIB,
    div_latency: int = 0,
) -> archs.ArchSpec:
    """The ``fusemax_tile`` ArchSpec of a run: the DRAM's mean bandwidth (beats a cycle) and mean
    latency (``dram_latency + dram_jitter / 2``) are what the testbench's DRAM model draws around."""
    return archs.fusemax_tile(
        array_dim=array,
        dram_beats_per_cycle=dram_bandwidth,
        dram_latency_cycles=dram_latency + dram_jitter / 2,
        row_reduction=reduction,
        buffer_bytes=buffer_bytes,
        div_latency=div_latency,
    )


def buffer_for(array: int, m: int, e: int, f: int, word_bytes: int = 2) -> int:
    """The smallest power-of-two buffer (16 KiB at least) that holds K, V and two query tiles."""
    need = ((m // array) * (e + f) + 2 * e) * array * word_bytes
    size = 16 * archs.KIB
    while size < need:
        size *= 2
    return size


def _schedule(arch: archs.ArchSpec, w: Workload, interleave: bool) -> Schedule:
    """The schedule the tile runs: the mapper's fused 1-pass schedule with the tile's binding
    (:data:`rtl.tile.TASKS_2D` on the 2D array, the rest on the 1D array: the mapper would move LM
    and SLD to the 1D array where the 2D array is the busier, which the tile does not build) and
    tiling (the 2D array's rows over M0, its columns over P), every query tile sharing one pass
    over K and V (they stay in the buffer)."""
    c = einsum.library.get(CASCADE)
    bind = {t: "2d" if t in TASKS_2D else "1d" for t in TASKS}
    s = search(c, arch, SearchOptions(sizes=w.sizes, interleave=interleave, fusion="fused", bind=bind))
    a2 = arch.array("2d")
    p1 = w.sizes["P"] // a2.cols
    return dataclasses.replace(s, tile={"P": a2.cols, "M0": a2.rows}, query_tiles_on_chip=(p1,))


def model_attention(
    arch: archs.ArchSpec, *, p: int, m: int, e: int, f: int, interleave: bool = True
) -> tuple[sim.Report, Schedule]:
    """``sim.evaluate`` of the tile's schedule on ``arch`` for one head."""
    w = Workload(model="custom", seq=p, batch=1, heads=1, rank_sizes=(("P", p), ("M", m), ("E", e), ("F", f)))
    s = _schedule(arch, w, interleave)
    return sim.evaluate(einsum.library.get(CASCADE), s, arch, w), s


def run_attention(
    *,
    array: int = 8,
    seq: int = 256,
    p: int | None = None,
    m: int | None = None,
    e: int = 16,
    f: int = 16,
    interleave: bool = True,
    reduction: str = "chain",
    dram_bandwidth: float = 0.8,
    dram_latency: int = 20,
    dram_jitter: int = 10,
    div_latency: int = 0,
    seed: int = 1,
    sim_name: str = "verilator",
    waves: str | None = None,
    fmt: Fixed | None = None,
    max_seq: int | None = None,
    quiet: bool = True,
) -> dict[str, Any]:
    """Run one head on the tile RTL and compare it with the golden model and the spatial model.

    ``max_seq`` builds the tile for up to that many queries and keys (default: this run's), so
    runs of several sequence lengths share one build."""
    start = time.perf_counter()
    fmt = fmt or Fixed(16, 8)
    p = seq if p is None else p
    m = seq if m is None else m
    if not 0 < dram_bandwidth <= 1:
        raise runner.SimulatorError(
            f"rtl run attention: --dram-bandwidth must be in (0, 1] beats a cycle, got {dram_bandwidth}"
        )
    if dram_latency < 1 or dram_jitter < 0:
        raise runner.SimulatorError(
            "rtl run attention: --dram-latency must be >= 1 and --dram-jitter >= 0 cycles; "
            f"got {dram_latency}, {dram_jitter}"
        )
    if waves is not None and not waves.endswith((".vcd", ".fst")):
        raise runner.SimulatorError(
            f"rtl run attention: --waves must name a .vcd or .fst file, got {waves!r}"
        )
    fst = waves is not None and waves.endswith(".fst")
    if fst and not Path("/usr/include/lz4.h").exists():
        raise runner.SimulatorError(
            "rtl run attention: Verilator writes FST only with liblz4's headers "
            "(apt-get install liblz4-dev); "
            "give a .vcd path instead (GTKWave and Surfer read both)"
        )
    top_p, top_m = max(p, max_seq or 0), max(m, max_seq or 0)
    arch = tile_arch(array=array, reduction=reduction, dram_bandwidth=dram_bandwidth,
                     dram_latency=dram_latency, dram_jitter=dram_jitter, div_latency=div_latency,
                     buffer_bytes=buffer_for(array, top_m, e, f, (fmt.width + 7) // 8))  # fmt: skip
    # the tile checks its own parameters (before the model's search and the long build)
    _say(f"rtl run attention: a {array}x{array} tile, P = {p}, M = {m}, E = {e}, F = {f}", quiet)
    tile = AttentionTile.from_arch(arch, p=top_p, m=top_m, e=e, f=f, fmt=fmt, interleave=interleave)
    try:
        tile.check_run(p, m)  # this run's sizes, before the model's search and the long build
        report, schedule = model_attention(arch, p=p, m=m, e=e, f=f, interleave=interleave)
    except Exception:
        tile._MustUse__silence = True
        raise
    if tile.lookahead != (schedule.lookahead if interleave else 0):  # the tile runs the schedule's
        tile._MustUse__silence = True
        tile = AttentionTile.from_arch(
            arch, p=top_p, m=top_m, e=e, f=f, fmt=fmt, interleave=interleave, lookahead=schedule.lookahead
        )
    text = _verilog(tile, quiet)
    _say(f"rtl run attention: building for {sim_name} (cached after the first time)", quiet)
    t_build = time.perf_counter()
    model = runner.build(text, "attention", sim_name, waves=waves is not None, public="ports", fst=fst)
    build_s = time.perf_counter() - t_build
    with tempfile.TemporaryDirectory(prefix="einforge-tile-") as tmp:
        result_file = Path(tmp) / "result.json"
        log = model.build_dir / f"attention-{os.getpid()}.log"
        cfg = {
            "params": {
                "rows": array, "p": p, "m": m, "e": e, "f": f, "width": fmt.width, "frac": fmt.frac,
                "degree": tile.degree, "addr_width": tile.addr_width,
            },
            "seed": seed,
            "accept": dram_bandwidth,
            "latency": dram_latency,
            "jitter": dram_jitter,
            "result": str(result_file),
        }  # fmt: skip
        _say(f"rtl run attention: simulating a whole head, seed {seed}", quiet)
        t_sim = time.perf_counter()
        failed = model.test(
            "einforge.rtlflow.tb.tb_attention",
            env={"EINFORGE_TB": json.dumps(cfg)},
            log_file=log,
            results_name=f"results-{os.getpid()}.xml",
        )
        sim_s = time.perf_counter() - t_sim
        if not result_file.exists():
            tail = log.read_text()[-3000:] if log.exists() else ""
            raise runner.SimulatorError(
                f"attention tile on {sim_name}: the testbench stopped before reporting (seed {seed}); "
                f"log {log}:\n{tail}"
            )
        res = json.loads(result_file.read_text())
    measured = res["cycles"]
    modelled = report.latency_cycles
    per_einsum = {
        t: {"measured_busy_cycles": res["busy"][t], "model_busy_cycles": report.per_einsum[t]["busy_cycles"]}
        for t in TASKS
    }
    error = (modelled - measured) / measured
    out: dict[str, Any] = {
        "array": array,
        "p": p,
        "m": m,
        "e": e,
        "f": f,
        "interleave": interleave,
        "reduction": reduction,
        "sim": sim_name,
        "seed": seed,
        "dram": {"bandwidth_beats_per_cycle": dram_bandwidth, "latency": dram_latency, "jitter": dram_jitter},
        "mismatches": res["mismatches"],
        "compared_beats": res["compared"],
        "first_mismatches": res["first_mismatches"],
        "measured_cycles": measured,
        "model_cycles": modelled,
        "model_error": error,
        "within_tolerance": abs(error) <= TOLERANCE,
        "per_einsum": per_einsum,
        "explanation": _explain(per_einsum, error, measured),
        "build_seconds": round(build_s, 2),
        "simulate_seconds": round(sim_s, 2),
    }
    out["passed"] = failed == 0 and res["mismatches"] == 0 and out["within_tolerance"]
    if waves is not None:
        made = model.wave_file()
        if made is not None:
            Path(waves).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(made, waves)
            out["waves"] = waves
    out["seconds"] = round(time.perf_counter() - start, 2)
    return out


def _generator_digest() -> str:
    """The generators' sources as this process loaded them (what the tile is made of)."""
    import hashlib

    import amaranth

    import rtl

    here = Path(rtl.__file__).parent
    key = hashlib.sha1(amaranth.__version__.encode())
    for name in ("tile.py", "_arith.py", "_params.py", "runner.py"):
        key.update((here / name).read_bytes())
    return key.hexdigest()


_GENERATORS = _generator_digest()


def _verilog(tile: AttentionTile, quiet: bool) -> str:
    """The tile's Verilog, generated once per set of parameters and version of the generators
    (cached beside the builds: elaborating a 16 x 16 tile takes the better part of a minute)."""
    import hashlib

    key = hashlib.sha1(_GENERATORS.encode())
    key.update(repr(sorted((k, repr(v)) for k, v in tile._params.items())).encode())  # every parameter
    path = runner.cache_root() / "verilog" / f"attention-{key.hexdigest()[:16]}.v"
    if path.exists():
        tile._MustUse__silence = True  # type: ignore[attr-defined]
        return path.read_text()
    _say("rtl run attention: generating Verilog", quiet)
    text = runner.to_verilog(tile, "attention", optimize=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)
    return text


def _explain(per_einsum: dict[str, dict[str, float]], error: float, measured: int) -> str:
    """Why the model and the RTL differ, where they do: the Einsums whose busy cycles differ, or
    else the waiting that the totals leave (the DRAM's luck against its mean)."""
    off = [t for t, v in per_einsum.items() if v["measured_busy_cycles"] != v["model_busy_cycles"]]
    if off:
        return "busy cycles differ for " + ", ".join(
            f"{t} (measured {per_einsum[t]['measured_busy_cycles']}, "
            f"model {per_einsum[t]['model_busy_cycles']:g})"
            for t in off
        )
    if abs(error) <= TOLERANCE:
        return "every Einsum's busy cycles agree; the totals agree within the tolerance"
    return (
        f"every Einsum's busy cycles agree, so the {abs(error) * measured:.0f} cycles between the totals "
        f"are waiting on the DRAM: the model charges each transfer the DRAM's mean latency and "
        f"bandwidth, while the DRAM answers in order (a transfer's last beat comes later than the "
        f"mean latency) and takes beats at random (the first transfer and the last output's drain "
        f"stretch); they are a large share of a run of {measured} cycles"
    )
