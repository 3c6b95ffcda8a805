"""The 1D PE array: FuseMax's 1D share of the 1-pass cascade (RM, PRM, SPD, RD, SPNV, RNV, AV).

``pes`` PEs, PE ``p`` owns query ``p`` and its running state (``RM``, ``RD`` and ``f`` values of
``RNV``); it has one multiplier and one divider. Per tile of keys:

=======  =====================================================================  ==============
state    what the PEs do                                                        cycles
=======  =====================================================================  ==============
LM       ``lm_in``: ``RM' = max(RM, LM)``, keep ``RM - RM'``                    1
RMOUT    ``rm_out`` <- ``RM'`` (back to the 2D array)                           1
EXP      ``PRM = exp(RM - RM')`` as MACs                                        ``degree + 2``
SLD      ``sl_in``: ``RD = RD * PRM + SLD`` (SPD, RD)                            1
SLNV     ``sl_in``, one per ``f``: ``RNV[f] = RNV[f] * PRM + SLNV[f]``          ``f``
AV       after the block's last tile: ``av_out`` <- ``RNV[f] / RD``, per ``f``  ``f``
=======  =====================================================================  ==============

A query block ends with the tile whose ``lm_in`` item has ``last`` set; the state then resets
(RM to the format's minimum, RD and RNV to 0). The arithmetic is ``golden.fixed.tile1d``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from amaranth.hdl import Array, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from einsum import Fixed
from rtl._arith import ExpSteps, divide, fit, round_shift
from rtl._params import DEFAULT_FORMAT, check_int, name_states

__all__ = ["Array1D", "Array1DCycles"]


@dataclass(frozen=True)
class Array1DCycles:
    """The cycle model of :class:`Array1D` with its inputs always available and outputs accepted."""

    pes: int
    f: int
    degree: int

    @property
    def tile_interval(self) -> int:
        """Cycles per tile of keys (initiation interval between tiles)."""
        return 1 + 1 + (self.degree + 2) + 1 + self.f

    def block_interval(self, tiles: int) -> int:
        """Cycles per query block of ``tiles`` tiles, including the division of its ``f`` outputs."""
        return tiles * self.tile_interval + self.f

    def cycles(self, blocks: Sequence[int]) -> int:
        """First ``lm_in`` transfer to the last ``av_out`` transfer, inclusive (blocks back to back)."""
        return sum(self.block_interval(t) for t in blocks) + 1


class Array1D(wiring.Component):
    """``pes`` PEs (one query each); ``f`` is the value width (columns of RNV and AV)."""

    def __init__(self, *, pes: int = 4, f: int = 4, fmt: Fixed = DEFAULT_FORMAT, degree: int = 3) -> None:
        self.pes = check_int("array1d", "pes", pes, 1, 256, owner=self)
        self.f = check_int("array1d", "f", f, 1, 4096, owner=self)
        self.fmt = fmt
        check_int(
            "array1d", "width - frac (integer bits incl. sign)", fmt.width - fmt.frac, 2, 32, owner=self
        )
        self.exp = ExpSteps(fmt, check_int("array1d", "degree", degree, 1, 8, owner=self))
        self.model = Array1DCycles(pes, f, degree)
        vec = data.ArrayLayout(signed(fmt.width), pes)
        super().__init__(
            {
                "lm_in": In(stream.Signature(data.StructLayout({"lm": vec, "last": 1}))),
                "rm_out": Out(stream.Signature(vec)),
                "sl_in": In(stream.Signature(vec)),
                "av_out": Out(stream.Signature(vec)),
            }
        )

    def elaborate(self, platform):  # type: ignore[no-untyped-def]
        m = Module()
        fmt, ex = self.fmt, self.exp
        w, fr = fmt.width, fmt.frac
        nearest, sat = fmt.rounding == "nearest", fmt.overflow == "saturate"
        ow = ex.operand_width() + 1
        pes, fsz = self.pes, self.f

        f_cnt = Signal(range(fsz))
        step = Signal(range(ex.cycles))
        last = Signal()
        av_load = Signal()
        av_next = [Signal(signed(w), name=f"av_next{p}") for p in range(pes)]
        with m.If(av_load):
            m.d.sync += self.av_out.valid.eq(1)
            m.d.sync += [self.av_out.payload[p].eq(av_next[p]) for p in range(pes)]
        with m.Elif(self.av_out.ready):
            m.d.sync += self.av_out.valid.eq(0)
        av_free = ~self.av_out.valid | self.av_out.ready

        pe = []
        for p in range(pes):
            st = {
                "rm": Signal(signed(w), name=f"rm{p}", init=fmt.min_raw),
                "rd": Signal(signed(w), name=f"rd{p}"),
                "x": Signal(signed(w), name=f"x{p}"),
                "prm": Signal(signed(w), name=f"prm{p}"),
                "rnv": Array(Signal(signed(w), name=f"rnv{p}_{i}") for i in range(fsz)),
                "ma": Signal(signed(ow), name=f"ma{p}"),
                "mb": Signal(signed(ow), name=f"mb{p}"),
            }
            st["prod"] = Signal(signed(2 * ow), name=f"prod{p}")  # one multiplier per PE, read by all
            m.d.comb += st["prod"].eq(st["ma"] * st["mb"])
            pe.append(st)

        with m.FSM(name="ctrl") as fsm:
            with m.State("LM"):
                m.d.comb += self.lm_in.ready.eq(1)
                with m.If(self.lm_in.valid):
                    for p, st in enumerate(pe):
                        lm = self.lm_in.payload.lm[p]
                        new = Mux(lm > st["rm"], lm, st["rm"])
                        m.d.sync += [st["x"].eq(fit(st["rm"] - new, w, sat)), st["rm"].eq(new)]
                    m.d.sync += last.eq(self.lm_in.payload.last)
                    m.next = "RMOUT"
            with m.State("RMOUT"):
                m.d.comb += self.rm_out.valid.eq(1)
                m.d.comb += [self.rm_out.payload[p].eq(st["rm"]) for p, st in enumerate(pe)]
                with m.If(self.rm_out.ready):
                    m.d.sync += step.eq(0)
                    m.next = "EXP"
            with m.State("EXP"):
                for p, st in enumerate(pe):
                    ex.emit(m, step, st["x"], (st["ma"], st["mb"], st["prod"]), st["prm"], str(p))
                m.d.sync += step.eq(step + 1)
                with m.If(step == ex.cycles - 1):
                    m.next = "SLD"
            with m.State("SLD"):
                m.d.comb += self.sl_in.ready.eq(1)
                for p, st in enumerate(pe):
                    m.d.comb += [st["ma"].eq(st["rd"]), st["mb"].eq(st["prm"])]
                    spd = fit(round_shift(st["prod"], fr, nearest), w, sat)
                    with m.If(self.sl_in.valid):
                        m.d.sync += st["rd"].eq(fit(spd + self.sl_in.payload[p], w, sat))
                with m.If(self.sl_in.valid):
                    m.d.sync += f_cnt.eq(0)
                    m.next = "SLNV"
            with m.State("SLNV"):
                m.d.comb += self.sl_in.ready.eq(1)
                for p, st in enumerate(pe):
                    m.d.comb += [st["ma"].eq(st["rnv"][f_cnt]), st["mb"].eq(st["prm"])]
                    spnv = fit(round_shift(st["prod"], fr, nearest), w, sat)
                    with m.If(self.sl_in.valid):
                        m.d.sync += st["rnv"][f_cnt].eq(fit(spnv + self.sl_in.payload[p], w, sat))
                with m.If(self.sl_in.valid):
                    m.d.sync += f_cnt.eq(f_cnt + 1)
                    with m.If(f_cnt == fsz - 1):
                        m.d.sync += f_cnt.eq(0)
                        with m.If(last):
                            m.next = "AV"
                        with m.Else():
                            m.next = "LM"
            with m.State("AV"):
                for p, st in enumerate(pe):
                    m.d.comb += av_next[p].eq(divide(self.fmt, st["rnv"][f_cnt], st["rd"]))
                with m.If(av_free):
                    m.d.comb += av_load.eq(1)
                    m.d.sync += f_cnt.eq(f_cnt + 1)
                    with m.If(f_cnt == fsz - 1):
                        m.d.sync += f_cnt.eq(0)
                        for st in pe:
                            m.d.sync += [st["rm"].eq(fmt.min_raw), st["rd"].eq(0)]
                            m.d.sync += [reg.eq(0) for reg in st["rnv"]]
                        m.next = "LM"
        name_states(m, fsm, "ctrl")
        return m
