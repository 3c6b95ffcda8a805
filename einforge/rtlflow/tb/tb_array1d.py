"""Testbench of ``rtl.Array1D``: the 2D array's side (LM, SLD, SLNV) is played by random tiles."""

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
from rtl.array1d import Array1DCycles


def make_blocks(rng: random.Random, p: dict[str, Any], fmt: Fixed, count: int) -> list[dict[str, Any]]:
    """Query blocks of 1-4 tiles: ordinary scores, saturating extremes, all-equal; expected outputs."""
    nrng = np.random.default_rng(rng.getrandbits(32))
    n, f = p["pes"], p["f"]
    blocks = []
    for bi in range(count):
        tiles, state, rms, av = [], None, [], None
        ntiles = rng.randint(1, 4)
        for t in range(ntiles):
            # every run of 3 or more blocks has a saturating and an all-equal tile, at fixed places
            kind = {1: "extreme", 2: "equal"}.get(bi) if count > 2 and t == 0 else None
            kind = kind or rng.choices(["normal", "extreme", "equal"], weights=[8, 1, 1])[0]
            if kind == "normal":
                lm = fmt.quantize(nrng.normal(0, 3, n))
                sld = fmt.quantize(nrng.uniform(0, 4, n))
                slnv = fmt.quantize(nrng.normal(0, 2, (f, n)))
            elif kind == "extreme":
                pick = [fmt.min_raw, fmt.max_raw, 0, 1, -1]
                lm, sld, slnv = (nrng.choice(pick, size=s) for s in (n, n, (f, n)))
            else:
                val = int(fmt.quantize(rng.uniform(-2, 2)))
                lm, sld, slnv = (np.full(s, val, np.int64) for s in (n, n, (f, n)))
            lm, sld, slnv = (np.asarray(a, np.int64) for a in (lm, sld, slnv))
            rm, state, av = fixed.tile1d(lm, sld, slnv, state, fmt, degree=p["degree"], last=t == ntiles - 1)
            tiles.append({"lm": lm, "sl": [sld, *slnv], "last": t == ntiles - 1})
            rms.append(list(rm))
        assert av is not None
        blocks.append({"tiles": tiles, "rm": rms, "av": [list(row) for row in av]})
    return blocks


async def run_phase(
    dut: Any,
    p: dict[str, Any],
    fmt: Fixed,
    blocks: list[dict[str, Any]],
    rng: random.Random,
    gap: float,
    backpressure: float,
    board: Scoreboard,
) -> int:
    w, n = fmt.width, p["pes"]
    lm = Driver(dut, "lm_in", rng, gap)
    sl = Driver(dut, "sl_in", rng, gap)
    rm = Monitor(dut, "rm_out", rng, backpressure)
    av = Monitor(dut, "av_out", rng, backpressure)
    await reset(dut, [lm, sl, rm, av])
    exp_rm, exp_av = [], []
    for bi, b in enumerate(blocks):
        for ti, t in enumerate(b["tiles"]):
            lm.queue.append(pack(t["lm"], w) | int(t["last"]) << (n * w))
            sl.queue.extend(pack(v, w) for v in t["sl"])
            exp_rm.append((f"block {bi} tile {ti} RM", b["rm"][ti]))
        exp_av.extend((f"block {bi} AV[f={j}]", row) for j, row in enumerate(b["av"]))
    first_in, last_out, seen = [None], [0], {"rm_out": 0, "av_out": 0}

    def on_transfer(name: str, word: int | None, cycle: int) -> None:
        if word is None:
            if first_in[0] is None:
                first_in[0] = cycle
            return
        last_out[0] = cycle
        what, expected = (exp_rm if name == "rm_out" else exp_av)[seen[name]]
        board.compare(what, unpack(word, w, n), expected)
        seen[name] += 1

    budget = 200 + 20 * sum(
        Array1DCycles(n, p["f"], p["degree"]).block_interval(len(b["tiles"])) for b in blocks
    )
    await clock_loop(
        dut,
        [lm, sl],
        [rm, av],
        on_transfer,
        lambda: seen["av_out"] >= len(exp_av) and seen["rm_out"] >= len(exp_rm),
        budget,
    )
    return last_out[0] - (first_in[0] or 0) + 1


@cocotb.test()
async def array1d(dut: Any) -> None:
    p = config()["params"]
    fmt = Fixed(p["width"], p["frac"])
    model = Array1DCycles(p["pes"], p["f"], p["degree"])
    await run_test(
        dut,
        lambda rng, count, timed: make_blocks(rng, p, fmt, count),
        lambda items, rng, gap, bp, board: run_phase(dut, p, fmt, items, rng, gap, bp, board),
        lambda timed: model.cycles([len(b["tiles"]) for b in timed]),
        ALL,  # every item of the run back to back, its cycles against the model
        "query blocks",
    )
