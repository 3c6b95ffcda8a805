"""Kernels compiled from a cascade: :func:`compile` (``golden.compile``).

An analysis of the cascade (:func:`plan`) chooses a template; the template's Numba source is
generated with the cascade's own score expression in its inner loop, compiled once (per cascade
and dtype) and cached. Templates:

- ``softmax``: row-normalised attention with any pointwise score modification. The cascade's
  output is ``AV[p, f] = A[p, m] * V[m, f]`` with ``A`` the 3-pass softmax over ``m``
  (``GM = max[m] S``, ``SN = exp(S - GM)``, ``SD = sum[m] SN``, ``A = SN / SD``) of a score
  ``S[p, m]`` that is, once its intermediates are inlined, a pointwise function of
  ``QK[p, m] = Q[p, e] * K[m, e]``, the indices ``p`` and ``m``, params, rank sizes and inputs
  indexed by ``p`` or by ``m`` alone (ALiBi, soft-capping, sliding windows, document masks,
  bottom-right causal). The kernel runs it as an online softmax over key tiles (the 1-pass
  cascade's order: the P x M scores never exist); ``-inf`` scores are masked keys.
- ``weighted``: no normaliser, ``O[p, f] = W[p, m] * V[m, f]`` with ``W`` a pointwise function
  of ``QK`` as above (sigmoid attention, linear attention with decay in its parallel form).

Anything else runs in the float64 interpreter (:func:`golden.run`) with a warning that says why no
template fits (``CompiledCascade.reason``).
"""

from __future__ import annotations

import math
import sys
import threading
import warnings
from collections.abc import Mapping
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
    Var,
    bind_sizes,
    eval_params,
)
from einsum._expr import product_factors, walk
from golden._attention import c_array
from golden.errors import EvaluationError

__all__ = ["BACKENDS", "CompiledCascade", "Plan", "compile", "plan"]

BACKENDS = ("cpu", "cuda")
_LOCK = threading.Lock()


class NoTemplate(Exception):
    """Why a cascade fits no template (internal; becomes ``Plan.reason``)."""


@dataclass(frozen=True)
class Plan:
    """What :func:`plan` found: the template (None where none fits, with the ``reason``), the
    roles of the inputs, and the score (or weight) expression the kernel evaluates."""

    template: str | None
    reason: str = ""
    q: str = ""
    k: str = ""
    v: str = ""
    output: str = ""
    qvar: str = ""
    kvar: str = ""
    body: Expr | None = None
    row_inputs: tuple[str, ...] = ()  # inputs indexed by the query index alone
    col_inputs: tuple[str, ...] = ()  # inputs indexed by the key index alone

    def describe(self) -> str:
        if self.template is None:
            return f"no template fits: {self.reason}; it runs in the float64 interpreter (golden.run)"
        what = {
            "softmax": "row-normalised attention (online softmax over key tiles) with the score",
            "weighted": "attention without a normaliser (weights times V, over key tiles) with the weight",
        }[self.template]
        from einsum._expr import to_text

        return (
            f"template {self.template!r}: {what} {to_text(self.body)}"
            if self.body is not None
            else self.template
        )


def _defs(c: Cascade) -> dict[str, Any]:
    return {e.output: e for e in c.einsums if not e.init}


def plan(cascade: Cascade) -> Plan:
    """Choose a template for ``cascade`` (see the module's text), or say why none fits."""
    try:
        return _plan(cascade)
    except NoTemplate as why:
        return Plan(template=None, reason=str(why))


