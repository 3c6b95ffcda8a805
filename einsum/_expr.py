"""Expression nodes of the IR: the right-hand sides of Einsums, params and index expressions.

Nodes are frozen dataclasses: immutable, hashable, compared by value. Arithmetic operators on
nodes build bigger nodes (``Q[p, e] * K[m, e]``), which is what the builder API uses; ``==``
keeps its dataclass meaning (structural equality), so comparisons are built with :func:`lt`,
:func:`eq` and friends.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from einsum.errors import EinsumError

__all__ = [
    "Access",
    "Actions",
    "BinOp",
    "Binary",
    "Call",
    "Expr",
    "Func",
    "Neg",
    "Num",
    "Operator",
    "ParamRef",
    "Reduce",
    "ReduceOp",
    "Size",
    "TopK",
    "Var",
]


class ReduceOp(enum.Enum):
    """How values are combined over the indices a reduction binds."""

    SUM = "sum"
    MAX = "max"
    MIN = "min"
    PROD = "prod"


class BinOp(enum.Enum):
    """Binary operators; comparisons give 1.0 or 0.0."""

    ADD = "+"
    SUB = "-"
    MUL = "*"
    DIV = "/"
    POW = "**"
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    EQ = "=="
    NE = "!="

    @property
    def is_comparison(self) -> bool:
        return self in _COMPARISONS


_COMPARISONS = frozenset({BinOp.LT, BinOp.LE, BinOp.GT, BinOp.GE, BinOp.EQ, BinOp.NE})


class Func(enum.Enum):
    """Built-in scalar functions, with their arity."""

    EXP = ("exp", 1)
    LOG = ("log", 1)
    SQRT = ("sqrt", 1)
    SIGMOID = ("sigmoid", 1)
    TANH = ("tanh", 1)
    ERF = ("erf", 1)
    LOG1P = ("log1p", 1)
    SILU = ("silu", 1)
    SOFTPLUS = ("softplus", 1)
    GELU = ("gelu", 1)
    GELU_TANH = ("gelu_tanh", 1)
    RELU = ("relu", 1)
    ABS = ("abs", 1)
    CEIL = ("ceil", 1)
    FLOOR = ("floor", 1)
    MAX = ("max", 2)
    MIN = ("min", 2)
    WHERE = ("where", 3)

    @property
    def text(self) -> str:
        return self.value[0]

    @property
    def arity(self) -> int:
        return self.value[1]

    @classmethod
    def by_name(cls, name: str) -> Func | None:
        for f in cls:
            if f.text == name:
                return f
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Actions:
    """Hardware actions one scalar operation costs (used for user-defined operators).

    The categories are the ones :func:`einsum.op_counts` reports: multiply-accumulates, adds,
    max/compare, exponentials, divisions and other functions.
    """

    mac: int = 0
    add: int = 0
    max: int = 0
    exp: int = 0
    div: int = 0
    other: int = 0

    def __post_init__(self) -> None:
        for name in ("mac", "add", "max", "exp", "div", "other"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise EinsumError(f"Actions.{name} must be a non-negative integer, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Operator:
    """A user-defined scalar operator, called by name in the notation like a built-in.

    Args:
        name: how the notation calls it, e.g. ``exp6``.
        arity: number of arguments.
        golden: the float64 reference implementation; takes ``arity`` NumPy arrays (broadcast
            against each other) and returns one array. ``golden.run`` calls it.
        cost: the hardware actions one application costs, e.g. ``Actions(mac=6, add=1)`` for
            an exponential evaluated as a polynomial on a MAC unit, as FuseMax does.

    Example:
        >>> import numpy as np
        >>> exp6 = Operator(name="exp6", arity=1, golden=np.exp, cost=Actions(mac=6, add=1))
        >>> exp6.name
        'exp6'
    """

    name: str
    arity: int
    golden: Callable[..., Any]
    cost: Actions

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or not self.name.islower():
            raise EinsumError(f"operator name must be a lowercase identifier, got {self.name!r}")
        if Func.by_name(self.name) is not None or self.name in _RESERVED:
            raise EinsumError(f"operator name {self.name!r} clashes with a built-in name")
        if not isinstance(self.arity, int) or self.arity < 1:
            raise EinsumError(f"operator {self.name!r}: arity must be an integer >= 1, got {self.arity!r}")
        if not callable(self.golden):
            raise EinsumError(f"operator {self.name!r}: golden must be callable, got {self.golden!r}")
        if not isinstance(self.cost, Actions):
            raise EinsumError(f"operator {self.name!r}: cost must be an Actions, got {self.cost!r}")


#: Words the notation uses itself; no tensor, param or operator may take them.
_RESERVED = frozenset(
    {"cascade", "input", "param", "partition", "output", "init", "inf", "sum", "prod", "topk"}
)


class _Node:
    """Operator overloads shared by all expression nodes (builder convenience)."""

    __slots__ = ()

    def __add__(self, other: object) -> Binary:
        return Binary(op=BinOp.ADD, lhs=_as_expr(self), rhs=_as_expr(other))

    def __radd__(self, other: object) -> Binary:
        return Binary(op=BinOp.ADD, lhs=_as_expr(other), rhs=_as_expr(self))

    def __sub__(self, other: object) -> Binary:
        return Binary(op=BinOp.SUB, lhs=_as_expr(self), rhs=_as_expr(other))

    def __rsub__(self, other: object) -> Binary:
        return Binary(op=BinOp.SUB, lhs=_as_expr(other), rhs=_as_expr(self))

    def __mul__(self, other: object) -> Binary:
        return Binary(op=BinOp.MUL, lhs=_as_expr(self), rhs=_as_expr(other))

    def __rmul__(self, other: object) -> Binary:
        return Binary(op=BinOp.MUL, lhs=_as_expr(other), rhs=_as_expr(self))

    def __truediv__(self, other: object) -> Binary:
        return Binary(op=BinOp.DIV, lhs=_as_expr(self), rhs=_as_expr(other))

    def __rtruediv__(self, other: object) -> Binary:
        return Binary(op=BinOp.DIV, lhs=_as_expr(other), rhs=_as_expr(self))

    def __pow__(self, other: object) -> Binary:
        return Binary(op=BinOp.POW, lhs=_as_expr(self), rhs=_as_expr(other))

    def __neg__(self) -> Expr:
        operand = _as_expr(self)
        if isinstance(operand, Num):
            return Num(value=-operand.value)
        return Neg(operand=operand)

    def __str__(self) -> str:
        return to_text(_as_expr(self))


@dataclass(frozen=True, slots=True)
class Num(_Node):
    """A numeric constant (``inf`` and ``-inf`` included; NaN is not allowed)."""

    value: float

    def __post_init__(self) -> None:
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)):
            raise EinsumError(f"Num value must be a number, got {self.value!r}")
        if math.isnan(self.value):
            raise EinsumError("Num value must not be NaN")


@dataclass(frozen=True, slots=True)
class Var(_Node):
    """An index variable (lowercase), e.g. ``m1``; it walks the rank of the same name uppercased."""

    name: str

    def __post_init__(self) -> None:
        if not (self.name.isidentifier() and self.name.islower()):
            raise EinsumError(f"index name must be a lowercase identifier, got {self.name!r}")

    @property
    def rank(self) -> str:
        return self.name.upper()


@dataclass(frozen=True, slots=True)
class Size(_Node):
    """A rank's size used as a value (``E``), or as a position: the final one (``RD[p, M1]``)."""

    rank: str

    def __post_init__(self) -> None:
        if not (self.rank.isidentifier() and self.rank.isupper()):
            raise EinsumError(f"rank name must be an UPPERCASE identifier, got {self.rank!r}")


