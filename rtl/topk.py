"""SpAtten's top-k engine: quick-select with parallel comparators, zero eliminators and FIFOs.

Finds the indices of the ``k`` largest of ``n <= n_max`` scores and emits them in their original
order, ties going to the lower index (spatten.md section 2). Scores arrive ``parallelism`` per
row on ``i`` (``scores``, ``count`` valid lanes, ``k``, ``last``); only the last row of a vector
may have ``count < parallelism``. ``k`` is read from the first row and must be in ``1..n``.

How it works, per vector:

- **Round 1 runs while the scores stream in.** Each row is stored in the data buffer ``D`` and
  compared, in ``parallelism`` comparators, with the pivot (the vector's first score): the greater
  ones and the smaller ones are compacted by a zero eliminator each (SpAtten's: a prefix sum and
  ``log2 P`` shift stages), realigned into full rows (a ``log2 P``-stage barrel shift) and written
  to two row buffers; equal ones are counted.
- **Decide** (1 cycle): with ``g`` greater, ``e`` equal and ``target`` still to find: if
  ``g >= target`` recurse into the greater buffer; if ``g + e >= target`` the threshold is the
  pivot and ``target - g`` of its copies are kept; otherwise ``target -= g + e`` and recurse into
  the smaller buffer. The next pivot is the first element written to that buffer.
- **Later rounds** stream the chosen buffer (one row a cycle) through the same comparators; the
  greater side is written back into the same buffer in place (its write pointer never passes the
  read pointer), the smaller side into the other.
- **Filter**: ``D`` is read again in order; a score is kept if it beats the threshold, or equals
  it and fewer than ``keep`` equal ones came before. A zero eliminator compacts the kept indices
  of each row into one ``o`` item (``idx``, ``count``, ``last``). The filter stops at the ``k``-th.

Cycle model (:func:`topk_cycles`, from :mod:`mapper.topk`, shared with the simulator):
``ceil(n / P) + 1`` for the first round, ``rows + 1`` per later round (the select phase), then one
cycle per filtered row up to the row holding the ``k``-th index (the filter phase). It depends on
the data (how many rounds quick-select takes), so the model replays the algorithm.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from amaranth.hdl import Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from mapper.topk import TopKTrace
from mapper.topk import topk_trace as _trace
from rtl._params import RTLConfigError, check_int, name_states

__all__ = ["TopK", "TopKTrace", "topk_cycles", "topk_expected_cycles", "topk_trace"]


def topk_trace(scores: Sequence[int], k: int, parallelism: int) -> TopKTrace:
    """Replay the engine's algorithm on one vector (the exact cycle model, and a second golden):
    :func:`mapper.topk.topk_trace`, the one implementation the simulator uses too."""
    try:
        return _trace(scores, k, parallelism)
    except ValueError as exc:
        raise RTLConfigError(str(exc)) from None


def topk_cycles(vectors: Sequence[tuple[Sequence[int], int]], parallelism: int) -> int:
    """Cycles from the first input transfer to the last output transfer, inclusive, for vectors
    ``(scores, k)`` sent back to back with the output always accepted."""
    return sum(topk_trace(s, k, parallelism).cycles for s, k in vectors) + 1


def topk_expected_cycles(n: int, k: int, parallelism: int, *, samples: int = 64, seed: int = 0) -> float:
    """Mean cycles per vector over random distinct scores (for the simulator's cost tables)."""
    rng = random.Random(seed)
    total = 0
    for _ in range(samples):
        scores = rng.sample(range(-(1 << 15), 1 << 15), n)
        total += topk_trace(scores, k, parallelism).cycles
    return total / samples


class TopK(wiring.Component):
    """Quick-select top-k over up to ``n`` scores of ``width`` bits, ``parallelism`` per cycle."""

    def __init__(self, *, n: int = 16, parallelism: int = 4, width: int = 16) -> None:
        self.n = check_int("topk", "n", n, 1, 1 << 16, owner=self)
        self.p = check_int("topk", "parallelism", parallelism, 1, 64, owner=self)
        self.width = check_int("topk", "width", width, 2, 32, owner=self)
        self.rows = math.ceil(n / parallelism)
        vec = data.ArrayLayout(signed(width), parallelism)
        self.row_layout = vec
        super().__init__(
            {
                "i": In(
                    stream.Signature(
                        data.StructLayout(
                            {"scores": vec, "count": range(parallelism + 1), "k": range(n + 1), "last": 1}
                        )
                    )
                ),
                "o": Out(
                    stream.Signature(
                        data.StructLayout(
                            {
                                "idx": data.ArrayLayout(range(max(n, 2)), parallelism),
                                "count": range(parallelism + 1),
                                "last": 1,
                            }
                        )
                    )
                ),
            }
        )

    # ------------------------------------------------------------------ combinational building blocks
    def _compact(
        self, m: Module, name: str, mask: Sequence[Value], vals: Sequence[Value], shape: object
    ) -> tuple[list[Signal], Signal]:
        """Zero eliminator (SpAtten §4.2): the masked-in values moved to the front, in order, and
        their count. A prefix sum gives each lane the number of dropped lanes before it; then
        ``log2(P)`` shift stages move a lane left by ``2**s`` in stage ``s`` when bit ``s`` of that
        number is set (least significant first, so two lanes never meet): ``P log P`` muxes."""
        p = self.p
        bits = (p - 1).bit_length()  # shift stages: 0 for one lane
        count = Signal(range(p + 1), name=f"{name}_n")
        # every intermediate is a signal: an expression used twice would be emitted twice
        keep = [Signal(name=f"{name}_m{i}") for i in range(p)]
        m.d.comb += [keep[i].eq(mask[i]) for i in range(p)]
        dropped = [Signal(range(p + 1), name=f"{name}_d{i}") for i in range(p + 1)]  # dropped before i
        m.d.comb += dropped[0].eq(0)
        m.d.comb += [dropped[i + 1].eq(dropped[i] + ~keep[i]) for i in range(p)]
        m.d.comb += count.eq(p - dropped[p])
        cur_v: list[Value] = list(vals)
        cur_ok: list[Value] = list(keep)
        cur_z: list[Value] = list(dropped[:p])
        for st in range(bits):
            step = 1 << st
            nv = [Signal(shape, name=f"{name}_s{st}v{i}") for i in range(p)]  # type: ignore[arg-type]
            nok = [Signal(name=f"{name}_s{st}k{i}") for i in range(p)]
            nz = [Signal(range(p + 1), name=f"{name}_s{st}z{i}") for i in range(p)]
            for i in range(p):
                src = i + step
                take = cur_ok[src] & cur_z[src][st] if src < p else Const(0)
                stay = cur_ok[i] & ~cur_z[i][st]
                m.d.comb += [
                    nv[i].eq(Mux(take, cur_v[src], cur_v[i]) if src < p else cur_v[i]),
                    nok[i].eq(take | stay),
                    nz[i].eq(Mux(take, cur_z[src], cur_z[i]) if src < p else cur_z[i]),
                ]
            cur_v, cur_ok, cur_z = list(nv), list(nok), list(nz)
        out = [Signal(shape, name=f"{name}_c{j}") for j in range(p)]  # type: ignore[arg-type]
        m.d.comb += [out[j].eq(cur_v[j]) for j in range(p)]
        return out, count

    def _realign(
        self, m: Module, name: str, partial: Sequence[Signal], pc: Signal, comp: Sequence[Signal], c: Value
    ) -> tuple[Signal, list[Signal], list[Signal], Signal]:
        """Pack compacted rows into full rows: (write now, the full row, the new partial, its count).
        The compacted row is shifted right by the partial count through ``log2(P)`` barrel stages
        and placed after the partial row: ``2 P log P`` muxes."""
        p, w = self.p, self.width
        bits = (p - 1).bit_length()  # barrel stages: 0 for one lane
        shifted: list[Value] = list(comp) + [Const(0, signed(w))] * p
        for st in range(bits):
            step = 1 << st
            nxt = [Signal(signed(w), name=f"{name}_b{st}_{s}") for s in range(2 * p)]
            for s in range(2 * p):
                moved = shifted[s - step] if s >= step else Const(0, signed(w))
                m.d.comb += nxt[s].eq(Mux(pc[st], moved, shifted[s]))
            shifted = list(nxt)
        combined = [Signal(signed(w), name=f"{name}_k{s}") for s in range(2 * p)]
        for s in range(2 * p):
            m.d.comb += combined[s].eq(Mux(s < pc, partial[s], shifted[s]) if s < p else shifted[s])
        total = pc + c
        full = Signal(name=f"{name}_full")
        new_pc = Signal(range(p), name=f"{name}_npc")
        new_partial = [Signal(signed(w), name=f"{name}_np{s}") for s in range(p)]
        m.d.comb += full.eq(total >= p)
        with m.If(full):
            m.d.comb += new_pc.eq(total - p)
            m.d.comb += [new_partial[s].eq(combined[p + s]) for s in range(p)]
        with m.Else():
            m.d.comb += new_pc.eq(total)
            m.d.comb += [new_partial[s].eq(combined[s]) for s in range(p)]
        return full, combined[:p], new_partial, new_pc

    def elaborate(self, platform):  # type: ignore[no-untyped-def]
        m = Module()
        p, w, rows = self.p, self.width, self.rows
        vec = self.row_layout
        mems = {}
        for name in ("d", "x", "y"):
            mem = Memory(shape=vec, depth=rows, init=[])
            m.submodules[f"mem_{name}"] = mem
            mems[name] = (mem.read_port(domain="comb"), mem.write_port())
        (d_rd, d_wr), (x_rd, x_wr), (y_rd, y_wr) = mems["d"], mems["x"], mems["y"]

        cnt = range(self.n + 1)
        n_total, k_r, target, n_eq = (Signal(cnt, name=s) for s in ("n_total", "k_r", "target", "n_eq"))
        src_count, src_rows = Signal(cnt), Signal(range(rows + 1))
        rptr, in_row, fptr = Signal(range(rows + 1)), Signal(range(rows + 1)), Signal(range(rows + 1))
        base = Signal(range(rows * p + p + 1))
        pivot, theta = Signal(signed(w)), Signal(signed(w))
        keep_eq, eq_seen, emitted = Signal(cnt), Signal(cnt), Signal(cnt)
        gsel = Signal()  # which buffer the greater side writes (0: x, 1: y); the smaller side the other

        side = {}
        for s in ("g", "l"):
            side[s] = {
                "count": Signal(cnt, name=f"{s}_count"),
                "first": Signal(signed(w), name=f"{s}_first"),
                "has": Signal(name=f"{s}_has"),
                "partial": [Signal(signed(w), name=f"{s}_part{j}") for j in range(p)],
                "pc": Signal(range(p), name=f"{s}_pc"),
                "wptr": Signal(range(rows + 1), name=f"{s}_wptr"),
                "we": Signal(name=f"{s}_we"),
                "row": [Signal(signed(w), name=f"{s}_row{j}") for j in range(p)],
                "addr": Signal(range(rows + 1), name=f"{s}_addr"),
            }

        # ---- the comparator stage, shared by round 1 (input rows) and later rounds (buffer rows)
        row_vals = [Signal(signed(w), name=f"row{j}") for j in range(p)]
        row_valid = [Signal(name=f"lane{j}") for j in range(p)]
        row_go = Signal()
        piv = Signal(signed(w))
        gt = [row_valid[j] & (row_vals[j] > piv) for j in range(p)]
        lt = [row_valid[j] & (row_vals[j] < piv) for j in range(p)]
        eq_count = sum((row_valid[j] & (row_vals[j] == piv) for j in range(p)), Const(0, range(p + 1)))
        for s, mask in (("g", gt), ("l", lt)):
            st = side[s]
            comp, c = self._compact(m, f"ze_{s}", mask, row_vals, signed(w))
            full, row, new_partial, new_pc = self._realign(m, f"ra_{s}", st["partial"], st["pc"], comp, c)
            with m.If(row_go):
                m.d.sync += [st["count"].eq(st["count"] + c), st["pc"].eq(new_pc)]
                m.d.sync += [st["partial"][j].eq(new_partial[j]) for j in range(p)]
                with m.If(~st["has"] & (c != 0)):
                    m.d.sync += [st["has"].eq(1), st["first"].eq(comp[0])]
                with m.If(full):
                    m.d.comb += [st["we"].eq(1), st["addr"].eq(st["wptr"])]
                    m.d.comb += [st["row"][j].eq(row[j]) for j in range(p)]
                    m.d.sync += st["wptr"].eq(st["wptr"] + 1)
        with m.If(row_go):
            m.d.sync += n_eq.eq(n_eq + eq_count)

        # ---- buffer write ports: the greater side to gsel's buffer, the smaller to the other
        g, lo = side["g"], side["l"]
        for port, mine in ((x_wr, ~gsel), (y_wr, gsel)):
            with m.If(mine):
                m.d.comb += [port.en.eq(g["we"]), port.addr.eq(g["addr"])]
                m.d.comb += [port.data[j].eq(g["row"][j]) for j in range(p)]
            with m.Else():
                m.d.comb += [port.en.eq(lo["we"]), port.addr.eq(lo["addr"])]
                m.d.comb += [port.data[j].eq(lo["row"][j]) for j in range(p)]

        def clear_round() -> list[object]:
            stmts: list[object] = [n_eq.eq(0), rptr.eq(0), base.eq(0)]
            for st in side.values():
                stmts += [st["count"].eq(0), st["has"].eq(0), st["pc"].eq(0), st["wptr"].eq(0)]
            return stmts

        # ---- output register
        o_load = Signal()
        o_idx = [Signal(range(max(self.n, 2)), name=f"o_idx{j}") for j in range(p)]
        o_count, o_last = Signal(range(p + 1)), Signal()
        with m.If(o_load):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.count.eq(o_count), self.o.payload.last.eq(o_last)]
            m.d.sync += [self.o.payload.idx[j].eq(o_idx[j]) for j in range(p)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        o_free = ~self.o.valid | self.o.ready

        with m.FSM(name="ctrl") as fsm:
            with m.State("IN"):
                m.d.comb += self.i.ready.eq(1)
                first = in_row == 0
                m.d.comb += piv.eq(Mux(first, self.i.payload.scores[0], pivot))
                m.d.comb += [row_vals[j].eq(self.i.payload.scores[j]) for j in range(p)]
                m.d.comb += [row_valid[j].eq(j < self.i.payload.count) for j in range(p)]
                m.d.comb += [d_wr.addr.eq(in_row), d_wr.data.eq(self.i.payload.scores)]
                with m.If(self.i.valid):
                    m.d.comb += [row_go.eq(1), d_wr.en.eq(in_row < rows)]
                    m.d.sync += [in_row.eq(in_row + 1), n_total.eq(n_total + self.i.payload.count)]
                    with m.If(first):
                        m.d.sync += [
                            pivot.eq(self.i.payload.scores[0]),
                            k_r.eq(self.i.payload.k),
                            target.eq(self.i.payload.k),
                        ]
                    with m.If(self.i.payload.last):
                        m.next = "DECIDE"
            with m.State("READ"):
                m.d.comb += piv.eq(pivot)
                m.d.comb += [x_rd.addr.eq(rptr), y_rd.addr.eq(rptr)]
                for j in range(p):
                    m.d.comb += row_vals[j].eq(Mux(gsel, y_rd.data[j], x_rd.data[j]))
                    m.d.comb += row_valid[j].eq(base + j < src_count)
                m.d.comb += row_go.eq(1)
                m.d.sync += [rptr.eq(rptr + 1), base.eq(base + p)]
                with m.If(rptr == src_rows - 1):
                    m.next = "DECIDE"
            with m.State("DECIDE"):
                for st in side.values():  # flush the partial rows
                    with m.If(st["pc"] != 0):
                        m.d.comb += [st["we"].eq(1), st["addr"].eq(st["wptr"])]
                        m.d.comb += [st["row"][j].eq(st["partial"][j]) for j in range(p)]
                m.d.sync += clear_round()
                gc = g["count"]
                with m.If(gc >= target):
                    m.d.sync += [
                        src_count.eq(gc),
                        src_rows.eq(g["wptr"] + (g["pc"] != 0)),
                        pivot.eq(g["first"]),
                    ]
                    m.next = "READ"
                with m.Elif(gc + n_eq >= target):
                    m.d.sync += [
                        theta.eq(pivot),
                        keep_eq.eq(target - gc),
                        fptr.eq(0),
                        eq_seen.eq(0),
                        emitted.eq(0),
                    ]
                    m.next = "FILTER"
                with m.Else():
                    m.d.sync += [
                        target.eq(target - gc - n_eq),
                        src_count.eq(lo["count"]),
                        src_rows.eq(lo["wptr"] + (lo["pc"] != 0)),
                        pivot.eq(lo["first"]),
                        gsel.eq(~gsel),
                    ]
                    m.next = "READ"
            with m.State("FILTER"):
                m.d.comb += d_rd.addr.eq(fptr)
                fbase = Signal(range(rows * p + p + 1), name="f_base")
                m.d.comb += fbase.eq(fptr * p)
                valid = [Signal(name=f"f_valid{j}") for j in range(p)]
                eqs = [Signal(name=f"f_eq{j}") for j in range(p)]
                before = [Signal(cnt, name=f"f_before{j}") for j in range(p + 1)]  # equal ones before j
                keep = [Signal(name=f"f_keep{j}") for j in range(p)]
                vals = [d_rd.data[j] for j in range(p)]
                m.d.comb += before[0].eq(eq_seen)
                for j in range(p):
                    m.d.comb += [
                        valid[j].eq(fbase + j < n_total),
                        eqs[j].eq(valid[j] & (vals[j] == theta)),
                        before[j + 1].eq(before[j] + eqs[j]),
                        keep[j].eq(valid[j] & ((vals[j] > theta) | (eqs[j] & (before[j] < keep_eq)))),
                    ]
                idx = [Signal(range(max(self.n, 2)), name=f"f_idx{j}") for j in range(p)]
                m.d.comb += [idx[j].eq(fbase + j) for j in range(p)]
                comp, c = self._compact(m, "ze_f", keep, idx, unsigned(len(idx[0])))
                done = emitted + c == k_r
                m.d.comb += [o_idx[j].eq(comp[j]) for j in range(p)]
                m.d.comb += [o_count.eq(c), o_last.eq(done)]
                with m.If(o_free):
                    m.d.comb += o_load.eq(c != 0)
                    m.d.sync += [fptr.eq(fptr + 1), emitted.eq(emitted + c), eq_seen.eq(before[p])]
                    with m.If(done | (fptr == rows - 1)):
                        m.d.sync += clear_round()
                        m.d.sync += [in_row.eq(0), n_total.eq(0), gsel.eq(0)]
                        m.next = "IN"
        name_states(m, fsm, "ctrl")
        return m
