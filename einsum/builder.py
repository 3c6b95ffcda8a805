"""A Python API that builds the same :class:`~einsum.Cascade` objects as the text notation.

Example (the 3-pass attention of the library, written in Python):

    >>> import math
    >>> import einsum
    >>> from einsum import builder as eb
    >>> p, m, e, f = eb.indices("p m e f")
    >>> b = eb.CascadeBuilder("attention_3pass")
    >>> Q, K, V = b.input("Q", "p e"), b.input("K", "m e"), b.input("V", "m f")
    >>> scale = b.param("scale", 1 / eb.sqrt(eb.size("E")))
    >>> QK = b.einsum("QK", "p m", Q[p, e] * K[m, e])
    >>> S = b.einsum("S", "p m", QK[p, m] * scale)
    >>> GM = b.einsum("GM", "p", eb.max_over("m", S[p, m]))
    >>> SN = b.einsum("SN", "p m", eb.exp(S[p, m] - GM[p]))
    >>> SD = b.einsum("SD", "p", eb.sum_over("m", SN[p, m]))
    >>> A = b.einsum("A", "p m", SN[p, m] / SD[p])
    >>> AV = b.einsum("AV", "p f", A[p, m] * V[m, f])
    >>> b.output("AV")
    >>> b.build() == einsum.library.get("attention_3pass")
    True
"""

from __future__ import annotations

from collections.abc import Sequence

from einsum._expr import (
    Access,
    Binary,
    BinOp,
    Call,
    Func,
    Operator,
    ParamRef,
    Reduce,
    ReduceOp,
    Size,
    TopK,
    Var,
    _as_expr,
    walk,
)
from einsum._ir import Cascade
from einsum._stmt import Einsum, Input, ParamDef, Partition
from einsum.errors import EinsumError

__all__ = [
    "CascadeBuilder",
    "Tensor",
    "absolute",
    "call",
    "eq",
    "exp",
    "ge",
    "gt",
    "indices",
    "le",
    "log",
    "lt",
    "max_over",
    "maximum",
    "min_over",
    "minimum",
    "ne",
    "prod_over",
    "relu",
    "sigmoid",
    "tanh",
    "erf",
    "log1p",
    "silu",
    "softplus",
    "gelu",
    "gelu_tanh",
    "size",
    "sqrt",
    "sum_over",
    "topk",
    "where",
]

IndexLike = str | Var | Sequence[str | Var]


def _names(spec: IndexLike) -> tuple[str, ...]:
    if isinstance(spec, Var):
        return (spec.name,)
    if isinstance(spec, str):
        return tuple(spec.replace(",", " ").split())
    out = []
    for item in spec:
        out.append(item.name if isinstance(item, Var) else str(item))
    return tuple(out)


def indices(spec: str) -> tuple[Var, ...]:
    """Index variables from a space-separated string: ``p, m = indices("p m")``."""
    return tuple(Var(n) for n in _names(spec))


def size(rank: str) -> Size:
    """A rank's size as a value (``size("E")``), or its final position as an index."""
    return Size(rank)


