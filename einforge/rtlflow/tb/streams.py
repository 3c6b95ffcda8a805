"""Cycle-level valid/ready stream agents for cocotb 2.x, the same on Verilator and Icarus.

Every cycle the clock loop calls ``drive()`` on each agent at the falling edge (inputs change
mid-cycle), waits for ``ReadOnly`` (combinational logic settled) and calls ``sample()``: a transfer
happens at the next rising edge when valid and ready are both high. A driver, once it raises valid,
holds it and its payload until the transfer (the stream rule); gaps fall only between items.
"""

from __future__ import annotations

import json
import os
import random
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

__all__ = [
    "Driver",
    "Monitor",
    "Scoreboard",
    "clock_loop",
    "config",
    "pack",
    "reset",
    "run_test",
    "unpack",
    "write_result",
]


def pack(values: Iterable[int], width: int) -> int:
    """Pack signed or unsigned ints LSB first (element 0 in the low bits, as Amaranth lays out arrays)."""
    out, mask = 0, (1 << width) - 1
    for i, v in enumerate(values):
        out |= (int(v) & mask) << (i * width)
    return out


def unpack(word: int, width: int, count: int, signed: bool = True) -> list[int]:
    mask, out = (1 << width) - 1, []
    for i in range(count):
        v = (word >> (i * width)) & mask
        out.append(v - (1 << width) if signed and v >> (width - 1) else v)
    return out


class Driver:
    """Drives ``<name>__valid`` and ``__payload`` from a queue; random gaps with probability ``gap``."""

    def __init__(self, dut: Any, name: str, rng: random.Random, gap: float = 0.0) -> None:
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.name, self.rng, self.gap = name, rng, gap
        self.queue: deque[int] = deque()
        self.presenting = False
        self.shown: bool | None = None  # the valid last written
        self.transfers = 0

    def drive(self) -> None:
        # write a signal only when it changes: each write costs a call into the simulator
        if not self.presenting and self.queue and self.rng.random() >= self.gap:
            self.presenting = True
            self.payload.value = self.queue[0]
        if self.presenting != self.shown:
            self.valid.value = int(self.presenting)
            self.shown = self.presenting

    def sample(self) -> bool:
        if self.presenting and int(self.ready.value) == 1:
            self.queue.popleft()
            self.presenting = False
            self.transfers += 1
            return True
        return False


class Monitor:
    """Drives ``<name>__ready`` (low with probability ``backpressure``) and collects transfers."""

    def __init__(self, dut: Any, name: str, rng: random.Random, backpressure: float = 0.0) -> None:
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.name, self.rng, self.backpressure = name, rng, backpressure
        self.items: list[int] = []
        self.ready_now = False
        self.shown: bool | None = None  # the ready last written

    def drive(self) -> None:
        ready = self.rng.random() >= self.backpressure
        if ready != self.ready_now or self.shown is None:
            self.ready.value = int(ready)
            self.shown = ready
        self.ready_now = ready

    def sample(self) -> int | None:
        if self.ready_now and int(self.valid.value) == 1:
            word = int(self.payload.value)
            self.items.append(word)
            return word
        return None


class Scoreboard:
    """Compares what a monitor saw with what the golden model expects, item by item."""

    def __init__(self, log: Any) -> None:
        self.log = log
        self.mismatches = 0
        self.compared = 0
        self.first: list[str] = []

    def compare(self, what: str, got: Sequence[int], expected: Sequence[int]) -> None:
        self.compared += 1
        if list(got) != list(expected):
            self.mismatches += 1
            if len(self.first) < 5:
                msg = f"{what}: got {list(got)}, expected {list(expected)}"
                self.first.append(msg)
                self.log.error(msg)


async def reset(dut: Any, agents: Sequence[Driver | Monitor], cycles: int = 2) -> None:
    """Hold reset for ``cycles`` rising edges with every input driven (Icarus reads undriven as Z)."""
    await FallingEdge(dut.clk)
    dut.rst.value = 1
    for a in agents:
        if isinstance(a, Driver):
            a.valid.value = 0
            a.payload.value = 0
            a.shown, a.presenting = False, False
        else:
            a.ready.value = 0
            a.shown, a.ready_now = False, False
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0


async def clock_loop(
    dut: Any,
    drivers: Sequence[Driver],
    monitors: Sequence[Monitor],
    on_transfer: Callable[[str, int | None, int], None],
    done: Callable[[], bool],
    max_cycles: int,
) -> int:
    """Run cycles until ``done()``; ``on_transfer(stream, payload, cycle)`` for every transfer."""
    cycle = 0
    while not done():
        if cycle >= max_cycles:
            raise AssertionError(
                f"timeout: {max_cycles} cycles without finishing "
                f"(pending inputs: {[(d.name, len(d.queue)) for d in drivers]})"
            )
        await FallingEdge(dut.clk)
        for d in drivers:
            d.drive()
        for mon in monitors:
            mon.drive()
        await ReadOnly()
        for d in drivers:
            if str(d.ready.value) not in ("0", "1"):
                raise AssertionError(
                    f"{d.name} ready is {d.ready.value} at cycle {cycle} (rst={dut.rst.value}): "
                    "an undriven or uninitialised signal"
                )
            if d.sample():
                on_transfer(d.name, None, cycle)
        for mon in monitors:
            word = mon.sample()
            if word is not None:
                on_transfer(mon.name, word, cycle)
        cycle += 1
    return cycle


def config() -> dict[str, Any]:
    raw = os.environ.get("EINFORGE_TB")
    if not raw:
        raise RuntimeError(
            "EINFORGE_TB is not set: run testbenches through `einforge rtl check` or tests/rtl"
        )
    cfg: dict[str, Any] = json.loads(raw)
    return cfg


def write_result(cfg: dict[str, Any], result: dict[str, Any]) -> None:
    path = cfg.get("result")
    if path:
        tmp = Path(f"{path}.tmp")
        tmp.write_text(json.dumps(result), encoding="utf-8")
        tmp.replace(path)


#: ``run_test``'s ``timed_count`` that times every item of the run.
ALL = 1 << 30


async def run_test(
    dut: Any,
    make_items: Callable[[random.Random, int, bool], list[Any]],
    run_phase: Callable[[list[Any], random.Random, float, float, Scoreboard], Awaitable[int]],
    model_cycles: Callable[[list[Any]], int],
    timed_count: int,
    what: str,
) -> None:
    """The common cocotb test body: a back-to-back run of up to ``timed_count`` items measures
    cycles against ``model_cycles``; a random run of ``items`` with valid gaps and backpressure
    follows. ``make_items(rng, count, timed)`` builds items; ``run_phase`` drives them and returns
    the measured cycles. Writes the result file, then fails on any mismatch or cycle difference."""
    cfg = config()
    rng = random.Random(cfg["seed"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    board = Scoreboard(dut._log)
    timed = make_items(rng, min(cfg["items"], timed_count), True)
    cycles = await run_phase(timed, rng, 0.0, 0.0, board)
    items = make_items(rng, cfg["items"], False)
    await run_phase(items, rng, cfg.get("gap", 0.3), cfg.get("backpressure", 0.3), board)
    model = model_cycles(timed)
    write_result(
        cfg,
        {
            "mismatches": board.mismatches,
            "compared": board.compared,
            "cycles": cycles,
            "model_cycles": model,
            "timed_items": len(timed),
            "first_mismatches": board.first,
        },
    )
    assert board.mismatches == 0, f"{board.mismatches} mismatches; first: {board.first}"
    assert cycles == model, f"measured {cycles} cycles for {len(timed)} {what}; the model says {model}"
