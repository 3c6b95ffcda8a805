"""Analyses of a cascade: dependency graph, pass lower bound, operation counts, tensor sizes."""

from __future__ import annotations

import contextvars
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import networkx as nx

from einsum._expr import (
    Access,
    Actions,
    Binary,
    BinOp,
    Call,
    Expr,
    Func,
    Neg,
    Operator,
    Reduce,
    ReduceOp,
    TopK,
    Var,
    free_vars,
    product_factors,
    walk,
)
from einsum._ir import Cascade, partition_family
from einsum._plan import _offset
from einsum._stmt import Einsum
from einsum.errors import EinsumError

__all__ = ["OpCounts", "Poly", "dependency_graph", "mask_tensors", "op_counts", "passes", "tensor_sizes"]


# ---------------------------------------------------------------------------------------------
# Dependency graph


def dependency_graph(cascade: Cascade) -> nx.DiGraph:
    """Tensors and Einsums as a bipartite directed graph.

    Tensor nodes are their names, with attributes ``kind="tensor"``, ``role`` (``input``,
    ``intermediate`` or ``output``) and ``ranks``. Einsum nodes are ``("einsum", i)`` for
    ``cascade.einsums[i]``, with ``kind="einsum"`` and ``text``. Edges go from each tensor an
    Einsum reads to the Einsum (attribute ``access``: the access text) and from the Einsum to the
    tensor it writes. Recurrences show up as cycles.
    """
    g: nx.DiGraph = nx.DiGraph()
    for name, ranks in cascade.tensors.items():
        role = "input" if name in {t.name for t in cascade.inputs} else "intermediate"
        if name in cascade.outputs:
            role = "output"
        g.add_node(name, kind="tensor", role=role, ranks=ranks)
    for i, e in enumerate(cascade.einsums):
        node = ("einsum", i)
        g.add_node(node, kind="einsum", text=str(e))
        for access in (n for n in walk(e.expr) if isinstance(n, Access)):
            if g.has_edge(access.tensor, node):
                g.edges[access.tensor, node]["access"] += f", {access}"
            else:
                g.add_edge(access.tensor, node, access=str(access))
        g.add_edge(node, e.output)
    return g


# ---------------------------------------------------------------------------------------------
# Passes (NOTATION.md section 7)


