"""The attention tile: FuseMax's 1-pass cascade for a whole head, on a 2D and a 1D PE array.

``AttentionTile`` holds a ``rows x cols`` 2D array (PE ``(r, c)`` owns key ``m0 = r`` and query
``p0 = c`` of a tile), a ``cols``-PE 1D array (PE ``p`` owns query ``p`` and its running state),
an on-chip buffer (Amaranth memories: the query tile being computed and the next one, all of K and
V), a loader that streams Q, K and V from a DRAM read port, and a write port for the output. It
computes ``AV = softmax(Q K^T * scale) V`` for ``P`` queries and ``M`` keys, bit for bit as
``golden.fixed.attention_1pass`` with ``scale = fmt.quantize(1 / sqrt(E))``.

**Tiles.** Tile ``g = q * M1 + s`` is query tile ``q`` (``cols`` queries) against key tile ``s``
(``rows`` keys). Each array runs its Einsums on one tile at a time, in the order the simulator's
engine issues them (:mod:`sim.engine`), each for the cycles ``mapper.schedule.einsum_cycles``
charges:

=====  =========================================================================  ==============
array  task: what the PEs do                                                       cycles
=====  =========================================================================  ==============
2D     ``QK``: read K and Q from the buffer, ``acc += K[r, e] Q[c, e]``, then      ``E + 1 + RL``
       ``QK = round(acc) * scale``
2D     ``LM``: the tile's scores enter the max across the rows (``reduction``);    ``1`` (+ ``L``)
       the result reaches the 1D array ``L`` cycles later
2D     ``SLN``: ``x = QK - RM``, then ``exp(x)`` as ``degree + 2`` MAC steps       ``exp_macs + 1``
2D     ``SLD``: sum over the rows of ``SLN``                                       ``1``
2D     ``SLNV``: read V from the buffer, sum over the rows of ``SLN * V[r, f]``    ``F + RL``
1D     ``RM``: ``RM' = max(RM, LM)`` (sent back to the 2D array)                   ``1``
1D     ``PRM``: ``exp(RM - RM')``                                                  ``exp_macs + 1``
1D     ``SPD``, ``RD``: ``RD * PRM``, then ``+ SLD``                               ``1``, ``1``
1D     ``SPNV``, ``RNV``: ``RNV[f] * PRM``, then ``+ SLNV[f]``                     ``F``, ``F``
1D     ``AV``: after a query tile's last key tile, ``RNV[f] / RD`` to the output   ``F + DL``
=====  =========================================================================  ==============

(``RL = 1``: the buffer's synchronous read; ``L = mapper.row_reduction_latency(reduction,
rows)``; ``DL = div_latency``, the divider's pipeline, 0 for a combinational one.) A task starts
when its array has finished the one before it and its inputs are ready:
``QK`` of tile ``g`` waits for the tile's DRAM transfer; ``SLN`` for ``RM``; ``RM`` for ``LM``;
``RD`` for ``SLD``; ``RNV`` for ``SLNV``. With ``lookahead = d > 0`` (FuseMax's interleaving) the
2D array runs ``QK`` and ``LM`` of tile ``g + d`` before ``SLN`` .. ``SLNV`` of tile ``g`` (so it
holds ``d + 1`` tiles of scores); with ``d = 0`` it starts a tile only after the 1D array has
taken everything of the tile before (``RNV``), and the 1D array its ``RM`` after ``SLN``.

**DRAM.** Word-addressed in beats of ``rows`` values (``rows == cols``): Q at beat
``q * E + e`` (``Q[q * cols + c, e]`` for each ``c``), K at ``P1 * E + s * E + e``, V at
``P1 * E + M1 * E + s * F + f`` and the output at ``P1 * E + M1 * (E + F) + q * F + f`` (``AV``
laid out like Q). Tile ``g`` transfers Q of its query tile if it is the first key tile of it,
and K and V of its key tile if it is in the first query tile (they stay in the buffer); its
transfer starts once the previous one is issued and tile ``g - 2`` has started (double
buffering). The read port takes one beat address per transfer on ``rd_req`` and returns beats in
order on ``rd_resp`` with any latency; the output leaves through a FIFO of ``2 F`` beats on
``wr``. ``start`` begins a run of ``p_tiles`` query tiles and ``m_tiles`` key tiles (at most
``p / rows`` and ``m / rows``: one build serves every shorter sequence; the layout above is the
run's); ``cycles`` counts its cycles up to the one in which the last
output beat is taken, when ``done`` rises; ``busy`` counts, per task (:data:`TASKS`), the cycles
it ran.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping

from amaranth.hdl import (
    Array,
    Cat,
    ClockSignal,
    Const,
    Instance,
    Module,
    Mux,
    ResetSignal,
    Signal,
    Value,
    signed,
    unsigned,
)
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from einsum import Fixed
from mapper.arch import ROW_REDUCTIONS, ArchSpec, row_reduction_latency
from rtl._arith import ExpSteps, divide_pipelined, fit, round_shift
from rtl._params import DEFAULT_FORMAT, RTLConfigError, check_int, name_states

__all__ = [
    "MAX_ROWS",
    "TASKS",
    "TASKS_1D",
    "TASKS_2D",
    "AttentionTile",
    "Column",
    "DramLayout",
    "Grid2D",
    "Op1D",
    "Op2D",
    "PE1D",
    "PE2D",
]

TASKS_2D = ("QK", "LM", "SLN", "SLD", "SLNV")
TASKS_1D = ("RM", "PRM", "SPD", "RD", "SPNV", "RNV", "AV")
#: The order of the ``busy`` counters.
TASKS = TASKS_2D + TASKS_1D
READ_LATENCY = 1  # the buffer's synchronous read port
#: The largest array the tile builds (simulating one above 16 x 16 is slow; synthesis by parts
#: prices up to this).
MAX_ROWS = 256


class DramLayout:
    """Where Q, K, V and the output lie in the tile's DRAM, in beats of ``width`` values."""

    def __init__(self, *, width: int, p: int, m: int, e: int, f: int) -> None:
        self.width, self.p, self.m, self.e, self.f = width, p, m, e, f
        self.p1, self.m1 = p // width, m // width
        self.q_base = 0
        self.k_base = self.p1 * e
        self.v_base = self.k_base + self.m1 * e
        self.av_base = self.v_base + self.m1 * f
        self.beats = self.av_base + self.p1 * f

    def tile_beats(self, g: int) -> int:
        """Beats tile ``g`` reads: Q at its query tile's first key tile, K and V in query tile 0."""
        q, s = divmod(g, self.m1)
        return (self.e if s == 0 else 0) + (self.e + self.f if q == 0 else 0)


# -- the parts: one PE of each array and one column's reductions --------------------------------------
# The tile is built of these, so a synthesis can take one of each and compose (``rtl.area``).


class Op2D(enum.Enum, shape=3):
    """What a 2D PE does in a cycle (the 2D controller drives one ``op`` to every PE)."""

    IDLE = 0
    MAC = 1  # acc = (first ? 0 : acc) + K * Q
    SCALE = 2  # score = round(acc) * scale, to the row's register file
    SUB = 3  # x = QK - RM
    EXP = 4  # one step of exp(x) -> sln
    DOT = 5  # prod = sln * V, to the column's sum


