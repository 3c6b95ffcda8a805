"""Tile-by-tile DRAM transfers (``DRAM.transfers = "tile"``) and the buffer's read latency: hand-
computed toy cases, the jump over repeating tiles against simulating every tile, and the presets
left as they were."""

from __future__ import annotations

import pytest

import einsum
import mapper
import sim
from mapper.arch import ArchError
from mapper.search import SearchOptions, search
from sim.engine import Task, Transfers, simulate_kernel


def _task(name: str, cycles: float, *, final: bool = False, dram: bool = True) -> Task:
    return Task(name=name, unit="u", cycles=cycles, latency=0, deps=(), prev=(), final=final,
                head=False, reads_dram=dram)  # fmt: skip


def test_transfers_by_hand() -> None:
    """One unit; T takes 3 cycles a tile, AV 2 after each query tile; 2 query tiles of 3 steps,
    both in one group. Transfers: Q 4 cycles at step 0, K 2 cycles at every step of query tile 0,
    latency 5. Tile 0 moves 0..6, done 11, T 11..14. Tile 1 moves 6..8, done 13, T 14..17. Tile 2
    may start once tile 0 has (11): moves 11..13, done 18, T 18..21, then AV 21..23. Tile 3 (Q
    only) once tile 1 has started (14): 14..18, done 23, T 23..26. Tiles 4 and 5 move nothing:
    T 26..29, 29..32, AV 32..34; its last result leaves on the write channel a cycle later (35), or
    ``drain`` cycles after that AV's first (32 + 1 + 7)."""
    tasks = [_task("T", 3), _task("AV", 2, final=True, dram=False)]
    per_tile = Transfers(query=4, key=2, group=2, latency=5)
    assert [per_tile.cycles(g, 3) for g in range(6)] == [6, 2, 2, 4, 0, 0]
    t = simulate_kernel(tasks, query_tiles=2, steps=3, lookahead=0, interleave=True,
                        dram_cycles_per_tile=per_tile, extrapolate=False)  # fmt: skip
    assert t.cycles == 35
    drained = Transfers(query=4, key=2, group=2, latency=5, drain=7)
    t = simulate_kernel(tasks, query_tiles=2, steps=3, lookahead=0, interleave=True,
                        dram_cycles_per_tile=drained, extrapolate=False)  # fmt: skip
    assert t.cycles == 32 + 1 + 7


def test_group_reloads_key_side_inputs() -> None:
    per_tile = Transfers(query=1, key=3, group=2, latency=0)
    assert [per_tile.cycles(g, 2) for g in range(8)] == [4, 3, 1, 0, 4, 3, 1, 0]


@pytest.mark.parametrize("interleave", [True, False])
@pytest.mark.parametrize(("query_tiles", "steps", "group"), [(9, 13, 9), (6, 20, 2), (1, 60, 1)])
def test_jumps_are_exact_with_tile_transfers(
    interleave: bool, query_tiles: int, steps: int, group: int
) -> None:
    arch = mapper.preset("fusemax_tile", array_dim=4, buffer_bytes=1 << 20)
    c = einsum.library.get("attention_1pass")
    sizes = {"P": 4 * query_tiles, "M": 4 * steps, "E": 8, "F": 8}
    s = search(c, arch, SearchOptions(fusion="fused", sizes=sizes, interleave=interleave))
    from mapper.schedule import einsum_facts, layout
    from mapper.timing import kernel_tasks as _tasks

    facts = {f.name: f for f in einsum_facts(c)}
    tile = {"P": 4, "M0": 4, "M1": 1, "M": sizes["M"], "E": 8, "F": 8}
    tasks = _tasks(s.kernels[0], facts, s, arch, tile, False, layout(c), c, False)
    kw = {"query_tiles": query_tiles, "steps": steps, "lookahead": s.lookahead, "interleave": interleave,
          "dram_cycles_per_tile": Transfers(query=10.5, key=40.0, group=group, latency=17, drain=9)}  # fmt: skip
    jumped = simulate_kernel(tasks, **kw)
    full = simulate_kernel(tasks, **kw, extrapolate=False)
    assert jumped.cycles == pytest.approx(full.cycles, rel=1e-12)


def test_read_latency_is_paid_by_einsums_that_stream_inputs() -> None:
    c = einsum.library.get("attention_1pass")
    w = sim.Workload(
        model="custom", seq=64, batch=1, heads=1, rank_sizes=(("P", 64), ("M", 64), ("E", 16), ("F", 8))
    )
    base = mapper.preset("fusemax_tile", array_dim=8)
    slow = base.replace(buffer=base.buffer.__class__(**{**base.buffer.__dict__, "read_latency": 3}))
    s = search(c, base, SearchOptions(fusion="fused", sizes=w.sizes))
    a, b = sim.evaluate(c, s, base, w), sim.evaluate(c, s, slow, w)
    for name in a.per_einsum:
        extra = b.per_einsum[name]["cycles_per_tile"] - a.per_einsum[name]["cycles_per_tile"]
        assert extra == (2 if name in ("QK", "SLNV") else 0), name  # they read Q, K and V


def test_presets_keep_the_artifacts_view() -> None:
    for name in ("fusemax", "flat", "unfused"):
        arch = mapper.preset(name)
        assert arch.dram.transfers == "average" and arch.dram.latency_cycles == 0
        assert arch.buffer.read_latency == 0


def test_bad_dram_and_buffer_settings_are_typed_errors() -> None:
    with pytest.raises(ArchError, match="dram: transfers must be one of average, tile, found 'burst'"):
        mapper.arch.DRAM(bandwidth_bytes_per_s=1e9, transfers="burst")
    with pytest.raises(ArchError, match="latency_cycles"):
        mapper.arch.DRAM(bandwidth_bytes_per_s=1e9, latency_cycles=-1)
    with pytest.raises(ArchError, match="read_latency"):
        mapper.arch.Buffer(capacity_bytes=1 << 20, read_latency=-2)
    with pytest.raises(ArchError, match="at most one beat a cycle"):
        mapper.preset("fusemax_tile", dram_beats_per_cycle=1.5)


def test_tile_preset_round_trips_through_json(tmp_path) -> None:  # type: ignore[no-untyped-def]
    arch = mapper.preset("fusemax_tile", array_dim=4, dram_latency_cycles=12.5)
    path = tmp_path / "tile.json"
    arch.save(path)
    again = mapper.arch.load(path)
    assert again.dram == arch.dram and again.buffer.read_latency == 1
