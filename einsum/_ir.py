"""The cascade: a validated, immutable program of extended Einsums."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from einsum._expr import (
    Access,
    Binary,
    BinOp,
    Call,
    Expr,
    Neg,
    Num,
    Operator,
    ParamRef,
    Reduce,
    Size,
    TopK,
    Var,
    free_vars,
    ordered_vars,
    to_text,
    walk,
)
from einsum._plan import Stage, plan_stages, where_is
from einsum._stmt import Einsum, Input, ParamDef, Partition
from einsum.errors import MAX_RANK_SIZE, CascadeError, EinsumError, suggest

__all__ = ["Cascade"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Cascade:
    """A cascade of extended Einsums, validated on construction (every problem at once).

    Args:
        name: optional name (``cascade NAME``).
        inputs: tensors that come from outside, in declaration order.
        params: scalar params, in order (a param may use earlier ones).
        partitions: rank splits, e.g. ``M -> M1, M0``.
        outputs: names of the result tensors.
        einsums: the statements (Einsums, inits and recurrence steps) in program order.
        operators: user-defined operators the Einsums call.

    ``str(cascade)`` is the canonical text; ``einsum.parse(str(c), operators=c.operators) == c``.

    Example:
        >>> import einsum
        >>> c = einsum.parse('''
        ... input A[m, k], B[k, n]
        ... output Z
        ... Z[m, n] = A[m, k] * B[k, n]
        ... ''')
        >>> print(c.einsums[0])
        Z[m, n] = A[m, k] * B[k, n]
    """

    name: str | None = None
    inputs: tuple[Input, ...]
    params: tuple[ParamDef, ...] = ()
    partitions: tuple[Partition, ...] = ()
    outputs: tuple[str, ...]
    einsums: tuple[Einsum, ...]
    operators: tuple[Operator, ...] = ()

    def __post_init__(self) -> None:
        for field_name in ("inputs", "params", "partitions", "outputs", "einsums", "operators"):
            value = getattr(self, field_name)
            if not isinstance(value, tuple):
                raise EinsumError(f"Cascade.{field_name} must be a tuple, got {type(value).__name__}")
        if self.name is not None and not (isinstance(self.name, str) and self.name.isidentifier()):
            raise EinsumError(f"cascade name must be an identifier, got {self.name!r}")
        reasons = list(_problems(self))
        if reasons:
            raise CascadeError(reasons)

    # -- derived views (computed on demand; the IR stores no caches) ---------------------------

    @property
    def tensors(self) -> dict[str, tuple[str, ...]]:
        """Every tensor's ranks (inputs and defined tensors), by name."""
        out = {t.name: t.ranks for t in self.inputs}
        for e in self.einsums:
            out.setdefault(e.output, e.ranks)
        return out

    @property
    def iterative(self) -> dict[str, int]:
        """Tensors defined by a recurrence, mapped to the position of their iterative rank."""
        return {e.output: e.indices.index(e.step) for e in self.einsums if e.step is not None}

    @property
    def ranks(self) -> tuple[str, ...]:
        """Every rank the cascade mentions, sorted (remembered per cascade object: a compiled
        kernel's every call asks for it)."""
        hit = _RANKS.get(id(self))
        if hit is not None and hit[0] is self:
            return hit[1]
        out = self._ranks()
        if len(_RANKS) >= 256:
            _RANKS.clear()
        _RANKS[id(self)] = (self, out)
        return out

    def _ranks(self) -> tuple[str, ...]:
        found: set[str] = set()
        for t in self.inputs:
            found.update(t.ranks)
        for p in self.partitions:
            found.add(p.rank)
            found.update(p.parts)
        for e in self.einsums:
            found.update(e.ranks)
            for node in walk(e.expr):
                if isinstance(node, Var):
                    found.add(node.rank)
                elif isinstance(node, (Reduce, TopK)):
                    found.update(i.upper() for i in node.indices)
        return tuple(sorted(found))

    @property
    def stages(self) -> tuple[Stage, ...]:
        """The evaluation plan: statements grouped into whole evaluations and recurrences."""
        return plan_stages(self.einsums)[0]

    def __str__(self) -> str:
        lines = []
        if self.name is not None:
            lines.append(f"cascade {self.name}")
        if self.inputs:
            lines.append("input " + ", ".join(str(t) for t in self.inputs))
        lines.extend(str(p) for p in self.params)
        lines.extend(str(p) for p in self.partitions)
        lines.append("output " + ", ".join(self.outputs))
        lines.append("")
        lines.extend(str(e) for e in self.einsums)
        return "\n".join(lines) + "\n"


