"""The top-k engine's cycle model (mapper.topk), shared by the RTL block and the simulator, in
explicit phases, against SpAtten's released latency model (spatten.md §2.3)."""

from __future__ import annotations

import math
import random

import pytest

from mapper.topk import mean_select_cycles, select_cycles, topk_trace


def test_phases_are_explicit_and_add_up() -> None:
    rng = random.Random(3)
    for n, k, p in ((1024, 307, 16), (100, 7, 4), (33, 33, 8), (5, 1, 1)):
        scores = rng.sample(range(10**6), n)
        t = topk_trace(scores, k, p)
        assert t.select_cycles == select_cycles(t.round_sizes, p, 1)
        assert t.round_sizes[0] == n and all(
            a > b for a, b in zip(t.round_sizes, t.round_sizes[1:], strict=False)
        )
        assert t.cycles == t.select_cycles + t.filter_rows
        assert t.filter_rows <= math.ceil(n / p)
        assert sorted(t.indices) == list(t.indices)
        assert sorted(t.indices) == sorted(sorted(range(n), key=lambda i: -scores[i])[:k])


def test_ties_go_to_the_lower_index() -> None:
    t = topk_trace([3, 1, 3, 2, 3, 3], 3, 2)
    assert t.indices == (0, 2, 4)
    with pytest.raises(ValueError, match=r"k must be in 1..n = 4, got 5"):
        topk_trace([1, 2, 3, 4], 5, 2)


# SpAtten's released latency model (sim/TopKLatencyModel.scala), mean over random draws (§2.3)
RELEASED = [(1024, 32, 183), (1024, 128, 223), (1024, 307, 250), (1024, 512, 257)]
OTHER_ROWS = [(64, 16, 35), (256, 32, 73), (512, 64, 122), (4096, 32, 561)]


@pytest.mark.parametrize(("n", "k", "published"), RELEASED)
def test_select_phase_matches_the_released_model_within_5_percent(n: int, k: int, published: float) -> None:
    """Like for like: the released model counts the quick-select phase only, at ceil(n_r / P) + 3
    cycles a round; so does this comparison (2000 seeded draws: the mean's noise is about 1.5%)."""
    assert mean_select_cycles(n, k, 16, round_overhead=3, draws=2000) == pytest.approx(published, rel=0.05)


@pytest.mark.parametrize(("n", "k", "published"), OTHER_ROWS)
def test_other_rows_of_the_table_within_10_percent(n: int, k: int, published: float) -> None:
    assert mean_select_cycles(n, k, 16, round_overhead=3, draws=400) == pytest.approx(published, rel=0.10)


def test_the_rtl_block_uses_this_model() -> None:
    from rtl import topk as rtl_topk
    from rtl._params import RTLConfigError

    scores = random.Random(1).sample(range(10**6), 64)
    assert rtl_topk.topk_trace(scores, 9, 4) == topk_trace(scores, 9, 4)
    with pytest.raises(RTLConfigError, match="k must be in 1..n"):
        rtl_topk.topk_trace(scores, 0, 4)


@pytest.mark.parametrize(("n", "k", "published"), RELEASED + OTHER_ROWS)
def test_closed_form_agrees_with_the_simulated_path_and_the_table(n: int, k: int, published: float) -> None:
    """The analytical path (expected elements streamed / P + rounds x (overhead + half a row))
    against the simulated path (mean over seeded draws) and the released model's table."""
    from mapper.topk import expected_select_cycles

    closed = expected_select_cycles(n, k, 16, round_overhead=3)
    assert closed == pytest.approx(mean_select_cycles(n, k, 16, draws=1000, seed=11), rel=0.04)
    assert closed == pytest.approx(published, rel=0.05 if n == 1024 else 0.10)


def test_expected_rounds_and_visited_by_hand() -> None:
    """n = 3, k = 2 (the median): the first pivot is it with probability 1/3 (one round of 3);
    else the search goes on over the other 2, whose first pivot is it with probability 1/2 (else a
    third round of 1). Rounds: 1/3 + 2/3 x 2.5 = 2; elements streamed: 3 + 2/3 x (2 + 1/2) = 14/3.
    The enumeration of all six orders agrees."""
    import itertools

    from mapper.topk import expected_rounds, expected_visited

    assert expected_rounds(3, 2) == pytest.approx(2.0)
    assert expected_visited(3, 2) == pytest.approx(14 / 3)
    traces = [topk_trace(list(p), 2, 1) for p in itertools.permutations([1, 2, 3])]
    assert sum(t.rounds for t in traces) / 6 == pytest.approx(2.0)
    assert sum(sum(t.round_sizes) for t in traces) / 6 == pytest.approx(14 / 3)


# The released model's other columns (comparators a side P = 1, 4, 32), spatten.md §2.3
COLUMNS = {
    (64, 16): (201, 68, 30),
    (256, 32): (705, 200, 52),
    (512, 64): (1441, 393, 81),
    (1024, 32): (2246, 632, 108),
    (1024, 128): (2835, 744, 131),
    (1024, 307): (3273, 839, 146),
    (1024, 512): (3468, 913, 154),
    (4096, 32): (8833, 2196, 297),
}


@pytest.mark.parametrize(("n", "k"), list(COLUMNS))
def test_other_parallelisms_of_the_table_within_10_percent(n: int, k: int) -> None:
    for p, published in zip((1, 4, 32), COLUMNS[n, k], strict=True):
        got = mean_select_cycles(n, k, p, round_overhead=3, draws=300, seed=5)
        assert got == pytest.approx(published, rel=0.10), (n, k, p)


def test_filter_phase_closed_form_against_draws() -> None:
    """The filter phase is reported separately from the select phase (the released table has no
    filter): its closed form (rows up to the last kept element) against the seeded mean."""
    from mapper.topk import expected_filter_rows, mean_cycles

    for n, k in ((1024, 32), (1024, 307), (64, 16), (100, 3)):
        _, filt = mean_cycles(n, k, 16, draws=400, seed=2)
        assert expected_filter_rows(n, k, 16) == pytest.approx(filt, rel=0.05, abs=1.0)