def _plan(c: Cascade) -> Plan:
    if c.partitions:
        raise NoTemplate(
            f"it partitions {', '.join(p.rank for p in c.partitions)} (blocked cascades have no template yet)"
        )
    if c.iterative:
        raise NoTemplate(
            f"it has recurrences ({', '.join(sorted(c.iterative))}): the scan templates are not built yet"
        )
    if len(c.outputs) != 1:
        raise NoTemplate(f"it has {len(c.outputs)} outputs; the templates produce one")
    defs = _defs(c)
    out = defs[c.outputs[0]]
    if len(out.indices) != 2:
        raise NoTemplate(f"its output {out.lhs_text} is not a (query, value-feature) matrix")
    qvar, fvar = out.indices
    factors = product_factors(out.expr)
    vacc = [f for f in factors if isinstance(f, Access) and f.tensor in {i.name for i in c.inputs}]
    vacc = [f for f in vacc if [getattr(i, "name", None) for i in f.indices][-1:] == [fvar]]
    if len(vacc) != 1 or len(factors) != 2 or len(out.summed) != 1:
        raise NoTemplate(f"its output {out.lhs_text} is not weights[{qvar}, m] * V[m, {fvar}] summed over m")
    (kvar,) = out.summed
    v = vacc[0]
    if [getattr(i, "name", None) for i in v.indices] != [kvar, fvar]:
        raise NoTemplate(f"{v} does not read V[{kvar}, {fvar}]")
    (w,) = [f for f in factors if f is not v]
    if not (isinstance(w, Access) and [getattr(i, "name", None) for i in w.indices] == [qvar, kvar]):
        raise NoTemplate(f"the weights {w} are not a tensor [{qvar}, {kvar}]")
    softmax = _softmax_score(defs, w.tensor, qvar, kvar)
    name = softmax if softmax is not None else w.tensor
    ctx = _Inline(c, defs, qvar, kvar)
    body = ctx.inline(Access(tensor=name, indices=(Var(qvar), Var(kvar))))
    if ctx.qk is None:
        raise NoTemplate(f"no Q . K contraction feeds {'the score' if softmax else 'the weights'}")
    return Plan(
        template="softmax" if softmax is not None else "weighted",
        q=ctx.qk[0],
        k=ctx.qk[1],
        v=v.tensor,
        output=out.output,
        qvar=qvar,
        kvar=kvar,
        body=body,
        row_inputs=tuple(ctx.rows),
        col_inputs=tuple(ctx.cols),
    )


def _softmax_score(defs: Mapping[str, Any], a: str, p: str, m: str) -> str | None:
    """``S`` where ``A = SN / SD``, ``SD = sum[m] SN``, ``SN = exp(S - GM)``, ``GM = max[m] S``."""

    def acc(x: Expr, name: str | None = None, idx: tuple[str, ...] | None = None) -> str | None:
        if not isinstance(x, Access) or (name is not None and x.tensor != name):
            return None
        names = tuple(getattr(i, "name", "") for i in x.indices)
        return x.tensor if idx is None or names == idx else None

    ea = defs.get(a)
    if ea is None or not (isinstance(ea.expr, Binary) and ea.expr.op is BinOp.DIV):
        return None
    sn, sd = acc(ea.expr.lhs, idx=(p, m)), acc(ea.expr.rhs, idx=(p,))
    esd, esn = defs.get(sd or ""), defs.get(sn or "")
    if esd is None or esn is None:
        return None
    r = esd.expr
    if not (isinstance(r, Reduce) and r.op is ReduceOp.SUM and r.indices == (m,) and acc(r.body, sn, (p, m))):
        if not (esd.summed == (m,) and acc(r, sn, (p, m))):
            return None
    x = esn.expr
    if not (
        isinstance(x, Call)
        and x.func is Func.EXP
        and isinstance(x.args[0], Binary)
        and x.args[0].op is BinOp.SUB
    ):
        return None
    s, gm = acc(x.args[0].lhs, idx=(p, m)), acc(x.args[0].rhs, idx=(p,))
    egm = defs.get(gm or "")
    if s is None or egm is None:
        return None
    g = egm.expr
    if not (isinstance(g, Reduce) and g.op is ReduceOp.MAX and g.indices == (m,) and acc(g.body, s, (p, m))):
        return None
    return s