def passes(cascade: Cascade, rank: str) -> int:
    """The lower bound on passes over ``rank`` that the cascade needs (NOTATION.md section 7).

    A pass is one traversal of the element-wise data of ``rank`` (``m``, or ``m1`` with ``m0``
    when ``M -> M1, M0``). Data keeping part of the rank (``LM[p, m1]``) streams with the pass;
    a full reduction over the rank (``GM[p] = max[m] S[p, m]``), or a read of a recurrence's
    final position (``RD[p, M1]``), is known only once its pass ends, so element-wise work that
    needs it runs in a later pass. Work on block-level data between passes (FuseMax's 2-pass
    cascade rescales ``LM`` by ``GM``) is not a traversal. The bound is 1 + the longest chain of
    full reductions that element-wise work waits for.

    Example:
        >>> import einsum
        >>> [passes(einsum.library.get(n), "M") for n in
        ...  ("attention_3pass", "attention_2pass", "attention_1pass")]
        [3, 2, 1]
    """
    if rank not in cascade.ranks:
        raise EinsumError(
            f"passes(): rank {rank!r} is not a rank of this cascade (ranks: {', '.join(cascade.ranks)})"
        )
    parts = {p.rank: p.parts for p in cascade.partitions}
    family = {rank} | set(partition_family(rank, parts))
    leaves = _leaves(rank, parts)

    def kind(ranks: tuple[str, ...]) -> str:
        rs = set(ranks)
        if rank in rs or leaves <= rs:
            return "element"
        return "streamed" if rs & family else "global"

    # Levels are doubled: 2k = streamed during pass k; 2k + 1 = known after pass k.
    level: dict[str, int] = {}
    kinds: dict[str, str] = {}
    for t in cascade.inputs:
        kinds[t.name] = kind(t.ranks)
        level[t.name] = 2 if kinds[t.name] != "global" else 0
    for e in cascade.einsums:
        kinds[e.output] = kind(e.ranks)
        level.setdefault(e.output, 0)

    def complete(lv: int) -> int:
        return lv + 1 if lv % 2 == 0 and lv >= 2 else lv

    # A recurrence over another rank (SpAtten's layers, ``KEEP[m, l + 1]``) is counted per step:
    # a read of its previous position (``KEEP[m, l]``) is known before the step starts, as an
    # input is.
    iterative = cascade.iterative
    outer_steps = {
        name: cascade.tensors[name][dim]
        for name, dim in iterative.items()
        if cascade.tensors[name][dim] not in family
    }

    def from_previous_step(access: Access) -> bool:
        if access.tensor not in outer_steps:
            return False
        ix = access.indices[iterative[access.tensor]]
        return _offset(ix, outer_steps[access.tensor].lower()) == 0

    limit = 4 * len(cascade.einsums) + 8
    for _ in range(limit):
        changed = False
        for e in cascade.einsums:
            k_out = kinds[e.output]
            lv_in = 0
            for access in (n for n in walk(e.expr) if isinstance(n, Access)):
                if from_previous_step(access):
                    lv_in = max(lv_in, 2 if kinds[access.tensor] != "global" else 0)
                    continue
                lv = level[access.tensor]
                streams = any(v.upper() in family for v in free_vars(access))
                if kinds[access.tensor] != "global" and (k_out == "global" or not streams):
                    lv = complete(lv)
                lv_in = max(lv_in, lv)
            if any(isinstance(n, TopK) and any(v.upper() in family for v in n.indices) for n in walk(e.expr)):
                # Selecting the k largest over the rank needs the whole fiber, as a full
                # reduction does: the mask is known after the pass that streams its scores.
                lv_in = complete(lv_in)
            if k_out == "element":
                new = max(2, lv_in + (lv_in % 2))
            else:
                new = lv_in
            if new > level[e.output]:
                level[e.output] = new
                changed = True
        if not changed:
            break
    else:
        raise EinsumError(
            f"passes(): the number of passes over {rank} is unbounded for this cascade: a "
            "recurrence waits on a full reduction over the same rank at every step"
        )
    element = [lv for name, lv in level.items() if kinds[name] == "element"]
    streamed = [lv for name, lv in level.items() if kinds[name] == "streamed" and lv % 2 == 0]
    found = element or streamed
    return max(found) // 2 if found else 0


def _leaves(rank: str, parts: Mapping[str, tuple[str, ...]]) -> set[str]:
    if rank not in parts:
        return {rank}
    out: set[str] = set()
    for p in parts[rank]:
        out |= _leaves(p, parts)
    return out


# ---------------------------------------------------------------------------------------------
# Symbolic counts


@dataclass(frozen=True, slots=True)
class Poly:
    """A polynomial in rank sizes with integer coefficients, e.g. ``P*M*E + P*M``.

    ``terms`` maps each monomial (a sorted tuple of rank names, repeated for powers) to its
    coefficient; zero terms are dropped.
    """

    terms: tuple[tuple[tuple[str, ...], int], ...] = ()

    @classmethod
    def of(cls, mapping: Mapping[tuple[str, ...], int]) -> Poly:
        return cls(tuple(sorted((tuple(sorted(m)), c) for m, c in mapping.items() if c)))

    @classmethod
    def const(cls, value: int) -> Poly:
        return cls.of({(): value})

    @classmethod
    def product(cls, ranks: list[str] | tuple[str, ...]) -> Poly:
        return cls.of({tuple(ranks): 1})

    def __add__(self, other: Poly | int) -> Poly:
        other = other if isinstance(other, Poly) else Poly.const(other)
        acc = dict(self.terms)
        for m, c in other.terms:
            acc[m] = acc.get(m, 0) + c
        return Poly.of(acc)

    __radd__ = __add__

    def __mul__(self, other: Poly | int) -> Poly:
        other = other if isinstance(other, Poly) else Poly.const(other)
        acc: dict[tuple[str, ...], int] = {}
        for m1, c1 in self.terms:
            for m2, c2 in other.terms:
                key = tuple(sorted(m1 + m2))
                acc[key] = acc.get(key, 0) + c1 * c2
        return Poly.of(acc)

    __rmul__ = __mul__

    def at(self, sizes: Mapping[str, int]) -> int:
        """The value at the given rank sizes."""
        total = 0
        for m, c in self.terms:
            missing = [r for r in m if r not in sizes]
            if missing:
                raise EinsumError(f"Poly.at(): no size for rank {missing[0]} in {self}")
            total += c * math.prod(sizes[r] for r in m)
        return total

    def __str__(self) -> str:
        if not self.terms:
            return "0"
        out = []
        for m, c in sorted(self.terms, key=lambda t: (-len(t[0]), t[0])):
            body = "*".join(m)
            if not body:
                out.append(str(c))
            elif c == 1:
                out.append(body)
            else:
                out.append(f"{c}*{body}")
        return " + ".join(out)


