"""The generic float64 interpreter of cascades: the oracle every other model is checked against.

Every Einsum is evaluated over its whole iteration space at once with NumPy (``numpy.einsum``
for sums of products, array reductions otherwise); only recurrences loop, one step of their
iterative rank at a time, vectorised over every other index.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from einsum import (
    Access,
    Binary,
    BinOp,
    Call,
    Cascade,
    Einsum,
    Expr,
    Func,
    Neg,
    Num,
    Operator,
    ParamRef,
    Reduce,
    ReduceOp,
    Size,
    Stage,
    TopK,
    Var,
    bind_sizes,
    eval_params,
)
from einsum._expr import ordered_vars, product_factors, to_text, walk
from einsum._plan import where_is
from einsum._sizes import eval_scalar
from einsum.errors import suggest
from golden.errors import EvaluationError

__all__ = ["run"]

F64 = NDArray[np.float64]


class _Val:
    """An array whose axes are named by index variables (kept in the statement's order)."""

    __slots__ = ("arr", "vars")

    def __init__(self, arr: Any, vars_: tuple[str, ...]) -> None:
        self.arr = arr
        self.vars = vars_


def run(
    cascade: Cascade,
    inputs: Mapping[str, ArrayLike],
    sizes: Mapping[str, int] | None = None,
    *,
    all_tensors: bool = False,
    dtype: Any = np.float64,
) -> dict[str, F64]:
    """Evaluate ``cascade`` in float64 and return its output tensors by name.

    Args:
        cascade: any valid cascade.
        inputs: one array per declared input, laid out in the order its indices are declared
            (``Q[p, e]`` is a ``(P, E)`` array). Inputs are not modified.
        sizes: sizes of ranks no input has, such as the free size ``M0`` of a partition.
        all_tensors: return every tensor (inputs, intermediates, outputs), not just the
            outputs, to localise a mismatch to a stage.
        dtype: ``np.float32`` evaluates every Einsum in float32 instead: the naive float32
            computation that FlashAttention's tolerance rule compares a float32 kernel against.

    Returns:
        ``{name: float64 array}``. A tensor with an iterative rank holds its positions
        ``0 .. R`` along that rank.

    Raises:
        EvaluationError: an input is missing, unknown or not numeric, or a read falls outside
            a tensor.
        SizeError: rank sizes are inconsistent or missing, or a partition does not divide.

    Example:
        >>> import numpy as np, einsum
        >>> c = einsum.parse("input A[m, k], B[k, n]\\noutput Z\\nZ[m, n] = A[m, k] * B[k, n]")
        >>> a, b = np.arange(6.0).reshape(2, 3), np.ones((3, 2))
        >>> run(c, {"A": a, "B": b})["Z"]
        array([[ 3.,  3.],
               [12., 12.]])
    """
    if not isinstance(cascade, Cascade):
        raise EvaluationError(f"golden.run: expected an einsum.Cascade, got {type(cascade).__name__}")
    if not isinstance(inputs, Mapping):
        raise EvaluationError(
            f"golden.run: inputs must be a mapping from input name to array, got {type(inputs).__name__}"
        )
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise EvaluationError(f"golden.run: dtype must be float32 or float64, got {np.dtype(dtype)}")
    dt = np.dtype(dtype).type
    arrays = _check_inputs(cascade, inputs, dt)
    bound = bind_sizes(cascade, {n: a.shape for n, a in arrays.items()}, sizes)
    params = eval_params(cascade, bound)
    stages = cascade.stages
    ev = _Evaluator(cascade, stages, bound, params, arrays, dt)
    with np.errstate(all="ignore"):
        for stage in stages:
            if stage.step is None:
                ev.statement(stage.statements[0], None)
            else:
                for i in range(bound[stage.step.upper()]):
                    for s in stage.statements:
                        ev.statement(s, (stage.step, i))
    if all_tensors:
        return dict(ev.tensors)
    return {name: ev.tensors[name] for name in cascade.outputs}


def _check_inputs(cascade: Cascade, inputs: Mapping[str, ArrayLike], dt: Any = np.float64) -> dict[str, F64]:
    declared = [t.name for t in cascade.inputs]
    decl_text = ", ".join(str(t) for t in cascade.inputs)
    for name in inputs:
        if name not in declared:
            hint = suggest(name, declared)
            raise EvaluationError(
                f"golden.run: inputs[{name!r}] is not an input of the cascade{hint} (it declares {decl_text})"
            )
    arrays: dict[str, F64] = {}
    for t in cascade.inputs:
        if t.name not in inputs:
            raise EvaluationError(f"golden.run: input {t} is missing (the cascade declares {decl_text})")
        raw = np.asarray(inputs[t.name])
        if raw.dtype.kind not in "biuf":
            raise EvaluationError(
                f"golden.run: input {t.name} must be a real numeric array, got dtype {raw.dtype}"
            )
        arrays[t.name] = np.asarray(raw, dtype=dt)
    return arrays


def _erf(x: Any) -> Any:
    from scipy.special import erf

    return erf(x)


def _erfc(x: Any) -> Any:
    from scipy.special import erfc

    return erfc(x)


_UNARY: dict[Func, Callable[[Any], Any]] = {
    Func.EXP: np.exp,
    Func.LOG: np.log,
    Func.SQRT: np.sqrt,
    Func.SIGMOID: lambda x: 1.0 / (1.0 + np.exp(-x)),
    Func.TANH: np.tanh,
    Func.ERF: lambda x: _erf(x),
    Func.LOG1P: np.log1p,
    Func.SILU: lambda x: x / (1.0 + np.exp(-x)),
    Func.SOFTPLUS: lambda x: np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x))),
    Func.GELU: lambda x: 0.5 * x * _erfc(-x / np.sqrt(2.0)),  # x Phi(x), exact in the tails
    Func.GELU_TANH: lambda x: 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3))),
    Func.RELU: lambda x: np.maximum(x, 0.0),
    Func.ABS: np.abs,
    Func.CEIL: np.ceil,
    Func.FLOOR: np.floor,
}
_BINARY: dict[BinOp, Callable[[Any, Any], Any]] = {
    BinOp.ADD: np.add,
    BinOp.SUB: np.subtract,
    BinOp.MUL: np.multiply,
    BinOp.DIV: np.true_divide,
    BinOp.POW: np.power,
    BinOp.LT: np.less,  # comparisons give booleans, made 0.0 / 1.0 in the evaluation's dtype
    BinOp.LE: np.less_equal,
    BinOp.GT: np.greater,
    BinOp.GE: np.greater_equal,
    BinOp.EQ: np.equal,
    BinOp.NE: np.not_equal,
}
_REDUCE: dict[ReduceOp, Callable[..., Any]] = {
    ReduceOp.SUM: np.sum,
    ReduceOp.MAX: np.max,
    ReduceOp.MIN: np.min,
    ReduceOp.PROD: np.prod,
}