@dataclass
class _Inline:
    c: Cascade
    defs: Mapping[str, Any]
    p: str
    m: str
    qk: tuple[str, str] | None = None
    qk_name: str = ""
    rows: list[str] = field(default_factory=list)
    cols: list[str] = field(default_factory=list)

    def inline(self, x: Expr) -> Expr:
        inputs = {i.name: i for i in self.c.inputs}
        if isinstance(x, Access):
            names = [getattr(i, "name", None) for i in x.indices]
            if not all(isinstance(i, Var) for i in x.indices):
                raise NoTemplate(f"{x} reads with an index expression")
            if x.tensor in inputs:
                if names == [self.p]:
                    self.rows += [] if x.tensor in self.rows else [x.tensor]
                    return x
                if names == [self.m]:
                    self.cols += [] if x.tensor in self.cols else [x.tensor]
                    return x
                raise NoTemplate(
                    f"the score reads input {x}, which is not indexed by {self.p} or {self.m} alone"
                )
            e = self.defs.get(x.tensor)
            if e is None or tuple(e.indices) not in ((self.p, self.m), (self.p,), (self.m,)) or e.step:
                raise NoTemplate(f"the score reads {x}, which is not a pointwise [{self.p}, {self.m}] tensor")
            if self._is_qk(e):
                return Var("qk")
            if e.summed:
                raise NoTemplate(f"{e.lhs_text} sums over {', '.join(e.summed)} (only Q . K may contract)")
            mapping = dict(zip(e.indices, names, strict=True))
            return self.inline(_rename(e.expr, mapping))
        if isinstance(x, (Reduce,)):
            raise NoTemplate(f"the score has a reduction, {x.op.value}[{', '.join(x.indices)}]")
        if isinstance(x, Call) and isinstance(x.func, Operator):
            raise NoTemplate(f"the score calls the user-defined operator {x.func.name!r}")
        if isinstance(x, Binary):
            return Binary(op=x.op, lhs=self.inline(x.lhs), rhs=self.inline(x.rhs))
        if isinstance(x, Neg):
            return Neg(operand=self.inline(x.operand))
        if isinstance(x, Call):
            return Call(func=x.func, args=tuple(self.inline(a) for a in x.args))
        if isinstance(x, (Num, Var, ParamRef, Size)):
            return x
        raise NoTemplate(f"the score has {type(x).__name__.lower()} {x}")

    def _is_qk(self, e: Any) -> bool:
        if tuple(e.indices) != (self.p, self.m) or len(e.summed) != 1:
            return False
        ins = {i.name for i in self.c.inputs}
        fs = [f for f in product_factors(e.expr) if isinstance(f, Access) and f.tensor in ins]
        if len(fs) != 2 or len(product_factors(e.expr)) != 2:
            return False
        (r,) = e.summed
        a, b = fs

        def names(x: Access) -> list[str | None]:
            return [i.name if isinstance(i, Var) else None for i in x.indices]

        if names(a) == [self.m, r]:
            a, b = b, a
        if names(a) != [self.p, r] or names(b) != [self.m, r]:
            return False
        if self.qk is not None and self.qk != (a.tensor, b.tensor):
            raise NoTemplate("the score reads two different Q . K contractions")
        self.qk = (a.tensor, b.tensor)
        return True


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
    return x


# -- code generation ------------------------------------------------------------------------------

_CMP = {BinOp.LT: "<", BinOp.LE: "<=", BinOp.GT: ">", BinOp.GE: ">=", BinOp.EQ: "==", BinOp.NE: "!="}
_ARITH = {BinOp.ADD: "+", BinOp.SUB: "-", BinOp.MUL: "*", BinOp.DIV: "/", BinOp.POW: "**"}


class _Gen:
    def __init__(self, pl: Plan, params: list[str], sizes: list[str]) -> None:
        self.pl, self.params, self.sizes = pl, params, sizes

    def py(self, x: Expr) -> str:
        if isinstance(x, Num):
            if math.isinf(x.value):
                return "INF" if x.value > 0 else "(-INF)"
            return f"ONE * {float(x.value)!r}"
        if isinstance(x, Var):
            if x.name == "qk":
                return "qk"
            return "fp" if x.name == self.pl.qvar else "fm"
        if isinstance(x, ParamRef):
            return f"prm[{self.params.index(x.name)}]"
        if isinstance(x, Size):
            return f"sz[{self.sizes.index(x.rank)}]"
        if isinstance(x, Access):
            if x.tensor in self.pl.row_inputs:
                return f"xr{self.pl.row_inputs.index(x.tensor)}[g, pi]"
            return f"xc{self.pl.col_inputs.index(x.tensor)}[g, mi]"
        if isinstance(x, Neg):
            return f"(-{self.py(x.operand)})"
        if isinstance(x, Binary):
            a, b = self.py(x.lhs), self.py(x.rhs)
            if x.op in _CMP:
                return f"(ONE if {a} {_CMP[x.op]} {b} else ZERO)"
            return f"({a} {_ARITH[x.op]} {b})"
        if isinstance(x, Call):
            args = [self.py(a) for a in x.args]
            f = x.func
            table = {
                Func.EXP: "exp_fast({0})",
                Func.LOG: "math.log({0})",
                Func.SQRT: "math.sqrt({0})",
                Func.SIGMOID: "(ONE / (ONE + exp_fast(-{0})))",
                Func.RELU: "max({0}, ZERO)",
                Func.ABS: "abs({0})",
                Func.MAX: "max({0}, {1})",
                Func.MIN: "min({0}, {1})",
                Func.WHERE: "({1} if {0} != ZERO else {2})",
                Func.FLOOR: "math.floor({0})",
                Func.CEIL: "math.ceil({0})",
            }
            if f not in table:
                raise NoTemplate(f"the score calls {f}, which the kernel generator does not know")
            return table[f].format(*args)
        raise NoTemplate(f"cannot generate {x}")


