"""Hand-computed toy cases for each cost term: cycles per Einsum on a 2 x 2 array, the systolic
formulas, DRAM traffic, energy per action, utilisation, and the exact steady-state extrapolation."""

import pytest

import einsum
import mapper
import sim
from mapper import SearchOptions, search
from mapper.schedule import einsum_cycles, einsum_facts, systolic_gemm_cycles
from sim.engine import simulate_kernel

LIB = einsum.library.get
TOY = sim.Workload(model="toy", seq=8, batch=1, heads=1, E=2, F=2)


def _facts(name):
    return {f.name: f for f in einsum_facts(LIB(name))}


def test_cycles_per_einsum_on_a_2x2_array():
    arch = mapper.fusemax(array_dim=2)
    a2, a1 = arch.array("2d"), arch.array("1d")
    f = _facts("attention_1pass")
    tile = {"P": 2, "M0": 2, "M1": 1, "M": 8, "E": 2, "F": 2}
    sp2, sp1 = ("M0", "P"), ("P",)
    # QK: 2 x 2 scores x (E = 2 MACs + 1 scale) over 4 PEs; SLN: subtract + 6-MAC exp
    assert einsum_cycles(f["QK"], a2, sp2, tile) == 3
    assert einsum_cycles(f["LM"], a2, sp2, tile) == 1
    assert einsum_cycles(f["SLN"], a2, sp2, tile) == 7
    assert einsum_cycles(f["SLNV"], a2, sp2, tile) == 2
    # the 1D array: one query per PE
    assert einsum_cycles(f["PRM"], a1, sp1, tile) == 7
    assert einsum_cycles(f["SPNV"], a1, sp1, tile) == 2
    assert einsum_cycles(f["AV"], a1, sp1, tile) == 2
    # FLAT's 1D PE chains the subtract into its exp unit: one cycle per element
    flat1 = mapper.flat(array_dim=2).array("1d")
    f3 = _facts("attention_3pass")
    assert einsum_cycles(f3["SN"], flat1, sp1, {"P": 2, "M": 8, "E": 2, "F": 2}) == 8


