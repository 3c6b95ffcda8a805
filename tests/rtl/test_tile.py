"""``rtl.AttentionTile``: a whole head bit-exact against ``golden.fixed.attention_1pass`` under a
DRAM with random latency and back-pressure, and its cycles against ``sim.evaluate`` with the same
ArchSpec (exactly, where the DRAM is deterministic; within 1% where it is random)."""

from __future__ import annotations

import dataclasses

import pytest

import einsum
from einforge.rtlflow.tile import TOLERANCE, buffer_for, model_attention, run_attention, tile_arch
from rtl._params import RTLConfigError
from rtl.runner import simulator_available
from rtl.tile import TASKS, TASKS_2D, AttentionTile, DramLayout


def _tile(**kw: object) -> AttentionTile:
    t = AttentionTile(**kw)  # type: ignore[arg-type]
    t._MustUse__silence = True  # built for its attributes only
    return t


@pytest.mark.parametrize(
    ("kw", "text"),
    [
        ({"rows": 4, "cols": 8}, "the 2D array must be square"),
        ({"rows": 4, "p": 62}, "p (queries) = 62 must be a multiple of the array's 4 rows"),
        ({"rows": 8, "m": 8}, "m (keys) = 8 must span at least 2 key tiles of 8 rows"),
        ({"reduction": "heap"}, "reduction must be one of chain, registered_tree, tree, got 'heap'"),
        (
            {"rows": 4, "p": 64, "m": 64, "e": 8, "f": 8, "buffer_bytes": 1024},
            "buffer_bytes = 1024 is too small",
        ),
        ({"lookahead": 9}, "parameter lookahead must be an integer in 0..8, got 9"),
        ({"div_latency": -1}, "parameter div_latency must be an integer in 0..32, got -1"),
    ],
)
def test_bad_parameters_are_typed_errors(kw: dict[str, object], text: str) -> None:
    with pytest.raises(RTLConfigError, match="attention tile: ") as info:
        AttentionTile(**kw)  # type: ignore[arg-type]
    assert text in str(info.value)


def test_from_arch_refuses_what_the_tile_does_not_build() -> None:
    arch = tile_arch(array=4)
    with pytest.raises(RTLConfigError, match="buffer.read_latency = 0"):
        AttentionTile.from_arch(
            arch.replace(buffer=dataclasses.replace(arch.buffer, read_latency=0)), p=16, m=16, e=4, f=4
        )
    one_d = dataclasses.replace(arch.array("1d"), cols=8)
    with pytest.raises(RTLConfigError, match="one PE per column of the 2D array"):
        AttentionTile.from_arch(arch.replace(arrays=(arch.array("2d"), one_d)), p=16, m=16, e=4, f=4)


def test_a_run_must_fit_the_tile() -> None:
    tile = _tile(rows=4, p=32, m=32, e=4, f=4)
    tile.check_run(16, 8)
    with pytest.raises(
        RTLConfigError, match=r"p \(queries\) = 64 is more than the tile was built for \(32\)"
    ):
        tile.check_run(64, 32)
    with pytest.raises(RTLConfigError, match="m \\(keys\\) = 4 must span at least 2 key tiles"):
        tile.check_run(16, 4)


def test_tile_beats_are_the_models_transfers() -> None:
    """The RTL's loader and the simulator's tile-by-tile transfers move the same beats per tile."""
    from mapper.schedule import layout
    from mapper.timing import kernel_transfers as _transfers

    arch = tile_arch(array=4, dram_bandwidth=1.0, buffer_bytes=buffer_for(4, 32, 8, 6))
    report, schedule = model_attention(arch, p=16, m=32, e=8, f=6)
    c = einsum.library.get("attention_1pass")
    full = {"P": 16, "M": 32, "M0": 4, "M1": 8, "E": 8, "F": 6}
    moves = _transfers(c, schedule, 0, full, 4, 8, 2, layout(c), arch)  # cycles at one beat a cycle
    lay = DramLayout(width=4, p=16, m=32, e=8, f=6)
    assert [moves.cycles(g, 8) for g in range(32)] == [lay.tile_beats(g) for g in range(32)]
    assert moves.drain == 6  # the output: F beats a query tile


def test_dram_layout_and_tile_beats() -> None:
    lay = DramLayout(width=4, p=16, m=32, e=8, f=6)
    assert (lay.p1, lay.m1, lay.k_base, lay.v_base, lay.av_base) == (4, 8, 32, 96, 144)
    # query tile 0 loads Q at its first key tile and K and V at every one; later ones Q only
    assert [lay.tile_beats(g) for g in (0, 1, 7, 8, 9, 16)] == [22, 14, 14, 8, 0, 8]