class Op1D(enum.Enum, shape=4):
    """What a 1D PE does in a cycle."""

    IDLE = 0
    CLEAR = 1  # RM = -inf, RD = 0: a query tile begins
    RM = 2  # RM' = max(RM, LM)
    SUB = 3  # x = RM - RM'
    EXP = 4  # one step of PRM = exp(x)
    SPD = 5  # spd = RD * PRM
    RD = 6  # RD = spd + SLD
    SPNV = 7  # rnv_next = RNV * PRM (RNV = 0 at a query tile's first key tile)
    RNV = 8  # rnv_next = RNV + SLNV


class PE2D(wiring.Component):
    """One PE of the tile's 2D array: a multiplier, the QK accumulator, a register file of the
    scores of the ``banks`` tiles in flight, exp's registers and SLN.

    Ports: ``op`` (:class:`Op2D`), ``first`` (MAC: the first product), ``step`` (EXP); its row's
    ``k`` and ``v`` and its column's ``q`` from the buffer; ``rm`` (its column's running max);
    ``bank_w`` (where SCALE writes the score), ``bank_r`` (the tile SUB reads), ``bank_max`` (the
    tile the max across the rows reads, ``max_score``). Out: ``sln`` (registered) and ``prod``
    (the multiplier, for DOT's column sum)."""

    def __init__(self, *, fmt: Fixed, degree: int, acc_width: int, scale: int, banks: int) -> None:
        self.fmt, self.exp, self.acc_width, self.scale = fmt, ExpSteps(fmt, degree), acc_width, scale
        self.degree, self.banks = degree, banks
        w, ow = fmt.width, self.exp.operand_width() + 1
        super().__init__(
            {
                "op": In(Op2D),
                "first": In(1),
                "step": In(range(self.exp.cycles)),
                "k": In(signed(w)),
                "q": In(signed(w)),
                "v": In(signed(w)),
                "rm": In(signed(w)),
                "bank_w": In(range(banks)),
                "bank_r": In(range(banks)),
                "bank_max": In(range(banks)),
                "max_score": Out(signed(w)),
                "sln": Out(signed(w)),
                "prod": Out(signed(2 * ow)),
            }
        )

    def elaborate(self, platform):  # type: ignore[no-untyped-def]
        m = Module()
        fmt, ex = self.fmt, self.exp
        w, fr = fmt.width, fmt.frac
        nearest, sat = fmt.rounding == "nearest", fmt.overflow == "saturate"
        ow = ex.operand_width() + 1
        acc = Signal(signed(self.acc_width), name="acc")
        x = Signal(signed(w), name="x")
        ma, mb = Signal(signed(ow), name="ma"), Signal(signed(ow), name="mb")
        m.d.comb += self.prod.eq(ma * mb)
        m.submodules.scores = scores = Memory(shape=signed(w), depth=self.banks, init=[])
        wp, rp, rp_max = scores.write_port(), scores.read_port(domain="comb"), scores.read_port(domain="comb")
        m.d.comb += [wp.addr.eq(self.bank_w), wp.data.eq(fit(round_shift(self.prod, fr, nearest), w, sat))]
        m.d.comb += [rp.addr.eq(self.bank_r), rp_max.addr.eq(self.bank_max), self.max_score.eq(rp_max.data)]
        with m.Switch(self.op):
            with m.Case(Op2D.MAC):
                m.d.comb += [ma.eq(self.k), mb.eq(self.q)]
                base = Mux(self.first, 0, acc)
                m.d.sync += acc.eq(fit(base + self.prod, self.acc_width, sat))
            with m.Case(Op2D.SCALE):
                m.d.comb += [ma.eq(fit(round_shift(acc, fr, nearest), w, sat)), mb.eq(self.scale)]
                m.d.comb += wp.en.eq(1)
            with m.Case(Op2D.SUB):
                m.d.sync += x.eq(fit(rp.data - self.rm, w, sat))
            with m.Case(Op2D.EXP):
                ex.emit(m, self.step, x, (ma, mb, self.prod), self.sln, "exp")
            with m.Case(Op2D.DOT):
                m.d.comb += [ma.eq(self.sln), mb.eq(self.v)]
        return m


class PE1D(wiring.Component):
    """One PE of the tile's 1D array: a query's running max ``RM``, its ``RD``, exp's registers
    and ``PRM``, a multiplier and the divider. ``rnv`` is its column of the RNV register file
    (read at the controller's address); ``rnv_next`` is what SPNV or RNV writes back; ``av`` is
    ``rnv / RD``, ``div_latency`` cycles after its operands (0: combinational; else a pipelined
    restoring divider, :func:`rtl._arith.divide_pipelined`); ``rm_out`` the max it last sent to
    the 2D array."""

    def __init__(self, *, fmt: Fixed, degree: int, div_latency: int = 0) -> None:
        self.fmt, self.exp, self.degree = fmt, ExpSteps(fmt, degree), degree
        self.div_latency = div_latency
        w, ow = fmt.width, self.exp.operand_width() + 1
        self._ow = ow
        super().__init__(
            {
                "op": In(Op1D),
                "step": In(range(self.exp.cycles)),
                "first": In(1),
                "lm": In(signed(w)),
                "sld": In(signed(w)),
                "rnv": In(signed(w)),
                "slnv": In(signed(w)),
                "rm_out": Out(signed(w)),
                "rnv_next": Out(signed(w)),
                "av": Out(signed(w)),
            }
        )

    def elaborate(self, platform):  # type: ignore[no-untyped-def]
        m = Module()
        fmt, ex, ow = self.fmt, self.exp, self._ow
        w, fr = fmt.width, fmt.frac
        nearest, sat = fmt.rounding == "nearest", fmt.overflow == "saturate"
        rm = Signal(signed(w), name="rm", init=fmt.min_raw)
        rm_old, rd = Signal(signed(w), name="rm_old"), Signal(signed(w), name="rd")
        spd = Signal(signed(w), name="spd")
        x, prm = Signal(signed(w), name="x"), Signal(signed(w), name="prm")
        ma, mb = Signal(signed(ow), name="ma"), Signal(signed(ow), name="mb")
        prod = Signal(signed(2 * ow), name="prod")
        m.d.comb += prod.eq(ma * mb)
        m.d.comb += self.av.eq(divide_pipelined(m, fmt, self.rnv, rd, self.div_latency))
        with m.Switch(self.op):
            with m.Case(Op1D.CLEAR):
                m.d.sync += [rm.eq(fmt.min_raw), rd.eq(0)]
            with m.Case(Op1D.RM):
                new = Mux(self.lm > rm, self.lm, rm)
                m.d.sync += [rm_old.eq(rm), rm.eq(new), self.rm_out.eq(new)]
            with m.Case(Op1D.SUB):
                m.d.sync += x.eq(fit(rm_old - rm, w, sat))
            with m.Case(Op1D.EXP):
                ex.emit(m, self.step, x, (ma, mb, prod), prm, "exp")
            with m.Case(Op1D.SPD):
                m.d.comb += [ma.eq(rd), mb.eq(prm)]
                m.d.sync += spd.eq(fit(round_shift(prod, fr, nearest), w, sat))
            with m.Case(Op1D.RD):
                m.d.sync += rd.eq(fit(spd + self.sld, w, sat))
            with m.Case(Op1D.SPNV):
                m.d.comb += [ma.eq(Mux(self.first, 0, self.rnv)), mb.eq(prm)]
                m.d.comb += self.rnv_next.eq(fit(round_shift(prod, fr, nearest), w, sat))
            with m.Case(Op1D.RNV):
                m.d.comb += self.rnv_next.eq(fit(self.rnv + self.slnv, w, sat))
        return m


