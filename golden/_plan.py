"""The compiler's plan (:func:`plan`): which template each kernel of a cascade takes, and why.

See :mod:`golden._compile` for the templates and what each core matches.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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
)
from einsum._expr import ordered_vars, product_factors, walk


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
    Func.TANH: "{tanh}({0})",
    Func.ERF: "math.erf({0})",
    Func.LOG1P: "math.log1p({0})",
    Func.SILU: "(({0}) / ({one} + {exp}(-({0}))))",
    Func.SOFTPLUS: "(max({0}, {zero}) + math.log1p({exp}(-abs({0}))))",
    Func.GELU: "(0.5 * ({0}) * math.erfc(-({0}) * 0.7071067811865476))",
    Func.GELU_TANH: (
        "(0.5 * ({0}) * ({one} + {tanh}(0.7978845608028654 * (({0}) + 0.044715 * ({0}) * ({0}) * ({0})))))"
    ),
    Func.RELU: "max({0}, {zero})",
    Func.ABS: "abs({0})",
    Func.MAX: "max({0}, {1})",
    Func.MIN: "min({0}, {1})",
    Func.WHERE: "({1} if {0} != {zero} else {2})",
    Func.FLOOR: "math.floor({0})",
    Func.CEIL: "math.ceil({0})",
}