@dataclass(frozen=True, slots=True)
class ParamRef(_Node):
    """A reference to a scalar ``param``."""

    name: str

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise EinsumError(f"param name must be an identifier, got {self.name!r}")


@dataclass(frozen=True, slots=True)
class Access(_Node):
    """A tensor read, e.g. ``K[m1 * M0 + m0, e]``; each index is an affine index expression."""

    tensor: str
    indices: tuple[Expr, ...]

    def __post_init__(self) -> None:
        if not self.tensor.isidentifier():
            raise EinsumError(f"tensor name must be an identifier, got {self.tensor!r}")
        if not isinstance(self.indices, tuple):
            raise EinsumError(f"{self.tensor}: indices must be a tuple, got {type(self.indices).__name__}")


@dataclass(frozen=True, slots=True)
class Neg(_Node):
    """Unary minus."""

    operand: Expr


@dataclass(frozen=True, slots=True, kw_only=True)
class Binary(_Node):
    """A binary operation, applied point by point with broadcast by index name."""

    op: BinOp
    lhs: Expr
    rhs: Expr


@dataclass(frozen=True, slots=True, kw_only=True)
class Call(_Node):
    """A call of a built-in function or a user-defined :class:`Operator`."""

    func: Func | Operator
    args: tuple[Expr, ...]

    def __post_init__(self) -> None:
        if len(self.args) != self.func_arity:
            raise EinsumError(f"{self.func_name}() takes {self.func_arity} argument(s), got {len(self.args)}")

    @property
    def func_name(self) -> str:
        return self.func.text if isinstance(self.func, Func) else self.func.name

    @property
    def func_arity(self) -> int:
        return self.func.arity