#: Cascade.ranks per cascade object (the object is kept, so its id cannot be reused meanwhile).
_RANKS: dict[int, tuple[Cascade, tuple[str, ...]]] = {}


def _where(c: Cascade, i: int) -> str:
    return where_is(c.einsums, i)


def _is_affine(expr: Expr) -> bool:
    """Integer affine in index variables: vars, rank sizes, integers, +, -, and * by a constant."""
    if isinstance(expr, (Var, Size)):
        return True
    if isinstance(expr, Num):
        return float(expr.value).is_integer()
    if isinstance(expr, Neg):
        return _is_affine(expr.operand)
    if isinstance(expr, Binary) and expr.op in (BinOp.ADD, BinOp.SUB):
        return _is_affine(expr.lhs) and _is_affine(expr.rhs)
    if isinstance(expr, Binary) and expr.op is BinOp.MUL:
        both = _is_affine(expr.lhs) and _is_affine(expr.rhs)
        return both and not (free_vars(expr.lhs) and free_vars(expr.rhs))
    return False


def _problems(c: Cascade) -> Iterator[str]:
    input_names = [t.name for t in c.inputs]
    param_names = [p.name for p in c.params]

    # -- names ---------------------------------------------------------------------------------
    seen: set[str] = set()
    for t in c.inputs:
        if t.name in seen:
            yield f"input {t.name} is declared twice"
        seen.add(t.name)
    declared: list[str] = []
    for p in c.params:
        if p.name in declared:
            yield f"param {p.name} is defined twice"
        if p.name in input_names:
            yield f"param {p.name} has the name of an input tensor"
        yield from _param_problems(p, declared)
        declared.append(p.name)
    parted: set[str] = set()
    for part in c.partitions:
        if part.rank in parted:
            yield f"{part}: rank {part.rank} is partitioned twice"
        parted.add(part.rank)
    op_names: dict[str, Operator] = {}
    for op in c.operators:
        if op.name in op_names and op_names[op.name] != op:
            yield f"two different operators are named {op.name!r}"
        op_names[op.name] = op

    # -- definitions -----------------------------------------------------------------------------
    defs: dict[str, list[int]] = {}
    for i, e in enumerate(c.einsums):
        defs.setdefault(e.output, []).append(i)
    arity = {t.name: len(t.ranks) for t in c.inputs}
    ranks_of = {t.name: t.ranks for t in c.inputs}
    iterative: dict[str, int] = {}
    for name, stmts in defs.items():
        first = c.einsums[stmts[0]]
        arity.setdefault(name, len(first.indices))
        ranks_of.setdefault(name, first.ranks)
        if name in input_names:
            yield f"{_where(c, stmts[0])}: defines {name}, which is a declared input"
        if name in param_names:
            yield f"{_where(c, stmts[0])}: defines {name}, which is a param"
        inits = [i for i in stmts if c.einsums[i].init]
        steps = [i for i in stmts if c.einsums[i].step is not None and not c.einsums[i].init]
        plain = [i for i in stmts if c.einsums[i].step is None]
        if plain and len(stmts) > 1:
            yield (
                f"{_where(c, stmts[1])}: tensor {name} is defined twice (first by "
                f"{_where(c, stmts[0])}); only a recurrence (init + step) defines a tensor twice"
            )
            continue
        if len(steps) > 1 or len(inits) > 1:
            yield f"{_where(c, stmts[-1])}: recurrence {name} is defined twice"
            continue
        if steps and not inits:
            e = c.einsums[steps[0]]
            yield (
                f"{_where(c, steps[0])}: a recurrence without init; add "
                f"'init {e.lhs_text.replace(f'{e.step} + 1', f'{e.step} = 0')} = ...'"
            )
        if inits and not steps:
            e = c.einsums[inits[0]]
            yield (
                f"{_where(c, inits[0])}: init without a recurrence; add "
                f"'{e.lhs_text.replace(f'{e.step} = 0', f'{e.step} + 1')} = ...'"
            )
        if inits and steps:
            a, b = c.einsums[inits[0]], c.einsums[steps[0]]
            if a.indices != b.indices or a.step != b.step:
                yield (
                    f"{_where(c, inits[0])}: the init's left side {a.lhs_text} does not match "
                    f"the recurrence's {b.lhs_text}"
                )
            iterative[name] = b.indices.index(str(b.step))

    # -- each statement --------------------------------------------------------------------------
    known_tensors = sorted(set(input_names) | set(defs))
    all_ranks = set(c.ranks)
    # Ranks something gives a size to: inputs, partitions, left sides and tensor accesses.
    bound_ranks = {r for t in c.inputs for r in t.ranks}
    for part in c.partitions:
        bound_ranks |= {part.rank, *part.parts}
    for e in c.einsums:
        bound_ranks |= set(e.ranks)
        for node in walk(e.expr):
            if isinstance(node, Access):
                bound_ranks |= {v.upper() for v in free_vars(node)}
    for i, e in enumerate(c.einsums):
        where = _where(c, i)
        yield from _statement_problems(
            c,
            e,
            where,
            known_tensors,
            arity,
            ranks_of,
            iterative,
            param_names,
            op_names,
            all_ranks,
            bound_ranks,
        )

    # -- outputs ------------------------------------------------------------------------------
    if not c.outputs:
        yield "the cascade has no output; add 'output NAME'"
    if len(set(c.outputs)) != len(c.outputs):
        yield f"an output is listed twice in {list(c.outputs)}"
    for name in c.outputs:
        if name in input_names:
            yield f"output {name} is an input, not a result"
        elif name not in defs:
            yield f"output {name} is never defined{suggest(name, sorted(defs))}"

    # -- plan ---------------------------------------------------------------------------------
    yield from plan_stages(c.einsums)[1]


