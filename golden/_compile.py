"""Kernels compiled from a cascade: :func:`compile` (``golden.compile``).

An analysis of the cascade (:func:`plan`) splits it into kernels, each from a template with the
cascade's own expressions generated into it, compiled once (per kernel source and dtype) and
cached on disk. The attention cores:

- ``softmax``: ``O[q.., f] = W[q.., k..] * V[k.., f]`` summed over the key indices, ``W`` the
  softmax over them (``GM = max S``, ``SN = exp(S - GM)``, ``SD = sum SN``, then ``SN / SD`` or
  ``SN * V / SD``) of a score that is, once its pointwise intermediates are inlined, a function of
  one ``Q[q.., e] * K[k.., e]`` product (times constants), the indices, params, rank sizes and
  tensors indexed by the query and key indices (inputs, or tensors earlier kernels computed: a
  selection's mask, a cluster match). Query and key may each span several indices (a blocked
  cascade's ``p1, p0``), flattened. The kernel is an online softmax over key tiles (the P x M
  scores never exist); ``-inf`` scores are masked keys.
- ``weighted``: the same with any pointwise weights and no normaliser (sigmoid attention, linear
  attention with decay, Lightning Attention-2's intra-block part).

A dead-key condition (``where(COND, X, -inf)`` in a softmax score, a ``where(COND, X, 0)`` weight
factor) narrows each query tile's keys to the range its comparisons linear in the key index allow
(causal, windows, bottom-right causal, Lightning's blocks), and a key tile where COND holds
nowhere is skipped before its product (documents, block-sparse selections).

Everything else is a generated loop nest, one kernel per Einsum: ``loops`` (any pointwise,
reduction or contraction statement), ``select`` (a top-k per fiber, ties to the lower index: the
selection pre-kernels of SeerAttention, routing, landmark and recycled attention) and ``scan`` (a
recurrence's steps in order, in parallel over the batch: Aaren's prefix softmax, Lightning's
state). A cascade with a statement no generator handles (a user-defined Python operator, a top-k
over several indices) runs in the float64 interpreter (:func:`golden.run`) with a warning that
says why (``CompiledCascade.reason``).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

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
    Operator,
    ParamRef,
    Reduce,
    ReduceOp,
    Size,
    TopK,
    Var,
    bind_sizes,
    eval_params,
)
from einsum._expr import ordered_vars, product_factors, walk
from golden._attention import c_array
from golden.errors import EvaluationError

__all__ = ["BACKENDS", "CompiledCascade", "Plan", "compile", "plan"]

BACKENDS = ("cpu", "cuda")
# Each core template's default (query-tile rows, key-tile columns) on the CPU.
TILES = {"softmax": (256, 512), "weighted": (128, 256)}
_LOCK = threading.Lock()


class NoTemplate(Exception):
    """Why a cascade (or one Einsum of it) fits no template (internal; becomes ``Plan.reason``)."""


_CORE_TEXT = {
    "softmax": "row-normalised attention (online softmax over key tiles) with the score",
    "weighted": "attention without a normaliser (weights times V, over key tiles) with the weight",
}
_LOOP_TEXT = {
    "view": "a view of the tensor it reshapes (no kernel)",
    "loops": "a loop nest",
    "scan": "a sequential scan (the recurrence's steps in order, everything else in parallel)",
    "select": "a selection pre-kernel (top-k per fiber, ties to the lower index)",
}


@dataclass(frozen=True)
class Step:
    """One kernel of a :class:`Plan`: an attention core (``softmax`` or ``weighted``: the fused,
    tiled templates) or a generated loop nest (``loops``, ``scan`` for a recurrence, ``select`` for
    a top-k) over the Einsums ``statements`` (indices into ``cascade.einsums``)."""

    kind: str
    statements: tuple[int, ...]
    step: str | None = None  # the recurrence's index (scan)
    output: str = ""
    q: str = ""
    k: str = ""
    v: str = ""
    qranks: tuple[str, ...] = ()  # the query's index variables (several: a blocked query, flattened)
    kranks: tuple[str, ...] = ()
    fvar: str = ""
    body: Expr | None = None  # the score (softmax) or weight (weighted), ``qk`` the Q . K product
    extras: tuple[str, ...] = ()  # tensors the score reads (inputs or earlier steps' tensors)

    @property
    def core(self) -> bool:
        return self.kind in _CORE_TEXT

    def describe(self, c: Cascade) -> str:
        from einsum._expr import to_text

        if self.core:
            q = f"{self.q}[{', '.join(self.qranks)}, .]"
            k = f"{self.k}[{', '.join(self.kranks)}, .]"
            text = (
                f"{self.kind}: {self.output} = {_CORE_TEXT[self.kind]} {to_text(self.body)}"  # type: ignore[arg-type]
                f"; Q = {q}, K = {k}, V = {self.v}"
            )
            return text + (f"; the score reads {', '.join(self.extras)}" if self.extras else "")
        lhs = ", ".join(c.einsums[i].lhs_text for i in self.statements)
        return f"{self.kind}: {lhs} as {_LOOP_TEXT[self.kind]}"


@dataclass(frozen=True)
class Plan:
    """What :func:`plan` found: the kernels (``steps``, in order) and the template names they use
    (``template``, e.g. ``"softmax"`` or ``"select + softmax"``); ``template`` is None where
    some Einsum fits no template, with the ``reason``."""

    template: str | None
    reason: str = ""
    steps: tuple[Step, ...] = ()

    @property
    def cores(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.core)

    def describe(self) -> str:
        if self.template is None:
            return f"no template fits: {self.reason}; it runs in the float64 interpreter (golden.run)"
        cores = self.cores
        if len(self.steps) == 1 and cores:
            from einsum._expr import to_text

            return f"template {self.template!r}: {_CORE_TEXT[self.template]} {to_text(cores[0].body)}"  # type: ignore[arg-type]
        n = len(self.steps)
        return f"templates {self.template!r}: {n} kernel{'s' if n != 1 else ''}" + (
            "" if cores else " (no attention core: generated loop nests)"
        )


def plan(cascade: Cascade) -> Plan:
    """Choose the kernels for ``cascade`` (see the module's text), or say why none fits."""
    try:
        return _plan(cascade)
    except NoTemplate as why:
        return Plan(template=None, reason=str(why))


def _names(xs: tuple[Expr, ...]) -> list[str | None]:
    return [i.name if isinstance(i, Var) else None for i in xs]


def _plan(c: Cascade) -> Plan:
    defs = {e.output: e for e in c.einsums if not e.init}
    writer = {e.output: i for i, e in enumerate(c.einsums) if not e.init}
    deps = _deps(c)
    cores: dict[int, tuple[Step, set[str]]] = {}
    for i, e in enumerate(c.einsums):
        if e.init or e.step is not None:
            continue
        try:
            cores[i] = _match_core(c, defs, deps, i)
        except NoTemplate:
            continue
    # Tensors a core absorbs are not computed, unless something else reads them.
    absorbed: set[str] = set()
    for _, (_, inner) in cores.items():
        absorbed |= inner
    absorbed -= {c.einsums[i].output for i in cores}
    kept = {e.output for e in c.einsums} - absorbed
    while True:
        need = set(c.outputs)
        for e in c.einsums:
            if e.output in kept and writer.get(e.output) not in cores:
                need.update(e.reads)
        for step, _ in cores.values():
            need.update({step.q, step.k, step.v, *step.extras})
        grow = (need & absorbed) - kept
        if not grow:
            break
        kept |= grow
    steps: list[Step] = []
    for stage in c.stages:
        idx = stage.statements
        if stage.step is None and idx[0] in cores:
            steps.append(cores[idx[0]][0])
            continue
        if not any(c.einsums[i].output in kept for i in idx):
            continue
        if stage.step is None and _view_of(c, c.einsums[idx[0]]) is not None:
            steps.append(Step(kind="view", statements=idx))
            continue
        for i in idx:
            _check_loops(c, i)
        if stage.step is not None:
            kind = "scan"
        elif any(isinstance(n, TopK) for n in walk(c.einsums[idx[0]].expr)):
            kind = "select"
        else:
            kind = "loops"
        steps.append(Step(kind=kind, statements=idx, step=stage.step))
    names: list[str] = []
    for s in steps:
        if s.kind not in names:
            names.append(s.kind)
    return Plan(template=" + ".join(names), steps=tuple(steps))


def _view_of(c: Cascade, e: Any) -> str | None:
    """The tensor ``e`` reshapes, where ``e`` only splits a partitioned rank into its parts
    (``BQ[m1, m0, e] = Q[m1 * M0 + m0, e]``): then it is a view, no kernel; else None."""
    x = e.expr
    if e.init or e.step is not None or e.output in c.iterative or not isinstance(x, Access):
        return None
    if x.tensor in c.iterative:
        return None
    parts = {p.rank: p.parts for p in c.partitions}
    ranks = c.tensors[x.tensor]
    flat: list[str] = []
    for r, ix in zip(ranks, x.indices, strict=True):
        if isinstance(ix, Var):
            flat.append(ix.name)
            continue
        if not (isinstance(ix, Binary) and ix.op is BinOp.ADD and isinstance(ix.rhs, Var)):
            return None
        mul = ix.lhs
        if not (isinstance(mul, Binary) and mul.op is BinOp.MUL and isinstance(mul.lhs, Var)):
            return None
        a, b = mul.lhs.name, ix.rhs.name
        if not (isinstance(mul.rhs, Size) and mul.rhs.rank == b.upper()):
            return None
        if parts.get(r) != (a.upper(), b.upper()):
            return None
        flat += [a, b]
    return x.tensor if flat == list(e.indices) else None


def _check_loops(c: Cascade, i: int) -> None:
    """Raise NoTemplate where the loop generator cannot compile Einsum ``i``."""
    e = c.einsums[i]
    for node in walk(e.expr):
        if isinstance(node, Call) and isinstance(node.func, Operator):
            raise NoTemplate(
                f"{e.lhs_text} calls the user-defined operator {node.func.name!r} (a Python function "
                "the kernel generator cannot compile)"
            )
        if isinstance(node, TopK):
            if len(node.indices) != 1:
                raise NoTemplate(f"{e.lhs_text} selects over several indices ({', '.join(node.indices)})")
        if isinstance(node, Call) and node.func not in _FUNCS:
            raise NoTemplate(f"{e.lhs_text} calls {node.func}, which the kernel generator does not know")


def _match_core(
    c: Cascade, defs: Mapping[str, Any], deps: Mapping[str, set[str]], idx: int
) -> tuple[Step, set[str]]:
    """Einsum ``idx`` as an attention core: ``O[q.., f] = W[q.., k..] * V[k.., f]`` summed over the
    key indices, ``W`` a softmax (``SN / SD``, or ``SN * V / SD``) of a score, or any pointwise
    weights; the score a pointwise function of one ``Q[q.., e] * K[k.., e]`` (times constants)."""
    out = c.einsums[idx]
    kranks = out.summed
    if not kranks or len(out.indices) < 2:
        raise NoTemplate(f"{out.lhs_text} is not weights times V summed over keys")
    qranks, fvar = tuple(out.indices[:-1]), out.indices[-1]
    expr: Expr = out.expr
    div: Access | None = None
    if isinstance(out.expr, Binary) and out.expr.op is BinOp.DIV and isinstance(out.expr.rhs, Access):
        expr, div = out.expr.lhs, out.expr.rhs
    factors = product_factors(expr)
    vs = [f for f in factors if isinstance(f, Access) and _names(f.indices) == [*kranks, fvar]]
    if len(vs) != 1:
        raise NoTemplate(f"{out.lhs_text}: no single V[{', '.join(kranks)}, {fvar}]")
    v = vs[0]
    ws = [f for f in factors if f is not v]
    if any(fvar in ordered_vars(w) for w in ws):
        raise NoTemplate(f"{out.lhs_text}: the weights read {fvar}")
    inner: set[str] = set()
    s_name = None
    if div is not None:
        if len(ws) != 1 or not isinstance(ws[0], Access):
            raise NoTemplate(f"{out.lhs_text}: not SN * V / SD")
        s_name = _softmax_score(defs, ws[0].tensor, div.tensor, qranks, kranks, inner)
        if s_name is None:
            raise NoTemplate(f"{out.lhs_text}: not a softmax")
    elif len(ws) == 1 and isinstance(ws[0], Binary) and ws[0].op is BinOp.DIV:
        w = ws[0]
        if isinstance(w.lhs, Access) and isinstance(w.rhs, Access):
            s_name = _softmax_score(defs, w.lhs.tensor, w.rhs.tensor, qranks, kranks, inner)
    elif len(ws) == 1 and isinstance(ws[0], Access):
        ea = defs.get(ws[0].tensor)
        if (
            ea is not None
            and not ea.summed
            and isinstance(ea.expr, Binary)
            and ea.expr.op is BinOp.DIV
            and isinstance(ea.expr.lhs, Access)
            and isinstance(ea.expr.rhs, Access)
        ):
            s_name = _softmax_score(defs, ea.expr.lhs.tensor, ea.expr.rhs.tensor, qranks, kranks, inner)
            if s_name is not None:
                inner.add(ws[0].tensor)
    ctx = _Inline(c, defs, set(qranks), set(kranks), qranks, kranks)
    body: Expr
    if s_name is not None:
        body = ctx.inline(Access(tensor=s_name, indices=tuple(Var(r) for r in (*qranks, *kranks))))
        kind = "softmax"
    else:
        if not ws:
            raise NoTemplate(f"{out.lhs_text}: no weights")
        body = ctx.inline(ws[0])
        for wf in ws[1:]:
            body = Binary(op=BinOp.MUL, lhs=body, rhs=ctx.inline(wf))
        kind = "weighted"
    if ctx.qk is None:
        raise NoTemplate(f"no Q . K contraction feeds {out.lhs_text}")
    inner |= ctx.inlined
    for x in ctx.extras:
        if deps.get(x, set()) & inner:
            raise NoTemplate(f"the score reads {x}, which depends on the core's own tensors")
    for t in (ctx.qk[0], ctx.qk[1], v.tensor):
        if t in c.iterative:
            raise NoTemplate(f"{t} is a recurrence's tensor")
        if t in inner or deps.get(t, set()) & inner:
            raise NoTemplate(f"{t} depends on the core's own tensors")
    step = Step(
        kind=kind,
        statements=(idx,),
        output=out.output,
        q=ctx.qk[0],
        k=ctx.qk[1],
        v=v.tensor,
        qranks=qranks,
        kranks=tuple(kranks),
        fvar=fvar,
        body=body,
        extras=tuple(ctx.extras),
    )
    return step, inner


def _deps(c: Cascade) -> dict[str, set[str]]:
    """Every defined tensor's transitive reads."""
    out: dict[str, set[str]] = {}
    for e in c.einsums:  # topological order
        acc = out.setdefault(e.output, set())
        for r in e.reads:
            if r != e.output:
                acc |= {r} | out.get(r, set())
    return out


def _softmax_score(
    defs: Mapping[str, Any], sn: str, sd: str, qr: tuple[str, ...], kr: tuple[str, ...], inner: set[str]
) -> str | None:
    """``S`` where ``SD = sum[k..] SN``, ``SN = exp(S - GM)``, ``GM = max[k..] S`` (indices
    ``qr`` and ``kr``); adds SN, SD, GM and S to ``inner``."""

    def acc(x: Expr, name: str | None, idx: tuple[str, ...]) -> str | None:
        if not isinstance(x, Access) or (name is not None and x.tensor != name):
            return None
        return x.tensor if tuple(_names(x.indices)) == idx else None

    esd, esn = defs.get(sd), defs.get(sn)
    if esd is None or esn is None or tuple(esn.indices) != (*qr, *kr) or tuple(esd.indices) != qr:
        return None
    r = esd.expr
    if isinstance(r, Reduce):
        if not (r.op is ReduceOp.SUM and set(r.indices) == set(kr) and acc(r.body, sn, (*qr, *kr))):
            return None
    elif not (set(esd.summed) == set(kr) and acc(r, sn, (*qr, *kr))):
        return None
    x = esn.expr
    if not (
        isinstance(x, Call)
        and x.func is Func.EXP
        and isinstance(x.args[0], Binary)
        and x.args[0].op is BinOp.SUB
    ):
        return None
    s, gm = acc(x.args[0].lhs, None, (*qr, *kr)), acc(x.args[0].rhs, None, qr)
    egm = defs.get(gm or "")
    if s is None or egm is None:
        return None
    g = egm.expr
    if not (isinstance(g, Reduce) and g.op is ReduceOp.MAX and set(g.indices) == set(kr)):
        return None
    if tuple(egm.indices) != qr or not acc(g.body, s, (*qr, *kr)):
        return None
    inner.update({sn, sd, str(gm), s})
    return s


@dataclass
class _Inline:
    """Inlines a score's pointwise intermediates down to ``qk`` (the Q . K product), index
    variables, constants and the tensors it reads (``extras``)."""

    c: Cascade
    defs: Mapping[str, Any]
    qset: set[str]
    kset: set[str]
    qranks: tuple[str, ...]
    kranks: tuple[str, ...]
    qk: tuple[str, str] | None = None
    cond: int = 0  # inside a condition (a comparison, a where's first argument)
    inlined: set[str] = field(default_factory=set)
    extras: list[str] = field(default_factory=list)

    def inline(self, x: Expr) -> Expr:
        if isinstance(x, Access):
            names = _names(x.indices)
            if None in names or not set(names) <= self.qset | self.kset:
                raise NoTemplate(f"the score reads {x}, not indexed by the query and key indices alone")
            e = self.defs.get(x.tensor)
            if e is not None and e.step is None and x.tensor not in self.c.iterative:
                mapping = dict(zip(e.indices, names, strict=True))
                if e.summed:  # a contraction under a condition is a mask's, not the score's
                    qk = None if self.cond else self._qk(e, mapping)
                    if qk is not None:
                        self.inlined.add(x.tensor)
                        return qk
                elif not any(isinstance(n, (Reduce, TopK)) for n in walk(e.expr)) and not any(
                    isinstance(n, Call) and isinstance(n.func, Operator) for n in walk(e.expr)
                ):
                    self.inlined.add(x.tensor)
                    return self.inline(_rename(e.expr, mapping))
            if x.tensor in self.c.iterative:
                raise NoTemplate(f"the score reads {x}, a recurrence")
            if x.tensor not in self.extras:
                self.extras.append(x.tensor)
            return x
        if isinstance(x, Var):
            if x.name not in self.qset | self.kset:
                raise NoTemplate(f"the score uses the index {x.name}")
            return x
        if isinstance(x, (Reduce, TopK)):
            raise NoTemplate(f"the score has a {type(x).__name__.lower()}")
        if isinstance(x, Call) and isinstance(x.func, Operator):
            raise NoTemplate(f"the score calls the user-defined operator {x.func.name!r}")
        if isinstance(x, Binary):
            self.cond += x.op in _CMP
            out = Binary(op=x.op, lhs=self.inline(x.lhs), rhs=self.inline(x.rhs))
            self.cond -= x.op in _CMP
            return out
        if isinstance(x, Neg):
            return Neg(operand=self.inline(x.operand))
        if isinstance(x, Call):
            args = list(x.args)
            if x.func is Func.WHERE:
                self.cond += 1
                args[0] = self.inline(args[0])
                self.cond -= 1
                return Call(func=x.func, args=(args[0], *(self.inline(a) for a in args[1:])))
            return Call(func=x.func, args=tuple(self.inline(a) for a in args))
        if isinstance(x, (Num, ParamRef, Size)):
            return x
        raise NoTemplate(f"the score has {type(x).__name__.lower()} {x}")

    def _qk(self, e: Any, mapping: Mapping[str, str | None]) -> Expr | None:
        """``qk`` (times the constant factors) if ``e`` is ``Q[q.., r] * K[k.., r]`` summed over r."""
        if len(e.summed) != 1:
            return None
        (r,) = e.summed
        expr = _rename(e.expr, {**mapping, r: "__r"})
        fs = product_factors(expr)
        accs = [f for f in fs if isinstance(f, Access)]
        rest = [f for f in fs if not isinstance(f, Access)]
        if len(accs) != 2 or any(isinstance(n, (Var, Access, Reduce, TopK)) for f in rest for n in walk(f)):
            return None
        a, b = accs
        if _names(a.indices) == [*self.kranks, "__r"]:
            a, b = b, a
        if _names(a.indices) != [*self.qranks, "__r"] or _names(b.indices) != [*self.kranks, "__r"]:
            return None
        if self.qk is not None and self.qk != (a.tensor, b.tensor):
            raise NoTemplate("the score reads two different Q . K contractions")
        self.qk = (a.tensor, b.tensor)
        out: Expr = Var("qk")
        for f in rest:
            out = Binary(op=BinOp.MUL, lhs=out, rhs=f)
        return out


def _rename(x: Expr, mapping: Mapping[str, str | None]) -> Expr:
    if isinstance(x, Var):
        return Var(mapping.get(x.name) or x.name)
    if isinstance(x, Access):
        return Access(tensor=x.tensor, indices=tuple(_rename(i, mapping) for i in x.indices))
    if isinstance(x, Binary):
        return Binary(op=x.op, lhs=_rename(x.lhs, mapping), rhs=_rename(x.rhs, mapping))
    if isinstance(x, Neg):
        return Neg(operand=_rename(x.operand, mapping))
    if isinstance(x, Call):
        return Call(func=x.func, args=tuple(_rename(a, mapping) for a in x.args))
    if isinstance(x, Reduce):
        inner = {k: v for k, v in mapping.items() if k not in x.indices}
        return Reduce(op=x.op, indices=x.indices, body=_rename(x.body, inner))
    if isinstance(x, TopK):
        inner = {k: v for k, v in mapping.items() if k not in x.indices}
        return TopK(indices=x.indices, k=_rename(x.k, mapping), body=_rename(x.body, inner))
    return x


# -- code generation ------------------------------------------------------------------------------

_CMP = {BinOp.LT: "<", BinOp.LE: "<=", BinOp.GT: ">", BinOp.GE: ">=", BinOp.EQ: "==", BinOp.NE: "!="}
_ARITH = {BinOp.ADD: "+", BinOp.SUB: "-", BinOp.MUL: "*", BinOp.DIV: "/", BinOp.POW: "**"}
_FUNCS = {
    Func.EXP: "{exp}({0})",
    Func.LOG: "math.log({0})",
    Func.SQRT: "math.sqrt({0})",
    Func.SIGMOID: "({one} / ({one} + {exp}(-{0})))",
    Func.TANH: "math.tanh({0})",
    Func.ERF: "math.erf({0})",
    Func.LOG1P: "math.log1p({0})",
    Func.SILU: "(({0}) / ({one} + {exp}(-({0}))))",
    Func.SOFTPLUS: "(max({0}, {zero}) + math.log1p({exp}(-abs({0}))))",
    Func.GELU: "(0.5 * ({0}) * math.erfc(-({0}) * 0.7071067811865476))",
    Func.GELU_TANH: (
        "(0.5 * ({0}) * ({one} + math.tanh(0.7978845608028654 * (({0}) + 0.044715 * ({0}) * ({0}) * ({0})))))"
    ),
    Func.RELU: "max({0}, {zero})",
    Func.ABS: "abs({0})",
    Func.MAX: "max({0}, {1})",
    Func.MIN: "min({0}, {1})",
    Func.WHERE: "({1} if {0} != {zero} else {2})",
    Func.FLOOR: "math.floor({0})",
    Func.CEIL: "math.ceil({0})",
}


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
    ) -> None:
        self.params, self.sizes, self.tensors = params, sizes, tensors
        self.core, self.cuda = core, cuda
        self.layouts = dict(layouts or {})  # physical order of a tensor's logical dimensions
        self.lines: list[str] = []
        self.n = 0
        typed = core and not cuda
        self.one, self.zero = ("ONE", "ZERO") if typed else ("1.0", "0.0")
        self.exp = "exp_fast" if core else "math.exp"

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

    def physical(self, tensor: str, idx: list[str]) -> list[str]:
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
            return f"prm[{self.params.index(x.name)}]"
        if isinstance(x, Size):
            return f"sz[{self.sizes.index(x.rank)}]"
        if isinstance(x, Access):
            idx = ", ".join(["g", *self.physical(x.tensor, [self.ix(i) for i in x.indices])])
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
            return _FUNCS[x.func].format(*args, one=self.one, zero=self.zero, exp=self.exp)
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
        bn = self.physical(b.tensor, _names(b.indices))  # type: ignore[arg-type]
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
        blead = ["g", *(f"i_{v}" for v in bn[: len(bn) - len(js) - len(ks)])]
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
    gen = _Gen(params, sizes, tensors, core=False, cuda=cuda, layouts=layouts(c))
    par = _parallel_var(c, st, None if cuda else gen)
    args = ", ".join([*(f"t{i}" for i in range(len(tensors))), "prm", "sz", "szi"])
    n = gen.szi(par) if par else "1"
    if cuda:
        head = (
            "# Generated by golden.compile (numba.cuda) from a cascade; do not edit.\n"
            "import math\n\nfrom numba import cuda\n\nINF = math.inf\n\n\n@cuda.jit(cache=True)\n"
            f"def kernel({args}):\n    G = t0.shape[0]\n    N = {n}\n    w = cuda.grid(1)\n"
            "    if w >= G * N:\n        return\n"
        )
        ind = 4
    else:
        head = (
            "# Generated by golden.compile from a cascade; do not edit (it is rewritten when it changes).\n"
            "import math\n\nimport numpy as np\nfrom numba import njit, prange\n\n"
            "from golden._attn_cpu import _gemm\n\nINF = np.inf\n\n\n"
            '@njit(parallel=True, error_model="numpy", cache=True)\n'
            f"def kernel({args}):\n    G = t0.shape[0]\n    N = {n}\n    for w in prange(G * N):\n"
        )
        ind = 8
    gen.emit(ind, "g = w // N")
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


