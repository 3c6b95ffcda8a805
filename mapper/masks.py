"""Structured masks: which (query tile, key block) pairs of a cascade are wholly masked.

A mask is a ``where(cond, x, fill)`` whose condition depends only on indices, sizes and params
(``where(p >= m, ...)`` causal, ``where((p >= m) * (p - m < W), ...)`` a sliding window). For each
pair of a query tile and a key block the condition is bounded by interval arithmetic over the
pair's index box: a pair where it is false at every point needs no work (its scores are the fill,
-inf, and add nothing after the exponential), so a schedule skips it; a pair where it is false
somewhere is partly masked and costs in full (the hardware computes the whole tile). Interval
bounds are exact for conditions that compare one affine form of the indices (causal, windows,
their products); for any other condition a pair counts as live, so no tile with live points is
ever skipped. A condition that reads a tensor (a data-dependent mask) is not structural: nothing
is skipped.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping

import numpy as np

import einsum
from einsum._expr import Access, Binary, BinOp, Call, Expr, Func, Neg, Num, ParamRef, Size, Var, walk
from mapper.arch import ArchSpec
from mapper.schedule import Layout, Schedule, einsum_facts

__all__ = ["MaskSkip", "key_boxes", "live_lower_bound", "mask_conditions", "mask_skip", "schedule_skip"]


@dataclasses.dataclass(frozen=True)
class MaskSkip:
    """Pairs of (query tile, key block) and how many are wholly masked."""

    total: int
    skipped: int
    masks: tuple[str, ...]  # the Einsums whose where-conditions decide
    unmasked: int = 0  # pairs where every condition holds at every point

    @property
    def live_fraction(self) -> float:
        return (self.total - self.skipped) / self.total if self.total else 1.0


def mask_conditions(cascade: einsum.Cascade) -> list[tuple[str, Expr]]:
    """(Einsum, condition) of every structural mask of ``cascade``."""
    out = []
    for e in cascade.einsums:
        for node in walk(e.expr):
            if isinstance(node, Call) and node.func is Func.WHERE:
                cond = node.args[0]
                if not any(isinstance(n, Access) for n in walk(cond)):
                    out.append((e.output, cond))
    return out


def _params(cascade: einsum.Cascade, sizes: Mapping[str, int]) -> dict[str, float]:
    values: dict[str, float] = {}
    for p in cascade.params:
        lo, hi = _interval(p.expr, {}, sizes, values)
        if lo is not None and hi is not None and np.all(lo == hi):
            values[p.name] = float(np.asarray(lo).reshape(-1)[0])
    return values


_CHUNK = 1 << 20  # pairs bounded at once

Bounds = tuple[np.ndarray | None, np.ndarray | None]


def _interval(
    expr: Expr,
    box: Mapping[str, tuple[np.ndarray, np.ndarray]],
    sizes: Mapping[str, int],
    params: Mapping[str, float],
) -> Bounds:
    """Lower and upper bounds of ``expr`` over every box (arrays broadcast over the pairs); (None,
    None) where it cannot be bounded."""
    if isinstance(expr, Num):
        v = np.float64(expr.value)
        return v, v
    if isinstance(expr, Var):
        if expr.name not in box:
            return None, None
        lo, hi = box[expr.name]
        return lo.astype(np.float64), hi.astype(np.float64)
    if isinstance(expr, Size):
        if expr.rank not in sizes:
            return None, None
        v = np.float64(sizes[expr.rank])
        return v, v
    if isinstance(expr, ParamRef):
        if expr.name not in params:
            return None, None
        v = np.float64(params[expr.name])
        return v, v
    if isinstance(expr, Neg):
        lo, hi = _interval(expr.operand, box, sizes, params)
        return (None, None) if lo is None or hi is None else (-hi, -lo)
    if isinstance(expr, Call) and expr.func is Func.SQRT:
        lo, hi = _interval(expr.args[0], box, sizes, params)
        if lo is None or hi is None or np.any(lo < 0):
            return None, None
        return np.sqrt(lo), np.sqrt(hi)
    if isinstance(expr, Binary):
        a_lo, a_hi = _interval(expr.lhs, box, sizes, params)
        b_lo, b_hi = _interval(expr.rhs, box, sizes, params)
        if a_lo is None or a_hi is None or b_lo is None or b_hi is None:
            return None, None
        op = expr.op
        if op is BinOp.ADD:
            return a_lo + b_lo, a_hi + b_hi
        if op is BinOp.SUB:
            return a_lo - b_hi, a_hi - b_lo
        if op is BinOp.MUL:
            return _hull(a_lo * b_lo, a_lo * b_hi, a_hi * b_lo, a_hi * b_hi)
        if op is BinOp.DIV:
            if np.any((b_lo <= 0) & (b_hi >= 0)):
                return None, None
            return _hull(a_lo / b_lo, a_lo / b_hi, a_hi / b_lo, a_hi / b_hi)
        if op.is_comparison:
            # d = a - b over the box: the comparison is 1 everywhere, 0 everywhere, or either
            d_lo, d_hi = a_lo - b_hi, a_hi - b_lo
            always, never = _compare(op, d_lo, d_hi)
            one = np.where(always, 1.0, np.where(never, 0.0, 0.0))
            upper = np.where(never, 0.0, 1.0)
            return one, upper
    return None, None


def _hull(*corners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The least and greatest of the corners, entry by entry."""
    lo = hi = corners[0]
    for c in corners[1:]:
        lo, hi = np.minimum(lo, c), np.maximum(hi, c)
    return lo, hi


