"""Testbench of ``rtl.Array2D``: the 1D array's side of the protocol is played by the model."""

from __future__ import annotations

import random
from typing import Any

import cocotb
import numpy as np

from einforge.rtlflow.tb.streams import (
    ALL,
    Driver,
    Monitor,
    Scoreboard,
    clock_loop,
    config,
    pack,
    reset,
    run_test,
    unpack,
)
from einsum import Fixed
from golden import fixed
from rtl.array2d import Array2DCycles


def make_tiles(rng: random.Random, p: dict[str, Any], fmt: Fixed, count: int) -> list[dict[str, Any]]:
    """Random tiles: ordinary values, saturating extremes, all-equal; running or arbitrary RM."""
    nrng = np.random.default_rng(rng.getrandbits(32))
    rows, cols, e, f = p["rows"], p["cols"], p["e"], p["f"]
    tiles, running = [], None
    for i in range(count):
        # every run of 3 or more tiles has a saturating and an all-equal tile, at fixed places
        kind = {1: "extreme", 2: "equal"}.get(i) if count > 2 else None
        kind = kind or rng.choices(["normal", "extreme", "equal"], weights=[8, 1, 1])[0]
        if kind == "normal":
            scale = rng.choice([0.25, 0.5, 1.0, 2.0])
            q, k, v = (fmt.quantize(nrng.normal(0, scale, size=s)) for s in ((cols, e), (rows, e), (rows, f)))
        elif kind == "extreme":
            q, k, v = (
                nrng.choice([fmt.min_raw, fmt.max_raw, 0, 1, -1], size=s)
                for s in ((cols, e), (rows, e), (rows, f))
            )
        else:
            val = int(fmt.quantize(rng.uniform(-2, 2)))
            q, k, v = (np.full(s, val, np.int64) for s in ((cols, e), (rows, e), (rows, f)))
        q, k, v = (np.asarray(a, np.int64) for a in (q, k, v))
        lm = fixed.tile2d(q, k, v, np.zeros(cols, np.int64), fmt, degree=p["degree"])["LM"]
        if i % 4 == 0 or running is None:
            running = np.full(cols, fmt.min_raw, np.int64)
        if rng.random() < 0.15:  # a partner that sends an arbitrary max: exercises exp's clamp at 0
            rm = nrng.integers(fmt.min_raw, fmt.max_raw + 1, size=cols)
        else:
            rm = np.maximum(running, lm)
            running = rm
        out = fixed.tile2d(q, k, v, rm, fmt, degree=p["degree"])
        tiles.append(
            {
                "q": q,
                "k": k,
                "v": v,
                "rm": rm,
                "lm": lm,
                "o": [list(out["SLD"])] + [list(row) for row in out["SLNV"]],
            }
        )
    return tiles


async def run_phase(
    dut: Any,
    p: dict[str, Any],
    fmt: Fixed,
    tiles: list[dict[str, Any]],
    rng: random.Random,
    gap: float,
    backpressure: float,
    board: Scoreboard,
) -> int:
    w, rows, cols = fmt.width, p["rows"], p["cols"]
    qk = Driver(dut, "qk_in", rng, gap)
    rm = Driver(dut, "rm_in", rng, gap)
    vin = Driver(dut, "v_in", rng, gap)
    lm = Monitor(dut, "lm_out", rng, backpressure)
    out = Monitor(dut, "o", rng, backpressure)
    await reset(dut, [qk, rm, vin, lm, out])
    for t in tiles:
        for e in range(p["e"]):
            qk.queue.append(pack(t["k"][:, e], w) | pack(t["q"][:, e], w) << (rows * w))
        for f in range(p["f"]):
            vin.queue.append(pack(t["v"][:, f], w))
    seen = {"lm_out": 0, "o": 0}
    first_in, last_out = [None], [0]

    def on_transfer(name: str, word: int | None, cycle: int) -> None:
        if word is None:
            if first_in[0] is None:
                first_in[0] = cycle
            return
        last_out[0] = cycle
        if name == "lm_out":
            i = seen["lm_out"]
            board.compare(f"tile {i} LM", unpack(word, w, cols), tiles[i]["lm"])
            rm.queue.append(pack(tiles[i]["rm"], w))
        else:
            i, j = divmod(seen["o"], p["f"] + 1)
            what = "SLD" if j == 0 else f"SLNV[f={j - 1}]"
            board.compare(f"tile {i} {what}", unpack(word, w, cols), tiles[i]["o"][j])
        seen[name] += 1

    total_o = len(tiles) * (p["f"] + 1)
    await clock_loop(
        dut,
        [qk, rm, vin],
        [lm, out],
        on_transfer,
        lambda: seen["o"] >= total_o and seen["lm_out"] >= len(tiles),
        max_cycles=200
        + 20 * len(tiles) * Array2DCycles(rows, cols, p["e"], p["f"], p["degree"], p["reduction"]).latency,
    )
    return last_out[0] - (first_in[0] or 0) + 1


@cocotb.test()
async def array2d(dut: Any) -> None:
    p = config()["params"]
    fmt = Fixed(p["width"], p["frac"])
    model = Array2DCycles(p["rows"], p["cols"], p["e"], p["f"], p["degree"], p["reduction"])
    await run_test(
        dut,
        lambda rng, count, timed: make_tiles(rng, p, fmt, count),
        lambda items, rng, gap, bp, board: run_phase(dut, p, fmt, items, rng, gap, bp, board),
        lambda timed: model.cycles(len(timed)),
        ALL,  # every item of the run back to back, its cycles against the model
        "back-to-back tiles",
    )