_CATEGORIES = ("mac", "add", "max", "exp", "div", "other")


@dataclass(frozen=True, slots=True, kw_only=True)
class OpCounts:
    """Operations of one Einsum by category, as polynomials in rank sizes.

    Categories: ``mac`` multiply(-accumulate)s, ``add`` adds and subtractions, ``max``
    max/min/compare, ``exp`` exponentials, ``div`` divisions, ``other`` every other function
    (log, sqrt, sigmoid, powers, selects, top-k). A user-defined operator adds its ``cost``.
    """

    mac: Poly = Poly()
    add: Poly = Poly()
    max: Poly = Poly()
    exp: Poly = Poly()
    div: Poly = Poly()
    other: Poly = Poly()

    def __add__(self, other: OpCounts) -> OpCounts:
        return OpCounts(**{c: getattr(self, c) + getattr(other, c) for c in _CATEGORIES})

    def scaled(self, n: Poly) -> OpCounts:
        return OpCounts(**{c: getattr(self, c) * n for c in _CATEGORIES})

    def at(self, sizes: Mapping[str, int]) -> dict[str, int]:
        """Counts at the given rank sizes, by category."""
        return {c: getattr(self, c).at(sizes) for c in _CATEGORIES}

    def __str__(self) -> str:
        return ", ".join(f"{c}={getattr(self, c)}" for c in _CATEGORIES if getattr(self, c).terms)


def _one(category: str, times: int = 1) -> OpCounts:
    return OpCounts(**{category: Poly.const(times)})


def _actions(a: Actions) -> OpCounts:
    return OpCounts(**{c: Poly.const(getattr(a, c)) for c in _CATEGORIES if getattr(a, c)})


_FUNC_CATEGORY = {
    Func.EXP: "exp",
    Func.LOG: "other",
    Func.SQRT: "other",
    Func.SIGMOID: "other",
    Func.CEIL: "other",
    Func.FLOOR: "other",
    Func.WHERE: "other",
    Func.RELU: "max",
    Func.ABS: "max",
    Func.MAX: "max",
    Func.MIN: "max",
}
#: Built-ins that cost several actions: each as the operations its usual evaluation takes
#: (tanh(x) = (e^2x - 1) / (e^2x + 1); silu(x) = x / (1 + e^-x); softplus(x) = max(x, 0) +
#: log1p(e^-|x|); gelu(x) = x (1 + erf(x / sqrt 2)) / 2; gelu_tanh with tanh of a cubic).
_FUNC_COST = {
    Func.TANH: Actions(mac=1, add=2, exp=1, div=1),
    Func.SILU: Actions(add=1, exp=1, div=1),
    Func.SOFTPLUS: Actions(add=1, max=2, exp=1, other=1),
    Func.GELU: Actions(mac=3, add=1, other=1),
    Func.GELU_TANH: Actions(mac=6, add=4, exp=1, div=1),
    Func.ERF: Actions(other=1),
    Func.LOG1P: Actions(other=1),
}
_BINOP_CATEGORY = {BinOp.ADD: "add", BinOp.SUB: "add", BinOp.MUL: "mac", BinOp.DIV: "div"}
_REDUCE_CATEGORY = {ReduceOp.SUM: "add", ReduceOp.MAX: "max", ReduceOp.MIN: "max", ReduceOp.PROD: "mac"}