def _compare(op: BinOp, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(always true, never true) of ``d op 0`` for d in [lo, hi] (integers, as indices are)."""
    if op is BinOp.GE:
        return lo >= 0, hi < 0
    if op is BinOp.GT:
        return lo > 0, hi <= 0
    if op is BinOp.LE:
        return hi <= 0, lo > 0
    if op is BinOp.LT:
        return hi < 0, lo >= 0
    if op is BinOp.EQ:
        return (lo == 0) & (hi == 0), (lo > 0) | (hi < 0)
    return (lo > 0) | (hi < 0), (lo == 0) & (hi == 0)  # NE


def mask_skip(
    cascade: einsum.Cascade,
    *,
    query: str,
    key_var_boxes: Mapping[str, tuple[np.ndarray, np.ndarray]],
    query_tile: int,
    sizes: Mapping[str, int],
) -> MaskSkip:
    """Count the wholly masked pairs of query tiles (``query_tile`` rows of rank ``query``) and key
    blocks (``key_var_boxes``: per key index variable, its low and high bound in each block, one
    array entry per block)."""
    n_q = -(-sizes[query] // query_tile)
    conds = mask_conditions(cascade)
    n_k = len(next(iter(key_var_boxes.values()))[0]) if key_var_boxes else 1
    total = n_q * n_k
    if not conds:
        return MaskSkip(total=total, skipped=0, masks=())
    params = _params(cascade, sizes)
    keys = {v: (np.asarray(lo)[None, :], np.asarray(hi)[None, :]) for v, (lo, hi) in key_var_boxes.items()}
    skipped = unmasked = 0
    masks: list[str] = []
    # query tiles a chunk at a time: at a million keys the pairs number in the tens of millions
    step = max(1, _CHUNK // max(1, n_k))
    for start in range(0, n_q, step):
        rows = np.arange(start, min(n_q, start + step))
        q_lo = (rows * query_tile)[:, None]
        q_hi = np.minimum((rows + 1) * query_tile, sizes[query])[:, None] - 1
        box = {query.lower(): (q_lo, q_hi), **keys}
        dead = np.zeros((len(rows), n_k), dtype=bool)
        clear = np.ones((len(rows), n_k), dtype=bool)
        used = []
        for name, cond in conds:
            vars_ = {n.name for n in walk(cond) if isinstance(n, Var)}
            if query.lower() not in vars_ or not (vars_ & set(key_var_boxes)) or not vars_ <= set(box):
                continue
            lo, hi = _interval(cond, box, sizes, params)
            if hi is None or lo is None:
                clear[:] = False
                continue
            dead |= np.broadcast_to(np.asarray(hi) <= 0, dead.shape)  # the condition is 0 everywhere
            clear &= np.broadcast_to(np.asarray(lo) >= 1, clear.shape)  # ... or 1 everywhere
            used.append(name)
        skipped += int(dead.sum())
        unmasked += int(clear.sum()) if used else 0
        masks += used
    return MaskSkip(total=total, skipped=skipped, masks=tuple(dict.fromkeys(masks)), unmasked=unmasked)


def live_lower_bound(cascade: einsum.Cascade, lay: Layout, sizes: Mapping[str, int]) -> float:
    """A fraction of the (query, key) points no schedule can skip: the points of the pairs of a fine
    grid (at most 2048 x 2048 pairs) where every mask holds everywhere. 1 without masks."""
    query, key, whole, outer = lay.query, lay.key, lay.whole, lay.outer
    if key is None or not mask_conditions(cascade):
        return 1.0
    n_keys = sizes[whole] if whole is not None else sizes[key]
    g = max(1, math.ceil(max(sizes[query], n_keys) / 2048))
    if whole is not None:
        boxes = key_boxes(g, n_keys, outer=outer, inner=key)
        at = {**sizes, key: g, outer: -(-n_keys // g)}
    else:
        boxes = key_boxes(g, n_keys, plain=key)
        at = dict(sizes)
    skip = mask_skip(cascade, query=query, key_var_boxes=boxes, query_tile=g, sizes=at)
    if not skip.masks:
        return 1.0
    # whole pairs of g x g points; a ragged edge pair counts as whole, so subtract those
    edge = (-(-sizes[query] // g)) + (-(-n_keys // g))
    return max(0.0, (skip.unmasked - edge) / skip.total)


def key_boxes(
    block: int, whole: int, *, outer: str | None = None, inner: str | None = None, plain: str | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Index boxes of the key blocks: a partitioned key (``outer`` step m1, ``inner`` m0 of ``block``
    keys; the last step ragged) or a plain key rank cut into blocks of ``block``."""
    n = -(-whole // block)
    j = np.arange(n)
    last = np.minimum((j + 1) * block, whole) - j * block - 1
    if outer is not None and inner is not None:
        return {outer.lower(): (j, j), inner.lower(): (np.zeros(n, dtype=np.int64), last)}
    assert plain is not None
    return {plain.lower(): (j * block, j * block + last)}


_Blocks = tuple[int, int, str | None, str | None, str | None]  # block, whole, outer, inner, plain


@functools.lru_cache(maxsize=256)
def _skip(
    cascade: einsum.Cascade,
    query: str,
    blocks: _Blocks,
    query_tile: int,
    sizes: tuple[tuple[str, int], ...],
) -> MaskSkip:
    """:func:`mask_skip` over the key blocks ``blocks`` (:func:`key_boxes`' arguments), cached: the
    candidates of a search share their query tile and key blocks, and at long sequences one count
    covers millions of pairs (the IR is immutable, the result a frozen value)."""
    block, whole, outer, inner, plain = blocks
    boxes = key_boxes(block, whole, outer=outer, inner=inner, plain=plain)
    return mask_skip(cascade, query=query, key_var_boxes=boxes, query_tile=query_tile, sizes=dict(sizes))


def schedule_skip(
    cascade: einsum.Cascade,
    schedule: Schedule,
    arch: ArchSpec,
    *,
    full: Mapping[str, int],
    tile: Mapping[str, int],
    lay: Layout,
) -> tuple[MaskSkip, frozenset[str]]:
    """The wholly masked (query tile, key block) pairs of a fused tiling and the Einsums that skip
    them (those of the tiled kernels iterating both the query and the key rank, or the key steps).
    Key blocks are the key steps (M0 keys) of a partitioned cascade, else the 2D array's rows of
    keys."""
    kernels, nests = schedule.kernels, schedule.nests
    query, key, whole, outer = lay.query, lay.key, lay.whole, lay.outer
    if not kernels or key is None or not mask_conditions(cascade):
        return MaskSkip(total=0, skipped=0, masks=()), frozenset()
    if whole is not None:
        blocks: _Blocks = (full[key], full[whole], outer, key, None)
    else:
        rows = max((a.rows for a in arch.arrays if a.is_2d), default=1)
        blocks = (max(1, min(rows, full[key])), full[key], None, None, key)
    skip = _skip(cascade, query, blocks, tile[query], tuple(sorted(full.items())))
    # a wholly masked key step changes no running value either (the max stays, the sums add 0)
    keyed = {key} | ({outer} if outer else set())
    names = frozenset(
        f.name
        for f in einsum_facts(cascade)
        if f.name not in nests and query in f.ranks and keyed & set(f.ranks)
    )
    return skip, names