_KEY_RANGE = """        klo = M
        khi = 0
        for i in range(n):
            pi = p0 + i
{qunflat}            lo = 0
            hi = M
{bounds}            if lo < hi:
                klo = min(klo, lo)
                khi = max(khi, hi)
"""


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
_PROLOGUE = """
def kernel(q, k, v, out, prm, sz, szi, {extra}, bq, bk):
    G, P, _ = q.shape
    M, F = k.shape[1], v.shape[2]
    ONE = q.dtype.type(1.0)
    ZERO = q.dtype.type(0.0)
    INF = q.dtype.type(np.inf)
    BIG = q.dtype.type(8886110.520507872)  # exp(16)
    nqb = (P + bq - 1) // bq
    for w in prange(G * nqb):
        g = w // nqb
        p0 = (w % nqb) * bq
        n = min(bq, P - p0)
        qt = q[g, p0 : p0 + n]
"""

_SOFTMAX = (
    _PROLOGUE
    + """        rm = np.full(n, -np.inf, q.dtype)
        rd = np.zeros(n, q.dtype)
        acc = out[g, p0 : p0 + n]  # the weighted sum accumulates in place; / rd at the end
        acc[:] = ZERO
        s = np.empty((n, bk), q.dtype)
{key_range}        for m0 in range({krange}, bk):
            nk = min({kend}, m0 + bk) - m0
{tile_check}            _gemm(qt, k[g, m0 : m0 + nk], s, True, 0.0)  # the tile's Q . K, into s[:, :nk]
            for i in range(n):
                pi = p0 + i
{qunflat}                row = s[i]
                # Conditional rescaling (as the hand-written 1-pass kernel, FlashAttention-4): the
                # row's running reference RM serves as the exp's shift while this tile's exp-sum
                # against it stays below exp(16). A strided sample of 32 scores raises the
                # reference first where the tile's scores have grown past it (a bias along the
                # row, as ALiBi's). Past exp(16) (or inf / NaN), or where the sample is all
                # masked, the row takes two passes against its true max. Softmax is
                # shift-invariant, so either gives the same AV.
                ref = rm[i]
                smp = -INF
                for j in range(0, nk, max(1, nk // 32)):
                    mi = m0 + j
{kunflat2}                    qk = row[j]
                    smp = _fmax(smp, q.dtype.type({body}))
                if smp != -INF and (ref == -INF or smp > ref + 8):
                    if ref != -INF:
                        prm_ = exp_fast(ref - smp)
                        rd[i] *= prm_
                        for f in range(F):
                            acc[i, f] *= prm_
                    ref = smp
                    rm[i] = smp
                tot = ZERO
                if ref != -INF:
                    for j in range(nk):
                        mi = m0 + j
{kunflat3}                        qk = row[j]
                        e = exp_fast(q.dtype.type({body}) - ref)
                        row[j] = e
                        tot += e
                if ref != -INF and tot <= BIG:
                    rd[i] += tot
                    continue
                if ref != -INF:  # the exps overwrote the row's products: recompute them
                    _gemm(qt[i : i + 1], k[g, m0 : m0 + nk], s[i : i + 1], True, 0.0)
                mx = -INF
                for j in range(nk):
                    mi = m0 + j
{kunflat}                    qk = row[j]
                    val = q.dtype.type({body})
                    row[j] = val
                    mx = _fmax(mx, val)
                if mx == -INF:  # every key of the tile masked for this query
                    row[:nk] = ZERO
                    continue
                new = mx if mx > rm[i] else rm[i]
                tot = ZERO
                for j in range(nk):
                    e = exp_fast(row[j] - new)  # a masked key: exp(-inf) = 0; NaN stays NaN
                    row[j] = e
                    tot += e
                if new != rm[i]:
                    prm_ = exp_fast(rm[i] - new)
                    rd[i] *= prm_
                    for f in range(F):
                        acc[i, f] *= prm_
                    rm[i] = new
                rd[i] += tot
            _gemm(s[:, :nk], v[g, m0 : m0 + nk], acc, False, 1.0)  # acc += weights V
        for i in range(n):
            for f in range(F):
                acc[i, f] = acc[i, f] / rd[i]
"""
)