def _param_problems(p: ParamDef, declared: list[str]) -> Iterator[str]:
    for node in walk(p.expr):
        if isinstance(node, ParamRef) and node.name not in declared:
            if node.name == p.name:
                yield f"param {p.name}: refers to itself"
            else:
                yield f"param {p.name}: uses {node.name}, which is not a param defined before it"
        elif isinstance(node, Var):
            yield (
                f"param {p.name}: uses {node.name}, which is not a param defined before it "
                "(params are declared before use; indices cannot be used in a param)"
            )
        elif isinstance(node, (Access, Reduce, TopK)):
            yield (
                f"param {p.name} = {to_text(p.expr)}: a param may use numbers, earlier params "
                f"and rank sizes only, not {to_text(node)}"
            )
            return


def _statement_problems(
    c: Cascade,
    e: Einsum,
    where: str,
    known_tensors: list[str],
    arity: dict[str, int],
    ranks_of: dict[str, tuple[str, ...]],
    iterative: dict[str, int],
    param_names: list[str],
    op_names: dict[str, Operator],
    all_ranks: set[str],
    bound_ranks: set[str],
) -> Iterator[str]:
    # Explicit reductions: the reduced indices are bound inside, so they may not be on the left.
    for node in walk(e.expr):
        if isinstance(node, Reduce):
            for name in node.indices:
                if name in e.indices:
                    yield (
                        f"{where}: {node.op.value}[{', '.join(node.indices)}] reduces {name}, "
                        f"which is also on the left; a reduced index must not be an output index"
                    )
                if name not in ordered_vars(node.body):
                    yield f"{where}: {node.op.value}[{name}] reduces {name}, which its body does not use"
            inner = [n for n in walk(node.body) if isinstance(n, Reduce)]
            for sub in inner:
                again = set(sub.indices) & set(node.indices)
                if again:
                    yield f"{where}: index {sorted(again)[0]} is reduced twice (nested reductions)"
        elif isinstance(node, TopK):
            # k is a param expression, or (a per-fiber k) reads tensors and indices of the fiber:
            # the body's indices that topk does not select over.
            fiber = free_vars(node.body) - set(node.indices)
            for k_node in walk(node.k):
                if isinstance(k_node, (Reduce, TopK)) or (
                    isinstance(k_node, Var) and k_node.name not in fiber
                ):
                    yield (
                        f"{where}: topk's k must be a param expression or read only the fiber's "
                        f"indices ({', '.join(sorted(fiber)) or 'none'}), got {to_text(node.k)}"
                    )
                    break
            for name in node.indices:
                if name not in free_vars(node.body):
                    yield f"{where}: topk[{name}; ...] selects over {name}, which its body does not use"
        elif isinstance(node, ParamRef) and node.name not in param_names:
            yield f"{where}: uses param {node.name}, which is not defined{suggest(node.name, param_names)}"
        elif isinstance(node, Size) and node.rank not in all_ranks:
            yield (
                f"{where}: uses rank {node.rank}, which no tensor or index of this cascade has "
                f"(ranks: {', '.join(sorted(all_ranks))})"
            )
        elif isinstance(node, Call) and isinstance(node.func, Operator):
            if op_names.get(node.func.name) != node.func:
                yield f"{where}: calls operator {node.func.name!r}, which is not in cascade.operators"
        elif isinstance(node, Access):
            yield from _access_problems(node, where, known_tensors, arity, ranks_of, iterative, c)

    # An index used only as a value must walk a rank that something has: else it is most likely
    # a misspelled param, which would otherwise be summed over a rank with no size.
    for node in walk(e.expr):
        if isinstance(node, Var) and node.rank not in bound_ranks:
            hint = suggest(node.name, param_names, prefix="param ")
            yield (
                f"{where}: uses {node.name} as a value, but no tensor has rank {node.rank}, so "
                f"{node.name} walks nothing{hint}"
            )
            break

    # Left-side indices must be bound by something on the right (inits broadcast a value).
    if not e.init:
        used = set(ordered_vars(e.expr))
        for name in e.indices:
            if name not in used and name != e.step:
                yield (
                    f"{where}: index {name} on the left is bound by nothing on the right; "
                    f"every output index must appear in a tensor access or as a value"
                )
        if e.step is not None and e.step not in used:
            yield f"{where}: the step index {e.step} is used by nothing on the right"
    else:
        extra = sorted(free_vars(e.expr) - set(e.indices) - {e.step or ""})
        if e.step in free_vars(e.expr):
            yield f"{where}: an init may not use its step index {e.step} on the right"
        if extra:
            yield f"{where}: an init may not reduce; index {extra[0]} is not on its left"


