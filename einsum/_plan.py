"""The evaluation plan of a cascade: statements grouped into stages, recurrences found.

A stage is either one statement evaluated over its whole iteration space, or a recurrence: a
strongly connected group of statements evaluated one step of its iterative rank at a time, in an
order that respects the reads within one step. Both the golden interpreter and validation use it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import networkx as nx

from einsum._expr import Access, Binary, BinOp, Expr, Num, Var, walk
from einsum._stmt import Einsum

__all__ = ["Stage", "plan_stages"]


@dataclass(frozen=True, slots=True)
class Stage:
    """Statements (indices into ``cascade.einsums``) evaluated together.

    ``step`` is None for a single statement evaluated whole; else the index variable the
    recurrence walks, and ``statements`` are in the order to run within one step.
    """

    statements: tuple[int, ...]
    step: str | None


def _offset(expr: Expr, var: str) -> int | None:
    """``var`` -> 0, ``var + c`` -> c, ``var - c`` -> -c; anything else -> None."""
    if isinstance(expr, Var) and expr.name == var:
        return 0
    if (
        isinstance(expr, Binary)
        and expr.op in (BinOp.ADD, BinOp.SUB)
        and isinstance(expr.lhs, Var)
        and expr.lhs.name == var
        and isinstance(expr.rhs, Num)
        and float(expr.rhs.value).is_integer()
    ):
        c = int(expr.rhs.value)
        return c if expr.op is BinOp.ADD else -c
    return None


def where_is(einsums: Sequence[Einsum], i: int) -> str:
    """How messages name a statement: ``einsums[3] SLN[p, m1, m0] (line 12)``."""
    e = einsums[i]
    line = f" (line {e.line})" if e.line is not None else ""
    return f"einsums[{i}] {e.lhs_text}{line}"


def plan_stages(einsums: Sequence[Einsum]) -> tuple[tuple[Stage, ...], list[str]]:
    """Group statements into stages; return the stages and the problems found.

    Problems are cycles that no iterative rank breaks, reads of positions a later step writes,
    and recurrences whose members do not all walk the step index.
    """
    problems: list[str] = []
    writers: dict[str, list[int]] = {}
    for i, e in enumerate(einsums):
        writers.setdefault(e.output, []).append(i)

    graph: nx.DiGraph = nx.DiGraph()
    graph.add_nodes_from(range(len(einsums)))
    for r, e in enumerate(einsums):
        for tensor in e.reads:
            for w in writers.get(tensor, ()):
                graph.add_edge(w, r)

    condensed = nx.condensation(graph)
    members = condensed.graph["mapping"]  # node -> component id
    comps: dict[int, list[int]] = {}
    for node, comp in members.items():
        comps.setdefault(comp, []).append(node)
    order = nx.lexicographical_topological_sort(condensed, key=lambda c: min(comps[c]))

    stages: list[Stage] = []
    for comp in order:
        nodes = sorted(comps[comp])
        recursive = len(nodes) > 1 or graph.has_edge(nodes[0], nodes[0])
        if not recursive:
            stages.append(Stage(statements=(nodes[0],), step=None))
            continue
        stage, found = _recurrence(einsums, nodes, writers)
        problems.extend(found)
        if stage is not None:
            stages.append(stage)
    return tuple(stages), problems


def _recurrence(
    einsums: Sequence[Einsum], nodes: list[int], writers: dict[str, list[int]]
) -> tuple[Stage | None, list[str]]:
    problems: list[str] = []
    names = ", ".join(where_is(einsums, i) for i in nodes)
    steps = sorted({s for i in nodes if (s := einsums[i].step) is not None and not einsums[i].init})
    inits = [i for i in nodes if einsums[i].init]
    if inits:
        problems.append(f"{where_is(einsums, inits[0])}: an init may not depend on its own recurrence")
        return None, problems
    if not steps:
        tensors = " -> ".join(einsums[i].output for i in nodes)
        problems.append(
            f"cyclic dependency between {names}: {tensors} -> {einsums[nodes[0]].output}, "
            "and no iterative rank (T[..., i + 1]) breaks the cycle"
        )
        return None, problems
    if len(steps) > 1:
        problems.append(f"one recurrence walks several step indices {steps}: {names}")
        return None, problems
    var = steps[0]
    for i in nodes:
        if var not in einsums[i].indices:
            problems.append(
                f"{where_is(einsums, i)}: is part of the recurrence over {var} but has no {var} on its left"
            )
    if problems:
        return None, problems

    in_group = set(nodes)
    local: nx.DiGraph = nx.DiGraph()
    local.add_nodes_from(nodes)
    for r in nodes:
        for access in _accesses(einsums[r].expr):
            for w in writers.get(access.tensor, ()):
                if w not in in_group:
                    continue
                writer = einsums[w]
                dim = writer.indices.index(var)
                written = 1 if writer.step == var else 0
                if dim >= len(access.indices):
                    continue  # an arity problem, reported by validation
                read = _offset(access.indices[dim], var)
                if read is None:
                    problems.append(
                        f"{where_is(einsums, r)}: inside the recurrence over {var}, reads "
                        f"{access} but must read {access.tensor} at {var} or {var} + 1 along "
                        f"rank {var.upper()}"
                    )
                    continue
                if read - written > 0:
                    problems.append(
                        f"{where_is(einsums, r)}: reads {access}, a position that a later step "
                        f"of {var} writes"
                    )
                elif read == written and w != r:
                    local.add_edge(w, r)
                elif read == written and w == r:
                    problems.append(f"{where_is(einsums, r)}: reads {access}, the position it is defining")
    if problems:
        return None, problems
    try:
        ordered = list(nx.lexicographical_topological_sort(local))
    except nx.NetworkXUnfeasible:
        problems.append(f"cycle within one step of the recurrence over {var}: {names}")
        return None, problems
    return Stage(statements=tuple(ordered), step=var), problems


def _accesses(expr: Expr) -> Iterator[Access]:
    for node in walk(expr):
        if isinstance(node, Access):
            yield node