_WEIGHTED = (
    _PROLOGUE
    + """        acc = out[g, p0 : p0 + n]
        acc[:] = ZERO
        s = np.empty((n, bk), q.dtype)
{key_range}        for m0 in range({krange}, bk):
            nk = min({kend}, m0 + bk) - m0
{tile_check}            _gemm(qt, k[g, m0 : m0 + nk], s, True, 0.0)
            for i in range(n):
                pi = p0 + i
{qunflat}                row = s[i]
                for j in range(nk):
                    mi = m0 + j
{kunflat}                    qk = row[j]
                    row[j] = {body}
            _gemm(s[:, :nk], v[g, m0 : m0 + nk], acc, False, 1.0)
"""
)

_TILE_CHECK = """            live = False
            for i in range(n):
                pi = p0 + i
{qunflat}                for j in range(nk):
                    mi = m0 + j
{kunflat}                    if {cond} != ZERO:
                        live = True
                        break
                if live:
                    break
            if not live:
                continue
"""

_CUDA = """
@cuda.jit(cache=True)
def kernel(q, k, v, out, prm, sz, szi, {extra}):
    g = cuda.blockIdx.y
    pi = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    P, E = q.shape[1], q.shape[2]
    M = k.shape[1]
    if pi >= P:
        return
    INF = math.inf
    acc = cuda.local.array({F}, float64)
    for f in range({F}):
        acc[f] = 0.0
    rm = -INF
    rd = 0.0
{qunflat}    for mi in range(M):
        qk = 0.0
        for e in range(E):
            qk += q[g, pi, e] * k[g, mi, e]
{kunflat}        val = {body}
{update}
{finish}
"""

