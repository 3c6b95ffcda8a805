"""Code generation for the compiler's kernels: a cascade's expressions as Python/Numba source
(:class:`_Gen`), loop nests, the cores' key ranges and tile checks, and the kernel sources
built from the CPU and CUDA templates (:mod:`golden._templates_cpu`, :mod:`golden._templates_cuda`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from einsum import (
    Access,
    Binary,
    BinOp,
    Call,
    Cascade,
    Expr,
    Func,
    Neg,
    Num,
    ParamRef,
    Reduce,
    ReduceOp,
    Size,
    TopK,
    Var,
)
from einsum._expr import free_vars, ordered_vars, product_factors, walk
from golden._plan import _ARITH, _CMP, _FUNCS, NoTemplate, Step, _names, _rename
from golden._templates_cpu import _BLOCK_MASK, _KEY_RANGE, _SOFTMAX, _TILE_CHECK, _WEIGHTED
from golden._templates_cuda import (
    _CUDA,
    _CUDA_SOFTMAX,
    _CUDA_SOFTMAX_END,
    _CUDA_TILED,
    _CUDA_TILED_SOFTMAX,
    _CUDA_TILED_SOFTMAX_END,
    _CUDA_TILED_WEIGHTED,
    _CUDA_TILED_WEIGHTED_END,
    _CUDA_WEIGHTED,
    _CUDA_WEIGHTED_END,
)

_T = TypeVar("_T")


class _Gen:
    """Python (Numba) text of an expression. ``core``: inside an attention template (``qk``, the
    template's dtype, the score's tensors as ``x<n>``); else inside a loop nest (float64 values,
    the step's tensors as ``t<n>``, reductions hoisted into loops before the line that uses them)."""

    def __init__(
        self,
        params: list[str],
        sizes: list[str],
        tensors: list[str],
        *,
        core: bool,
        cuda: bool,
        layouts: Mapping[str, tuple[int, ...]] | None = None,
        mapped: frozenset[str] | None = None,
    ) -> None:
        self.params, self.sizes, self.tensors = params, sizes, tensors
        # tensors read at their own batch entry (``gx<n>`` / ``gt<n>``, from the call's group map:
        # an input shared across the batch, or a K/V head of several query heads) rather than ``g``;
        # None: every tensor (a core's score tensors)
        self.mapped = mapped
        self.core, self.cuda = core, cuda
        self.layouts = dict(layouts or {})  # physical order of a tensor's logical dimensions
        self.lines: list[str] = []
        self.n = 0
        typed = core and not cuda
        self.one, self.zero = ("ONE", "ZERO") if typed else ("1.0", "0.0")
        self.exp = "exp_fast" if core else "math.exp"
        self.tanh = "tanh_fast" if core else "math.tanh"

    def group(self, tensor: str) -> str:
        """The batch entry ``tensor`` is read at: its own (:attr:`mapped`) or the work item's."""
        if self.mapped is not None and tensor not in self.mapped:
            return "g"
        return f"{'gx' if self.core else 'gt'}{self.tensors.index(tensor)}"

    def group_lines(self, ind: int) -> None:
        """Set each mapped tensor's batch entry from the kernel's ``gmap`` (row per tensor)."""
        for i, t in enumerate(self.tensors):
            if self.mapped is None or t in self.mapped:
                self.emit(ind, f"{self.group(t)} = gmap[{i}, g]")

    def szi(self, var: str) -> str:
        return f"szi[{self.sizes.index(var.split('__')[0].upper())}]"

    def ix(self, x: Expr) -> str:
        """An integer index expression."""
        if isinstance(x, Var):
            return f"i_{x.name}"
        if isinstance(x, Num):
            return str(int(x.value))
        if isinstance(x, Size):
            return f"szi[{self.sizes.index(x.rank)}]"
        if isinstance(x, Neg):
            return f"(-{self.ix(x.operand)})"
        if isinstance(x, Binary) and x.op in (BinOp.ADD, BinOp.SUB, BinOp.MUL):
            return f"({self.ix(x.lhs)} {_ARITH[x.op]} {self.ix(x.rhs)})"
        raise NoTemplate(f"{x} is not an integer index expression")

    def physical(self, tensor: str, idx: list[_T]) -> list[_T]:
        order = self.layouts.get(tensor)
        return idx if order is None else [idx[i] for i in order]

    def emit(self, ind: int, line: str) -> None:
        self.lines.append(" " * ind + line)

    def loops(self, ind: int, names: list[str]) -> int:
        for v in names:
            self.emit(ind, f"for i_{v} in range({self.szi(v)}):")
            ind += 4
        return ind

    def py(self, x: Expr, ind: int = 0) -> str:
        if isinstance(x, Num):
            if math.isinf(x.value):
                return "INF" if x.value > 0 else "(-INF)"
            return f"q.dtype.type({float(x.value)!r})" if self.one == "ONE" else repr(float(x.value))
        if isinstance(x, Var):
            if x.name == "qk" and self.core:
                return "qk"
            return f"float(i_{x.name})" if self.cuda or not self.core else f"q.dtype.type(i_{x.name})"
        if isinstance(x, ParamRef):
            if self.core and not self.cuda:  # read once at the kernel's top (_param_lines)
                return f"pv{self.params.index(x.name)}"
            return f"prm[{self.params.index(x.name)}]"
        if isinstance(x, Size):
            return f"sz[{self.sizes.index(x.rank)}]"
        if isinstance(x, Access):
            idx = ", ".join([self.group(x.tensor), *self.physical(x.tensor, [self.ix(i) for i in x.indices])])
            return f"{'x' if self.core else 't'}{self.tensors.index(x.tensor)}[{idx}]"
        if isinstance(x, Neg):
            return f"(-{self.py(x.operand, ind)})"
        if isinstance(x, Binary):
            a, b = self.py(x.lhs, ind), self.py(x.rhs, ind)
            if x.op in _CMP:
                return f"({self.one} if {a} {_CMP[x.op]} {b} else {self.zero})"
            if x.op is BinOp.POW and self.core and not ordered_vars(x.lhs):
                # a power of a constant base (a decay lam ** (p - m)) as an exp, which vectorises
                # (a pow call does not); the base's sign is loop-invariant, so the test hoists
                return f"({self.exp}({b} * math.log({a})) if {a} > {self.zero} else {a} ** {b})"
            return f"({a} {_ARITH[x.op]} {b})"
        if isinstance(x, Call):
            if x.func not in _FUNCS:
                raise NoTemplate(f"the kernel generator does not know {x.func}")
            args = [self.py(a, ind) for a in x.args]
            return _FUNCS[x.func].format(*args, one=self.one, zero=self.zero, exp=self.exp, tanh=self.tanh)
        if isinstance(x, Reduce) and not self.core:
            self.n += 1
            r, t = f"r{self.n}", f"u{self.n}"
            init = {ReduceOp.SUM: "0.0", ReduceOp.PROD: "1.0", ReduceOp.MAX: "-INF", ReduceOp.MIN: "INF"}
            self.emit(ind, f"{r} = {init[x.op]}")
            inner = self.loops(ind, list(x.indices))
            self.emit(inner, f"{t} = {self.py(x.body, inner)}")
            if x.op is ReduceOp.SUM:
                self.emit(inner, f"{r} += {t}")
            elif x.op is ReduceOp.PROD:
                self.emit(inner, f"{r} *= {t}")
            else:
                cmp = ">" if x.op is ReduceOp.MAX else "<"
                self.emit(inner, f"if {t} {cmp} {r} or ({t} != {t} and {r} == {r}):")
                self.emit(inner + 4, f"{r} = {t}")
            return r
        if isinstance(x, TopK) and not self.core:
            return self._topk(x, ind)
        raise NoTemplate(f"cannot generate {x}")

    def statement(self, e: Any, ind: int, bound: set[str]) -> None:
        """Loops over ``e``'s free indices (those not ``bound``) and the store."""
        lhs = [v for v in e.indices if not (e.init and v == e.step)]
        if not self.cuda and self._gemm(e, ind, bound):
            return
        if not self.cuda and self._sum_outside(e, ind, bound):
            return
        ind = self.loops(ind, [v for v in lhs if v not in bound])
        inner = bound | set(lhs)
        if e.summed:
            self.n += 1
            acc = f"a{self.n}"
            self.emit(ind, f"{acc} = 0.0")
            j = self.loops(ind, [v for v in e.summed if v not in inner])
            self.emit(j, f"{acc} += {self.py(e.expr, j)}")
            val = acc
        else:
            val = self.py(e.expr, ind)
        target = []
        for v in e.indices:
            if e.init and v == e.step:
                target.append("0")
            elif v == e.step:
                target.append(f"i_{v} + 1")
            else:
                target.append(f"i_{v}")
        target = self.physical(e.output, target)
        self.emit(ind, f"t{self.tensors.index(e.output)}[{', '.join(['g', *target])}] = {val}")

    def _sum_outside(self, e: Any, ind: int, bound: set[str]) -> bool:
        """A sum whose operands walk the output's last (contiguous) index last, and a summed index
        earlier (a pooling ``AG[p1, e] = sum[p0] BQ[p1, p0, e] / P0``): the sum's loops go
        outside that index, so the innermost loop runs along contiguous memory and accumulates
        into the output row in place. False (nothing emitted) where that does not apply."""
        if e.init or e.step is not None:
            return False
        if e.summed:
            summed, body = list(e.summed), e.expr
        elif isinstance(e.expr, Reduce) and e.expr.op is ReduceOp.SUM:
            summed, body = list(e.expr.indices), e.expr.body
        else:
            return False
        free = [v for v in e.indices if v not in bound]
        target = self.physical(e.output, [f"i_{v}" for v in e.indices])
        last = target[-1][2:]
        if not free or last not in free or any(isinstance(n, Reduce | TopK) for n in walk(body)):
            return False
        strided = False
        for a in (n for n in walk(body) if isinstance(n, Access)):
            uses = self.physical(a.tensor, [set(ordered_vars(i)) for i in a.indices])
            if any(last in u for u in uses[:-1]) or (uses and uses[-1] and uses[-1] != {last}):
                return False
            strided = strided or any(set(summed) & u for u in uses[:-1])
        if not strided:
            return False
        out = f"t{self.tensors.index(e.output)}[{', '.join(['g', *target])}]"
        row = self.loops(ind, [v for v in free if v != last])
        self.emit(row, f"for i_{last} in range({self.szi(last)}):")
        self.emit(row + 4, f"{out} = 0.0")
        inner = self.loops(row, summed)
        self.emit(inner, f"for i_{last} in range({self.szi(last)}):")
        self.emit(inner + 4, f"{out} += {self.py(body, inner + 4)}")
        return True

    def gemm_form(self, e: Any, bound: set[str]) -> tuple[Any, ...] | None:
        """``e`` as ``C[.., i, J..] = X + sum[K..] A' * B[.., K.., J..]`` (or ``B[.., J.., K..]``)
        where the loops would leave ``i`` and the group ``J`` free, the last of C's layout, ``B``
        the one factor reading ``J``, ``A'`` the product of the others (any tensors and weights
        over ``i`` and ``K``), ``X`` free of ``K``; None where it is not. The state update and
        read-out of chunked linear attention and a score matrix ``Q K^T`` take this form."""
        if e.init:
            return None
        free = [v for v in e.indices if v not in bound]
        phys = self.physical(e.output, list(e.indices))
        n = len(free)
        if n < 2 or set(phys[-n:]) != set(free) or any(v not in bound for v in phys[:-n]):
            return None
        i, js = phys[-n], tuple(phys[-n + 1 :])
        x, expr = None, e.expr
        if e.summed:
            ks, body = tuple(e.summed), expr
        else:
            if isinstance(expr, Binary) and expr.op is BinOp.ADD and isinstance(expr.rhs, Reduce):
                x, expr = expr.lhs, expr.rhs
            if not (isinstance(expr, Reduce) and expr.op is ReduceOp.SUM):
                return None
            ks, body = tuple(expr.indices), expr.body
        if set(ks) & (bound | set(free)) or (
            x is not None and (set(ks) & set(ordered_vars(x)) or _nested(x))
        ):
            return None
        factors = product_factors(body)
        if any(_nested(f) for f in factors):
            return None
        bs = [f for f in factors if set(js) & set(ordered_vars(f))]
        if len(bs) != 1 or not isinstance(bs[0], Access) or None in _names(bs[0].indices):
            return None
        b = bs[0]
        bn = self.physical(b.tensor, _names(b.indices))
        tail = len(js) + len(ks)
        if tuple(bn[-tail:]) not in ((*ks, *js), (*js, *ks)) or any(v not in bound for v in bn[:-tail]):
            return None
        rest = [f for f in factors if f is not b]
        if not rest or any(not set(ordered_vars(f)) <= bound | {i, *ks} for f in rest):
            return None
        if any(isinstance(nd, Access) and None in _names(nd.indices) for f in rest for nd in walk(f)):
            return None
        return i, js, ks, x, rest, b, bn, tuple(bn[-tail:]) == (*js, *ks), phys, n

    def _gemm(self, e: Any, ind: int, bound: set[str]) -> bool:
        """Emit ``e`` as a BLAS product where :meth:`gemm_form` finds one: ``C = X`` (or 0) over
        ``i, J``, then ``A'`` over ``i, K`` into a scratch matrix, then ``C += A' B``. False
        (nothing emitted) otherwise."""
        form = self.gemm_form(e, bound)
        if form is None:
            return False
        i, js, ks, x, rest, b, bn, bt, phys, nfree = form
        a = _product(rest)
        out = f"t{self.tensors.index(e.output)}"
        lead = ["g"] + [f"i_{v} + 1" if v == e.step else f"i_{v}" for v in phys[:-nfree]]
        self.n += 1
        n = self.n
        size = " * ".join
        inner = self.loops(ind, [i, *js])
        value = self.py(x, inner) if x is not None else "0.0"
        self.emit(inner, f"{out}[{', '.join([*lead, *(f'i_{v}' for v in phys[-nfree:])])}] = {value}")
        kk = size(self.szi(v) for v in ks)
        self.emit(ind, f"ta{n} = np.empty(({self.szi(i)}, {kk}), {out}.dtype)")
        # A' over (i, K), K flattened row-major; with the loop over K outermost where the weights
        # (the factors without tensors: a decay's power) read K alone, so each is computed once per K
        wv = {v for f in rest if not any(isinstance(nd, Access) for nd in walk(f)) for v in ordered_vars(f)}
        order = [*ks, i] if wv and wv - bound <= set(ks) and len(ks) == 1 else [i, *ks]
        inner = self.loops(ind, order)
        flat = f"i_{ks[-1]}"
        for v in reversed(ks[:-1]):
            flat = f"i_{v} * {size(self.szi(u) for u in ks[ks.index(v) + 1 :])} + {flat}"
        self.emit(inner, f"ta{n}[i_{i}, {flat}] = {self.py(a, inner)}")
        jj = size(self.szi(v) for v in js)
        blead = [self.group(b.tensor), *(f"i_{v}" for v in bn[: len(bn) - len(js) - len(ks)])]
        bview = f"t{self.tensors.index(b.tensor)}[{', '.join(blead)}]"
        bshape = f"({jj}, {kk})" if bt else f"({kk}, {jj})"
        cview = f"{out}[{', '.join(lead)}]"
        self.emit(
            ind,
            f"_gemm(ta{n}, {bview}.reshape({bshape}), {cview}.reshape(({self.szi(i)}, {jj})), {bt}, 1.0)",
        )
        return True

    def _topk(self, x: TopK, ind: int) -> str:
        (s,) = x.indices
        self.n += 1
        n = self.n
        self.emit(ind, f"vj{n} = {self.py(x.body, ind)}")
        self.emit(ind, f"kv{n} = {self.py(x.k, ind)}")
        self.emit(ind, f"cnt{n} = 0")
        o = f"{s}__o{n}"
        self.emit(ind, f"for i_{o} in range({self.szi(s)}):")
        vo = self.py(_rename(x.body, {s: o}), ind + 4)
        self.emit(ind + 4, f"vo{n} = {vo}")
        before = f"i_{o} < i_{s}"
        self.emit(
            ind + 4,
            f"if vo{n} > vj{n} or (vo{n} == vj{n} and {before})"
            f" or (vj{n} != vj{n} and (vo{n} == vo{n} or {before})):",
        )
        self.emit(ind + 8, f"cnt{n} += 1")
        return f"(1.0 if cnt{n} < kv{n} else 0.0)"


def _nested(x: Expr) -> bool:
    return any(isinstance(n, (Reduce, TopK)) for n in walk(x))


def _product(xs: Sequence[Expr]) -> Expr:
    out = xs[0]
    for x in xs[1:]:
        out = Binary(op=BinOp.MUL, lhs=out, rhs=x)
    return out


def layouts(c: Cascade) -> dict[str, tuple[int, ...]]:
    """The kernels' memory layout of each tensor that differs from its logical order: a
    recurrence's iterative rank outermost, so that each step's slice is contiguous."""
    out = {}
    for name, pos in c.iterative.items():
        n = len(c.tensors[name])
        if pos != 0:
            out[name] = (pos, *(i for i in range(n) if i != pos))
    return out


def loop_tensors(c: Cascade, st: Step) -> list[str]:
    """The tensors a loop step reads or writes, in the order of its kernel's arguments."""
    names: dict[str, None] = {}
    for i in st.statements:
        e = c.einsums[i]
        names.setdefault(e.output, None)
        for r in e.reads:
            names.setdefault(r, None)
    return list(names)


def batch_mapped(c: Cascade) -> frozenset[str]:
    """The tensors a call may hold at fewer batch entries than the batch (its group map says which
    entry each batch entry reads): the cascade's inputs, and views of them."""
    from golden._plan import _view_of

    out = {i.name for i in c.inputs}
    for e in c.einsums:
        src = _view_of(c, e)
        if src is not None and src in out:
            out.add(e.output)
    return frozenset(out)


def _parallel_var(c: Cascade, st: Step, gen: Any = None) -> str | None:
    """The index the loop step's work items split (besides the batch): a single statement's first
    free output index; none for a scan (one work item per batch entry walks every step), nor for
    a statement that is one BLAS product per batch entry (``gen`` given: the CPU)."""
    if st.step is not None:
        return None
    e = c.einsums[st.statements[0]]
    if gen is not None and gen.gemm_form(e, set()) is not None:
        return None
    lhs = [v for v in e.indices if not (e.init and v == e.step)]
    return lhs[0] if lhs else None


def _loops_source(
    c: Cascade, st: Step, params: list[str], sizes: list[str], cuda: bool
) -> tuple[str, str | None]:
    """A loop step's kernel source and the index its work items split besides the batch."""
    tensors = loop_tensors(c, st)
    gen = _Gen(params, sizes, tensors, core=False, cuda=cuda, layouts=layouts(c), mapped=batch_mapped(c))
    par = _parallel_var(c, st, None if cuda else gen)
    args = ", ".join([*(f"t{i}" for i in range(len(tensors))), "prm", "sz", "szi", "gmap"])
    n = gen.szi(par) if par else "1"
    if cuda:
        head = (
            "# Generated by golden.compile (numba.cuda) from a cascade; do not edit.\n"
            "import math\n\nfrom numba import cuda\n\nINF = math.inf\n\n\n@cuda.jit(cache=True)\n"
            f"def kernel({args}):\n    G = gmap.shape[1]\n    N = {n}\n    w = cuda.grid(1)\n"
            "    if w >= G * N:\n        return\n"
        )
        ind = 4
    else:
        head = (
            "# Generated by golden.compile from a cascade; do not edit (it is rewritten when it changes).\n"
            "# Its products call einforge_sgemm/einforge_dgemm (golden._blas).\n"
            "import math\n\nimport numpy as np\nfrom numba import njit, prange\n\n"
            "from golden._attn_cpu import _gemm\n\nINF = np.inf\n\n\n"
            '@njit(parallel=True, error_model="numpy", fastmath={"arcp", "contract"}, cache=True)\n'
            f"def kernel({args}):\n    G = gmap.shape[1]\n    N = {n}\n    for w in prange(G * N):\n"
        )
        ind = 8
    gen.emit(ind, "g = w // N")
    gen.group_lines(ind)
    bound: set[str] = set()
    if par:
        gen.emit(ind, f"i_{par} = w % N")
        bound.add(par)
    if st.step is not None:
        gen.emit(ind, f"for i_{st.step} in range({gen.szi(st.step)}):")
        ind += 4
        bound.add(st.step)
    for i in st.statements:
        gen.statement(c.einsums[i], ind, set(bound))
    return head + "\n".join(gen.lines) + "\n", par


def tile_mask(body: Expr | None, kind: str = "softmax") -> Expr | None:
    """A condition that, false over a whole key tile, makes the tile contribute nothing, so it is
    skipped before its scores are computed (a causal or window mask, documents apart, blocks not
    selected): the COND of a score ``where(COND, X, -inf)``, or of a weight factor
    ``where(COND, X, 0)``; COND must not read ``Q . K``."""
    if body is None:
        return None
    dead = -math.inf if kind == "softmax" else 0.0
    for x in [body] if kind == "softmax" else product_factors(body):
        if (
            isinstance(x, Call)
            and x.func is Func.WHERE
            and isinstance(x.args[2], Num)
            and x.args[2].value == dead
            and not any(isinstance(n, Var) and n.name == "qk" for n in walk(x.args[0]))
        ):
            return x.args[0]
    return None


def _lin(x: Expr, m: str) -> tuple[int, Expr] | None:
    """``x`` as ``c * m + rest`` with an integer ``c`` and ``rest`` free of ``m``; None if not."""
    if m not in ordered_vars(x):
        return 0, x
    if isinstance(x, Var):
        return 1, Num(0.0)
    if isinstance(x, Neg):
        a = _lin(x.operand, m)
        return None if a is None else (-a[0], Neg(operand=a[1]))
    if isinstance(x, Binary) and x.op in (BinOp.ADD, BinOp.SUB):
        a, b = _lin(x.lhs, m), _lin(x.rhs, m)
        if a is None or b is None:
            return None
        sign = 1 if x.op is BinOp.ADD else -1
        return a[0] + sign * b[0], Binary(op=x.op, lhs=a[1], rhs=b[1])
    if isinstance(x, Binary) and x.op is BinOp.MUL:
        for u, w in ((x.lhs, x.rhs), (x.rhs, x.lhs)):
            if isinstance(u, Num) and float(u.value).is_integer():
                a = _lin(w, m)
                return None if a is None else (int(u.value) * a[0], Binary(op=BinOp.MUL, lhs=u, rhs=a[1]))
    return None


def key_bounds(cond: Expr | None, kranks: tuple[str, ...]) -> list[tuple[str, Expr]]:
    """Bounds on the key index that a dead-key condition implies: ``("lo", X)`` for ``m >= X``,
    ``("hi", X)`` for ``m <= X`` (X free of ``m``), from its comparison factors linear in ``m``
    with coefficient 1 or -1 (causal, sliding windows, bottom-right causal, Lightning's blocks).
    A product is nonzero only where every factor is, so each factor's bound holds."""
    if cond is None or len(kranks) != 1:
        return []
    (m,) = kranks
    out: list[tuple[str, Expr]] = []
    for f in product_factors(cond):
        if not (isinstance(f, Binary) and f.op in _CMP and f.op is not BinOp.NE):
            continue
        lin = _lin(Binary(op=BinOp.SUB, lhs=f.lhs, rhs=f.rhs), m)
        if lin is None or lin[0] not in (1, -1):
            continue
        c, r = lin  # f holds where c * m + r  op  0
        x = Neg(operand=r) if c == 1 else r  # the bound's value: m vs x
        ge = f.op in (BinOp.GE, BinOp.GT)
        if f.op is BinOp.EQ:
            out += [("lo", x), ("hi", x)]
        elif ge == (c == 1):
            out.append(("lo", x))
        else:
            out.append(("hi", x))
    return out


def bounded_only(cond: Expr | None, kranks: tuple[str, ...]) -> bool:
    """Whether every factor of ``cond`` is a key bound (:func:`key_bounds`): then the key range
    already leaves out the dead keys of a tile's rows, and a block mask would find no more."""
    if cond is None or len(kranks) != 1:
        return False
    factors = list(product_factors(cond))
    return len(key_bounds(cond, kranks)) >= len(factors) and all(key_bounds(f, kranks) for f in factors)


def _key_range(st: Step, gen: _Gen, cond: Expr | None) -> tuple[str, str]:
    """Code that narrows a query tile's keys to ``[klo, khi)`` from :func:`key_bounds` (each row's
    range, conservatively rounded outward; the score still masks exactly), and the key loop's
    range; the whole ``[0, M)`` where there are no bounds."""
    bounds = key_bounds(cond, st.kranks)
    if not bounds:
        return "", "0, M"
    lines = []
    for kind, x in bounds:
        lines.append(f"            b = {gen.py(x)}")
        lines.append("            if b == b and -9e18 < b < 9e18:")
        if kind == "lo":
            lines.append("                lo = max(lo, int(math.floor(b)))")
        else:
            lines.append("                hi = min(hi, int(math.ceil(b)) + 1)")
    code = _KEY_RANGE.format(qunflat=_unflatten(12, "pi", st.qranks, gen), bounds="\n".join(lines) + "\n")
    return code, "klo, khi"


def _unflatten(ind: int, flat: str, ranks: tuple[str, ...], gen: _Gen) -> str:
    """Lines that set ``i_<rank var>`` from a flattened index over ``ranks`` (row-major)."""
    pad = " " * ind
    if len(ranks) == 1:
        return f"{pad}i_{ranks[0]} = {flat}\n"
    lines = [f"{pad}t_ = {flat}"]
    for r in reversed(ranks[1:]):
        lines += [f"{pad}i_{r} = t_ % {gen.szi(r)}", f"{pad}t_ = t_ // {gen.szi(r)}"]
    lines.append(f"{pad}i_{ranks[0]} = t_")
    return "\n".join(lines) + "\n"


# One work item per (group, query tile), as the hand-written kernels. Q, K and V arrive flattened
# to (G, P, E), (G, M, E), (G, M, F); a blocked query or key (several indices) is unflattened.


def _core_gen(st: Step, params: list[str], sizes: list[str], cuda: bool) -> _Gen:
    return _Gen(params, sizes, list(st.extras), core=True, cuda=cuda)


def _xgroups(st: Step, ind: int) -> str:
    """A core's lines that set each score tensor's batch entry (``gx<n>``) from ``gmap``, whose
    rows are Q, K, V, then the score's tensors."""
    return "".join(f"{' ' * ind}gx{i} = gmap[{3 + i}, g]\n" for i in range(len(st.extras)))


CUDA_TILE_ROWS, CUDA_TILE_KEYS = 64, 32  # a tiled core's block of query rows (threads), key tile


def _cuda_source(
    st: Step, params: list[str], sizes: list[str], f: int, e: int = 0, dtype: str = "", tiled: bool = False
) -> str:
    """A CUDA core. ``tiled``: a thread block per query tile, K and V tiles staged in shared
    memory, one thread per query row, accumulation in ``dtype`` (``float32`` or ``float64``; Q's
    width ``e``). Otherwise the reference: one thread per query row, the scores, the score
    expression and an online softmax (or the weighted sum) in float64 registers, one key at a
    time, with no shared memory."""
    gen = _core_gen(st, params, sizes, True)
    soft = st.kind == "softmax"
    fill = dict(
        extra=", ".join(f"x{i}" for i in range(len(st.extras))) or "_unused",
        F=f,
        body=gen.py(st.body),  # type: ignore[arg-type]
        qunflat=_unflatten(4, "pi", st.qranks, gen),
        xgroups=_xgroups(st, 4),
    )
    if tiled:
        src = _CUDA_TILED.format(
            E=e,
            TQ=CUDA_TILE_ROWS,
            BK=CUDA_TILE_KEYS,
            dt=dtype,
            kunflat=_unflatten(16, "mi", st.kranks, gen),
            update=(_CUDA_TILED_SOFTMAX if soft else _CUDA_TILED_WEIGHTED).format(F=f),
            finish=(_CUDA_TILED_SOFTMAX_END if soft else _CUDA_TILED_WEIGHTED_END).format(F=f),
            **fill,
        )
    else:
        src = _CUDA.format(
            kunflat=_unflatten(8, "mi", st.kranks, gen),
            update=(_CUDA_SOFTMAX if soft else _CUDA_WEIGHTED).format(F=f),
            finish=(_CUDA_SOFTMAX_END if soft else _CUDA_WEIGHTED_END).format(F=f),
            **fill,
        )
    header = (
        f"# Generated by golden.compile (numba.cuda{', tiled' if tiled else ''}) from a cascade; "
        "do not edit.\n"
        "import math\n\nfrom numba import cuda, float32, float64\n\n"
        "exp_fast = math.exp\ntanh_fast = math.tanh\n\n"
    )
    return header + src


def _param_lines(params: list[str], ind: int) -> str:
    """A CPU core's parameters, read into locals once (``pv<n>``): a read of ``prm`` inside a loop
    that writes the score row is one LLVM cannot hoist, as it cannot tell the arrays apart."""
    return "".join(f"{' ' * ind}pv{i} = q.dtype.type(prm[{i}])\n" for i in range(len(params)))


def masked_tiles(st: Step) -> bool:
    """Whether a CPU core's score condition can kill whole tiles that its key range does not cut
    off: its source then holds a block-mask kernel and a tile check."""
    cond = tile_mask(st.body, st.kind)
    return cond is not None and not bounded_only(cond, st.kranks)


def _source(st: Step, params: list[str], sizes: list[str], wide: bool = False) -> str:
    """A CPU core's source. ``wide``: its loops may use 512-bit vectors (:data:`WIDE_KEYS`)."""
    gen = _core_gen(st, params, sizes, False)
    body = gen.py(st.body)  # type: ignore[arg-type]
    cond = tile_mask(st.body, st.kind)
    fill = dict(
        extra=", ".join(f"x{i}" for i in range(len(st.extras))) or "_unused",
        qunflat=_unflatten(16, "pi", st.qranks, gen),
        kunflat=_unflatten(20, "mi", st.kranks, gen),
        kunflat3=_unflatten(24, "mi", st.kranks, gen),
        xgroups=_xgroups(st, 8),
        params=_param_lines(params, 4),
        wide="        _wide_vectors()\n" if wide else "",
    )
    masked = masked_tiles(st)
    tile_check = _TILE_CHECK if masked else ""
    key_range, krange = _key_range(st, gen, cond)
    template = _SOFTMAX if st.kind == "softmax" else _WEIGHTED
    # a score that reads more than qk (an index, a tensor) may drift along the row: each key tile's
    # sample may raise the reference (the softmax template); plain qk times constants does not
    drift = st.body is not None and (
        bool(free_vars(st.body) - {"qk"}) or any(isinstance(x, Access) for x in walk(st.body))
    )
    src = template.format(
        drift=drift,
        body=body,
        tile_check=tile_check,
        key_range=key_range,
        krange=krange,
        kend="khi" if key_range else "M",
        **fill,
    )
    header = (
        "# Generated by golden.compile from a cascade; do not edit (it is rewritten when it changes).\n"
        "# Its products call einforge_sgemm/einforge_dgemm (golden._blas).\n"
        "import math\n\nimport numpy as np\nfrom numba import njit, prange\n\n"
        "from golden._attn_cpu import _fmax, _gemm, _wide_vectors, exp_fast, tanh_fast\n\n\n"
        '@njit(parallel=True, fastmath={"reassoc", "contract", "nsz", "arcp", "afn"}, cache=True)'
    )
    if masked and cond is not None:
        src += _BLOCK_MASK.format(
            extra=fill["extra"],
            cond=gen.py(cond),
            xgroups=_xgroups(st, 8),
            params=_param_lines(params, 4),
            bqunflat=_unflatten(12, "pi", st.qranks, gen),
            bkunflat=_unflatten(16, "mi", st.kranks, gen),
        )
    return header + src