def _tree_sum(m: Module, values: list[Value], name: str) -> Value:
    """The exact sum of ``values`` as a balanced tree of adders, each a bit wider than its inputs."""
    level, depth = list(values), 0
    while len(level) > 1:
        nxt = []
        for i in range(0, len(level) - 1, 2):
            s = Signal(signed(max(len(level[i]), len(level[i + 1])) + 1), name=f"{name}{depth}_{i // 2}")
            m.d.comb += s.eq(level[i] + level[i + 1])
            nxt.append(s)
        if len(level) % 2:
            nxt.append(level[-1])
        level, depth = nxt, depth + 1
    return level[0]


class Column(wiring.Component):
    """One column of the tile's 2D array, across its ``rows``: the max of the scores (a
    ``chain`` of registered comparators whose row ``r`` reads its scores at stage ``r``'s tile, a
    ``registered_tree`` or a combinational ``tree``), SLD (the sum of ``sln``) and SLNV's dot (the
    sum of the PEs' products, rounded). Values only: the tag of each stage is the controller's."""

    def __init__(self, *, rows: int, fmt: Fixed, degree: int, reduction: str) -> None:
        self.rows, self.fmt, self.reduction = rows, fmt, reduction
        w, ow = fmt.width, ExpSteps(fmt, degree).operand_width() + 1
        super().__init__(
            {
                "scores": In(data.ArrayLayout(signed(w), rows)),
                "sln": In(data.ArrayLayout(signed(w), rows)),
                "prods": In(data.ArrayLayout(signed(2 * ow), rows)),
                "max": Out(signed(w)),
                "sld": Out(signed(w)),
                "dot": Out(signed(w)),
            }
        )

    def elaborate(self, platform):  # type: ignore[no-untyped-def]
        m = Module()
        R, w, fr = self.rows, self.fmt.width, self.fmt.frac
        nearest, sat = self.fmt.rounding == "nearest", self.fmt.overflow == "saturate"

        def mx(a: Value, b: Value) -> Value:
            return Mux(b > a, b, a)

        if self.reduction == "chain":
            val: Value | None = None
            for r in range(R):
                cur = Signal(signed(w), name=f"max_chain{r}")
                m.d.sync += cur.eq(self.scores[r] if val is None else mx(val, self.scores[r]))
                val = cur
            assert val is not None
        else:
            level: list[Value] = [self.scores[r] for r in range(R)]
            depth = 0
            while len(level) > 1:
                nxt: list[Value] = []
                for i in range(0, len(level), 2):
                    node = Signal(signed(w), name=f"max_tree{depth}_{i // 2}")
                    dom = m.d.sync if self.reduction == "registered_tree" else m.d.comb
                    dom += node.eq(mx(level[i], level[i + 1]) if i + 1 < len(level) else level[i])
                    nxt.append(node)
                level, depth = nxt, depth + 1
            val = level[0]
        m.d.comb += self.max.eq(val)
        m.d.comb += self.sld.eq(fit(_tree_sum(m, [self.sln[r] for r in range(R)], "sld_sum"), w, sat))
        dot = _tree_sum(m, [self.prods[r] for r in range(R)], "dot_sum")
        m.d.comb += self.dot.eq(fit(round_shift(dot, fr, nearest), w, sat))
        return m


class Grid2D(wiring.Component):
    """The tile's 2D array: ``rows x cols`` :class:`PE2D` and a :class:`Column` per column, wired;
    no logic of its own (its area is its parts'). PE ``(r, c)`` takes row ``r``'s ``k``, ``v`` and
    ``bank_max`` and column ``c``'s ``q`` and ``rm``."""

    def __init__(self, *, rows: int, cols: int, fmt: Fixed, degree: int, acc_width: int, scale: int,
                 reduction: str, banks: int) -> None:  # fmt: skip
        self.rows, self.cols = rows, cols
        self.pe_params = {
            "fmt": fmt,
            "degree": degree,
            "acc_width": acc_width,
            "scale": scale,
            "banks": banks,
        }
        self.column_params = {"rows": rows, "fmt": fmt, "degree": degree, "reduction": reduction}
        w = fmt.width
        row, col = data.ArrayLayout(signed(w), cols), data.ArrayLayout(signed(w), rows)
        super().__init__(
            {
                "op": In(Op2D),
                "first": In(1),
                "step": In(range(ExpSteps(fmt, degree).cycles)),
                "k": In(col),
                "v": In(col),
                "q": In(row),
                "rm": In(row),
                "bank_w": In(range(banks)),
                "bank_r": In(range(banks)),
                "bank_max": In(data.ArrayLayout(unsigned(max(1, (banks - 1).bit_length())), rows)),
                "max": Out(row),
                "sld": Out(row),
                "dot": Out(row),
            }
        )

    def elaborate(self, platform):  # type: ignore[no-untyped-def]
        m = Module()
        R, C = self.rows, self.cols
        pes = {}
        for r in range(R):
            for c in range(C):
                pe = m.submodules[f"pe_{r}_{c}"] = PE2D(**self.pe_params)
                m.d.comb += [
                    pe.op.eq(self.op),
                    pe.first.eq(self.first),
                    pe.step.eq(self.step),
                    pe.k.eq(self.k[r]),
                    pe.q.eq(self.q[c]),
                    pe.v.eq(self.v[r]),
                    pe.rm.eq(self.rm[c]),
                    pe.bank_w.eq(self.bank_w),
                    pe.bank_r.eq(self.bank_r),
                    pe.bank_max.eq(self.bank_max[r]),
                ]
                pes[r, c] = pe
        for c in range(C):
            col = m.submodules[f"col_{c}"] = Column(**self.column_params)
            m.d.comb += [col.scores[r].eq(pes[r, c].max_score) for r in range(R)]
            m.d.comb += [col.sln[r].eq(pes[r, c].sln) for r in range(R)]
            m.d.comb += [col.prods[r].eq(pes[r, c].prod) for r in range(R)]
            m.d.comb += [self.max[c].eq(col.max), self.sld[c].eq(col.sld), self.dot[c].eq(col.dot)]
        return m