_CUDA_SOFTMAX = """        if val != -INF:
            new = val if val > rm else rm
            old = math.exp(rm - new) if rm != -INF else 0.0
            w = math.exp(val - new)
            rd = rd * old + w
            for f in range({F}):
                acc[f] = acc[f] * old + w * v[g, mi, f]
            rm = new"""
_CUDA_SOFTMAX_END = """    for f in range({F}):
        out[g, pi, f] = acc[f] / rd"""
_CUDA_WEIGHTED = """        for f in range({F}):
            acc[f] += val * v[g, mi, f]"""
_CUDA_WEIGHTED_END = """    for f in range({F}):
        out[g, pi, f] = acc[f]"""


def _core_gen(st: Step, params: list[str], sizes: list[str], cuda: bool) -> _Gen:
    return _Gen(params, sizes, list(st.extras), core=True, cuda=cuda)


def _cuda_source(st: Step, params: list[str], sizes: list[str], f: int) -> str:
    """One thread per query row: the scores, the score expression and an online softmax (or the
    weighted sum) in float64 registers, one key at a time. A correct CUDA template, not a fast one
    (no shared-memory tiles)."""
    gen = _core_gen(st, params, sizes, True)
    body = gen.py(st.body)  # type: ignore[arg-type]
    soft = st.kind == "softmax"
    src = _CUDA.format(
        extra=", ".join(f"x{i}" for i in range(len(st.extras))) or "_unused",
        F=f,
        body=body,
        qunflat=_unflatten(4, "pi", st.qranks, gen),
        kunflat=_unflatten(8, "mi", st.kranks, gen),
        update=(_CUDA_SOFTMAX if soft else _CUDA_WEIGHTED).format(F=f),
        finish=(_CUDA_SOFTMAX_END if soft else _CUDA_WEIGHTED_END).format(F=f),
    )
    header = (
        "# Generated by golden.compile (numba.cuda) from a cascade; do not edit.\n"
        "import math\n\nfrom numba import cuda, float64\n\nexp_fast = math.exp\n\n"
    )
    return header + src