# One work item per (group, query tile), as the hand-written kernels.
_PROLOGUE = """
def kernel(q, k, v, out, prm, sz, {extra}, bq, bk):
    G, P, _ = q.shape
    M, F = k.shape[1], v.shape[2]
    ONE = q.dtype.type(1.0)
    ZERO = q.dtype.type(0.0)
    INF = q.dtype.type(np.inf)
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
        acc = np.zeros((n, F), q.dtype)
        for m0 in range(0, M, bk):
            nk = min(M, m0 + bk) - m0
{tile_check}            s = np.dot(qt, k[g, m0 : m0 + nk].T)
            for i in range(n):
                pi = p0 + i
                fp = q.dtype.type(pi)
                mx = rm[i]
                for j in range(nk):
                    mi = m0 + j
                    fm = q.dtype.type(mi)
                    qk = s[i, j]
                    val = {body}
                    s[i, j] = val
                    mx = val if val > mx else mx
                if mx == -INF:
                    for j in range(nk):
                        s[i, j] = ZERO
                    continue
                prm_ = exp_fast(rm[i] - mx) if rm[i] != -INF else ZERO
                tot = ZERO
                for j in range(nk):
                    x = s[i, j]
                    e = exp_fast(x - mx) if x != -INF else ZERO
                    s[i, j] = e
                    tot += e
                rd[i] = rd[i] * prm_ + tot
                for f in range(F):
                    acc[i, f] *= prm_
                rm[i] = mx
            acc += np.dot(s, v[g, m0 : m0 + nk])
        for i in range(n):
            for f in range(F):
                out[g, p0 + i, f] = acc[i, f] / rd[i]
"""
)

_WEIGHTED = (
    _PROLOGUE
    + """        acc = np.zeros((n, F), q.dtype)
        for m0 in range(0, M, bk):
            nk = min(M, m0 + bk) - m0
            s = np.dot(qt, k[g, m0 : m0 + nk].T)
            for i in range(n):
                pi = p0 + i
                fp = q.dtype.type(pi)
                for j in range(nk):
                    mi = m0 + j
                    fm = q.dtype.type(mi)
                    qk = s[i, j]
                    s[i, j] = {body}
            acc += np.dot(s, v[g, m0 : m0 + nk])
        out[g, p0 : p0 + n] = acc
"""
)


_CUDA = """
@cuda.jit(cache=True)
def kernel(q, k, v, out, prm, sz, {extra}):
    g = cuda.blockIdx.y
    pi = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    P, E = q.shape[1], q.shape[2]
    M = k.shape[1]
    if pi >= P:
        return
    ONE = 1.0
    ZERO = 0.0
    INF = math.inf
    acc = cuda.local.array({F}, float64)
    for f in range({F}):
        acc[f] = 0.0
    rm = -INF
    rd = 0.0
    fp = float(pi)
    for mi in range(M):
        qk = 0.0
        for e in range(E):
            qk += q[g, pi, e] * k[g, mi, e]
        fm = float(mi)
        val = {body}
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


def _cuda_source(pl: Plan, params: list[str], sizes: list[str], f: int) -> str:
    """One thread per query row: the scores, the score expression and an online softmax (or the
    weighted sum) in float64 registers, one key at a time. A first, correct CUDA template, not a
    fast one (no shared-memory tiles)."""
    body = _Gen(pl, params, sizes).py(pl.body)  # type: ignore[arg-type]
    extra = ", ".join(
        [f"xr{i}" for i in range(len(pl.row_inputs))] + [f"xc{i}" for i in range(len(pl.col_inputs))]
    )
    soft = pl.template == "softmax"
    src = _CUDA.format(
        extra=extra or "_unused",
        F=f,
        body=body,
        update=(_CUDA_SOFTMAX if soft else _CUDA_WEIGHTED).format(F=f),
        finish=(_CUDA_SOFTMAX_END if soft else _CUDA_WEIGHTED_END).format(F=f),
    )
    header = (
        "# Generated by golden.compile (numba.cuda) from a cascade; do not edit.\n"
        "import math\n\nfrom numba import cuda, float64\n\nexp_fast = math.exp\n\n"
    )
    return header + src


_TILE_CHECK = """            live = False
            for i in range(n):
                pi = p0 + i
                fp = q.dtype.type(pi)
                for j in range(nk):
                    mi = m0 + j
                    fm = q.dtype.type(mi)
                    if {cond} != ZERO:
                        live = True
                        break
                if live:
                    break
            if not live:
                continue
