"""Statements of a cascade: inputs, params, partitions and Einsums."""

from __future__ import annotations

from dataclasses import dataclass, field

from einsum._expr import _RESERVED, Access, Expr, Var, free_vars, to_text, walk
from einsum.errors import EinsumError

__all__ = ["Einsum", "Input", "ParamDef", "Partition"]


def _check_tensor_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise EinsumError(f"{what} name must be an identifier, got {name!r}")
    if name in _RESERVED:
        raise EinsumError(f"{what} name {name!r} is a reserved word of the notation")


def _check_rank(name: str, what: str) -> None:
    if not isinstance(name, str) or not (name.isidentifier() and name.isupper()):
        raise EinsumError(f"{what}: rank names must be UPPERCASE identifiers, got {name!r}")


@dataclass(frozen=True, slots=True)
class Input:
    """A tensor that comes from outside; ``ranks`` fixes its index order (``Q[p, e]``: P, E)."""

    name: str
    ranks: tuple[str, ...]

    def __post_init__(self) -> None:
        _check_tensor_name(self.name, "input")
        if not isinstance(self.ranks, tuple):
            raise EinsumError(f"input {self.name}: ranks must be a tuple, got {self.ranks!r}")
        for r in self.ranks:
            _check_rank(r, f"input {self.name}")
        if len(set(self.ranks)) != len(self.ranks):
            raise EinsumError(f"input {self.name}: a rank appears twice in {list(self.ranks)}")

    def __str__(self) -> str:
        return f"{self.name}[{', '.join(r.lower() for r in self.ranks)}]"


@dataclass(frozen=True, slots=True)
class ParamDef:
    """``param NAME = EXPR``: a scalar computed from numbers, earlier params and rank sizes."""

    name: str
    expr: Expr

    def __post_init__(self) -> None:
        _check_tensor_name(self.name, "param")

    def __str__(self) -> str:
        return f"param {self.name} = {to_text(self.expr)}"


@dataclass(frozen=True, slots=True)
class Partition:
    """``partition M -> M1, M0``: ``M = M1 * M0`` and ``m = m1 * M0 + m0``.

    All parts but the first are free sizes (bound at evaluation or by the mapper); the first is
    the quotient. More than two parts split further: ``M -> M2, M1, M0``.
    """

    rank: str
    parts: tuple[str, ...]

    def __post_init__(self) -> None:
        _check_rank(self.rank, "partition")
        if not isinstance(self.parts, tuple) or len(self.parts) < 2:
            raise EinsumError(f"partition {self.rank}: needs at least two parts, got {self.parts!r}")
        for p in self.parts:
            _check_rank(p, f"partition {self.rank}")
        if len(set(self.parts)) != len(self.parts) or self.rank in self.parts:
            raise EinsumError(
                f"partition {self.rank} -> {', '.join(self.parts)}: the parts must be distinct "
                f"and differ from {self.rank}"
            )

    def __str__(self) -> str:
        return f"partition {self.rank} -> {', '.join(self.parts)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Einsum:
    """One extended Einsum: ``output[indices] = expr``.

    Indices on the right that are not on the left, and not bound by an explicit reduction, are
    summed over the whole expression (``Z[m, n] = A[m, k] * B[k, n]``).

    Args:
        output: the tensor defined.
        indices: the index variables of the left side, in order; they fix the output's layout.
        expr: the right side.
        step: for a recurrence, the index that walks the iterative rank; its position on the
            left reads ``step + 1`` (or ``step = 0`` with ``init``).
        init: this statement gives the value before the first step (``init RM[p, m1 = 0]``).
        line: where the statement came from, for messages; not part of equality.
    """

    output: str
    indices: tuple[str, ...]
    expr: Expr
    step: str | None = None
    init: bool = False
    line: int | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_tensor_name(self.output, "tensor")
        if not isinstance(self.indices, tuple):
            raise EinsumError(f"{self.output}: indices must be a tuple, got {self.indices!r}")
        for name in self.indices:
            Var(name)
        if len(set(self.indices)) != len(self.indices):
            raise EinsumError(f"{self.lhs_text}: an index appears twice on the left")
        if self.step is not None and self.step not in self.indices:
            raise EinsumError(f"{self.output}: step index {self.step!r} is not on the left")
        if self.init and self.step is None:
            raise EinsumError(f"{self.output}: an init statement needs a step index")

    @property
    def ranks(self) -> tuple[str, ...]:
        """The output's ranks, one per left index."""
        return tuple(i.upper() for i in self.indices)

    @property
    def summed(self) -> tuple[str, ...]:
        """Indices summed implicitly over the whole right side, in order of appearance."""
        free = free_vars(self.expr)
        seen: dict[str, None] = {}
        for node in walk(self.expr):
            if isinstance(node, Var) and node.name in free and node.name not in self.indices:
                seen.setdefault(node.name, None)
        return tuple(seen)

    @property
    def reads(self) -> tuple[str, ...]:
        """Names of the tensors read, in order of first appearance."""
        seen: dict[str, None] = {}
        for node in walk(self.expr):
            if isinstance(node, Access):
                seen.setdefault(node.tensor, None)
        return tuple(seen)

    @property
    def lhs_text(self) -> str:
        items = []
        for name in self.indices:
            if name == self.step:
                items.append(f"{name} = 0" if self.init else f"{name} + 1")
            else:
                items.append(name)
        return f"{self.output}[{', '.join(items)}]"

    def __str__(self) -> str:
        prefix = "init " if self.init else ""
        return f"{prefix}{self.lhs_text} = {to_text(self.expr)}"