def _source(st: Step, params: list[str], sizes: list[str]) -> str:
    gen = _core_gen(st, params, sizes, False)
    body = gen.py(st.body)  # type: ignore[arg-type]
    cond = tile_mask(st.body, st.kind)
    fill = dict(
        extra=", ".join(f"x{i}" for i in range(len(st.extras))) or "_unused",
        qunflat=_unflatten(16, "pi", st.qranks, gen),
        kunflat=_unflatten(20, "mi", st.kranks, gen),
        kunflat2=_unflatten(20, "mi", st.kranks, gen),
        kunflat3=_unflatten(24, "mi", st.kranks, gen),
    )
    tile_check = _TILE_CHECK.format(cond=gen.py(cond), **fill) if cond is not None else ""
    key_range, krange = _key_range(st, gen, cond)
    template = _SOFTMAX if st.kind == "softmax" else _WEIGHTED
    src = template.format(
        body=body,
        tile_check=tile_check,
        key_range=key_range,
        krange=krange,
        kend="khi" if key_range else "M",
        **fill,
    )
    header = (
        "# Generated by golden.compile from a cascade; do not edit (it is rewritten when it changes).\n"
        "import math\n\nimport numpy as np\nfrom numba import njit, prange\n\n"
        "from golden._attn_cpu import _fmax, _gemm, exp_fast\n\n\n"
        '@njit(parallel=True, fastmath={"reassoc", "contract", "nsz", "arcp", "afn"}, cache=True)'
    )
    return header + src