@pytest.mark.parametrize("interleave", [True, False])
@pytest.mark.parametrize("reduction", ["chain", "registered_tree", "tree"])
@pytest.mark.parametrize(("e", "f"), [(16, 24), (64, 8)])
def test_task_cycles_are_the_models(interleave: bool, reduction: str, e: int, f: int) -> None:
    """One timing description: each Einsum's array and cycles per tile in the model are the tile's
    (with E = 64, F = 8 the mapper alone would move LM and SLD to the idle 1D array); a pipelined
    divider's depth is paid once a query tile by AV on both sides."""
    div = 4 if interleave else 0
    arch = tile_arch(array=8, reduction=reduction, buffer_bytes=buffer_for(8, 128, e, f), div_latency=div)
    report, schedule = model_attention(arch, p=64, m=128, e=e, f=f, interleave=interleave)
    tile = _tile(rows=8, p=64, m=128, e=e, f=f, degree=arch.array("2d").exp_macs - 2, reduction=reduction,
                 div_latency=div)  # fmt: skip
    cycles = tile.task_cycles()
    assert {t: report.per_einsum[t]["cycles_per_tile"] for t in TASKS} == cycles
    assert {t: report.per_einsum[t]["unit"] for t in TASKS} == {
        t: "2d" if t in TASKS_2D else "1d" for t in TASKS
    }
    assert schedule.tile == {"P": 8, "M0": 8} and schedule.query_tiles_on_chip == (8,)
    assert (schedule.lookahead > 0) == interleave  # the mapper chooses it; the tile runs it


def _need(sim: str) -> None:
    if not simulator_available(sim):
        pytest.skip(f"{sim} not installed")


@pytest.mark.rtl
@pytest.mark.parametrize(
    ("interleave", "div_latency"),
    [
        (True, 0),
        pytest.param(False, 0, marks=pytest.mark.slow),
        pytest.param(True, 3, marks=pytest.mark.slow),
    ],
)
def test_deterministic_dram_cycles_equal_the_model(interleave: bool, div_latency: int) -> None:
    """A DRAM with a fixed latency and no back-pressure: the model's cycles are the RTL's, exactly,
    with FuseMax's interleaving and without, with a combinational divider and a pipelined one
    (one build serves both sequence lengths)."""
    _need("verilator")
    for seq in (32, 48):
        r = run_attention(array=4, seq=seq, e=8, f=8, interleave=interleave, dram_bandwidth=1.0,
                          dram_latency=7, dram_jitter=0, max_seq=48, seed=seq,
                          div_latency=div_latency)  # fmt: skip
        assert r["mismatches"] == 0, r["first_mismatches"]
        assert r["measured_cycles"] == r["model_cycles"], r
        assert all(v["measured_busy_cycles"] == v["model_busy_cycles"] for v in r["per_einsum"].values())


@pytest.mark.rtl
def test_random_dram_bit_exact_and_within_tolerance() -> None:
    """Random latency and back-pressure (the default DRAM model), a 5-stage divider: bit-exact,
    within 1%."""
    _need("verilator")
    r = run_attention(array=4, seq=64, e=8, f=16, seed=3, reduction="registered_tree", div_latency=5)
    assert r["mismatches"] == 0 and r["compared_beats"] == 64 * 16 // 4
    assert abs(r["model_error"]) <= TOLERANCE and r["passed"], r


@pytest.mark.rtl
@pytest.mark.slow
@pytest.mark.parametrize(
    ("array", "seq", "e", "f", "interleave"),
    [(4, 128, 64, 8, True), (8, 64, 8, 64, False), (8, 256, 16, 16, True)],
)
def test_whole_head_five_seeds(array: int, seq: int, e: int, f: int, interleave: bool) -> None:
    _need("verilator")
    for seed in range(1, 6):
        r = run_attention(array=array, seq=seq, e=e, f=f, interleave=interleave, seed=seed, reduction="tree")
        assert r["mismatches"] == 0, r["first_mismatches"]
        assert abs(r["model_error"]) <= TOLERANCE, r


@pytest.mark.rtl
@pytest.mark.slow
def test_icarus_runs_the_same_head() -> None:
    _need("icarus")
    r = run_attention(array=4, seq=32, e=8, f=8, sim_name="icarus", dram_bandwidth=1.0, dram_jitter=0)
    assert r["mismatches"] == 0 and r["measured_cycles"] == r["model_cycles"], r
