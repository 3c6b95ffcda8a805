"""On-chip networks: the words a level sends across its fanout, their multicast, hops and
spatial reductions, by Timeloop's X-Y model (its legacy network; ``nest-analysis.cpp`` and
``network-legacy.cpp`` in NVlabs/timeloop).

A level's fanout is an X x Y mesh of the next level's instances. A mapping places its spatial
loops on it: the innermost ``split`` loops along X (Timeloop's ``split``), the others along Y; the
innermost loop of each axis varies fastest. A word a level reads travels to every destination
whose coordinates differ only in loops over dimensions the tensor does not project onto: its
multicast group. Words enter at the mesh's edge, at the centre of the Y axis, run along X to the
farthest destination column, and down (and up) each column the group uses:

    hops(group) = max(h) + columns(group) * (max(0, c - min(v)) + max(0, max(v) - c)),
    c = (Y size - 1) / 2.

Unicast (a group of one) is the same formula. Every group of a uniform mapping receives the same
words, so the hops of a fanout are its words times the groups' average. An output's partial sums
cross the same tree up and down; each of the ``multicast - 1`` adds that reduce a group's
partial sums into one is a spatial reduction.

Energy, per fanout (``hop_pj``, ``router_pj``, ``reduction_pj`` on the parent level): every word
pays ``hop_pj`` per hop and ``router_pj`` per router it passes (``1 + floor(hops)``, Timeloop's
count), and every spatial reduction ``reduction_pj``. Timeloop's wire model gives ``hop_pj =
word_bits x hop length (mm) x wire energy (pJ/bit/mm)``.

>>> f = fanout_hops([("C", 4)], [], relevant={"C"}, mesh=(4, 1))  # 4 words to 4 PEs in a row
>>> f.multicast, f.groups, f.hops_per_word
(1, 4, 1.5)
>>> f = fanout_hops([("C", 4)], [], relevant=set(), mesh=(4, 1))  # one word to all 4
>>> f.multicast, f.groups, f.hops_per_word
(4, 1, 3.0)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Sequence

__all__ = ["FanoutHops", "NetworkStats", "fanout_hops", "place"]


@dataclasses.dataclass(frozen=True)
class FanoutHops:
    """One tensor across one fanout: destinations per word (``multicast``), how many groups the
    fanout's destinations form, and the average hops a word takes to its group."""

    multicast: int
    groups: int
    hops_per_word: float


@dataclasses.dataclass(frozen=True)
class NetworkStats:
    """One tensor across one level's fanout, over all the level's instances: words sent (an
    output's partial sums both ways), destinations per word, hops, routers passed and spatial
    reductions."""

    words: float
    multicast: int
    hops: float
    routers: float
    reductions: float


def place(
    spatial: Sequence[tuple[str, int]], split: int | None, mesh_x: int | None
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """The loops along X and along Y, each innermost first. ``split``: how many innermost loops lie
    along X (Timeloop's ``split``); ``None``: as many innermost loops as fit ``mesh_x`` (all of them
    when the mesh is not known)."""
    inner_first = list(reversed(spatial))
    if split is None:
        if mesh_x is None:
            split = len(inner_first)
        else:
            split, span = 0, 1
            for _d, f in inner_first:
                if span * f > mesh_x:
                    break
                span *= f
                split += 1
    return inner_first[:split], inner_first[split:]


def _axis(loops: Sequence[tuple[str, int]], relevant: Collection[str]) -> tuple[int, int, list[int]]:
    """Along one axis: the destinations of one word (the irrelevant loops' product), the offset
    of the farthest of them from the group's first, and every group's first coordinate."""
    stride = 1
    bases = [0]
    spread, far = 1, 0
    for d, f in loops:  # innermost first: the first varies fastest
        if d in relevant:
            bases = [b + i * stride for i in range(f) for b in bases]
        else:
            spread *= f
            far += (f - 1) * stride
        stride *= f
    return spread, far, bases


def fanout_hops(
    x: Sequence[tuple[str, int]],
    y: Sequence[tuple[str, int]],
    *,
    relevant: Collection[str],
    mesh: tuple[int, int] | None = None,
) -> FanoutHops:
    """Hops of a word to its multicast group across one fanout whose loops along X and Y are ``x``
    and ``y`` (innermost first), for a tensor that projects onto the dimensions ``relevant``;
    ``mesh`` is the physical X x Y (the loops' spans where larger or unknown)."""
    mx, far_x, bases_x = _axis(x, relevant)
    my, far_y, bases_y = _axis(y, relevant)
    span_y = math.prod(f for _d, f in y)
    v_size = max(span_y, mesh[1] if mesh else 1)
    c = (v_size - 1) / 2
    sum_h = sum(b + far_x for b in bases_x)
    sum_v = sum(max(0.0, c - b) + max(0.0, b + far_y - c) for b in bases_y)
    groups = len(bases_x) * len(bases_y)
    total = len(bases_y) * sum_h + len(bases_x) * mx * sum_v
    return FanoutHops(multicast=mx * my, groups=groups, hops_per_word=total / groups)