_KERNELS: dict[str, Any] = {}


def _drop_broken_cache(root: Any, stem: str) -> list[str]:
    """Remove the Numba cache files of kernel module ``stem`` if any of them is not whole (a file
    truncated by a full disk or a killed process would otherwise fail every later call with an
    UnpicklingError); Numba then compiles the kernel again and rewrites them. The pickles are
    walked opcode by opcode, not loaded (loading needs the module, not yet imported). Returns the
    names removed."""
    import io
    import logging
    import pickletools

    files = sorted((root / "__pycache__").glob(f"{stem}.*"))
    try:
        for f in files:
            if f.suffix not in (".nbi", ".nbc"):
                continue
            data = io.BytesIO(f.read_bytes())
            # an index holds two pickles (Numba's version, then the stamp and overloads)
            for _ in range(2 if f.suffix == ".nbi" else 1):
                for _op in pickletools.genops(data):
                    pass
            if data.read(1):
                raise ValueError("trailing bytes after the pickled data")
    except Exception as exc:  # any failure to walk a cache file means: rebuild it
        for f in files:
            f.unlink(missing_ok=True)
        where = root / "__pycache__" / stem
        logging.getLogger(__name__).warning(
            "kernel cache %s was damaged (%s: %s); rebuilding it", where, type(exc).__name__, exc
        )
        return [f.name for f in files]
    return []


def _build(src: str) -> Any:
    """The kernel of generated source ``src``: written to a file in the cache folder and imported,
    so that Numba caches its machine code across processes (one file per distinct source)."""
    import hashlib
    import importlib.util
    import os
    from pathlib import Path

    digest = hashlib.sha256(src.encode()).hexdigest()[:16]
    if digest in _KERNELS:
        return _KERNELS[digest]
    root = Path(os.environ.get("EINFORGE_CACHE", Path.home() / ".cache" / "einforge")) / "kernels"
    try:
        root.mkdir(parents=True, exist_ok=True)
        if not os.access(root, os.W_OK):
            raise OSError(f"{root} is not writable")
    except OSError:  # a read-only home: the temporary folder (cached for this machine's session)
        import tempfile

        root = Path(tempfile.gettempdir()) / f"einforge-kernels-{os.getuid()}"
        root.mkdir(parents=True, exist_ok=True)
    path = root / f"k_{digest}.py"
    if not path.exists() or path.read_text() != src:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(src)
        tmp.replace(path)  # atomic: another process may be writing the same file
    _drop_broken_cache(root, f"k_{digest}")
    spec = importlib.util.spec_from_file_location(f"einforge_kernel_{digest}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # Numba's cache finds the module by name when it loads
    spec.loader.exec_module(module)
    _KERNELS[digest] = module.kernel
    return module.kernel


@dataclass
class _Run:
    """One call's state, shared by its kernels: the tensors by name (each ``(G, ...)``), their
    shapes, the param and rank names, the params' and sizes' arrays, the dtype and the batch."""

    tensors: dict[str, Any]
    shapes: dict[str, tuple[int, ...]]
    pn: list[str]
    sn: list[str]
    prm: Any
    sz: Any
    szi: Any
    dtype: Any
    g: int
    szi_k: Any = None  # the sizes as the CUDA kernels read them (on the device)

    def fields(self) -> tuple[Any, ...]:
        """The fields in order, not copied (``dataclasses.astuple`` copies the tensors' dict)."""
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self))