class _Evaluator:
    def __init__(
        self,
        cascade: Cascade,
        stages: tuple[Stage, ...],
        sizes: dict[str, int],
        params: dict[str, float],
        arrays: dict[str, F64],
        dt: Any = np.float64,
    ) -> None:
        self.dt = dt
        self.cascade = cascade
        self.sizes = sizes
        self.params = params
        self.tensors: dict[str, F64] = dict(arrays)
        self.iterative = cascade.iterative
        self.order: dict[str, int] = {}
        self.restricted: tuple[str, int] | None = None
        self.where = ""
        # Tensors written piecewise (recurrences and their members) are allocated up front.
        for stage in stages:
            for s in stage.statements if stage.step is not None else ():
                self._allocate(cascade.einsums[s])
        for e in cascade.einsums:
            if e.step is not None:
                self._allocate(e)

    def _allocate(self, e: Einsum) -> None:
        if e.output in self.tensors:
            return
        shape = [self.sizes[r] for r in e.ranks]
        if e.step is not None:
            shape[e.indices.index(e.step)] += 1
        self.tensors[e.output] = np.full(shape, np.nan, self.dt)

    # -- domains ----------------------------------------------------------------------------------

    def domain(self, var: str) -> slice:
        if self.restricted is not None and self.restricted[0] == var:
            i = self.restricted[1]
            return slice(i, i + 1)
        return slice(0, self.sizes[var.upper()])

    def dsize(self, var: str) -> int:
        d = self.domain(var)
        return int(d.stop - d.start)

    def indices_of(self, var: str) -> NDArray[np.int64]:
        d = self.domain(var)
        return np.arange(d.start, d.stop)

    # -- statements -----------------------------------------------------------------------------

    def statement(self, index: int, step: tuple[str, int] | None) -> None:
        e = self.cascade.einsums[index]
        self.where = where_is(self.cascade.einsums, index)
        self.restricted = step
        lhs = [v for v in e.indices if not (e.init and v == e.step)]
        self.order = {v: i for i, v in enumerate(lhs + [v for v in ordered_vars(e.expr) if v not in lhs])}
        summed = e.summed
        val = self.reduce_sum(e.expr, frozenset(summed)) if summed else self.eval(e.expr)
        out = self.expand(val, tuple(lhs))
        out = np.broadcast_to(out, tuple(self.dsize(v) for v in lhs))
        target = []
        for v in e.indices:
            if e.init and v == e.step:
                target.append(slice(0, 1))
            elif v == e.step:
                d = self.domain(v)
                target.append(slice(d.start + 1, d.stop + 1))
            else:
                target.append(self.domain(v))
        if e.init:
            out = np.expand_dims(out, e.indices.index(str(e.step)))
        if e.output in self.tensors and (e.step is not None or step is not None):
            self.tensors[e.output][tuple(target)] = out
        else:
            self.tensors[e.output] = np.array(out, dtype=self.dt)
        self.restricted = None

    # -- expressions ----------------------------------------------------------------------------

    def sort(self, vars_: set[str] | frozenset[str]) -> tuple[str, ...]:
        return tuple(sorted(vars_, key=self.order.__getitem__))

    def expand(self, val: _Val, target: tuple[str, ...]) -> Any:
        """``val.arr`` with its axes laid out as ``target`` (size-1 axes where it lacks one)."""
        if val.vars == target:
            return val.arr
        arr = val.arr
        shape = [self.dsize(v) if v in val.vars else 1 for v in target]
        perm = [val.vars.index(v) for v in target if v in val.vars]
        if perm != sorted(perm):
            arr = np.transpose(arr, perm)
        return np.reshape(arr, shape)

    def align(self, *vals: _Val) -> tuple[tuple[str, ...], list[Any]]:
        union = self.sort(set().union(*(v.vars for v in vals)))
        return union, [self.expand(v, union) for v in vals]

    def eval(self, expr: Expr) -> _Val:
        if isinstance(expr, Num):
            return _Val(self.dt(expr.value), ())
        if isinstance(expr, ParamRef):
            return _Val(self.dt(self.params[expr.name]), ())
        if isinstance(expr, Size):
            return _Val(self.dt(self.sizes[expr.rank]), ())
        if isinstance(expr, Var):
            return _Val(self.indices_of(expr.name).astype(self.dt), (expr.name,))
        if isinstance(expr, Access):
            return self.access(expr)
        if isinstance(expr, Neg):
            v = self.eval(expr.operand)
            return _Val(np.negative(v.arr), v.vars)
        if isinstance(expr, Binary):
            union, (a, b) = self.align(self.eval(expr.lhs), self.eval(expr.rhs))
            r = _BINARY[expr.op](a, b)
            return _Val(r.astype(self.dt) if np.asarray(r).dtype == np.bool_ else r, union)
        if isinstance(expr, Call):
            return self.call(expr)
        if isinstance(expr, Reduce):
            if expr.op is ReduceOp.SUM:
                return self.reduce_sum(expr.body, frozenset(expr.indices))
            body = self.eval(expr.body)
            axes = tuple(body.vars.index(v) for v in expr.indices)
            rest = tuple(v for v in body.vars if v not in expr.indices)
            return _Val(_REDUCE[expr.op](body.arr, axis=axes), rest)
        if isinstance(expr, TopK):
            return self.topk(expr)
        raise TypeError(f"not an expression node: {expr!r}")

    def call(self, expr: Call) -> _Val:
        union, args = self.align(*(self.eval(a) for a in expr.args))
        if isinstance(expr.func, Operator):
            result = np.asarray(expr.func.golden(*args), dtype=self.dt)
            want = np.broadcast_shapes(*(np.shape(a) for a in args))
            if result.shape != want:
                raise EvaluationError(
                    f"{self.where}: operator {expr.func.name!r} returned shape {result.shape} "
                    f"for arguments of shape {want}; its golden function must work point-wise"
                )
            return _Val(result, union)
        if expr.func is Func.MAX:
            return _Val(np.maximum(args[0], args[1]), union)
        if expr.func is Func.MIN:
            return _Val(np.minimum(args[0], args[1]), union)
        if expr.func is Func.WHERE:
            return _Val(np.where(args[0] != 0, args[1], args[2]), union)
        return _Val(_UNARY[expr.func](args[0]), union)

    def reduce_sum(self, body: Expr, reduced: frozenset[str]) -> _Val:
        factors = product_factors(body)
        vals = [self.eval(f) for f in factors]
        scalars = [v for v in vals if not v.vars]
        tensors = [v for v in vals if v.vars]
        union = set().union(*(v.vars for v in tensors))
        out_vars = self.sort(union - reduced)
        if not tensors:
            raise EvaluationError(f"{self.where}: sums over {sorted(reduced)} but uses no index")
        if len(tensors) == 1:
            t = tensors[0]
            axes = tuple(t.vars.index(v) for v in reduced if v in t.vars)
            result = np.sum(t.arr, axis=axes)
        elif (
            len(tensors) == 2
            and set(tensors[0].vars) & set(tensors[1].vars) == set(reduced)
            and set(reduced) <= set(tensors[0].vars)
        ):
            # a plain contraction: tensordot, i.e. one BLAS product (blocked sums, as a user's A @ B)
            a, b = tensors
            shared = [v for v in a.vars if v in reduced]
            result = np.tensordot(
                a.arr, b.arr, axes=([a.vars.index(v) for v in shared], [b.vars.index(v) for v in shared])
            )
            got = [v for v in a.vars if v not in reduced] + [v for v in b.vars if v not in reduced]
            result = np.transpose(result, [got.index(v) for v in out_vars])
        else:
            letters = dict(zip(self.sort(union), string.ascii_letters, strict=False))
            spec = ",".join("".join(letters[v] for v in t.vars) for t in tensors)
            spec += "->" + "".join(letters[v] for v in out_vars)
            result = np.einsum(spec, *(t.arr for t in tensors), optimize=len(tensors) > 2 or None)
        for s in scalars:
            result = result * s.arr
        return _Val(result, out_vars)

    def topk(self, expr: TopK) -> _Val:
        body = self.eval(expr.body)
        keep_axes = [i for i, v in enumerate(body.vars) if v not in expr.indices]
        sel_axes = [body.vars.index(v) for v in expr.indices]
        moved = np.transpose(body.arr, keep_axes + sel_axes)
        lead = moved.shape[: len(keep_axes)]
        flat = moved.reshape((*lead, -1))
        n = flat.shape[-1]
        order = np.argsort(-flat, axis=-1, kind="stable")  # ties keep the lower index first
        if not any(isinstance(node, (Access, Var)) for node in walk(expr.k)):
            k_value = eval_scalar(expr.k, self.sizes, self.params, where=f"{self.where}: topk's k")
            if not float(k_value).is_integer() or k_value < 0:
                raise EvaluationError(
                    f"{self.where}: topk's k must be a non-negative integer, got {k_value!r}"
                )
            mask = np.zeros_like(flat)
            np.put_along_axis(mask, order[..., : min(int(k_value), n)], 1.0, axis=-1)
        else:
            # A per-fiber k: one value for each fiber, read from tensors over the fiber's indices.
            kv = self.eval(expr.k)
            fiber = tuple(body.vars[i] for i in keep_axes)
            ks = np.broadcast_to(self.expand(kv, fiber), lead)
            bad = ~np.isfinite(ks) | (ks < 0) | (ks != np.floor(ks))
            if bad.any():
                raise EvaluationError(
                    f"{self.where}: topk's k must be a non-negative integer in every fiber, got "
                    f"{float(ks[bad].flat[0])!r} from {to_text(expr.k)}"
                )
            rank = np.empty(flat.shape, dtype=np.int64)
            np.put_along_axis(rank, order, np.arange(n), axis=-1)
            mask = (rank < ks[..., None]).astype(self.dt)
        mask = mask.reshape(moved.shape)
        inverse = np.argsort(keep_axes + sel_axes)
        return _Val(np.transpose(mask, inverse), body.vars)

    def access(self, node: Access) -> _Val:
        arr = self.tensors[node.tensor]
        plain = [i.name for i in node.indices if isinstance(i, Var)]
        if len(plain) == len(node.indices) and len(set(plain)) == len(plain):
            # Fast path: plain indices; restricted domains become slices.
            view = arr[tuple(self.domain(v) for v in plain)]
            vars_ = tuple(plain)
            want = self.sort(set(vars_))
            perm = [vars_.index(v) for v in want]
            return _Val(np.transpose(view, perm) if perm != sorted(perm) else view, want)
        idx_vals = [self.index(i) for i in node.indices]
        union = self.sort(set().union(*(v.vars for v in idx_vals)))
        gathered = []
        for dim, v in enumerate(idx_vals):
            ix = np.asarray(self.expand(v, union))
            lo, hi = int(ix.min()), int(ix.max())
            if lo < 0 or hi >= arr.shape[dim]:
                bad = lo if lo < 0 else hi
                raise EvaluationError(
                    f"{self.where}: reads {node}: position {bad} along dimension {dim} is outside "
                    f"{node.tensor}'s {arr.shape[dim]} positions"
                )
            gathered.append(ix)
        return _Val(arr[tuple(gathered)] if gathered else arr, union)

    def index(self, expr: Expr) -> _Val:
        """An integer index expression, as integer arrays over its variables."""
        if isinstance(expr, Var):
            return _Val(self.indices_of(expr.name), (expr.name,))
        if isinstance(expr, Size):
            return _Val(np.int64(self.sizes[expr.rank]), ())
        if isinstance(expr, Num):
            return _Val(np.int64(int(expr.value)), ())
        if isinstance(expr, Neg):
            v = self.index(expr.operand)
            return _Val(-v.arr, v.vars)
        if isinstance(expr, Binary) and expr.op in (BinOp.ADD, BinOp.SUB, BinOp.MUL):
            union, (a, b) = self.align(self.index(expr.lhs), self.index(expr.rhs))
            r = _BINARY[expr.op](a, b)
            return _Val(r.astype(self.dt) if np.asarray(r).dtype == np.bool_ else r, union)
        raise EvaluationError(f"{self.where}: {expr} is not an integer index expression")