"""


def tile_mask(body: Expr | None) -> Expr | None:
    """The condition of a score ``where(COND, X, -inf)`` whose COND does not read ``Q . K``: a
    key tile where it holds nowhere (a causal or window mask, documents apart) can be skipped
    before its scores are computed."""
    if (
        isinstance(body, Call)
        and body.func is Func.WHERE
        and isinstance(body.args[2], Num)
        and body.args[2].value == -math.inf
        and not any(isinstance(n, Var) and n.name == "qk" for n in walk(body.args[0]))
    ):
        return body.args[0]
    return None


def _source(pl: Plan, params: list[str], sizes: list[str]) -> str:
    gen = _Gen(pl, params, sizes)
    body = gen.py(pl.body)  # type: ignore[arg-type]
    cond = tile_mask(pl.body) if pl.template == "softmax" else None
    tile_check = _TILE_CHECK.format(cond=gen.py(cond)) if cond is not None else ""
    extra = ", ".join(
        [f"xr{i}" for i in range(len(pl.row_inputs))] + [f"xc{i}" for i in range(len(pl.col_inputs))]
    )
    if pl.template == "softmax":
        src = _SOFTMAX.format(body=body, extra=extra or "_unused", tile_check=tile_check)
    else:
        src = _WEIGHTED.format(body=body, extra=extra or "_unused")
    header = (
        "# Generated by golden.compile from a cascade; do not edit (it is rewritten when it changes).\n"
        "import math\n\nimport numpy as np\nfrom numba import njit, prange\n\n"
        "from golden._attn_cpu import exp_fast\n\n\n"
        '@njit(parallel=True, fastmath={"contract", "nsz", "arcp", "afn"}, cache=True)'
    )
    return header + src


_KERNELS: dict[str, Any] = {}


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
    spec = importlib.util.spec_from_file_location(f"einforge_kernel_{digest}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # Numba's cache finds the module by name when it loads
    spec.loader.exec_module(module)
    _KERNELS[digest] = module.kernel
    return module.kernel


@dataclass
class CompiledCascade:
    """A cascade compiled by :func:`compile`: call it like :func:`golden.run`
    (``fn(inputs, sizes=None) -> {output: array}``); Q, K and V may carry leading batch
    dimensions (the inputs indexed by the query or key rank alone may too, or be shared)."""

    cascade: Cascade
    plan: Plan
    backend: str
    block_q: int
    block_k: int
    source: str = ""

    @property
    def template(self) -> str | None:
        return self.plan.template

    @property
    def reason(self) -> str:
        return self.plan.reason

    def describe(self) -> str:
        return self.plan.describe()

    def _names(self) -> tuple[list[str], list[str]]:
        """The params and rank sizes the kernel reads, in the order of its ``prm`` and ``sz``."""
        return sorted(p.name for p in self.cascade.params), sorted(self.cascade.ranks)

    def kernel_source(self) -> str:
        """The Numba source the CPU backend generates for this cascade ("" without a template)."""
        if self.plan.template is None:
            return ""
        return _source(self.plan, *self._names())

    def __call__(
        self, inputs: Mapping[str, ArrayLike], sizes: Mapping[str, int] | None = None
    ) -> dict[str, NDArray[Any]]:
        from golden._interp import run

        pl = self.plan
        if pl.template is None:
            warnings.warn(
                f"golden.compile: {self.cascade.name or 'the cascade'} runs in the float64 interpreter: "
                f"{pl.reason}",
                RuntimeWarning,
                stacklevel=2,
            )
            return run(self.cascade, inputs, sizes)
        arrays = {n: np.asarray(a) for n, a in inputs.items()}
        missing = [i.name for i in self.cascade.inputs if i.name not in arrays]
        if missing:
            raise EvaluationError(f"golden.compile: missing input(s) {', '.join(missing)}")
        q, k, v = arrays[pl.q], arrays[pl.k], arrays[pl.v]
        dtype = np.result_type(q, k, v)
        if dtype not in (np.float32, np.float64):
            dtype = np.dtype(np.float64)
        lead = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
        P, E = q.shape[-2:]
        M, F = v.shape[-2:]
        if k.shape[-2:] != (M, E):
            raise EvaluationError(f"golden.compile: K must be (..., {M}, {E}), got {k.shape}")
        bound = bind_sizes(self.cascade, {pl.q: (P, E), pl.k: (M, E), pl.v: (M, F)}, sizes)
        params = eval_params(self.cascade, bound)
        pnames, snames = self._names()
        g = int(np.prod(lead, dtype=np.int64))
        q3, k3, v3 = (
            c_array(np.broadcast_to(a, (*lead, *a.shape[-2:])).reshape(g, *a.shape[-2:]), dtype)
            for a in (q, k, v)
        )
        extras = []
        for names, n in ((pl.row_inputs, P), (pl.col_inputs, M)):
            for name in names:
                x = arrays[name]
                extras.append(c_array(np.broadcast_to(x, (*lead, n)).reshape(g, n), dtype))
        if not extras:
            extras = [np.zeros((1, 1), dtype)]
        out = np.empty((g, P, F), dtype)
        prm = np.array([params[n] for n in pnames], dtype)
        sz = np.array([bound[n] for n in snames], dtype)
        if self.backend == "cuda":
            from numba import cuda

            if not cuda.is_available():  # type: ignore[no-untyped-call]
                raise EvaluationError(
                    "golden.compile: backend 'cuda' needs an NVIDIA GPU with a working CUDA driver (none "
                    "found); set NUMBA_ENABLE_CUDASIM=1 to run on numba's CUDA simulator instead"
                )
            with _LOCK:
                self.source = _cuda_source(pl, pnames, snames, F)
                kernel = _build(self.source)
            dev = [cuda.to_device(a) for a in (q3, k3, v3)]
            dout = cuda.device_array_like(out)  # type: ignore[no-untyped-call]
            rest = [cuda.to_device(a) for a in (prm.astype(np.float64), sz.astype(np.float64), *extras)]
            threads = 64
            kernel[(-(-P // threads), g), threads](*dev, dout, *rest)
            dout.copy_to_host(out)
            cuda.synchronize()  # type: ignore[no-untyped-call]
            return {pl.output: out.reshape(*lead, P, F)}
        with _LOCK:
            self.source = _source(pl, pnames, snames)
            kernel = _build(self.source)
        from golden._attention import _CPU_LOCK, _blas_controller

        # one call at a time, BLAS on one thread inside prange's threads (as golden.attention does)
        with _CPU_LOCK, _blas_controller().limit(limits=1, user_api="blas"):
            kernel(q3, k3, v3, out, prm, sz, *extras, self.block_q, self.block_k)
        return {pl.output: out.reshape(*lead, P, F)}


def compile(
    cascade: Cascade, backend: str = "cpu", *, block_q: int = 64, block_k: int = 256
) -> CompiledCascade:
    """Compile ``cascade`` into a fused, tiled kernel (see the module's text for the templates).

    Args:
        cascade: any valid cascade; one that fits no template runs in the interpreter (with a
            warning naming the reason) when called.
        backend: ``"cpu"`` (parallel Numba) or ``"cuda"`` (numba.cuda, one thread per query
            row: correct, not yet fast; numba's simulator with ``NUMBA_ENABLE_CUDASIM=1``).
        block_q, block_k: the query-tile rows and key-tile columns.

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
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise EvaluationError(f"golden.compile: {name} must be a positive integer, got {b!r}")
    return CompiledCascade(cascade, plan(cascade), backend, block_q, block_k)