class Tensor:
    """A handle on a tensor of the cascade being built; index it to read it: ``Q[p, e]``."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __getitem__(self, idx: object) -> Access:
        items = idx if isinstance(idx, tuple) else (idx,)
        return Access(
            self.name,
            tuple(
                Var(i)
                if isinstance(i, str) and i.islower()
                else Size(i)
                if isinstance(i, str)
                else _as_expr(i)
                for i in items
            ),
        )

    def __repr__(self) -> str:
        return f"Tensor({self.name!r})"


class CascadeBuilder:
    """Collects statements and builds a validated :class:`Cascade` (see the module example)."""

    def __init__(self, name: str | None = None) -> None:
        self._name = name
        self._inputs: list[Input] = []
        self._params: list[ParamDef] = []
        self._partitions: list[Partition] = []
        self._outputs: list[str] = []
        self._einsums: list[Einsum] = []

    def input(self, name: str, index_names: IndexLike) -> Tensor:
        """Declare an input; ``index_names`` fixes its layout (``"p e"`` for ``Q[p, e]``)."""
        self._inputs.append(Input(name, tuple(n.upper() for n in _names(index_names))))
        return Tensor(name)

    def param(self, name: str, value: object) -> ParamRef:
        """Declare a scalar param computed from numbers, earlier params and rank sizes."""
        self._params.append(ParamDef(name, _as_expr(value)))
        return ParamRef(name)

    def partition(self, rank: str, *parts: str) -> None:
        """Split a rank: ``partition("M", "M1", "M0")``."""
        self._partitions.append(Partition(rank, tuple(parts)))

    def einsum(self, name: str, index_names: IndexLike, expr: object) -> Tensor:
        """Define ``name[index_names] = expr``; indices not on the left are summed."""
        self._einsums.append(Einsum(output=name, indices=_names(index_names), expr=_as_expr(expr)))
        return Tensor(name)

    def init(self, name: str, index_names: IndexLike, step: str | Var, expr: object) -> Tensor:
        """``init name[..., step = 0] = expr``: the value before the first step."""
        step_name = step.name if isinstance(step, Var) else step
        self._einsums.append(
            Einsum(output=name, indices=_names(index_names), expr=_as_expr(expr), step=step_name, init=True)
        )
        return Tensor(name)

    def step(self, name: str, index_names: IndexLike, step: str | Var, expr: object) -> Tensor:
        """``name[..., step + 1] = expr``: one step of a recurrence."""
        step_name = step.name if isinstance(step, Var) else step
        self._einsums.append(
            Einsum(output=name, indices=_names(index_names), expr=_as_expr(expr), step=step_name)
        )
        return Tensor(name)

    def output(self, *names: str) -> None:
        """Name the results."""
        self._outputs.extend(names)

    def build(self) -> Cascade:
        """The validated cascade (raises :class:`~einsum.CascadeError` listing every problem)."""
        ops: dict[str, Operator] = {}
        for e in self._einsums:
            for node in walk(e.expr):
                if isinstance(node, Call) and isinstance(node.func, Operator):
                    ops.setdefault(node.func.name, node.func)
        return Cascade(
            name=self._name,
            inputs=tuple(self._inputs),
            params=tuple(self._params),
            partitions=tuple(self._partitions),
            outputs=tuple(self._outputs),
            einsums=tuple(self._einsums),
            operators=tuple(ops.values()),
        )


def _call(func: Func, *args: object) -> Call:
    return Call(func=func, args=tuple(_as_expr(a) for a in args))


def exp(x: object) -> Call:
    """``exp(x)``: point-wise exponential."""
    return _call(Func.EXP, x)


def log(x: object) -> Call:
    """``log(x)``: point-wise natural logarithm."""
    return _call(Func.LOG, x)


def sqrt(x: object) -> Call:
    """``sqrt(x)``: point-wise square root."""
    return _call(Func.SQRT, x)


def sigmoid(x: object) -> Call:
    """``sigmoid(x)``: ``1 / (1 + exp(-x))``."""
    return _call(Func.SIGMOID, x)


def tanh(x: object) -> Call:
    """``tanh(x)``: point-wise hyperbolic tangent (Gemma 2's soft-cap is ``cap * tanh(s / cap)``)."""
    return _call(Func.TANH, x)


def erf(x: object) -> Call:
    """``erf(x)``: the error function."""
    return _call(Func.ERF, x)


def log1p(x: object) -> Call:
    """``log1p(x)``: ``log(1 + x)``, exact for small ``x``."""
    return _call(Func.LOG1P, x)


def silu(x: object) -> Call:
    """``silu(x)``: ``x * sigmoid(x)``."""
    return _call(Func.SILU, x)


def softplus(x: object) -> Call:
    """``softplus(x)``: ``log(1 + exp(x))``, evaluated stably."""
    return _call(Func.SOFTPLUS, x)


def gelu(x: object) -> Call:
    """``gelu(x)``: ``x * (1 + erf(x / sqrt(2))) / 2`` (the erf form, evaluated as
    ``x * erfc(-x / sqrt(2)) / 2``, exact in the tails)."""
    return _call(Func.GELU, x)


def gelu_tanh(x: object) -> Call:
    """``gelu_tanh(x)``: GELU's tanh approximation, ``x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2``."""
    return _call(Func.GELU_TANH, x)


def relu(x: object) -> Call:
    """``relu(x)``: ``max(x, 0)``."""
    return _call(Func.RELU, x)


def absolute(x: object) -> Call:
    """``abs(x)``: point-wise absolute value."""
    return _call(Func.ABS, x)


def maximum(a: object, b: object) -> Call:
    """Point-wise ``max(a, b)`` (for a reduction use :func:`max_over`)."""
    return _call(Func.MAX, a, b)


def minimum(a: object, b: object) -> Call:
    """Point-wise ``min(a, b)`` (for a reduction use :func:`min_over`)."""
    return _call(Func.MIN, a, b)


def where(cond: object, a: object, b: object) -> Call:
    """``where(c, a, b)``: ``a`` where ``c`` is non-zero, else ``b``."""
    return _call(Func.WHERE, cond, a, b)


def call(op: Operator, *args: object) -> Call:
    """Call a user-defined :class:`~einsum.Operator`."""
    if not isinstance(op, Operator):
        raise EinsumError(f"call() takes an einsum.Operator, got {op!r}")
    return Call(func=op, args=tuple(_as_expr(a) for a in args))


def _cmp(op: BinOp, a: object, b: object) -> Binary:
    return Binary(op=op, lhs=_as_expr(a), rhs=_as_expr(b))


def lt(a: object, b: object) -> Binary:
    """``a < b`` (1.0 or 0.0)."""
    return _cmp(BinOp.LT, a, b)


def le(a: object, b: object) -> Binary:
    """``a <= b`` (1.0 or 0.0)."""
    return _cmp(BinOp.LE, a, b)


def gt(a: object, b: object) -> Binary:
    """``a > b`` (1.0 or 0.0)."""
    return _cmp(BinOp.GT, a, b)


def ge(a: object, b: object) -> Binary:
    """``a >= b`` (1.0 or 0.0); ``ge(p, m)`` is a causal mask."""
    return _cmp(BinOp.GE, a, b)


def eq(a: object, b: object) -> Binary:
    """``a == b`` (1.0 or 0.0)."""
    return _cmp(BinOp.EQ, a, b)


def ne(a: object, b: object) -> Binary:
    """``a != b`` (1.0 or 0.0)."""
    return _cmp(BinOp.NE, a, b)


def _reduce(op: ReduceOp, over: IndexLike, body: object) -> Reduce:
    return Reduce(op=op, indices=_names(over), body=_as_expr(body))


def sum_over(over: IndexLike, body: object) -> Reduce:
    """``sum[over] body``."""
    return _reduce(ReduceOp.SUM, over, body)


def max_over(over: IndexLike, body: object) -> Reduce:
    """``max[over] body``."""
    return _reduce(ReduceOp.MAX, over, body)


def min_over(over: IndexLike, body: object) -> Reduce:
    """``min[over] body``."""
    return _reduce(ReduceOp.MIN, over, body)


def prod_over(over: IndexLike, body: object) -> Reduce:
    """``prod[over] body``."""
    return _reduce(ReduceOp.PROD, over, body)


def topk(over: IndexLike, k: object, body: object) -> TopK:
    """``topk[over; k] body``: a 0/1 mask of the k largest values, ties to the lower index."""
    return TopK(indices=_names(over), k=_as_expr(k), body=_as_expr(body))
