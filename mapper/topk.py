"""The top-k engine's cycle model: one implementation for the RTL block and the spatial model.

SpAtten's engine (spatten.md §2) finds the ``k`` largest of ``n`` scores by quick-select with
``P`` comparators a side, then filters the buffered input in its original order. This module
replays the algorithm on real scores and counts the cycles in explicit phases:

- **select**: every quick-select round streams its active buffer, ``ceil(n_r / P)`` rows, plus a
  fixed ``round_overhead`` of cycles to decide and turn around (einforge's ``rtl.topk`` block: 1;
  SpAtten's released latency model, ``sim/TopKLatencyModel.scala`` of mit-han-lab/spatten: 3).
  The first round streams all ``n`` scores as they arrive;
- **filter**: one cycle per row of the buffered input up to the row that holds the ``k``-th kept
  index.

The pivot of a round is the first element of its buffer (the RTL's choice); on randomly ordered
scores that is a uniformly random element, as SpAtten's random pivot is. Ties go to the lower
index. ``rtl.topk`` imports this module (its block is checked cycle for cycle against
:func:`topk_trace`), and so may the simulator: the rule that ``sim`` never imports ``rtl`` holds.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "TopKTrace",
    "expected_filter_rows",
    "expected_rounds",
    "expected_select_cycles",
    "expected_visited",
    "mean_cycles",
    "mean_select_cycles",
    "select_cycles",
    "topk_trace",
]


@dataclass(frozen=True)
class TopKTrace:
    """What the engine does with one vector: the kept indices (in input order), the elements each
    quick-select round streamed, and the cycles of each phase with einforge's RTL overhead."""

    indices: tuple[int, ...]
    round_sizes: tuple[int, ...]
    select_cycles: int
    filter_rows: int

    @property
    def rounds(self) -> int:
        return len(self.round_sizes)

    @property
    def cycles(self) -> int:
        """Select and filter, einforge's RTL block (1 cycle a round to decide)."""
        return self.select_cycles + self.filter_rows


def select_cycles(round_sizes: Sequence[int], parallelism: int, round_overhead: int) -> int:
    """Cycles of the select phase: ``sum(ceil(n_r / P) + round_overhead)`` over the rounds."""
    return sum(math.ceil(n / parallelism) + round_overhead for n in round_sizes)


def topk_trace(scores: Sequence[int | float], k: int, parallelism: int) -> TopKTrace:
    """Replay the engine on one vector (the exact cycle model of ``rtl.topk``, and a golden).

    Raises ValueError unless ``1 <= k <= len(scores)`` and ``parallelism >= 1``."""
    n, p = len(scores), parallelism
    if not 1 <= k <= n:
        raise ValueError(f"topk: k must be in 1..n = {n}, got {k}")
    if p < 1:
        raise ValueError(f"topk: parallelism must be at least 1, got {p}")
    src, target, pivot = list(scores), k, scores[0]
    sizes = [n]
    while True:
        greater = [x for x in src if x > pivot]
        equal = sum(1 for x in src if x == pivot)
        if len(greater) >= target:
            src = greater
        elif len(greater) + equal >= target:
            theta, keep_eq = pivot, target - len(greater)
            break
        else:
            target -= len(greater) + equal
            src = [x for x in src if x < pivot]
        pivot = src[0]
        sizes.append(len(src))
    kept: list[int] = []
    eq_seen, filter_rows = 0, 0
    for r in range(math.ceil(n / p)):
        filter_rows += 1
        for i in range(r * p, min(n, (r + 1) * p)):
            if scores[i] > theta or (scores[i] == theta and eq_seen < keep_eq):
                kept.append(i)
            eq_seen += scores[i] == theta
        if len(kept) == k:
            break
    return TopKTrace(tuple(kept), tuple(sizes), select_cycles(sizes, p, 1), filter_rows)


def mean_select_cycles(
    n: int, k: int, parallelism: int, *, round_overhead: int = 3, draws: int = 200, seed: int = 0
) -> float:
    """Mean select-phase cycles over ``draws`` random orders of distinct scores (seeded), with
    ``round_overhead`` cycles a round (3: SpAtten's released latency model)."""
    rng = random.Random(seed)
    total = 0
    for _ in range(draws):
        scores = rng.sample(range(-(1 << 20), 1 << 20), n)
        total += select_cycles(topk_trace(scores, k, parallelism).round_sizes, parallelism, round_overhead)
    return total / draws


def _harmonic(n: int) -> float:
    return math.fsum(1.0 / i for i in range(1, n + 1))


def expected_visited(n: int, k: int) -> float:
    """Expected elements streamed over all rounds of random-pivot quick-select for the ``k``-th of
    ``n``: the expected comparisons (the standard result, ``2[(n+1)H_n - (n+3-k)H_{n+1-k} -
    (k+2)H_k + n + 3]``) plus one pivot a round (:func:`expected_rounds`)."""
    h = _harmonic
    comparisons = 2 * ((n + 1) * h(n) - (n + 3 - k) * h(n + 1 - k) - (k + 2) * h(k) + n + 3)
    return comparisons + expected_rounds(n, k)


def expected_rounds(n: int, k: int) -> float:
    """Expected quick-select rounds for the ``k``-th of ``n``: ``H_k + H_{n+1-k} - 1``."""
    return _harmonic(k) + _harmonic(n + 1 - k) - 1


def expected_select_cycles(n: int, k: int, parallelism: int, *, round_overhead: int = 3) -> float:
    """The select phase's expected cycles in closed form (the analytical path): the elements
    streamed over ``P``, plus per round its overhead and half a row for the last, partly filled
    one. :func:`mean_select_cycles` is the simulated path it is checked against."""
    if not 1 <= k <= n or parallelism < 1:
        raise ValueError(f"topk: need 1 <= k <= n and parallelism >= 1, got n={n}, k={k}, P={parallelism}")
    return expected_visited(n, k) / parallelism + (round_overhead + 0.5) * expected_rounds(n, k)


def expected_filter_rows(n: int, k: int, parallelism: int) -> float:
    """The filter phase's expected rows on randomly ordered scores: it streams rows of ``P`` up to
    the one holding the last kept element, whose expected position is ``k (n + 1) / (k + 1)``
    (the largest of ``k`` positions drawn from ``n``). :func:`topk_trace`'s ``filter_rows`` is the
    simulated path."""
    if not 1 <= k <= n or parallelism < 1:
        raise ValueError(f"topk: need 1 <= k <= n and parallelism >= 1, got n={n}, k={k}, P={parallelism}")
    return math.ceil(k * (n + 1) / (k + 1) / parallelism)


def mean_cycles(
    n: int, k: int, parallelism: int, *, round_overhead: int = 3, draws: int = 200, seed: int = 0
) -> tuple[float, float]:
    """Mean select-phase cycles (with ``round_overhead`` a round) and mean filter rows over
    ``draws`` seeded random orders of distinct scores: the simulated path of the engine's model."""
    rng = random.Random(seed)
    select = filt = 0
    for _ in range(draws):
        t = topk_trace(rng.sample(range(-(1 << 20), 1 << 20), n), k, parallelism)
        select += select_cycles(t.round_sizes, parallelism, round_overhead)
        filt += t.filter_rows
    return select / draws, filt / draws