@dataclass(frozen=True, slots=True, kw_only=True)
class Reduce(_Node):
    """An explicit reduction, ``max[m] S[p, m]``: ``op`` over the listed indices of ``body``."""

    op: ReduceOp
    indices: tuple[str, ...]
    body: Expr

    def __post_init__(self) -> None:
        _check_index_list(self.indices, f"{self.op.value}[...]")


@dataclass(frozen=True, slots=True, kw_only=True)
class TopK(_Node):
    """``topk[m; k] s[m]``: a 0/1 mask with ``min(k, size)`` ones per fiber over the indices.

    Ties go to the lower index (the lower flat index when several indices are listed).
    """

    indices: tuple[str, ...]
    k: Expr
    body: Expr

    def __post_init__(self) -> None:
        _check_index_list(self.indices, "topk[...]")


def _check_index_list(indices: tuple[str, ...], where: str) -> None:
    if not indices:
        raise EinsumError(f"{where}: needs at least one index")
    for name in indices:
        Var(name)
    if len(set(indices)) != len(indices):
        raise EinsumError(f"{where}: an index is listed twice in {list(indices)}")


Expr = Num | Var | Size | ParamRef | Access | Neg | Binary | Call | Reduce | TopK


def _as_expr(value: object) -> Expr:
    if isinstance(value, (Num, Var, Size, ParamRef, Access, Neg, Binary, Call, Reduce, TopK)):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Num(float(value))
    raise EinsumError(f"cannot use {value!r} ({type(value).__name__}) in an expression")


def children(expr: Expr) -> tuple[Expr, ...]:
    """The direct sub-expressions of a node."""
    if isinstance(expr, Access):
        return expr.indices
    if isinstance(expr, Neg):
        return (expr.operand,)
    if isinstance(expr, Binary):
        return (expr.lhs, expr.rhs)
    if isinstance(expr, Call):
        return expr.args
    if isinstance(expr, Reduce):
        return (expr.body,)
    if isinstance(expr, TopK):
        return (expr.k, expr.body)
    return ()


def walk(expr: Expr) -> Iterator[Expr]:
    """Every node of ``expr``, parents before children."""
    yield expr
    for child in children(expr):
        yield from walk(child)


def free_vars(expr: Expr) -> frozenset[str]:
    """Index variables used in ``expr`` and not bound by a reduction inside it."""
    if isinstance(expr, Var):
        return frozenset({expr.name})
    if isinstance(expr, Reduce):
        return free_vars(expr.body) - frozenset(expr.indices)
    out: frozenset[str] = frozenset()
    for child in children(expr):
        out |= free_vars(child)
    return out


