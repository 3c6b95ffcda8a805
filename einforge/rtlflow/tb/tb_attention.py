"""Testbench of ``rtl.AttentionTile``: a whole head through a DRAM model with random latency and
back-pressure, the output compared bit for bit with ``golden.fixed.attention_1pass``.

The DRAM model serves the tile's word-addressed beats (``rtl.tile.DramLayout``): it takes a read
request in a cycle with probability ``accept`` (back-pressure), answers each one ``latency +
U{0..jitter}`` cycles later, in order, one beat a cycle at most, and takes a written beat in a
cycle with probability ``accept``. So its mean bandwidth is ``accept`` beats a cycle and its
mean latency ``latency + jitter / 2``: the ArchSpec the simulator is given says the same. While
nothing is in flight the testbench waits for the tile's next request without stepping the clock
from Python (the run's cycles are the tile's own ``cycles`` counter).
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import Edge, FallingEdge, First, ReadOnly, RisingEdge

from einforge.rtlflow.tb.streams import config, pack, unpack, write_result
from einsum import Fixed
from golden import fixed
from rtl.tile import TASKS


def head_data(p: dict[str, Any], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw Q, K, V for one head: normal values, with one query row and one key row at the
    format's extremes (saturating products and scores) and one all-equal key tile."""
    fmt = Fixed(p["width"], p["frac"])
    rng = np.random.default_rng(seed)
    q = fmt.quantize(rng.normal(0, 1.0, (p["p"], p["e"])))
    k = fmt.quantize(rng.normal(0, 1.0, (p["m"], p["e"])))
    v = fmt.quantize(rng.normal(0, 2.0, (p["m"], p["f"])))
    q[1] = rng.choice([fmt.min_raw, fmt.max_raw], p["e"])
    k[2] = rng.choice([fmt.min_raw, fmt.max_raw], p["e"])
    rows = p["rows"]
    k[rows : 2 * rows] = k[rows]
    return q.astype(np.int64), k.astype(np.int64), v.astype(np.int64)


def dram_image(p: dict[str, Any], q: np.ndarray, k: np.ndarray, v: np.ndarray) -> dict[int, int]:
    w, r, e, f = p["width"], p["rows"], p["e"], p["f"]
    p1, m1 = p["p"] // r, p["m"] // r
    k_base = p1 * e
    v_base = k_base + m1 * e
    image = {}
    for t in range(p1):
        for j in range(e):
            image[t * e + j] = pack(q[t * r : (t + 1) * r, j], w)
    for t in range(m1):
        for j in range(e):
            image[k_base + t * e + j] = pack(k[t * r : (t + 1) * r, j], w)
        for j in range(f):
            image[v_base + t * f + j] = pack(v[t * r : (t + 1) * r, j], w)
    return image


@cocotb.test()
async def attention_head(dut: Any) -> None:
    cfg = config()
    p = cfg["params"]
    rng = random.Random(cfg["seed"])
    fmt = Fixed(p["width"], p["frac"])
    w, r, e, f = p["width"], p["rows"], p["e"], p["f"]
    p1, m1 = p["p"] // r, p["m"] // r
    av_base = p1 * e + m1 * (e + f)
    q, k, v = head_data(p, cfg["seed"])
    image = dram_image(p, q, k, v)
    accept, latency, jitter = cfg["accept"], cfg["latency"], cfg["jitter"]

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.start.value = 0
    dut.p_tiles.value = 1
    dut.m_tiles.value = 2
    dut.rd_req__ready.value = 0
    dut.rd_resp__valid.value = 0
    dut.rd_resp__payload.value = 0
    dut.wr__ready.value = 0
    for _ in range(2):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    await FallingEdge(dut.clk)
    dut.p_tiles.value = p1
    dut.m_tiles.value = m1
    dut.start.value = 1
    await FallingEdge(dut.clk)
    dut.start.value = 0

    pending: deque[tuple[int, int]] = deque()  # (cycle due, address) in request order
    written: dict[int, int] = {}
    last_due = -1
    limit = cfg.get("max_cycles", 50_000_000)
    while True:  # one cycle per pass: drive at the falling edge, sample once the logic settles
        if int(dut.done.value):
            break
        now = int(dut.cycles.value)
        if now > limit:
            raise AssertionError(f"timeout: {limit} cycles without finishing")
        if not pending and not int(dut.rd_req__valid.value) and not int(dut.wr__valid.value):
            # nothing in flight: sleep until the tile asks for something (or finishes)
            dut.rd_req__ready.value = 0
            dut.wr__ready.value = 0
            dut.rd_resp__valid.value = 0
            await First(Edge(dut.rd_req__valid), Edge(dut.wr__valid), Edge(dut.done))
            await FallingEdge(dut.clk)
            continue
        req_ready = rng.random() < accept
        wr_ready = rng.random() < accept
        dut.rd_req__ready.value = int(req_ready)
        dut.wr__ready.value = int(wr_ready)
        presenting = bool(pending) and pending[0][0] <= now
        if presenting:
            dut.rd_resp__payload.value = image[pending[0][1]]
        dut.rd_resp__valid.value = int(presenting)
        await ReadOnly()
        if presenting:  # the tile always takes an answer
            pending.popleft()
        if req_ready and int(dut.rd_req__valid.value):
            addr = int(dut.rd_req__payload.value)
            if addr not in image:
                raise AssertionError(f"cycle {now}: read of beat {addr}, outside Q, K and V")
            due = max(now + latency + rng.randint(0, jitter), last_due + 1)
            last_due = due
            pending.append((due, addr))
        if wr_ready and int(dut.wr__valid.value):
            word = int(dut.wr__payload.value)
            addr = word & ((1 << p["addr_width"]) - 1)
            if addr in written:
                raise AssertionError(f"cycle {now}: output beat {addr} written twice")
            written[addr] = word >> p["addr_width"]
        await FallingEdge(dut.clk)

    cycles = int(dut.cycles.value)
    busy_word = int(dut.busy.value)
    busy = dict(zip(TASKS, unpack(busy_word, 32, len(TASKS), signed=False), strict=True))
    expected = fixed.attention_1pass(
        q, k, v, fmt, m0=r, degree=p["degree"], scale=int(fmt.quantize(1.0 / np.sqrt(e)))
    )
    mismatches, first = 0, []
    for t in range(p1):
        for j in range(f):
            got = (
                unpack(written.get(av_base + t * f + j, 0), w, r) if av_base + t * f + j in written else None
            )
            want = [int(x) for x in expected[t * r : (t + 1) * r, j]]
            if got != want:
                mismatches += 1
                if len(first) < 5:
                    first.append(
                        f"AV rows {t * r}..{(t + 1) * r - 1}, column {j}: got {got}, expected {want}"
                    )
    write_result(
        cfg,
        {
            "mismatches": mismatches,
            "compared": p1 * f,
            "cycles": cycles,
            "busy": busy,
            "first_mismatches": first,
        },
    )
    assert mismatches == 0, f"{mismatches} mismatching output beats; first: {first}"
