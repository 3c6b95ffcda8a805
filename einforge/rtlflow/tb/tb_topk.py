"""Testbench of ``rtl.TopK``: random vectors with ties, extremes and odd lengths; golden indices."""

from __future__ import annotations

import random
from typing import Any

import cocotb

from einforge.rtlflow.tb.streams import (
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
from golden import fixed
from rtl.topk import topk_cycles, topk_trace


def make_vectors(
    rng: random.Random, p: dict[str, Any], count: int, vary: bool
) -> list[tuple[list[int], int]]:
    n_max, w = p["n"], p["width"]
    lo, hi = -(1 << (w - 1)), (1 << (w - 1)) - 1
    vectors = []
    # corner cases first in every run of 4 or more: all equal with k = 1 and k = n, saturating values
    corners = [("equal", 1), ("equal", -1), ("extreme", -1), ("sorted", 1)] if count >= 4 else []
    for i in range(count):
        n = rng.randint(1, n_max) if vary else n_max
        kind, corner_k = corners[i] if i < len(corners) else (None, None)
        kind = kind or rng.choices(["wide", "ties", "equal", "extreme", "sorted"], weights=[4, 4, 1, 1, 1])[0]
        if kind == "wide":
            scores = [rng.randint(lo, hi) for _ in range(n)]
        elif kind == "ties":
            scores = [rng.randint(-3, 3) for _ in range(n)]
        elif kind == "equal":
            scores = [rng.randint(lo, hi)] * n
        elif kind == "extreme":
            scores = [rng.choice([lo, hi, lo + 1, hi - 1]) for _ in range(n)]
        else:
            scores = sorted(rng.randint(lo, hi) for _ in range(n))
            if rng.random() < 0.5:
                scores.reverse()
        if p.get("k") is not None and not vary:
            k = p["k"]
        elif corner_k is not None:
            k = corner_k if corner_k > 0 else n
        else:
            k = rng.choice([1, n, rng.randint(1, n)])
        vectors.append((scores, k))
    return vectors


async def run_phase(
    dut: Any,
    p: dict[str, Any],
    vectors: list[tuple[list[int], int]],
    rng: random.Random,
    gap: float,
    backpressure: float,
    board: Scoreboard,
) -> int:
    n_max, par, w = p["n"], p["parallelism"], p["width"]
    cbits, kbits, ibits = par.bit_length(), n_max.bit_length(), (max(n_max, 2) - 1).bit_length()
    drv = Driver(dut, "i", rng, gap)
    mon = Monitor(dut, "o", rng, backpressure)
    await reset(dut, [drv, mon])
    expected = []
    for vi, (scores, k) in enumerate(vectors):
        want = [int(i) for i in fixed.topk_indices(scores, k)]
        model = list(topk_trace(scores, k, par).indices)
        board.compare(f"vector {vi}: the cycle model's own indices vs golden", model, want)
        expected.append(want)
        rows = [scores[r : r + par] for r in range(0, len(scores), par)]
        for r, row in enumerate(rows):
            last = r == len(rows) - 1
            word = pack(row + [0] * (par - len(row)), w)
            word |= len(row) << (par * w) | k << (par * w + cbits) | int(last) << (par * w + cbits + kbits)
            drv.queue.append(word)
    first_in, last_out, got, done = [None], [0], [[]], [0]

    def on_transfer(name: str, word: int | None, cycle: int) -> None:
        if word is None:
            if first_in[0] is None:
                first_in[0] = cycle
            return
        last_out[0] = cycle
        count = (word >> (par * ibits)) & ((1 << cbits) - 1)
        last = (word >> (par * ibits + cbits)) & 1
        got[0].extend(unpack(word, ibits, count, signed=False))
        if last:
            vi = done[0]
            board.compare(f"vector {vi} (n={len(vectors[vi][0])}, k={vectors[vi][1]})", got[0], expected[vi])
            got[0], done[0] = [], vi + 1

    budget = 500 + 20 * topk_cycles(vectors, par)
    await clock_loop(dut, [drv], [mon], on_transfer, lambda: done[0] >= len(vectors), budget)
    return last_out[0] - (first_in[0] or 0) + 1


#: Vectors of the back-to-back run whose cycles are checked against the model: the 4 corner
#: vectors, then random ones (wide values, ties, sorted), all with the model's data-dependent rounds.
TIMED = 24


@cocotb.test()
async def topk(dut: Any) -> None:
    p = config()["params"]
    await run_test(
        dut,
        lambda rng, count, timed: make_vectors(rng, p, count, vary=not timed and p.get("k") is None),
        lambda items, rng, gap, bp, board: run_phase(dut, p, items, rng, gap, bp, board),
        lambda timed: topk_cycles(timed, p["parallelism"]),
        TIMED,
        "vectors",
    )
