"""The 2D PE array: FuseMax's 2D share of the 1-pass cascade for one tile at a time.

An ``rows x cols`` array; PE ``(r, c)`` owns key ``m0 = r`` and query ``p = c`` of the tile and
has one multiplier (its MAC), reused for every Einsum. All PEs run in lock step under one
controller. Per tile:

=========  ================================================================  ===========
state      what the PEs do                                                   cycles
=========  ================================================================  ===========
QK         ``acc += K[r, e] * Q[c, e]`` for one ``e`` per ``qk_in`` item      ``e``
CONV       ``QK = acc`` rounded into the datapath format                      1
LMW        the max over the rows of each column settles (``reduction``)     ``L``
LM         ``lm_out`` = that max (to the 1D array)                            1
RM         the running max ``RM[c]`` arrives on ``rm_in`` (from the 1D)      1
EXP        ``SLN = exp(QK - RM)`` as MACs (``ExpSteps``: degree + 2 steps)   ``degree + 2``
SLD        ``o`` <- sum over the rows of SLN                                  1
SLNV       ``o`` <- sum over the rows of ``SLN * V[r, f]``, one ``v_in`` each ``f``
=========  ================================================================  ===========

``reduction`` builds the max across the rows as ``mapper.PEArray.row_reduction`` describes it,
and ``L = mapper.row_reduction_latency(reduction, rows)``: ``tree`` (pairwise, combinational,
``L = 0``), ``registered_tree`` (a register per level, ``L = ceil(log2 rows)``) or ``chain`` (a
registered comparator per row, the value passing down the rows, FuseMax's: ``L = rows``). One
``ArchSpec`` sets it for the simulator and the RTL (:meth:`Array2D.from_arch`).

The arithmetic is ``golden.fixed.tile2d`` bit for bit. Streams (``amaranth.lib.stream``):
``qk_in`` (``k``: rows values, ``q``: cols values), ``lm_out`` and ``rm_in`` (cols values),
``v_in`` (rows values), ``o`` (cols values: SLD, then SLNV for f = 0 .. F-1).
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from einsum import Fixed
from mapper.arch import ROW_REDUCTIONS, ArchSpec, row_reduction_latency
from rtl._arith import ExpSteps, fit, round_shift
from rtl._params import DEFAULT_FORMAT, RTLConfigError, check_int, name_states

__all__ = ["Array2D", "Array2DCycles"]


@dataclass(frozen=True)
class Array2DCycles:
    """The cycle model: every tile takes ``interval`` cycles; results trail by one cycle."""

    rows: int
    cols: int
    e: int
    f: int
    degree: int
    reduction: str = "tree"

    @property
    def lm_wait(self) -> int:
        """Cycles the max across the rows takes to settle (``mapper.row_reduction_latency``)."""
        return row_reduction_latency(self.reduction, self.rows)

    @property
    def interval(self) -> int:
        """Cycles between the starts of consecutive tiles (the initiation interval)."""
        return self.e + 1 + self.lm_wait + 1 + 1 + (self.degree + 2) + 1 + self.f

    @property
    def latency(self) -> int:
        """Cycles from a tile's first ``qk_in`` transfer to its last ``o`` transfer, inclusive."""
        return self.interval + 1

    def cycles(self, tiles: int) -> int:
        """First input transfer to last output transfer, inclusive, for back-to-back tiles."""
        return tiles * self.interval + 1