class AttentionTile(wiring.Component):
    """FuseMax's 1-pass attention for one head on a ``rows x rows`` 2D and a ``rows``-PE 1D array."""

    def __init__(
        self,
        *,
        rows: int = 4,
        cols: int | None = None,
        p: int = 64,
        m: int = 64,
        e: int = 8,
        f: int = 8,
        fmt: Fixed = DEFAULT_FORMAT,
        degree: int = 4,
        reduction: str = "chain",
        lookahead: int = 2,
        buffer_bytes: int | None = None,
        div_latency: int = 0,
        blackbox_parts: Mapping[str, tuple[str, Collection[str]]] | None = None,
    ) -> None:
        self._params = {
            "rows": rows, "cols": cols, "p": p, "m": m, "e": e, "f": f, "fmt": fmt, "degree": degree,
            "reduction": reduction, "lookahead": lookahead, "buffer_bytes": buffer_bytes,
            "div_latency": div_latency,
        }  # fmt: skip
        #: ``{"grid2d" | "pe1d": (module name, its ports)}``: the parts become instances
        #: of those external modules (synthesis by parts; such a tile cannot be simulated)
        self.blackbox_parts = dict(blackbox_parts) if blackbox_parts else None
        cols = rows if cols is None else cols
        if reduction not in ROW_REDUCTIONS:
            self._MustUse__silence = True
            raise RTLConfigError(
                f"attention tile: reduction must be one of {', '.join(ROW_REDUCTIONS)}, got {reduction!r}"
            )
        self.rows = check_int("attention tile", "rows", rows, 1, MAX_ROWS, owner=self)
        if cols != rows:
            self._MustUse__silence = True
            raise RTLConfigError(
                f"attention tile: the 2D array must be square (its DRAM beats are one row of "
                f"{rows} values for Q, K, V and the output); got rows = {rows}, cols = {cols}"
            )
        self.cols = rows
        self.e = check_int("attention tile", "e", e, 1, 4096, owner=self)
        self.f = check_int("attention tile", "f", f, 1, 4096, owner=self)
        self.p = check_int("attention tile", "p (queries)", p, 1, 1 << 20, owner=self)
        self.m = check_int("attention tile", "m (keys)", m, 1, 1 << 20, owner=self)
        try:
            self.check_run(p, m)
        except RTLConfigError:
            self._MustUse__silence = True
            raise
        self.fmt = fmt
        check_int(
            "attention tile",
            "width - frac (integer bits incl. sign)",
            fmt.width - fmt.frac,
            2,
            32,
            owner=self,
        )
        self.degree = check_int("attention tile", "degree", degree, 1, 8, owner=self)
        self.exp = ExpSteps(fmt, degree)
        self.reduction = reduction
        self.lookahead = check_int("attention tile", "lookahead", lookahead, 0, 8, owner=self)
        self.div_latency = check_int("attention tile", "div_latency", div_latency, 0, 32, owner=self)
        self.layout = DramLayout(width=rows, p=p, m=m, e=e, f=f)
        self.p1, self.m1 = self.layout.p1, self.layout.m1
        self.tiles = self.p1 * self.m1
        # the buffer holds all of K and V and two query tiles
        self.buffer_words = (self.m1 * (e + f) + 2 * e) * rows
        if buffer_bytes is not None and self.buffer_words * ((fmt.width + 7) // 8) > buffer_bytes:
            self._MustUse__silence = True
            raise RTLConfigError(
                f"attention tile: the buffer must hold K, V and two query tiles, "
                f"{self.buffer_words} words of {fmt.width} bits; buffer_bytes = {buffer_bytes} is too small"
            )
        self.scale = int(fmt.quantize(1.0 / math.sqrt(e)))
        self.acc_width = 2 * fmt.width - 1 + max(1, (max(e, 2) - 1).bit_length())
        check_int("attention tile", "acc_width", self.acc_width, 2 * fmt.width, 62, owner=self)
        self.addr_width = max(1, (self.layout.beats - 1).bit_length())
        beat = data.ArrayLayout(signed(fmt.width), rows)
        super().__init__(
            {
                "start": In(1),
                "p_tiles": In(range(1, self.p1 + 1)),
                "m_tiles": In(range(1, self.m1 + 1)),
                "done": Out(1),
                "cycles": Out(32),
                "busy": Out(data.ArrayLayout(unsigned(32), len(TASKS))),
                "rd_req": Out(stream.Signature(unsigned(self.addr_width))),
                "rd_resp": In(stream.Signature(beat)),
                "wr": Out(
                    stream.Signature(data.StructLayout({"addr": unsigned(self.addr_width), "data": beat}))
                ),
            }
        )

    @classmethod
    def from_arch(
        cls,
        arch: ArchSpec,
        *,
        p: int,
        m: int,
        e: int,
        f: int,
        fmt: Fixed = DEFAULT_FORMAT,
        interleave: bool = True,
        lookahead: int = 2,
    ) -> AttentionTile:
        """The tile ``arch`` describes: its ``2d`` array's rows, columns and ``row_reduction``, its
        exp as ``exp_macs`` MAC steps (a polynomial of degree ``exp_macs - 2``), its buffer's
        capacity; its ``1d`` array's ``div_latency``; the head's sizes and the format besides.
        ``interleave`` runs ``lookahead`` tiles ahead on the 2D array (the schedule's
        ``lookahead``), or none."""
        a2, a1 = arch.array("2d"), arch.array("1d")
        if arch.buffer.read_latency != READ_LATENCY:
            raise RTLConfigError(
                f"attention tile: its buffer is a synchronous SRAM, read in {READ_LATENCY} cycle; "
                f"{arch.name!r} says buffer.read_latency = {arch.buffer.read_latency} "
                "(the fusemax_tile preset describes the tile)"
            )
        if a1.pes != a2.cols:
            raise RTLConfigError(
                f"attention tile: the 1D array needs one PE per column of the 2D array "
                f"({a2.cols}); {arch.name!r} has {a1.pes}"
            )
        return cls(
            rows=a2.rows,
            cols=a2.cols,
            p=p,
            m=m,
            e=e,
            f=f,
            fmt=fmt,
            degree=a2.exp_macs - 2,
            reduction=a2.row_reduction,
            lookahead=lookahead if interleave else 0,
            buffer_bytes=arch.buffer.capacity_bytes,
            div_latency=a1.div_latency,
        )

    def check_run(self, p: int, m: int) -> None:
        """That a run of ``p`` queries and ``m`` keys fits this tile: whole tiles of ``rows``, at
        least 2 key tiles (the next query tile's Q is loaded while the current one computes), no
        more than the tile was built for (``self.p``, ``self.m``)."""
        rows = self.rows
        for name, size, most in (("p (queries)", p, self.p), ("m (keys)", m, self.m)):
            if size % rows:
                raise RTLConfigError(
                    f"attention tile: {name} = {size} must be a multiple of the array's {rows} rows"
                )
            if size > most:
                raise RTLConfigError(
                    f"attention tile: {name} = {size} is more than the tile was built for ({most})"
                )
        if m // rows < 2:
            raise RTLConfigError(
                f"attention tile: m (keys) = {m} must span at least 2 key tiles of {rows} rows "
                "(the next query tile's Q is loaded while the current one computes)"
            )

    @property
    def lm_latency(self) -> int:
        return row_reduction_latency(self.reduction, self.rows)

    def task_cycles(self) -> dict[str, int]:
        """Cycles each task takes per tile (``AV``: per query tile), as the table above says."""
        ex = self.exp.cycles + 1
        e, f = self.e, self.f
        return {
            "QK": e + 1 + READ_LATENCY, "LM": 1, "SLN": ex, "SLD": 1, "SLNV": f + READ_LATENCY,
            "RM": 1, "PRM": ex, "SPD": 1, "RD": 1, "SPNV": f, "RNV": f, "AV": f + self.div_latency,
        }  # fmt: skip

    # -- the parts ------------------------------------------------------------------------------------
    def pe2d(self) -> PE2D:
        """A PE of this tile's 2D array (every one is the same)."""
        return PE2D(
            fmt=self.fmt, degree=self.degree, acc_width=self.acc_width, scale=self.scale,
            banks=self.lookahead + 1,
        )  # fmt: skip

    def pe1d(self) -> PE1D:
        """A PE of this tile's 1D array."""
        return PE1D(fmt=self.fmt, degree=self.degree, div_latency=self.div_latency)

    def grid2d(self) -> Grid2D:
        """This tile's 2D array: its PEs and columns."""
        return Grid2D(
            rows=self.rows, cols=self.cols, fmt=self.fmt, degree=self.degree, acc_width=self.acc_width,
            scale=self.scale, reduction=self.reduction, banks=self.lookahead + 1,
        )  # fmt: skip

    def column(self) -> Column:
        """One column's reductions across this tile's rows."""
        return Column(rows=self.rows, fmt=self.fmt, degree=self.degree, reduction=self.reduction)

    def with_blackbox_parts(self, parts: Mapping[str, tuple[str, Collection[str]]]) -> AttentionTile:
        """This tile again, its parts instances of the external modules ``parts`` names
        (``{"grid2d" | "pe1d": (module, ports)}``): what synthesis by parts synthesises as
        the rest (:func:`rtl.area.tile_area`)."""
        return AttentionTile(**self._params, blackbox_parts=parts)

    def _part(self, m: Module, name: str, part: wiring.Component) -> wiring.Component:
        if self.blackbox_parts is None:
            m.submodules[name] = part
            return part
        kind = type(part).__name__.lower()
        module, ports = self.blackbox_parts[kind]
        args: dict[str, object] = {}
        for pname, member in part.signature.members.items():
            args[("i_" if member.flow == wiring.In else "o_") + pname] = Value.cast(getattr(part, pname))
        if "clk" in ports:
            args["i_clk"] = ClockSignal()
        if "rst" in ports:
            args["i_rst"] = ResetSignal()
        m.submodules[name] = Instance(module, **args)
        part._MustUse__silence = True  # type: ignore[attr-defined]
        return part

    # -- elaboration ---------------------------------------------------------------------------------
    def elaborate(self, platform):  # type: ignore[no-untyped-def]
        m = Module()
        ex, w = self.exp, self.fmt.width
        R = C = self.rows
        E, F, M1, T, d = self.e, self.f, self.m1, self.tiles, self.lookahead
        banks = d + 1
        tw = max(1, (T + M1 + 1).bit_length())  # tile counters (may pass T by up to M1)

        # this run's sizes (p_tiles, m_tiles: at most the tile's P1, M1), taken at start
        running = Signal()
        # a run starts only from rest: every controller idle (then nothing of an old run is reset)
        starting = Signal(name="starting")
        idle = []
        m1r = Signal(range(M1 + 1), name="run_m1")
        tr = Signal(tw, name="run_tiles")
        bases = {
            "k": Signal(self.addr_width, name="k_base_in"),
            "v": Signal(self.addr_width, name="v_base_in"),
            "av": Signal(self.addr_width, name="av_base_in"),
        }
        m.d.comb += [
            bases["k"].eq(self.p_tiles * E),
            bases["v"].eq(bases["k"] + self.m_tiles * E),
            bases["av"].eq(bases["v"] + self.m_tiles * F),
        ]
        with m.If(starting):
            m.d.sync += [m1r.eq(self.m_tiles), tr.eq(self.p_tiles * self.m_tiles)]
        with m.If(starting):
            m.d.sync += [running.eq(1), self.cycles.eq(0), self.done.eq(0)]
        with m.Elif(running):
            m.d.sync += self.cycles.eq(self.cycles + 1)

        # -- counters that tell one unit what another has done (visible the cycle after) -------------
        def counter(name: str) -> Signal:
            return Signal(tw, name=name)

        qk_started = counter("qk_started")
        lm_ready = counter("lm_ready")
        rm_done = counter("rm_done")
        sln_done = counter("sln_done")
        sld_done = counter("sld_done")
        slnv_done = counter("slnv_done")
        rnv_done = counter("rnv_done")
        loaded = counter("loaded")  # tiles < loaded have their transfer done
        qk_go = Signal()  # a QK starts this cycle
        with m.If(starting):
            m.d.sync += [
                c.eq(0) for c in (qk_started, lm_ready, rm_done, sln_done, sld_done, slnv_done, rnv_done)
            ]
        busy = [Signal(32, name=f"busy_{t}") for t in TASKS]
        m.d.comb += [self.busy[i].eq(b) for i, b in enumerate(busy)]
        active = {t: Signal(name=f"run_{t}") for t in TASKS}
        with m.If(starting):
            m.d.sync += [b.eq(0) for b in busy]
        with m.Else():
            for i, t in enumerate(TASKS):
                with m.If(active[t]):
                    m.d.sync += busy[i].eq(busy[i] + 1)

        # -- buffer ------------------------------------------------------------------------------------
        vec = data.ArrayLayout(signed(w), R)
        m.submodules.qbuf = qbuf = Memory(shape=vec, depth=2 * E, init=[])
        m.submodules.kbuf = kbuf = Memory(shape=vec, depth=M1 * E, init=[])
        m.submodules.vbuf = vbuf = Memory(shape=vec, depth=M1 * F, init=[])
        m.submodules.slnv_link = slnv_mem = Memory(shape=vec, depth=F, init=[])
        q_rd, k_rd, v_rd = qbuf.read_port(), kbuf.read_port(), vbuf.read_port()
        q_wr, k_wr, v_wr = qbuf.write_port(), kbuf.write_port(), vbuf.write_port()
        slnv_wr, slnv_rd = slnv_mem.write_port(), slnv_mem.read_port(domain="comb")

        # -- loader: requests ---------------------------------------------------------------------------
        idle += self._loader(m, starting, qk_started, qk_go, loaded, q_wr, k_wr, v_wr, tw, m1r, tr, bases)

        # -- the 2D array -----------------------------------------------------------------------------
        pe_op = Signal(Op2D, name="pe_op")
        pe_first = Signal(name="pe_first")
        pe_step = Signal(range(ex.cycles), name="pe_step")
        lm_link = [[Signal(signed(w), name=f"lm_link{b}_{c}") for c in range(C)] for b in range(banks)]
        rm_link = [Signal(signed(w), name=f"rm_link{c}") for c in range(C)]
        sld_link = [Signal(signed(w), name=f"sld_link{c}") for c in range(C)]
        grid = self._part(m, "grid", self.grid2d())
        m.d.comb += [
            grid.op.eq(pe_op),
            grid.first.eq(pe_first),
            grid.step.eq(pe_step),
            grid.k.eq(k_rd.data),
            grid.q.eq(q_rd.data),
            grid.v.eq(v_rd.data),
            grid.rm.eq(Cat(*rm_link)),
        ]

        h = counter("head_tile")  # next tile whose QK, LM the 2D array runs
        h_s = Signal(range(M1 + 1), name="head_s")
        h_qb = Signal(range(2), name="head_qbuf")
        h_bank = Signal(range(banks), name="head_bank")
        h_kbase = Signal(range(M1 * E + 1), name="head_kbase")
        g2 = counter("rest_tile")  # the tile whose SLN, SLD, SLNV the 2D array runs next
        g2_s = Signal(range(M1 + 1), name="rest_s")
        g2_bank = Signal(range(banks), name="rest_bank")
        g2_vbase = Signal(range(M1 * F + 1), name="rest_vbase")
        k2 = Signal(range(max(E, F, ex.cycles) + 3), name="k2")  # cycle within the 2D array's task

        m.d.comb += [grid.bank_w.eq(h_bank), grid.bank_r.eq(g2_bank)]
        lm_go = Signal()
        self._row_max(m, lm_go, h_bank, grid, lm_link, lm_ready, banks)

        def wrap(v: Signal, n: int) -> object:
            return Mux(v == n - 1, 0, v + 1)

        def after_heads(m: Module, nh: object, g_next: object) -> None:
            """Next task of the 2D array once tile ``nh - 1``'s heads are issued: more heads while
            they are within the lookahead, else the rest of tile ``g_next``."""
            with m.If((nh <= g_next + d) & (nh < tr)):
                m.next = "QK"
            with m.Elif(g_next < tr):
                m.next = "SLN"
            with m.Else():
                m.next = "DONE"

        with m.FSM(name="ctrl2d") as fsm2:
            with m.State("IDLE"):
                with m.If(starting):
                    m.d.sync += [h.eq(0), h_s.eq(0), h_qb.eq(0), h_bank.eq(0), h_kbase.eq(0), k2.eq(0)]
                    m.d.sync += [g2.eq(0), g2_s.eq(0), g2_bank.eq(0), g2_vbase.eq(0)]
                    m.next = "QK"
            with m.State("QK"):
                ok = loaded > h
                if d == 0:
                    ok = ok & (rnv_done >= h)  # without interleaving: the 1D array took tile h - 1
                go = (k2 != 0) | ok
                m.d.comb += active["QK"].eq(go)
                m.d.comb += [q_rd.addr.eq(h_qb * E + k2), k_rd.addr.eq(h_kbase + k2)]
                m.d.comb += [q_rd.en.eq(1), k_rd.en.eq(1)]
                with m.If(k2 == 0):
                    m.d.comb += qk_go.eq(ok)
                    with m.If(ok):
                        m.d.sync += k2.eq(1)
                        with m.If(qk_started != (1 << tw) - 1):  # saturates (never in a run)
                            m.d.sync += qk_started.eq(qk_started + 1)
                with m.Elif(k2 <= E):  # the MAC of e = k2 - 1 (its operands read the cycle before)
                    m.d.comb += [pe_op.eq(Op2D.MAC), pe_first.eq(k2 == 1)]
                    m.d.sync += k2.eq(k2 + 1)
                with m.Else():  # QK = round(acc) * scale, into the rows' register files
                    m.d.comb += pe_op.eq(Op2D.SCALE)
                    m.d.sync += k2.eq(0)
                    m.next = "LM"
            with m.State("LM"):
                m.d.comb += [active["LM"].eq(1), lm_go.eq(1)]
                last_s = h_s == m1r - 1
                m.d.sync += [
                    h.eq(h + 1),
                    h_s.eq(Mux(last_s, 0, h_s + 1)),
                    h_qb.eq(Mux(last_s, ~h_qb, h_qb)),
                    h_kbase.eq(Mux(last_s, 0, h_kbase + E)),
                    h_bank.eq(wrap(h_bank, banks)),
                ]
                after_heads(m, h + 1, g2)
            with m.State("SLN"):
                ok = rm_done > g2
                m.d.comb += active["SLN"].eq((k2 != 0) | ok)
                with m.If(k2 == 0):
                    with m.If(ok):
                        m.d.comb += pe_op.eq(Op2D.SUB)
                        m.d.sync += k2.eq(1)
                with m.Else():
                    m.d.comb += [pe_op.eq(Op2D.EXP), pe_step.eq(k2 - 1)]
                    m.d.sync += k2.eq(k2 + 1)
                    with m.If(k2 == ex.cycles):
                        m.d.sync += [k2.eq(0), sln_done.eq(sln_done + 1)]
                        m.next = "SLD"
            with m.State("SLD"):
                m.d.comb += active["SLD"].eq(1)
                m.d.sync += [sld_link[c].eq(grid.sld[c]) for c in range(C)]
                m.d.sync += sld_done.eq(sld_done + 1)
                m.next = "SLNV"
            with m.State("SLNV"):
                m.d.comb += active["SLNV"].eq(1)
                m.d.comb += [v_rd.addr.eq(g2_vbase + k2), v_rd.en.eq(1)]
                with m.If(k2 == 0):
                    m.d.sync += k2.eq(1)
                with m.Else():
                    m.d.comb += pe_op.eq(Op2D.DOT)
                    m.d.comb += [slnv_wr.addr.eq(k2 - 1), slnv_wr.en.eq(1)]
                    m.d.comb += slnv_wr.data.eq(grid.dot)
                    m.d.sync += k2.eq(k2 + 1)
                    with m.If(k2 == F):
                        last_s = g2_s == m1r - 1
                        m.d.sync += [
                            k2.eq(0),
                            slnv_done.eq(slnv_done + 1),
                            g2.eq(g2 + 1),
                            g2_s.eq(Mux(last_s, 0, g2_s + 1)),
                            g2_vbase.eq(Mux(last_s, 0, g2_vbase + F)),
                            g2_bank.eq(wrap(g2_bank, banks)),
                        ]
                        after_heads(m, h, g2 + 1)
            with m.State("DONE"):
                m.next = "IDLE"
        name_states(m, fsm2, "ctrl2d")
        idle.append(fsm2.ongoing("IDLE"))

        # -- the 1D array -------------------------------------------------------------------------------
        idle += self._array1d(
            m, running, starting, lm_link, rm_link, sld_link, slnv_rd, lm_ready, rm_done, sln_done,
            sld_done, slnv_done, rnv_done, active, tw, banks, m1r, tr, bases,
        )  # fmt: skip
        m.d.comb += starting.eq(self.start & ~running & Cat(*idle).all())
        return m

    def _row_max(self, m, go, bank, grid, link, ready, banks):  # type: ignore[no-untyped-def]
        """The max across the rows of the scores in ``bank``, launched by ``go``: a tagged pipeline
        whose values are the grid's columns' (:class:`Column`: ``chain``, ``registered_tree`` or
        ``tree``) and whose valid bit and tag (the tile's bank) are this controller's. The result
        is written to ``link[tag]`` as ``ready`` counts it. Row ``r`` of the grid reads its scores
        at ``bank_max[r]``: in a chain its own stage's tag, in a tree all at ``bank``."""
        R, C = self.rows, self.cols
        valid, tag = go, bank
        if self.reduction == "chain":
            for r in range(R):
                m.d.comb += grid.bank_max[r].eq(tag)
                sv = Signal(name=f"lm_chain_valid{r}")
                st = Signal(range(max(banks, 2)), name=f"lm_chain_tag{r}")
                m.d.sync += [sv.eq(valid), st.eq(tag)]
                valid, tag = sv, st
        else:
            m.d.comb += [grid.bank_max[r].eq(bank) for r in range(R)]
            if self.reduction == "registered_tree":
                for depth in range(max(0, (R - 1).bit_length())):
                    sv = Signal(name=f"lm_tree_valid{depth}")
                    st = Signal(range(max(banks, 2)), name=f"lm_tree_tag{depth}")
                    m.d.sync += [sv.eq(valid), st.eq(tag)]
                    valid, tag = sv, st
        with m.If(valid):
            with m.Switch(tag):
                for b in range(banks):
                    with m.Case(b):
                        m.d.sync += [link[b][c].eq(grid.max[c]) for c in range(C)]
            m.d.sync += ready.eq(ready + 1)

    def _segments(self, m, name, starting, tw, M1, T, beat):  # type: ignore[no-untyped-def]
        """One walk, in order, over the tiles' DRAM segments: Q of a query tile at its first key
        tile, then K and V of each key tile while in query tile 0. ``beat(m, segment, first,
        last, first_key_tile, tile)`` drives the caller's port in the current segment and returns
        when a beat moves. The requests and the answers take the same walk. Returns the tile the
        walk is at (``T`` once done) and whether it is idle."""
        E, F = self.e, self.f
        g = Signal(tw, name=f"{name}_tile")
        q0 = Signal(name=f"{name}_first_qtile")  # in query tile 0
        s0 = Signal(name=f"{name}_first_ktile")  # at a query tile's first key tile
        i = Signal(range(max(E, F) + 1), name=f"{name}_beat")
        with m.FSM(name=name) as fsm:
            with m.State("IDLE"):
                with m.If(starting):
                    m.d.sync += [g.eq(0), q0.eq(1), s0.eq(1), i.eq(0)]
                    m.next = "Q"

            def advance(m: Module) -> None:
                """To the next tile with beats: every tile of query tile 0, then each query tile's first."""
                last_of_q0 = q0 & (g == M1 - 1)
                nxt = Mux(q0, g + 1, g + M1)
                m.d.sync += [g.eq(nxt), i.eq(0), s0.eq(Mux(q0, last_of_q0, 1)), q0.eq(q0 & ~last_of_q0)]
                with m.If(nxt >= T):
                    m.d.sync += g.eq(T)
                    m.next = "DONE"
                with m.Elif(Mux(q0, last_of_q0, 1)):
                    m.next = "Q"
                with m.Else():
                    m.next = "K"

            for seg, count in (("Q", E), ("K", E), ("V", F)):
                with m.State(seg):
                    last = i == count - 1
                    with m.If(beat(m, seg, i == 0, last, s0, g)):
                        m.d.sync += i.eq(Mux(last, 0, i + 1))
                        with m.If(last):
                            if seg == "Q":
                                with m.If(q0):
                                    m.next = "K"
                                with m.Else():
                                    advance(m)
                            elif seg == "K":
                                m.next = "V"
                            else:
                                advance(m)
            with m.State("DONE"):
                m.next = "IDLE"
        name_states(m, fsm, name)
        return g, fsm.ongoing("IDLE")

    def _loader(self, m, starting, qk_started, qk_go, loaded, q_wr, k_wr, v_wr, tw, M1, T, bases):  # type: ignore[no-untyped-def]
        """Requests each tile's beats in order (``rd_req``) and writes the answers into the buffer
        (``rd_resp``); ``loaded`` counts the tiles whose transfer is complete."""
        E, F = self.e, self.f
        aw, max_m1 = self.addr_width, self.m1
        addr = {seg: Signal(aw, name=f"req_{seg.lower()}_addr") for seg in "QKV"}
        with m.If(starting):
            m.d.sync += [addr["Q"].eq(0), addr["K"].eq(bases["k"]), addr["V"].eq(bases["v"])]
        started = qk_started + qk_go  # QKs started, this cycle's included

        def request(m: Module, seg: str, first: Value, last: Value, s0: Value, g: Value) -> Value:
            may = (g < 2) | (started >= g - 1)  # double buffering: tile g - 2 has started
            # a tile's first segment waits for that; K is first where the tile loads no Q
            gate = {"Q": may, "K": Mux(s0, 1, may | ~first), "V": Const(1)}[seg]
            m.d.comb += [self.rd_req.valid.eq(gate), self.rd_req.payload.eq(addr[seg])]
            moved = self.rd_req.valid & self.rd_req.ready
            with m.If(moved):
                m.d.sync += addr[seg].eq(addr[seg] + 1)
            return moved

        _, req_idle = self._segments(m, "req", starting, tw, M1, T, request)

        # answers: the same walk, written into the buffer as they come
        qb = Signal(name="resp_qbuf")
        at = {
            "K": Signal(range(max_m1 * E + 1), name="resp_k_at"),
            "V": Signal(range(max_m1 * F + 1), name="resp_v_at"),
        }
        w_i = Signal(range(E + 1), name="resp_q_at")
        with m.If(starting):
            m.d.sync += [qb.eq(0), w_i.eq(0), at["K"].eq(0), at["V"].eq(0)]
        m.d.comb += self.rd_resp.ready.eq(1)

        def answer(m: Module, seg: str, first: Value, last: Value, s0: Value, g: Value) -> Value:
            take = self.rd_resp.valid
            port = {"Q": q_wr, "K": k_wr, "V": v_wr}[seg]
            m.d.comb += [
                port.addr.eq(qb * E + w_i if seg == "Q" else at[seg]),
                port.data.eq(self.rd_resp.payload),
            ]
            m.d.comb += port.en.eq(take)
            with m.If(take):
                if seg == "Q":
                    m.d.sync += w_i.eq(Mux(last, 0, w_i + 1))
                    with m.If(last):
                        m.d.sync += qb.eq(~qb)
                else:
                    m.d.sync += at[seg].eq(at[seg] + 1)
            return take

        wg, resp_idle = self._segments(m, "resp", starting, tw, M1, T, answer)
        m.d.comb += loaded.eq(wg)
        return [req_idle, resp_idle]

    def _array1d(self, m, running, starting, lm_link, rm_link, sld_link, slnv_rd, lm_ready, rm_done, sln_done,
                 sld_done, slnv_done, rnv_done, active, tw, banks, M1, T, bases):  # type: ignore[no-untyped-def]  # fmt: skip
        ex, w = self.exp, self.fmt.width
        C, F, d = self.cols, self.f, self.lookahead
        g1 = Signal(tw, name="tile1d")
        s1 = Signal(range(self.m1 + 1), name="tile1d_s")
        b1 = Signal(range(banks), name="tile1d_bank")
        av_addr = Signal(self.addr_width, name="av_addr")
        k1 = Signal(range(max(F + self.div_latency, ex.cycles) + 2), name="k1")
        op1 = Signal(Op1D, name="pe1d_op")
        step1 = Signal(range(ex.cycles), name="pe1d_step")

        # RNV: one register file of F entries, a column of values per PE, read and written at k1
        m.submodules.rnv = rnv_mem = Memory(shape=data.ArrayLayout(signed(w), C), depth=F, init=[])
        rnv_rd, rnv_wr = rnv_mem.read_port(domain="comb"), rnv_mem.write_port()
        m.d.comb += [rnv_rd.addr.eq(k1), rnv_wr.addr.eq(k1)]
        pe = []
        for p in range(C):
            u = self._part(m, f"pe1d_{p}", self.pe1d())
            lm_now = Array(lm_link[b][p] for b in range(banks))[b1] if banks > 1 else lm_link[0][p]
            m.d.comb += [
                u.op.eq(op1),
                u.step.eq(step1),
                u.first.eq(s1 == 0),
                u.lm.eq(lm_now),
                u.sld.eq(sld_link[p]),
                u.rnv.eq(rnv_rd.data[p]),
                u.slnv.eq(slnv_rd.data[p]),
                rm_link[p].eq(u.rm_out),
                rnv_wr.data[p].eq(u.rnv_next),
            ]
            pe.append(u)
        out_layout = data.StructLayout(
            {"addr": unsigned(self.addr_width), "data": data.ArrayLayout(signed(w), C)}
        )
        m.submodules.out_fifo = out = _OutFifo(out_layout, 2 * F)
        av_beat = Signal(out_layout, name="av_beat")
        m.d.comb += out.w_data.eq(av_beat)
        m.d.comb += [self.wr.valid.eq(out.r_rdy), self.wr.payload.eq(out.r_data)]
        m.d.comb += out.r_en.eq(self.wr.ready)
        all_out = Signal(name="av_all_computed")
        L = self.div_latency
        if L:
            # the divisions in flight: a valid bit and the output beat's address a stage
            issue = Signal(name="av_issue")
            inflight = Signal(range(L + 1), name="av_inflight")
            valid = [Signal(name=f"av_valid{j}") for j in range(L)]
            addr = [Signal(self.addr_width, name=f"av_addr{j}") for j in range(L)]
            m.d.sync += [valid[0].eq(issue), addr[0].eq(av_addr)]
            m.d.sync += [valid[j].eq(valid[j - 1]) for j in range(1, L)]
            m.d.sync += [addr[j].eq(addr[j - 1]) for j in range(1, L)]
            m.d.sync += inflight.eq(inflight + issue - valid[L - 1])
            m.d.comb += [out.w_en.eq(valid[L - 1]), av_beat.addr.eq(addr[L - 1])]
            m.d.comb += [av_beat.data[p].eq(u.av) for p, u in enumerate(pe)]
            with m.If(starting):
                m.d.sync += [inflight.eq(0), *(v.eq(0) for v in valid)]

        with m.FSM(name="ctrl1d") as fsm:
            with m.State("IDLE"):
                with m.If(starting):
                    m.d.sync += [
                        g1.eq(0),
                        s1.eq(0),
                        b1.eq(0),
                        k1.eq(0),
                        all_out.eq(0),
                        av_addr.eq(bases["av"]),
                    ]
                    m.d.comb += op1.eq(Op1D.CLEAR)
                    m.next = "RM"
            with m.State("RM"):
                ok = lm_ready > g1
                if d == 0:
                    ok = ok & (sln_done >= g1)  # without interleaving: the 2D array took RM of g1 - 1
                m.d.comb += active["RM"].eq(ok)
                with m.If(ok):
                    m.d.comb += op1.eq(Op1D.RM)
                    m.d.sync += rm_done.eq(rm_done + 1)
                    m.next = "PRM"
            with m.State("PRM"):
                m.d.comb += active["PRM"].eq(1)
                with m.If(k1 == 0):
                    m.d.comb += op1.eq(Op1D.SUB)
                with m.Else():
                    m.d.comb += [op1.eq(Op1D.EXP), step1.eq(k1 - 1)]
                m.d.sync += k1.eq(k1 + 1)
                with m.If(k1 == ex.cycles):
                    m.d.sync += k1.eq(0)
                    m.next = "SPD"
            with m.State("SPD"):
                m.d.comb += [active["SPD"].eq(1), op1.eq(Op1D.SPD)]
                m.next = "RD"
            with m.State("RD"):
                ok = sld_done > g1
                m.d.comb += active["RD"].eq(ok)
                with m.If(ok):
                    m.d.comb += op1.eq(Op1D.RD)
                    m.next = "SPNV"
            with m.State("SPNV"):
                m.d.comb += [active["SPNV"].eq(1), op1.eq(Op1D.SPNV)]
                m.d.comb += rnv_wr.en.eq(1)  # a query tile's first key tile starts from RNV = 0
                m.d.sync += k1.eq(k1 + 1)
                with m.If(k1 == F - 1):
                    m.d.sync += k1.eq(0)
                    m.next = "RNV"
            with m.State("RNV"):
                ok = (k1 != 0) | (slnv_done > g1)
                m.d.comb += [active["RNV"].eq(ok), op1.eq(Op1D.RNV)]
                m.d.comb += slnv_rd.addr.eq(k1)
                m.d.comb += rnv_wr.en.eq(ok)
                with m.If(ok):
                    m.d.sync += k1.eq(k1 + 1)
                    with m.If(k1 == F - 1):
                        last_s = s1 == M1 - 1
                        m.d.sync += [k1.eq(0), rnv_done.eq(rnv_done + 1)]
                        with m.If(last_s):
                            m.next = "AV"
                        with m.Else():
                            m.d.sync += [g1.eq(g1 + 1), s1.eq(s1 + 1), b1.eq(Mux(b1 == banks - 1, 0, b1 + 1))]
                            m.next = "RM"
            with m.State("AV"):
                if L == 0:
                    room = out.w_rdy
                    m.d.comb += active["AV"].eq(room)
                    m.d.comb += av_beat.addr.eq(av_addr)
                    m.d.comb += [av_beat.data[p].eq(u.av) for p, u in enumerate(pe)]
                    m.d.comb += out.w_en.eq(room)
                    with m.If(room):
                        m.d.sync += [k1.eq(k1 + 1), av_addr.eq(av_addr + 1)]
                        with m.If(k1 == F - 1):
                            m.d.sync += k1.eq(0)
                            m.d.comb += op1.eq(Op1D.CLEAR)
                            m.d.sync += [g1.eq(g1 + 1), s1.eq(0), b1.eq(Mux(b1 == banks - 1, 0, b1 + 1))]
                            with m.If(g1 + 1 >= T):
                                m.d.sync += all_out.eq(1)
                                m.next = "DONE"
                            with m.Else():
                                m.next = "RM"
                else:  # F divisions issued (each when its result will find room), then L to drain
                    issuing = k1 < F
                    room = (out.level + inflight) < out.depth
                    m.d.comb += active["AV"].eq(~issuing | room)
                    with m.If(issuing):
                        with m.If(room):
                            m.d.comb += issue.eq(1)
                            m.d.sync += [k1.eq(k1 + 1), av_addr.eq(av_addr + 1)]
                            with m.If(k1 == F - 1):
                                m.d.comb += op1.eq(Op1D.CLEAR)  # the pipeline holds its operands
                    with m.Else():
                        m.d.sync += k1.eq(k1 + 1)
                        with m.If(k1 == F + L - 1):
                            m.d.sync += k1.eq(0)
                            m.d.sync += [g1.eq(g1 + 1), s1.eq(0), b1.eq(Mux(b1 == banks - 1, 0, b1 + 1))]
                            with m.If(g1 + 1 >= T):
                                m.d.sync += all_out.eq(1)
                                m.next = "DONE"
                            with m.Else():
                                m.next = "RM"
            with m.State("DONE"):
                m.next = "IDLE"
        name_states(m, fsm, "ctrl1d")
        # the run ends in the cycle the last output beat is taken
        last_taken = all_out & (out.level == 1) & out.r_rdy & self.wr.ready
        with m.If(running & last_taken):
            m.d.sync += [running.eq(0), self.done.eq(1)]
        return [fsm.ongoing("IDLE")]


class _OutFifo(wiring.Component):
    """The output FIFO: ``depth`` (rounded up to a power of two) entries, first word through.

    Its state is a head pointer and a count, so every state is one it can reach or one that drains
    cleanly (a count above ``depth`` only empties): the tile's handshake proof is inductive."""

    def __init__(self, layout: data.Layout, depth: int) -> None:
        self.depth = 1 << max(1, (depth - 1).bit_length())
        self.layout = layout
        super().__init__(
            {
                "w_data": In(layout),
                "w_en": In(1),
                "w_rdy": Out(1),
                "r_data": Out(layout),
                "r_en": In(1),
                "r_rdy": Out(1),
                "level": Out(range(self.depth + 1)),
            }
        )

    def elaborate(self, platform):  # type: ignore[no-untyped-def]
        m = Module()
        n = self.depth
        m.submodules.store = store = Memory(shape=self.layout, depth=n, init=[])
        wp, rp = store.write_port(), store.read_port(domain="comb")
        head = Signal(range(n), name="head")
        count = self.level
        take = self.r_en & self.r_rdy
        put = self.w_en & self.w_rdy
        m.d.comb += [self.r_rdy.eq(count != 0), self.w_rdy.eq(count < n)]
        m.d.comb += [rp.addr.eq(head), self.r_data.eq(rp.data)]
        m.d.comb += [
            wp.addr.eq((head + count)[: (n - 1).bit_length()]),
            wp.data.eq(self.w_data),
            wp.en.eq(put),
        ]
        with m.If(take):
            m.d.sync += head.eq(head + 1)
        m.d.sync += count.eq(count + put - take)
        return m
