"""Rank sizes and param values of a cascade at a given problem size."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np

from einsum._expr import Binary, BinOp, Call, Expr, Func, Neg, Num, Operator, ParamRef, Size, to_text
from einsum._ir import Cascade
from einsum.errors import EinsumError, SizeError, suggest

__all__ = ["bind_sizes", "eval_params"]


def bind_sizes(
    cascade: Cascade,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    sizes: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """Every rank's size, from the inputs' shapes, explicit sizes and the partitions.

    Args:
        cascade: the cascade.
        shapes: shape of each input array, by input name (inputs left out bind nothing).
        sizes: explicit sizes by rank name, for free sizes such as ``M0`` or ranks no input has.

    Returns:
        A dict with a size for every rank of the cascade.

    Raises:
        SizeError: an input's dimensions disagree with its declaration or with another input, a
            partition does not divide, or a rank has no size.

    Example:
        >>> import einsum
        >>> c = einsum.library.get("attention_1pass")
        >>> s = bind_sizes(c, {"Q": (8, 4), "K": (16, 4), "V": (16, 2)}, {"M0": 4})
        >>> s["M1"], s["M0"], s["F"]
        (4, 4, 2)
    """
    shapes = dict(shapes or {})
    sizes = dict(sizes or {})
    bound: dict[str, tuple[int, str]] = {}
    declared = {t.name: t for t in cascade.inputs}
    for name, shape in shapes.items():
        if name not in declared:
            continue
        t = declared[name]
        if len(shape) != len(t.ranks):
            raise SizeError(
                f"input {t} is declared with {len(t.ranks)} rank(s) "
                f"({', '.join(t.ranks) or 'a scalar'}) but its array has shape {tuple(shape)}"
            )
        for dim, (rank, n) in enumerate(zip(t.ranks, shape, strict=True)):
            where = f"{name} (dimension {dim})"
            if n <= 0:
                raise SizeError(f"rank {rank} has size {n} in {where}; ranks must be non-empty")
            if rank in bound and bound[rank][0] != n:
                size0, where0 = bound[rank]
                raise SizeError(f"inconsistent sizes for rank {rank}: {size0} in {where0} but {n} in {where}")
            bound.setdefault(rank, (int(n), where))

    known_ranks = list(cascade.ranks)
    for rank, n in sizes.items():
        if rank not in known_ranks:
            hint = suggest(rank, known_ranks)
            raise SizeError(
                f"sizes[{rank!r}]: the cascade has no rank {rank!r}{hint} (ranks: {', '.join(known_ranks)})"
            )
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise SizeError(f"sizes[{rank!r}] must be a positive integer, got {n!r}")
        if rank in bound and bound[rank][0] != n:
            raise SizeError(f"sizes[{rank!r}] = {n} disagrees with {bound[rank][0]} from {bound[rank][1]}")
        bound.setdefault(rank, (n, f"sizes[{rank!r}]"))

    _bind_partitions(cascade, bound)

    missing = [r for r in known_ranks if r not in bound]
    if missing:
        raise SizeError(
            f"rank{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"ha{'ve' if len(missing) > 1 else 's'} no size: no input has "
            f"{'them' if len(missing) > 1 else 'it'}; pass sizes={{{missing[0]!r}: ...}}"
        )
    return {r: n for r, (n, _) in bound.items()}


def _bind_partitions(cascade: Cascade, bound: dict[str, tuple[int, str]]) -> None:
    pending = list(cascade.partitions)
    while pending:
        progress = False
        for part in list(pending):
            text = f"partition {part.rank} -> {', '.join(part.parts)}"
            known = [p for p in part.parts if p in bound]
            missing = [p for p in part.parts if p not in bound]
            product = math.prod(bound[p][0] for p in known)
            if part.rank in bound:
                total = bound[part.rank][0]
                if not missing:
                    if product != total:
                        given = " * ".join(f"{p} = {bound[p][0]}" for p in part.parts)
                        raise SizeError(f"{text}: {given} is not {part.rank} = {total}")
                elif len(missing) == 1:
                    if total % product:
                        given = " * ".join(f"{p} = {bound[p][0]}" for p in known)
                        raise SizeError(f"{text}: {part.rank} = {total} is not divisible by {given}")
                    bound[missing[0]] = (total // product, text)
                else:
                    continue
            elif not missing:
                bound[part.rank] = (product, text)
            else:
                continue
            pending.remove(part)
            progress = True
        if not progress:
            part = pending[0]
            free = [p for p in part.parts[1:] if p not in bound] or list(part.parts)
            raise SizeError(
                f"partition {part.rank} -> {', '.join(part.parts)}: sizes are missing; pass "
                f"sizes={{{free[0]!r}: ...}}"
                + ("" if part.rank in bound else f" and give {part.rank} by an input")
            )


def eval_params(cascade: Cascade, sizes: Mapping[str, int]) -> dict[str, float]:
    """The value of every param at the given rank sizes (see :func:`bind_sizes`)."""
    values: dict[str, float] = {}
    for p in cascade.params:
        values[p.name] = eval_scalar(p.expr, sizes, values, where=f"param {p.name}")
    return values


def eval_scalar(expr: Expr, sizes: Mapping[str, int], params: Mapping[str, float], *, where: str) -> float:
    """Evaluate an expression of numbers, params and rank sizes."""

    def ev(e: Expr) -> float:
        if isinstance(e, Num):
            return float(e.value)
        if isinstance(e, ParamRef):
            return params[e.name]
        if isinstance(e, Size):
            if e.rank not in sizes:
                raise SizeError(f"{where}: rank {e.rank} has no size")
            return float(sizes[e.rank])
        if isinstance(e, Neg):
            return -ev(e.operand)
        if isinstance(e, Binary):
            a, b = ev(e.lhs), ev(e.rhs)
            try:
                return _BINARY[e.op](a, b)
            except (ZeroDivisionError, OverflowError, ValueError) as exc:
                raise EinsumError(f"{where} = {to_text(expr)}: {exc} in {to_text(e)}") from None
        if isinstance(e, Call):
            args = [ev(a) for a in e.args]
            try:
                if isinstance(e.func, Operator):
                    return float(np.asarray(e.func.golden(*args)))
                return float(_SCALAR_FUNCS[e.func](*args))
            except (ValueError, OverflowError, ZeroDivisionError) as exc:
                raise EinsumError(f"{where} = {to_text(expr)}: {exc} in {to_text(e)}") from None
        raise EinsumError(f"{where}: {to_text(e)} is not a scalar expression")

    return ev(expr)


_BINARY: dict[BinOp, Callable[[float, float], float]] = {
    BinOp.ADD: lambda a, b: a + b,
    BinOp.SUB: lambda a, b: a - b,
    BinOp.MUL: lambda a, b: a * b,
    BinOp.DIV: lambda a, b: a / b,
    BinOp.POW: lambda a, b: float(a**b),
    BinOp.LT: lambda a, b: float(a < b),
    BinOp.LE: lambda a, b: float(a <= b),
    BinOp.GT: lambda a, b: float(a > b),
    BinOp.GE: lambda a, b: float(a >= b),
    BinOp.EQ: lambda a, b: float(a == b),
    BinOp.NE: lambda a, b: float(a != b),
}

_SCALAR_FUNCS: dict[Func, Callable[..., float]] = {
    Func.EXP: math.exp,
    Func.LOG: math.log,
    Func.SQRT: math.sqrt,
    Func.SIGMOID: lambda x: 1.0 / (1.0 + math.exp(-x)),
    Func.TANH: math.tanh,
    Func.ERF: math.erf,
    Func.LOG1P: math.log1p,
    Func.SILU: lambda x: x / (1.0 + math.exp(-x)),
    Func.SOFTPLUS: lambda x: max(x, 0.0) + math.log1p(math.exp(-abs(x))),
    Func.GELU: lambda x: 0.5 * x * math.erfc(-x / math.sqrt(2.0)),
    Func.GELU_TANH: lambda x: 0.5 * x * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3))),
    Func.RELU: lambda x: max(x, 0.0),
    Func.ABS: abs,
    Func.CEIL: lambda x: float(math.ceil(x)),
    Func.FLOOR: lambda x: float(math.floor(x)),
    Func.MAX: max,
    Func.MIN: min,
    Func.WHERE: lambda c, a, b: a if c != 0 else b,
}