def _points(vars_: frozenset[str] | set[str]) -> Poly:
    return Poly.product(sorted(v.upper() for v in vars_))


def _is_constant(expr: Expr) -> bool:
    return not free_vars(expr) and not any(isinstance(n, Access) for n in walk(expr))


def _cost(expr: Expr) -> OpCounts:
    """Operations to evaluate ``expr`` once over its free indices (loop-invariant parts hoisted)."""
    if _is_constant(expr) or isinstance(expr, (Access, Var)):
        return OpCounts()
    if isinstance(expr, Reduce):
        return _reduce_cost(expr.op, frozenset(expr.indices), expr.body)
    here = _points(free_vars(expr))
    if isinstance(expr, Binary) and expr.op is BinOp.MUL:
        factors = product_factors(expr)
        density, rest = _mask_density(factors, free_vars(expr))
        if rest is not None:
            total = OpCounts()
            for f in rest:
                total = total + _cost(f)
            return total + _one("mac", max(len(rest) - 1, 0)).scaled(here * density)
    if isinstance(expr, Neg):
        return _cost(expr.operand) + _one("add").scaled(here)
    if isinstance(expr, Binary):
        category = _BINOP_CATEGORY.get(expr.op, "max" if expr.op.is_comparison else "other")
        return _cost(expr.lhs) + _cost(expr.rhs) + _one(category).scaled(here)
    if isinstance(expr, Call):
        inner = OpCounts()
        for a in expr.args:
            inner = inner + _cost(a)
        own = (
            _actions(expr.func.cost)
            if isinstance(expr.func, Operator)
            else _actions(_FUNC_COST[expr.func])
            if expr.func in _FUNC_COST
            else _one(_FUNC_CATEGORY[expr.func])
        )
        return inner + own.scaled(here)
    if isinstance(expr, TopK):
        return _cost(expr.body) + _one("other").scaled(_points(free_vars(expr.body)))
    return OpCounts()


def _reduce_cost(op: ReduceOp, reduced: frozenset[str], body: Expr) -> OpCounts:
    if op is ReduceOp.SUM:
        # with op_counts(masks=True) a mask factor is no work: it thins the points (density)
        density, rest = _mask_density(product_factors(body), free_vars(body))
        factors = rest if rest is not None else product_factors(body)
        inner = [f for f in factors if free_vars(f) & reduced]
        outer = [f for f in factors if not free_vars(f) & reduced]
        out_points = _points(free_vars(body) - reduced)
        total = OpCounts()
        for f in factors:
            total = total + _cost(f)
        inner_points = _points(frozenset().union(*(free_vars(f) for f in inner))) * density
        if len(inner) >= 2:
            # A chain of products summed is multiply-accumulates; the adds fold into the MACs.
            total = total + _one("mac", len(inner) - 1).scaled(inner_points)
        else:
            total = total + _one("add").scaled(inner_points)
        nonconstant = [f for f in outer if not _is_constant(f)]
        constant = len(outer) - len(nonconstant)
        scalings = len(nonconstant) + (1 if constant else 0)
        return total + _one("mac", scalings).scaled(out_points)
    return _cost(body) + _one(_REDUCE_CATEGORY[op]).scaled(_points(free_vars(body)))


#: While :func:`op_counts` runs with ``masks=True``: each mask tensor and its density symbol.
_MASKS: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "_MASKS", default=MappingProxyType({})
)


def _mask_density(factors: list[Expr], points: frozenset[str]) -> tuple[Poly, list[Expr] | None]:
    """The density symbols of the mask factors of a product whose indices cover the masks', and
    the other factors; ``(1, None)`` when no factor is such a mask."""
    masks = _MASKS.get()
    density, rest = Poly.const(1), []
    for f in factors:
        if isinstance(f, Access) and f.tensor in masks and free_vars(f) <= points:
            density = density * Poly.product([masks[f.tensor]])
        else:
            rest.append(f)
    return density, (rest if len(rest) < len(factors) else None)