def product_factors(expr: Expr) -> list[Expr]:
    """The factors of a chain of products: ``A * B * c`` -> ``[A, B, c]``."""
    if isinstance(expr, Binary) and expr.op is BinOp.MUL:
        return product_factors(expr.lhs) + product_factors(expr.rhs)
    return [expr]


def ordered_vars(expr: Expr) -> list[str]:
    """Every index variable in ``expr`` (bound or free), in order of first appearance."""
    seen: dict[str, None] = {}
    for node in walk(expr):
        if isinstance(node, Var):
            seen.setdefault(node.name, None)
        elif isinstance(node, (Reduce, TopK)):
            for name in node.indices:
                seen.setdefault(name, None)
    return list(seen)


# ---------------------------------------------------------------------------------------------
# Printing: the canonical text form that einsum.parse reads back.

_PREC_REDUCE = 0
_PREC_CMP = 1
_PREC_ADD = 2
_PREC_MUL = 3
_PREC_UNARY = 4
_PREC_POW = 5
_PREC_ATOM = 6

_BIN_PREC = {
    BinOp.ADD: _PREC_ADD,
    BinOp.SUB: _PREC_ADD,
    BinOp.MUL: _PREC_MUL,
    BinOp.DIV: _PREC_MUL,
    BinOp.POW: _PREC_POW,
}


def _prec(expr: Expr) -> int:
    if isinstance(expr, Binary):
        return _PREC_CMP if expr.op.is_comparison else _BIN_PREC[expr.op]
    if isinstance(expr, Neg):
        return _PREC_UNARY
    if isinstance(expr, Num) and (expr.value < 0 or str(expr.value).startswith("-")):
        return _PREC_UNARY
    if isinstance(expr, (Reduce, TopK)):
        return _PREC_REDUCE
    return _PREC_ATOM


def format_number(value: float) -> str:
    """Numbers print as integers when integral, else as Python's shortest round-trip repr."""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _wrap(expr: Expr, needs_parens: bool) -> str:
    text = to_text(expr)
    return f"({text})" if needs_parens else text


def to_text(expr: Expr) -> str:
    """The canonical text of an expression."""
    if isinstance(expr, Num):
        return format_number(expr.value)
    if isinstance(expr, Var):
        return expr.name
    if isinstance(expr, Size):
        return expr.rank
    if isinstance(expr, ParamRef):
        return expr.name
    if isinstance(expr, Access):
        return f"{expr.tensor}[{', '.join(to_text(i) for i in expr.indices)}]"
    if isinstance(expr, Neg):
        # ``-2`` would read back as the constant Num(-2), so a negated constant keeps its parens.
        operand_parens = _prec(expr.operand) < _PREC_UNARY or isinstance(expr.operand, Num)
        return "-" + _wrap(expr.operand, operand_parens)
    if isinstance(expr, Binary):
        prec = _prec(expr)
        if expr.op is BinOp.POW:
            # lhs is parsed as a primary, rhs as a unary expression (right-associative).
            left = _wrap(expr.lhs, _prec(expr.lhs) < _PREC_ATOM)
            right = _wrap(expr.rhs, _prec(expr.rhs) < _PREC_UNARY)
        elif expr.op.is_comparison:
            left = _wrap(expr.lhs, _prec(expr.lhs) <= prec)
            right = _wrap(expr.rhs, _prec(expr.rhs) <= prec)
        else:
            left = _wrap(expr.lhs, _prec(expr.lhs) < prec or _prec(expr.lhs) == _PREC_REDUCE)
            right = _wrap(expr.rhs, _prec(expr.rhs) <= prec)
        return f"{left} {expr.op.value} {right}"
    if isinstance(expr, Call):
        return f"{expr.func_name}({', '.join(to_text(a) for a in expr.args)})"
    if isinstance(expr, Reduce):
        return f"{expr.op.value}[{', '.join(expr.indices)}] {to_text(expr.body)}"
    if isinstance(expr, TopK):
        return f"topk[{', '.join(expr.indices)}; {to_text(expr.k)}] {to_text(expr.body)}"
    raise TypeError(f"not an expression node: {expr!r}")