@pytest.mark.parametrize(
    ("m", "n", "k", "r", "c"),
    [(4, 4, 8, 4, 4), (8, 4, 3, 4, 4), (5, 7, 16, 4, 2), (256, 256, 64, 256, 256), (100, 300, 17, 32, 64)],
)
def test_systolic_formulas(m, n, k, r, c):
    folds_os = -(-m // r) * -(-n // c)
    assert systolic_gemm_cycles(m, n, k, r, c, "os") == folds_os * (r + c + k - 2) - 1
    folds_ws = -(-k // r) * -(-n // c)
    assert systolic_gemm_cycles(m, n, k, r, c, "ws") == folds_ws * (2 * r + c + m - 2) - 1
    folds_is = -(-k // r) * -(-m // c)
    assert systolic_gemm_cycles(m, n, k, r, c, "is") == folds_is * (2 * r + c + n - 2) - 1


def test_systolic_option_charges_fill_and_drain():
    arch = mapper.fusemax(array_dim=4)
    f = _facts("matmul")["Z"]
    sizes = {"M": 4, "N": 4, "K": 8}
    assert einsum_cycles(f, arch.array("2d"), ("N", "M"), sizes) == 8
    assert (
        einsum_cycles(f, arch.array("2d"), ("N", "M"), sizes, systolic=True)
        == systolic_gemm_cycles(4, 4, 8, 4, 4, "os")
        == 13
    )


def test_systolic_option_with_the_reduced_rank_down_the_rows_is_weight_stationary():
    # Z[m, n] = A[m, k] B[k, n], K down the 4 rows and N across the 4 columns: the 4 x 4 block of
    # B stays in the array and A's 8 rows stream through it (SCALE-Sim's ws with M = 8 streamed):
    # one fold of 2R + C + T - 2 = 8 + 4 + 8 - 2 cycles, less one. The loop nest's systolic count
    # is the same. (The tiled kernels once swapped M and N here: two folds, 27 cycles.)
    from mapper.nest import nest_problem, systolic_cycles

    arch = mapper.fusemax(array_dim=4)
    f = _facts("matmul")["Z"]
    sizes = {"M": 8, "N": 4, "K": 4}
    tiled = einsum_cycles(f, arch.array("2d"), ("K", "N"), sizes, systolic=True)
    assert tiled == systolic_gemm_cycles(8, 4, 4, 4, 4, "ws") == 17
    nest = nest_problem(LIB("matmul"), f, arch.array("2d"), arch, sizes)
    assert systolic_cycles(nest, ("K", "N")) == tiled


def test_a_weight_stationary_block_reduced_in_time_too_is_loaded_once_a_step():
    # The 2-pass's AV[p, f] = A[p, m1, m0] BV[m1, m0, f]: M0 down the rows (weight stationary), P
    # across the columns, and the key blocks M1 reduced in time. Each M1 step holds its own block
    # of A, filled and drained: 16 blocks of one ws fold each. (Until 2026-12 one fold was charged
    # for all 16, 830 cycles for 1,024 cycles of MACs, fewer than the array can do.)
    arch = mapper.fusemax()
    f = _facts("attention_2pass")["AV"]
    tile = {"P": 256, "M0": 256, "M1": 16, "F": 64}
    macs = einsum_cycles(f, arch.array("2d"), ("M0", "P"), tile)
    ws = einsum_cycles(f, arch.array("2d"), ("M0", "P"), tile, systolic=True)
    assert macs == 16 * 64
    assert ws == 16 * systolic_gemm_cycles(64, 256, 256, 256, 256, "ws") >= macs


def test_toy_traffic_energy_and_latency():
    arch = mapper.fusemax(array_dim=2, buffer_bytes=1 << 20)
    c = LIB("attention_1pass")
    s = search(c, arch, SearchOptions(fusion="fused", sizes=TOY.sizes))
    r = sim.evaluate(c, s, arch, TOY)
    # all four query tiles fit on chip: Q, K, V read once, AV written once: 4 x 8 x 2 words x 2 bytes
    assert r.traffic_bytes == 4 * 8 * 2 * 2
    # compute energy of QK: 8 x 8 scores x 3 MACs
    assert r.per_component_pj["2d.mac"] >= 8 * 8 * 3 * arch.energy.mac_pj
    # the 1D array is the bottleneck: 4 query tiles x 4 steps x (1+7+1+1+2+2) + 4 x AV(2), plus the
    # pipeline's fill (the first QK, LM and the 2-row max chain before the first RM)
    per_tile_1d = 1 + 7 + 1 + 1 + 2 + 2
    busy_1d = 4 * 4 * per_tile_1d + 4 * 2
    assert r.busy_cycles["1d"] == busy_1d
    # plus the pipeline's start: the first DRAM transfer, QK, LM and the 2-row max chain, SLN
    assert busy_1d < r.latency_cycles < busy_1d + 2 * (3 + 1 + 2 + 7)
    assert r.utilization["1d"] == pytest.approx(busy_1d / r.latency_cycles)
    assert r.macs == sum(
        x.at({"P": 8, "M": 8, "M1": 4, "M0": 2, "E": 2, "F": 2})["mac"] for x in einsum.op_counts(c)
    )


def test_toy_traffic_when_few_query_tiles_fit():
    # FLAT's row blocks: the score rows of 2 queries per pass over K and V, so the 4 query tiles of 2
    # rows take 4 passes. Q is read once and AV written once (8 x 2 words each); K and V (8 x 2
    # words each) are read once per pass; the score rows stay in the buffer.
    arch = mapper.flat(array_dim=2, buffer_bytes=1 << 20, score_row_blocks=(2, 4))
    c = LIB("attention_3pass")
    s = search(c, arch, SearchOptions(fusion="fused", sizes=TOY.sizes, score_rows=2))
    assert s.query_tiles_on_chip == (1,) and s.score_rows == 2
    r = sim.evaluate(c, s, arch, TOY)
    assert r.traffic_bytes == (2 * 8 * 2 + 4 * 2 * 8 * 2) * 2
    assert r.score_rows == 2
    # the search's own choice: the whole head (8 rows) fits, and one pass over K and V is cheapest
    s = search(c, arch, SearchOptions(fusion="fused", sizes=TOY.sizes))
    assert s.query_tiles_on_chip == (4,) and s.score_rows == 8
    assert sim.evaluate(c, s, arch, TOY).traffic_bytes == 4 * 8 * 2 * 2


@pytest.mark.parametrize("interleave", [True, False])
@pytest.mark.parametrize(("query_tiles", "steps"), [(1, 50), (7, 1), (6, 13)])
def test_steady_state_jump_is_exact(interleave, query_tiles, steps):
    """The engine jumps over tiles once the state repeats; simulating every tile must agree."""
    arch = mapper.fusemax(array_dim=2, buffer_bytes=1 << 20)
    c = LIB("attention_1pass")
    s = search(c, arch, SearchOptions(fusion="fused", sizes=TOY.sizes, interleave=interleave))
    facts = {f.name: f for f in einsum_facts(c)}
    from mapper.schedule import layout
    from mapper.timing import kernel_tasks as _tasks

    tasks = _tasks(
        s.kernels[0],
        facts,
        s,
        arch,
        {"P": 2, "M0": 2, "M1": 1, "M": 8, "E": 2, "F": 2},
        False,
        layout(c),
        c,
        False,
    )
    kw = {
        "query_tiles": query_tiles,
        "steps": steps,
        "lookahead": s.lookahead,
        "interleave": interleave,
        "dram_cycles_per_tile": 0.7,
    }
    jumped = simulate_kernel(tasks, **kw)
    full = simulate_kernel(tasks, **kw, extrapolate=False)
    assert jumped.cycles == pytest.approx(full.cycles, rel=1e-12)
    assert full.simulated_tiles == query_tiles * steps
    if query_tiles * steps >= 50:
        assert jumped.simulated_tiles < full.simulated_tiles


def test_a_schedule_that_cannot_progress_is_a_typed_error():
    a = sim.engine.Task(
        name="A",
        unit="2d",
        cycles=1,
        latency=0,
        deps=("B",),
        prev=(),
        final=False,
        head=False,
        reads_dram=False,
    )
    b = sim.engine.Task(
        name="B",
        unit="1d",
        cycles=1,
        latency=0,
        deps=("A",),
        prev=(),
        final=False,
        head=False,
        reads_dram=False,
    )
    with pytest.raises(
        mapper.ScheduleError,
        match=r"the schedule cannot make progress at tile 0: each array "
        r"waits on a result that comes later in another's program "
        r"\(1d: B, 2d: A\)",
    ):
        simulate_kernel([a, b], query_tiles=1, steps=1, lookahead=0, interleave=True, dram_cycles_per_tile=0)