def _access_problems(
    node: Access,
    where: str,
    known_tensors: list[str],
    arity: dict[str, int],
    ranks_of: dict[str, tuple[str, ...]],
    iterative: dict[str, int],
    c: Cascade,
) -> Iterator[str]:
    if node.tensor not in arity:
        yield (
            f"{where}: reads {node}, but {node.tensor} is neither a declared input nor defined "
            f"by any Einsum{suggest(node.tensor, known_tensors)}"
        )
        return
    if len(node.indices) != arity[node.tensor]:
        shape = ", ".join(r.lower() for r in ranks_of[node.tensor])
        yield (
            f"{where}: reads {node} with {len(node.indices)} index(es), but {node.tensor} has "
            f"{arity[node.tensor]} ({node.tensor}[{shape}])"
        )
        return
    parts = {p.rank: p.parts for p in c.partitions}
    for dim, (index, rank) in enumerate(zip(node.indices, ranks_of[node.tensor], strict=True)):
        if not _is_affine(index):
            yield (
                f"{where}: reads {node}: index {dim} ({to_text(index)}) must be an integer affine "
                "expression of indices, rank sizes and integers"
            )
        elif big := [n.value for n in walk(index) if isinstance(n, Num) and abs(n.value) > MAX_RANK_SIZE]:
            yield (
                f"{where}: reads {node}: index {dim} ({to_text(index)}) holds the constant {big[0]:.6g}, "
                "beyond 2**40, the largest rank size einforge models"
            )
        elif isinstance(index, Var):
            if index.rank != rank:
                yield (
                    f"{where}: reads {node}: index {index.name} walks rank {index.rank}, but "
                    f"dimension {dim} of {node.tensor} is rank {rank} (write {rank.lower()})"
                )
        elif isinstance(index, Size):
            if index.rank != rank or iterative.get(node.tensor) != dim:
                yield (
                    f"{where}: reads {node}: position {index.rank} is the final position of an "
                    f"iterative rank, but dimension {dim} of {node.tensor} is rank {rank}"
                    + ("" if iterative.get(node.tensor) == dim else ", which is not iterative")
                )
        else:
            # a compound position walks the rank's own partition (K[m1 * M0 + m0, e]), or is a
            # window over other indices (a convolution's I[c, 2 * p + r]); not a mix of both
            allowed = {rank} | set(partition_family(rank, parts))
            used = sorted(free_vars(index))
            own = [v for v in used if v.upper() in allowed]
            for var in used if own else ():
                if var.upper() not in allowed:
                    yield (
                        f"{where}: reads {node}: index {dim} ({to_text(index)}) uses {var}, "
                        f"which walks neither rank {rank} nor a part of its partition (a position "
                        f"walks the rank's partition or is a window over other indices, not both)"
                    )


