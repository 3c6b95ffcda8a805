"""The pipelined divider against the combinational one (itself ``golden._fxkernels.fx_div``'s
twin): the same quotient, ``stages`` cycles later, for corner and random operands, both roundings
and both overflow modes."""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import Module, Signal, signed
from amaranth.sim import Simulator

from einsum import Fixed
from rtl._arith import divide, divide_pipelined


@pytest.mark.parametrize(
    ("fmt", "stages"),
    [
        (Fixed(8, 4), 1),
        (Fixed(8, 4), 3),
        (Fixed(8, 4, rounding="truncate", overflow="wrap"), 2),
        (Fixed(16, 8), 5),
    ],
)
def test_pipelined_divider_is_the_combinational_one_later(fmt: Fixed, stages: int) -> None:
    m = Module()
    a, b = Signal(signed(fmt.width)), Signal(signed(fmt.width))
    ref, out = Signal(signed(fmt.width)), Signal(signed(fmt.width))
    m.d.comb += [ref.eq(divide(fmt, a, b)), out.eq(divide_pipelined(m, fmt, a, b, stages))]
    lo, hi = fmt.min_raw, fmt.max_raw
    rng = random.Random(stages)
    pairs = [(x, y) for x in (lo, -1, 0, 1, hi) for y in (lo, -1, 0, 1, hi)]
    pairs += [(rng.randint(lo, hi), rng.randint(lo, hi)) for _ in range(60)]
    seen: list[tuple[int, int]] = []

    async def bench(ctx):  # type: ignore[no-untyped-def]
        expected: list[int] = []
        for x, y in pairs + [(0, 1)] * stages:
            ctx.set(a, x)
            ctx.set(b, y)
            expected.append(ctx.get(ref))
            if len(expected) > stages:
                seen.append((ctx.get(out), expected[-1 - stages]))
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert len(seen) == len(pairs)
    assert [got for got, _ in seen] == [want for _, want in seen]