@dataclass
class CompiledCascade:
    """A cascade compiled by :func:`compile`: call it like :func:`golden.run`
    (``fn(inputs, sizes=None) -> {output: array}``). Inputs may carry leading batch dimensions
    (broadcast against each other, as torch does); the kernels run once per batch entry."""

    cascade: Cascade
    plan: Plan
    backend: str
    block_q: int | None
    block_k: int | None
    source: str = ""
    _kernels: dict[Any, tuple[str, Any, Any]] = field(default_factory=dict, repr=False)

    @property
    def template(self) -> str | None:
        return self.plan.template

    @property
    def reason(self) -> str:
        return self.plan.reason

    def describe(self) -> str:
        return self.plan.describe()

    def _names(self) -> tuple[list[str], list[str]]:
        """The params and rank sizes the kernels read, in the order of their ``prm`` and ``sz``."""
        return sorted(p.name for p in self.cascade.params), sorted(self.cascade.ranks)

    def kernel_source(self, f: int = 0) -> str:
        """The Numba source of every kernel the backend generates ("" without a template); the
        CUDA core templates need V's width ``f``."""
        pn, sn = self._names()
        parts = []
        for st in self.plan.steps:
            if st.kind == "view":
                parts.append(f"# ---- {st.describe(self.cascade)}")
                continue
            if st.core:
                src = _cuda_source(st, pn, sn, f or 1) if self.backend == "cuda" else _source(st, pn, sn)
            else:
                src = _loops_source(self.cascade, st, pn, sn, self.backend == "cuda")[0]
            parts.append(f"# ---- {st.describe(self.cascade)}\n{src}")
        return "\n\n".join(parts)

    def __call__(
        self, inputs: Mapping[str, ArrayLike], sizes: Mapping[str, int] | None = None
    ) -> dict[str, NDArray[Any]]:
        from golden._interp import run

        c, pl = self.cascade, self.plan
        if pl.template is None:
            warnings.warn(
                f"golden.compile: {c.name or 'the cascade'} runs in the float64 interpreter: {pl.reason}",
                RuntimeWarning,
                stacklevel=2,
            )
            return run(c, inputs, sizes)
        arrays = {n: np.asarray(a) for n, a in inputs.items()}
        missing = [i.name for i in c.inputs if i.name not in arrays]
        if missing:
            raise EvaluationError(f"golden.compile: missing input(s) {', '.join(missing)}")
        for i in c.inputs:
            if arrays[i.name].dtype.kind not in "biuf":  # as golden.run: no silent coercion
                raise EvaluationError(
                    f"golden.compile: input {i.name} must be a real numeric array, "
                    f"got dtype {arrays[i.name].dtype}"
                )
            if arrays[i.name].ndim < len(i.ranks):
                raise EvaluationError(
                    f"golden.compile: input {i.name} needs {len(i.ranks)} dimensions "
                    f"({', '.join(i.ranks)}), got shape {arrays[i.name].shape}"
                )
        floats = [arrays[i.name].dtype for i in c.inputs if arrays[i.name].dtype.kind == "f"]
        dtype = np.result_type(*floats) if floats else np.dtype(np.float64)
        if dtype not in (np.float32, np.float64):
            dtype = np.dtype(np.float64)
        tails = {i.name: arrays[i.name].shape[arrays[i.name].ndim - len(i.ranks) :] for i in c.inputs}
        try:
            lead = np.broadcast_shapes(*(arrays[i.name].shape[: -len(i.ranks) or None] for i in c.inputs))
        except ValueError:
            got = ", ".join(f"{i.name} {arrays[i.name].shape}" for i in c.inputs)
            raise EvaluationError(
                f"golden.compile: the inputs' leading (batch) dimensions do not broadcast: {got}"
            ) from None
        bound = bind_sizes(c, tails, sizes)
        params = eval_params(c, bound)
        pnames, snames = self._names()
        g = int(np.prod(lead, dtype=np.int64))
        tensors: dict[str, Any] = {
            i.name: c_array(
                np.broadcast_to(arrays[i.name], (*lead, *tails[i.name])).reshape(g, *tails[i.name]), dtype
            )
            for i in c.inputs
        }
        prm64 = np.array([params[n] for n in pnames], np.float64)
        sz64 = np.array([bound[n] for n in snames], np.float64)
        szi = np.array([bound[n] for n in snames], np.int64)
        shapes = {}
        lay = layouts(c)
        for e in c.einsums:
            shape = [bound[r] for r in e.ranks]
            if e.step is not None:
                shape[e.indices.index(e.step)] += 1
            shapes[e.output] = (g, *(shape[i] for i in lay.get(e.output, range(len(shape)))))
        cuda = self.backend == "cuda"
        if cuda:
            from numba import cuda as nbcuda

            if not nbcuda.is_available():  # type: ignore[no-untyped-call]
                raise EvaluationError(
                    "golden.compile: backend 'cuda' needs an NVIDIA GPU with a working CUDA driver (none "
                    "found); set NUMBA_ENABLE_CUDASIM=1 to run on numba's CUDA simulator instead"
                )
            tensors = {n: nbcuda.to_device(a) for n, a in tensors.items()}
            prm_c, sz_c, szi_k = (nbcuda.to_device(a) for a in (prm64, sz64, szi))
            prm_l, sz_l = prm_c, sz_c  # float64 for every CUDA kernel
        else:
            prm_c, sz_c, szi_k = prm64.astype(dtype), sz64.astype(dtype), None  # cores: the dtype
            prm_l, sz_l = prm64, sz64  # loop nests compute in float64
        core_run = _Run(tensors, shapes, pnames, snames, prm_c, sz_c, szi, dtype, g, szi_k)
        loop_run = _Run(tensors, shapes, pnames, snames, prm_l, sz_l, szi, dtype, g, szi_k)
        from golden._attention import _CPU_LOCK, _blas_controller

        sources = []
        with _CPU_LOCK, _blas_controller().limit(limits=1, user_api="blas"):
            for st in pl.steps:
                if st.kind == "view":
                    e = c.einsums[st.statements[0]]
                    tensors[e.output] = tensors[_view_of(c, e)].reshape(shapes[e.output])  # type: ignore[index]
                    continue
                src = self._core(st, core_run) if st.core else self._loops(st, loop_run)
                sources.append(src)
            if cuda:
                nbcuda.synchronize()  # type: ignore[no-untyped-call]
        self.source = "\n\n".join(sources)
        result = {}
        for name in c.outputs:
            x = tensors[name]
            x = x.copy_to_host() if cuda else x
            if name in lay:  # back to the logical order
                x = np.ascontiguousarray(
                    np.transpose(x, (0, *(1 + lay[name].index(i) for i in range(x.ndim - 1))))
                )
            result[name] = x.reshape(*lead, *tuple(x.shape)[1:])
        return result

    def _kernel(self, st: Step, source: Any, f: int = 0) -> tuple[str, Any, Any]:
        """The step's generated source, compiled kernel and what ``source()`` gives besides the
        source (a loop step's split index), generated once per instance."""
        key = (st.statements, f)
        if key not in self._kernels:
            src, extra = source()
            with _LOCK:
                self._kernels[key] = (src, _build(src), extra)
        return self._kernels[key]

    def _alloc(
        self, name: str, tensors: dict[str, Any], shapes: dict[str, tuple[int, ...]], dtype: Any
    ) -> None:
        if name in tensors:
            return
        # a recurrence's tensor starts NaN, as golden.run's (a position no step writes reads NaN);
        # every other statement writes its whole tensor
        iterative = name in self.cascade.iterative
        if self.backend == "cuda":
            from numba import cuda as nbcuda

            if iterative:
                tensors[name] = nbcuda.to_device(np.full(shapes[name], np.nan, dtype))
            else:
                tensors[name] = nbcuda.device_array(shapes[name], dtype)
        else:
            tensors[name] = (
                np.full(shapes[name], np.nan, dtype) if iterative else np.empty(shapes[name], dtype)
            )

    def _loops(self, st: Step, run: _Run) -> str:
        tensors, shapes, pn, sn, prm, sz, szi, dtype, g, szi_k = run.fields()
        c = self.cascade
        names = loop_tensors(c, st)
        for i in st.statements:
            self._alloc(c.einsums[i].output, tensors, shapes, dtype)
        src, kernel, par = self._kernel(st, lambda: _loops_source(c, st, pn, sn, self.backend == "cuda"))
        n = int(szi[sn.index(par.upper())]) if par else 1
        args = [tensors[t] for t in names]
        if self.backend == "cuda":
            threads = 128
            kernel[max(1, -(-(g * n) // threads)), threads](*args, prm, sz, szi_k)
        else:
            kernel(*args, prm, sz, szi)
        return str(src)

    def _core(self, st: Step, run: _Run) -> str:
        tensors, shapes, pn, sn, prm, sz, szi, dtype, g, szi_k = run.fields()
        q, k, v = tensors[st.q], tensors[st.k], tensors[st.v]
        qs, ks, vs = (
            tuple(q.shape),
            tuple(k.shape),
            tuple(v.shape),
        )  # (the CUDA simulator's shapes are not tuples)
        p = int(np.prod(qs[1:-1], dtype=np.int64))
        m = int(np.prod(ks[1:-1], dtype=np.int64))
        f = vs[-1]
        q3, k3, v3 = q.reshape(g, p, qs[-1]), k.reshape(g, m, ks[-1]), v.reshape(g, m, f)
        extras = [tensors[x] for x in st.extras]
        cuda = self.backend == "cuda"
        if cuda:
            from numba import cuda as nbcuda

            out = nbcuda.device_array((g, p, f), dtype)
            if not extras:
                extras = [nbcuda.to_device(np.zeros((1, 1), dtype))]
            src, kernel, _ = self._kernel(st, lambda: (_cuda_source(st, pn, sn, f), None), f)
            threads = 64
            kernel[(-(-p // threads), g), threads](q3, k3, v3, out, prm, sz, szi_k, *extras)
        else:
            out = np.empty((g, p, f), dtype)
            if not extras:
                extras = [np.zeros((1, 1), dtype)]
            src, kernel, _ = self._kernel(st, lambda: (_source(st, pn, sn), None))
            bq, bk = TILES[st.kind]
            # a blocked query or key (SeerAttention's): a tile per block, so that a block the
            # selection dropped is skipped whole
            if len(st.qranks) > 1:
                bq = int(szi[sn.index(st.qranks[-1].upper())])
            if len(st.kranks) > 1:
                bk = int(szi[sn.index(st.kranks[-1].upper())])
            kernel(q3, k3, v3, out, prm, sz, szi, *extras, self.block_q or bq, self.block_k or bk)
        tensors[st.output] = out.reshape(shapes[st.output])
        return src


def compile(
    cascade: Cascade, backend: str = "cpu", *, block_q: int | None = None, block_k: int | None = None
) -> CompiledCascade:
    """Compile ``cascade`` into a fused, tiled kernel (see the module's text for the templates).

    Args:
        cascade: any valid cascade; one that fits no template runs in the interpreter (with a
            warning naming the reason) when called.
        backend: ``"cpu"`` (parallel Numba) or ``"cuda"`` (numba.cuda, one thread per query
            row: correct, not yet fast; numba's simulator with ``NUMBA_ENABLE_CUDASIM=1``).
        block_q, block_k: the attention cores' query-tile rows and key-tile columns; None (the
            default) takes each template's, :data:`TILES` (the best of five pairs measured at
            B 1, H 8, 2048 x 2048, d 64, float32 on 2 cores: softmax 256 x 512, as the
            hand-written kernels; weighted 128 x 256).

    Raises:
        EvaluationError: an unknown backend or a tile size that is not a positive integer.
    """
    if not isinstance(cascade, Cascade):
        raise EvaluationError(f"golden.compile: expected an einsum.Cascade, got {type(cascade).__name__}")
    if backend not in BACKENDS:
        raise EvaluationError(
            f"golden.compile: unknown backend {backend!r} (backends: {', '.join(BACKENDS)})"
        )
    for name, b in (("block_q", block_q), ("block_k", block_k)):
        if b is not None and (isinstance(b, bool) or not isinstance(b, int) or b < 1):
            raise EvaluationError(f"golden.compile: {name} must be a positive integer, got {b!r}")
    return CompiledCascade(cascade, plan(cascade), backend, block_q, block_k)