def affine_terms(index: Expr, sizes: Mapping[str, int] | None = None) -> tuple[dict[str, int], int]:
    """An integer affine position as ``({index: coefficient}, constant)``: ``2 * p + r - 1`` gives
    ``({"p": 2, "r": 1}, -1)``. Rank sizes in it (``m1 * M0 + m0``) take their value from
    ``sizes``; a position that is not integer affine, or names a size ``sizes`` lacks, is an
    EinsumError."""
    sizes = sizes or {}

    def go(e: Expr) -> tuple[dict[str, int], int]:
        if isinstance(e, Var):
            return {e.name: 1}, 0
        if isinstance(e, Num) and float(e.value).is_integer():
            return {}, int(e.value)
        if isinstance(e, Size):
            if e.rank not in sizes:
                raise EinsumError(f"position {to_text(index)}: no size for rank {e.rank}")
            return {}, int(sizes[e.rank])
        if isinstance(e, Neg):
            t, k = go(e.operand)
            return {v: -c for v, c in t.items()}, -k
        if isinstance(e, Binary) and e.op in (BinOp.ADD, BinOp.SUB):
            (ta, ka), (tb, kb) = go(e.lhs), go(e.rhs)
            sign = 1 if e.op is BinOp.ADD else -1
            out = dict(ta)
            for v, c in tb.items():
                out[v] = out.get(v, 0) + sign * c
            return {v: c for v, c in out.items() if c}, ka + sign * kb
        if isinstance(e, Binary) and e.op is BinOp.MUL:
            (ta, ka), (tb, kb) = go(e.lhs), go(e.rhs)
            if ta and tb:
                raise EinsumError(f"position {to_text(index)} multiplies two indices")
            scale, terms, k = (ka, tb, kb) if not ta else (kb, ta, ka)
            return {v: c * scale for v, c in terms.items() if c * scale}, ka * kb
        raise EinsumError(f"position {to_text(index)} is not an integer affine expression of indices")

    return go(index)


def window_accesses(c: Cascade) -> list[str]:
    """The accesses of ``c`` that read a rank through a window over other indices (a
    convolution's ``I[c, 2 * p + r]``), as ``"O[k, p] reads I[c, 2 * p + r]"``; partition
    positions (``K[m1 * M0 + m0, e]``) are not windows."""
    parts = {p.rank: p.parts for p in c.partitions}
    ranks_of = {t.name: t.ranks for t in c.inputs}
    out: list[str] = []
    for e in c.einsums:
        ranks_of.setdefault(e.output, tuple(i.upper() for i in e.indices))
    for e in c.einsums:
        for node in walk(e.expr):
            if not isinstance(node, Access) or node.tensor not in ranks_of:
                continue
            for index, rank in zip(node.indices, ranks_of[node.tensor], strict=False):
                if isinstance(index, Var | Size | Num):
                    continue
                allowed = {rank} | set(partition_family(rank, parts))
                if any(v.upper() not in allowed for v in free_vars(index)):
                    out.append(f"{e.output}[{', '.join(e.indices)}] reads {to_text(node)}")
                    break
    return out


def partition_family(rank: str, parts: Mapping[str, tuple[str, ...]]) -> list[str]:
    """Every rank ``rank`` is split into, recursively (``M -> M1, M0`` gives ``[M1, M0]``)."""
    out: list[str] = []
    for part in parts.get(rank, ()):
        out.append(part)
        out.extend(partition_family(part, parts))
    return out