class Array2D(wiring.Component):
    """``rows x cols`` PEs; ``e`` and ``f`` are the tile's embedding and value widths."""

    def __init__(
        self,
        *,
        rows: int = 4,
        cols: int = 4,
        e: int = 8,
        f: int = 4,
        fmt: Fixed = DEFAULT_FORMAT,
        degree: int = 3,
        acc_width: int | None = None,
        reduction: str = "tree",
    ) -> None:
        if reduction not in ROW_REDUCTIONS:
            self._MustUse__silence = True  # a rejected component is never elaborated
            raise RTLConfigError(
                f"array2d: reduction must be one of {', '.join(ROW_REDUCTIONS)}, got {reduction!r}"
            )
        self.reduction = reduction
        self.rows = check_int("array2d", "rows", rows, 1, 64, owner=self)
        self.cols = check_int("array2d", "cols", cols, 1, 64, owner=self)
        self.e = check_int("array2d", "e", e, 1, 4096, owner=self)
        self.f = check_int("array2d", "f", f, 1, 4096, owner=self)
        self.fmt = fmt
        check_int(
            "array2d", "width - frac (integer bits incl. sign)", fmt.width - fmt.frac, 2, 32, owner=self
        )
        self.exp = ExpSteps(fmt, check_int("array2d", "degree", degree, 1, 8, owner=self))
        self.acc_width = acc_width or 2 * fmt.width - 1 + max(1, (max(e, 2) - 1).bit_length())
        check_int("array2d", "acc_width", self.acc_width, 2 * fmt.width, 62, owner=self)
        self.model = Array2DCycles(rows, cols, e, f, degree, reduction)
        w = fmt.width
        vec_r = data.ArrayLayout(signed(w), rows)
        vec_c = data.ArrayLayout(signed(w), cols)
        super().__init__(
            {
                "qk_in": In(stream.Signature(data.StructLayout({"k": vec_r, "q": vec_c}))),
                "lm_out": Out(stream.Signature(vec_c)),
                "rm_in": In(stream.Signature(vec_c)),
                "v_in": In(stream.Signature(vec_r)),
                "o": Out(stream.Signature(vec_c)),
            }
        )

    @classmethod
    def from_arch(
        cls,
        arch: ArchSpec,
        array: str = "2d",
        *,
        e: int,
        f: int,
        fmt: Fixed = DEFAULT_FORMAT,
        degree: int | None = None,
    ) -> Array2D:
        """The 2D array that ``arch``'s array ``array`` describes: its rows, columns,
        ``row_reduction``, and the exp's length: ``exp_macs`` MAC steps, the simulator's cost of
        an exp on the MAC, is a polynomial of degree ``exp_macs - 2`` here (``degree + 2`` steps)
        unless ``degree`` is given. The tile's ``e``, ``f`` and the format besides."""
        a = arch.array(array)
        deg = a.exp_macs - 2 if degree is None else degree
        return cls(rows=a.rows, cols=a.cols, e=e, f=f, fmt=fmt, degree=deg, reduction=a.row_reduction)

    def _row_max(self, m: Module, xs: list[Signal], c: int) -> Signal:
        """The max of ``xs`` (one column's rows) as ``self.reduction`` builds it (named signals)."""
        w = self.fmt.width

        def mx(a: Signal, b: Signal) -> object:
            return Mux(b > a, b, a)

        if self.reduction == "chain":  # FuseMax's: a registered comparator per row
            prev = None
            for r, x in enumerate(xs):
                stage = Signal(signed(w), name=f"lm_chain{c}_{r}")
                m.d.sync += stage.eq(x if prev is None else mx(prev, x))
                prev = stage
            assert prev is not None
            return prev
        level, depth = list(xs), 0
        while len(level) > 1:
            nxt = []
            for i in range(0, len(level) - 1, 2):
                node = Signal(signed(w), name=f"lm_tree{c}_{depth}_{i // 2}")
                domain = m.d.sync if self.reduction == "registered_tree" else m.d.comb
                domain += node.eq(mx(level[i], level[i + 1]))
                nxt.append(node)
            if len(level) % 2:  # the odd one passes to the next level (through a register)
                node = Signal(signed(w), name=f"lm_tree{c}_{depth}_{len(level) // 2}")
                domain = m.d.sync if self.reduction == "registered_tree" else m.d.comb
                domain += node.eq(level[-1])
                nxt.append(node)
            level, depth = nxt, depth + 1
        return level[0]

    def elaborate(self, platform):  # type: ignore[no-untyped-def]
        m = Module()
        fmt, ex = self.fmt, self.exp
        w, fr = fmt.width, fmt.frac
        nearest, sat = fmt.rounding == "nearest", fmt.overflow == "saturate"
        rows, cols = self.rows, self.cols
        ow = ex.operand_width() + 1

        e_cnt = Signal(range(self.e))
        f_cnt = Signal(range(self.f))
        step = Signal(range(ex.cycles))
        rm = [Signal(signed(w), name=f"rm{c}") for c in range(cols)]
        o_load = Signal()
        o_next = [Signal(signed(w), name=f"o_next{c}") for c in range(cols)]

        acc, qk, sln, prods = {}, {}, {}, {}
        for r in range(rows):
            for c in range(cols):
                acc[r, c] = Signal(signed(self.acc_width), name=f"acc_{r}_{c}")
                qk[r, c] = Signal(signed(w), name=f"qk_{r}_{c}")
                sln[r, c] = Signal(signed(w), name=f"sln_{r}_{c}")
                ma = Signal(signed(ow), name=f"ma_{r}_{c}")
                mb = Signal(signed(ow), name=f"mb_{r}_{c}")
                # One named product: every Einsum reads this signal, so synthesis sees one multiplier
                # per PE (an expression used in several places is emitted once per use).
                prod = Signal(signed(2 * ow), name=f"prod_{r}_{c}")
                m.d.comb += prod.eq(ma * mb)
                prods[r, c] = (ma, mb, prod)

        # o: a one-entry output register, loaded when empty or being emptied
        with m.If(o_load):
            m.d.sync += self.o.valid.eq(1)
            m.d.sync += [self.o.payload[c].eq(o_next[c]) for c in range(cols)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        o_free = ~self.o.valid | self.o.ready

        col_max = [self._row_max(m, [qk[r, c] for r in range(rows)], c) for c in range(cols)]
        wait = self.model.lm_wait
        lw = Signal(range(wait + 1), name="lm_wait")
        with m.FSM(name="ctrl") as fsm:
            with m.State("QK"):
                m.d.comb += self.qk_in.ready.eq(1)
                for (r, c), (ma, mb, _) in prods.items():
                    m.d.comb += [ma.eq(self.qk_in.payload.k[r]), mb.eq(self.qk_in.payload.q[c])]
                with m.If(self.qk_in.valid):
                    for (r, c), (_, _, prod) in prods.items():
                        base = Mux(e_cnt == 0, 0, acc[r, c])
                        m.d.sync += acc[r, c].eq(fit(base + prod, self.acc_width, sat))
                    m.d.sync += e_cnt.eq(e_cnt + 1)
                    with m.If(e_cnt == self.e - 1):
                        m.d.sync += e_cnt.eq(0)
                        m.next = "CONV"
            with m.State("CONV"):
                for key in acc:
                    m.d.sync += qk[key].eq(fit(round_shift(acc[key], fr, nearest), w, sat))
                m.d.sync += lw.eq(0)
                m.next = "LMW" if wait else "LM"
            if wait:
                with m.State("LMW"):
                    m.d.sync += lw.eq(lw + 1)
                    with m.If(lw == wait - 1):
                        m.next = "LM"
            with m.State("LM"):
                m.d.comb += self.lm_out.valid.eq(1)
                m.d.comb += [self.lm_out.payload[c].eq(col_max[c]) for c in range(cols)]
                with m.If(self.lm_out.ready):
                    m.next = "RM"
            with m.State("RM"):
                m.d.comb += self.rm_in.ready.eq(1)
                with m.If(self.rm_in.valid):
                    m.d.sync += [rm[c].eq(self.rm_in.payload[c]) for c in range(cols)]
                    m.d.sync += step.eq(0)
                    m.next = "EXP"
            with m.State("EXP"):
                for (r, c), mac in prods.items():
                    ex.emit(m, step, fit(qk[r, c] - rm[c], w, sat), mac, sln[r, c], f"{r}_{c}")
                m.d.sync += step.eq(step + 1)
                with m.If(step == ex.cycles - 1):
                    m.next = "SLD"
            with m.State("SLD"):
                for c in range(cols):
                    total = sum((sln[r, c] for r in range(rows)), Const(0, signed(w)))
                    m.d.comb += o_next[c].eq(fit(total, w, sat))
                with m.If(o_free):
                    m.d.comb += o_load.eq(1)
                    m.next = "SLNV"
            with m.State("SLNV"):
                m.d.comb += self.v_in.ready.eq(o_free)
                for (r, c), (ma, mb, _) in prods.items():
                    m.d.comb += [ma.eq(sln[r, c]), mb.eq(self.v_in.payload[r])]
                for c in range(cols):
                    dot = sum((prods[r, c][2] for r in range(rows)), Const(0, signed(2 * ow)))
                    m.d.comb += o_next[c].eq(fit(round_shift(dot, fr, nearest), w, sat))
                with m.If(self.v_in.valid & o_free):
                    m.d.comb += o_load.eq(1)
                    m.d.sync += f_cnt.eq(f_cnt + 1)
                    with m.If(f_cnt == self.f - 1):
                        m.d.sync += f_cnt.eq(0)
                        m.next = "QK"
        name_states(m, fsm, "ctrl")
        return m