def mask_tensors(cascade: Cascade) -> dict[str, str]:
    """The cascade's 0/1 masks and the symbol :func:`op_counts` gives each one's density.

    A mask is a tensor every (non-``init``) definition of which is a ``topk``, a comparison, or a
    product of these and masks: ``VK[p, m] = topk[m; kv] A[p, m]``, ``LSB[p] = AMX[p] < tau``,
    ``KEEP[m, l + 1] = KEEP[m, l] * topk[...] ...``. Its symbol is ``keep_<name>``: the mean of
    the mask over the positions the cascade reads, the fraction of work it keeps.
    """
    out: dict[str, str] = {}
    changed = True
    while changed:
        changed = False
        for name in cascade.tensors:
            if name in out:
                continue
            defs = [e for e in cascade.einsums if e.output == name and not e.init]
            if defs and all(_is_mask_expr(e.expr, {**out, name: name}) for e in defs):
                out[name] = f"keep_{name}"
                changed = True
    return out


def _is_mask_expr(expr: Expr, masks: Mapping[str, str]) -> bool:
    if isinstance(expr, TopK) or (isinstance(expr, Binary) and expr.op.is_comparison):
        return True
    if isinstance(expr, Binary) and expr.op is BinOp.MUL:
        return all(
            _is_mask_expr(f, masks) or (isinstance(f, Access) and f.tensor in masks)
            for f in product_factors(expr)
        )
    return False


def op_counts(cascade: Cascade, *, masks: bool = False) -> tuple[OpCounts, ...]:
    """Operations of each statement of ``cascade.einsums``, as polynomials in rank sizes.

    Each sub-expression is counted once per point of its own indices (loop-invariant work is
    hoisted); a sum of products counts ``n - 1`` multiply-accumulates per point for ``n``
    factors that depend on the summed indices; a reduction counts one operation per element
    reduced. Copies and re-indexing (``BK[m1, m0, e] = K[m1 * M0 + m0, e]``) cost nothing.

    With ``masks=True`` a product with a 0/1 mask factor (:func:`mask_tensors`: a ``topk``, a
    comparison) counts only the points the mask keeps: its count carries the mask's density
    ``keep_<MASK>`` as a factor, so the counts are functions of the keep ratios (evaluate them with
    ``Poly.at({**sizes, "keep_VK": 0.2})``). Without it every point is counted (dense work).

    Example:
        >>> import einsum
        >>> c = einsum.library.get("matmul")
        >>> str(op_counts(c)[0])
        'mac=K*M*N'
        >>> v = einsum.library.get("spatten_local_value_pruning")
        >>> str(op_counts(v)[-1]), str(op_counts(v, masks=True)[-1])
        ('mac=2*F*M*P', 'mac=F*M*P*keep_VK')
    """
    if not masks:
        return tuple(_einsum_cost(e) for e in cascade.einsums)
    token = _MASKS.set(mask_tensors(cascade))
    try:
        return tuple(_einsum_cost(e) for e in cascade.einsums)
    finally:
        _MASKS.reset(token)


def _einsum_cost(e: Einsum) -> OpCounts:
    summed = frozenset(e.summed)
    if summed:
        return _reduce_cost(ReduceOp.SUM, summed, e.expr)
    return _cost(e.expr)


def tensor_sizes(cascade: Cascade) -> dict[str, Poly]:
    """Elements of every tensor as polynomials in rank sizes (an iterative rank holds R + 1)."""
    iterative = cascade.iterative
    out: dict[str, Poly] = {}
    for name, ranks in cascade.tensors.items():
        size = Poly.const(1)
        for dim, r in enumerate(ranks):
            factor = Poly.product([r])
            size = size * (factor + 1 if iterative.get(name) == dim else factor)
        out[name] = size
    return out
