"""The general mapper: any cascade on any array shape, loop nests by hand, masks, the search's
certificate, and every report's invariants on random cascades and architectures."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import einsum
import mapper
import sim
from mapper.masks import key_boxes, mask_skip
from mapper.nest import LoopNest, nest_cost, nest_problem, search_nests, space_size
from mapper.schedule import einsum_facts
from mapper.search import SearchOptions, explore

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "cascades"


def _file(name: str) -> einsum.Cascade:
    return einsum.parse((EXAMPLES / f"{name}.ein").read_text())


def arch_64x32() -> mapper.ArchSpec:
    a = mapper.fusemax()
    arrays = tuple(dataclasses.replace(x, rows=64 if x.is_2d else 1, cols=32) for x in a.arrays)
    return a.replace(name="fusemax-64x32", arrays=arrays)


def arch_1d() -> mapper.ArchSpec:
    a = mapper.fusemax()
    return a.replace(name="1d-only", arrays=tuple(x for x in a.arrays if not x.is_2d))


CASES = [
    ("linear", lambda: _file("linear_attention"), "P=1024,M=1024,E=64,F=64,B=2,H=12"),
    ("sigmoid", lambda: _file("sigmoid_attention"), "P=1024,M=1024,E=64,F=64,B=2,H=12"),
    ("scan", lambda: _file("prefix_scan"), "I=4096,F=64,B=8"),
    ("gemm_odd", lambda: einsum.library.get("matmul"), "M=1000,K=777,N=333"),
    ("gemm_decode", lambda: einsum.library.get("matmul"), "M=1,K=4096,N=4096"),
    ("decode", lambda: einsum.library.get("attention_1pass"), "P=1,M=4096,E=128,F=128,B=8,H=32"),
    ("cross", lambda: einsum.library.get("attention_2pass"), "P=512,M=2048,E=64,F=64,B=8,H=12"),
    ("causal", lambda: einsum.library.get("attention_3pass_causal"), "P=2048,M=2048,E=64,F=64,H=12"),
    ("window", lambda: _file("sliding_window_attention"), "P=4096,M=4096,E=64,F=64,H=12"),
    ("softmax", lambda: einsum.library.get("softmax"), "P=1000,M=1000"),
    ("layernorm", lambda: einsum.library.get("layernorm"), "P=1000,M=768"),
]


@pytest.mark.parametrize("arch", [mapper.fusemax, arch_64x32, arch_1d], ids=["fusemax", "64x32", "1d"])
@pytest.mark.parametrize(("name", "cascade", "sizes"), CASES, ids=[c[0] for c in CASES])
def test_every_cascade_maps_and_simulates(name, cascade, sizes, arch) -> None:  # type: ignore[no-untyped-def]
    a, c = arch(), cascade()
    w = sim.workload(sizes=sizes)
    found = explore(c, a, SearchOptions(sizes=w.sizes))
    r = sim.evaluate(c, found.best, a, w)  # raises if any invariant fails
    assert r.latency_cycles >= found.bound[0] * w.instances * (1 - 1e-9)
    for arr in a.arrays:
        ops = sum(
            max(v for k, v in e.items() if k == "busy_cycles")
            for n, e in r.per_einsum.items()
            if e["unit"] == arr.name
        )
        assert ops == pytest.approx(r.busy_cycles[arr.name])
        assert 0 <= r.spatial_utilization[arr.name] <= 1 and 0 <= r.pe_utilization[arr.name] <= 1


def test_every_library_cascade_evaluates() -> None:
    sizes = {"P": 64, "M": 112, "E": 64, "F": 64, "K": 96, "N": 80, "L": 3, "H": 2, "C": 8, "P0": 4}
    blocks = {n: {"M0": 28} for n in ("seer_attention", "landmark_attention", "lightning_attention2")}
    for name in einsum.library.names():
        c = einsum.library.get(name)
        given = {r: v for r, v in sizes.items() if r in c.ranks or r in ("M", "P")} | blocks.get(name, {})
        w = sim.workload(sizes=given)
        found = explore(c, mapper.fusemax(), SearchOptions(sizes=w.for_cascade(c).sizes))
        r = sim.evaluate(c, found.best, mapper.fusemax(), w)
        if name in blocks:
            assert found.best.tile.get("M0", 28) == 28  # the block size given is kept
        assert r.latency_s > 0


def test_a_recurrence_nest_reads_what_its_step_reads() -> None:
    """Aaren's scan as loop nests: the step RN[f, m + 1] = ... V[m, f] reads V (the nest once took
    the init statement RN[f, m = 0] = 0 and read nothing, so V's traffic went missing and the
    report's compulsory-traffic check failed)."""
    c = einsum.library.get("aaren")
    w = sim.workload(sizes={"M": 700, "E": 64, "F": 64})
    r = sim.evaluate(c, explore(c, mapper.fusemax(), SearchOptions(sizes=w.sizes)).best, mapper.fusemax(), w)
    assert r.traffic_bytes == 2 * (64 + 700 * 64 * 3)  # Q, K, V read once, O written once


def test_a_semantic_partition_needs_its_block_size() -> None:
    c = einsum.library.get("agent_attention")
    with pytest.raises(mapper.ScheduleError, match=r"partitions P -> P1, P0: give the block size P0"):
        explore(c, mapper.fusemax(), SearchOptions(sizes={"P": 64, "M": 64, "E": 8, "F": 8}))


def test_linear_attention_no_longer_charges_kv_per_query_tile() -> None:
    """KV[e, f] = K[m, e] V[m, f] does not iterate the query rank: it runs once per head as its own
    loop nest, on the array the search picks, not once per query tile."""
    c, a = _file("linear_attention"), mapper.fusemax()
    w = sim.workload(sizes="P=1024,M=1024,E=64,F=64,B=64,H=12")
    s = explore(c, a, SearchOptions(sizes=w.sizes)).best
    assert "KV" in s.nests
    r = sim.evaluate(c, s, a, w)
    kv = r.per_einsum["KV"]
    # 1024 x 64 x 64 MACs per head on at most 65,536 PEs: at least 64 cycles, at most a few hundred
    assert 64 * w.instances <= kv["busy_cycles"] <= 1024 * w.instances
    assert r.latency_s < 0.01  # the issue measured 214 ms before


def test_decode_reports_spatial_utilisation_apart_from_busy_time() -> None:
    """One query on 256 columns: the 2D array may be busy most of the time, but at most 1 of its
    256 columns works in the fused tiling; spatial utilisation says so."""
    c, a = einsum.library.get("attention_1pass"), mapper.fusemax()
    w = sim.workload(sizes="P=1,M=4096,E=128,F=128,B=8,H=32")
    s = explore(c, a, SearchOptions(sizes=w.sizes, fusion="fused")).best
    r = sim.evaluate(c, s, a, w)
    assert r.spatial_utilization["2d"] <= 1 / 256 + 1e-12
    assert r.pe_utilization["2d"] <= r.spatial_utilization["2d"]


# -- loop nests by hand ---------------------------------------------------------------------------


def _toy_arch(rows: int, cols: int, capacity: int = 1 << 20) -> mapper.ArchSpec:
    a = mapper.fusemax()
    arr = dataclasses.replace([x for x in a.arrays if x.is_2d][0], rows=rows, cols=cols)
    return a.replace(
        arrays=(arr,),
        buffer=mapper.Buffer(
            capacity_bytes=capacity, read_pj_per_word=1.0, write_pj_per_word=2.0, area_um2=1.0, leakage_mw=0.0
        ),
        dram=mapper.DRAM(bandwidth_bytes_per_s=1e18, pj_per_bit=0.5),
    )


def test_loop_nest_cost_by_hand() -> None:
    """Z[m, n] = A[m, k] B[k, n], M = 4, N = 6, K = 5 on a 2 x 3 array, M and N across it.

    Trips: M 2 folds, N 2 folds, K 5. Compute = 2 x 2 x 5 = 20 cycles. With every tile 1 and the
    order M > N > K: A (M, K) is refetched over N (outside K): DRAM 20 x 2 = 40 words; B (K, N)
    over M: 30 x 2 = 60; Z (M, N) once: 24. Buffer reads: A 40, B 60 (no inner loops), Z drained
    24; writes: fills 40 + 60, Z 24.
    """
    c = einsum.library.get("matmul")
    arch = _toy_arch(2, 3)
    f = einsum_facts(c)[0]
    p = nest_problem(c, f, arch.arrays[0], arch, {"M": 4, "N": 6, "K": 5})
    cost = nest_cost(p, LoopNest("Z", "2d", ("M", "N"), {"M": 1, "N": 1, "K": 1}, ("M", "N", "K")))
    assert cost.compute_cycles == 20
    assert cost.dram_words == 40 + 60 + 24
    assert cost.buffer_reads == 40 + 60 + 24
    assert cost.buffer_writes == 40 + 60 + 24
    assert cost.spatial_utilization == pytest.approx(4 * 6 * 5 / (6 * 20))
    # the whole problem in one buffer tile: every tensor fetched once
    whole = nest_cost(p, LoopNest("Z", "2d", ("M", "N"), {"M": 2, "N": 2, "K": 5}, ("M", "N", "K")))
    assert whole.dram_words == 20 + 30 + 24
    # K outermost: with Z wholly in the buffer (tiles M 2, N 2) it is written once ...
    kept = nest_cost(p, LoopNest("Z", "2d", ("M", "N"), {"M": 2, "N": 2, "K": 1}, ("K", "M", "N")))
    assert kept.dram_words == 20 + 30 + 24
    # ... with half of Z in the buffer, its partial sums go out and come back over the 5 K steps
    psum = nest_cost(p, LoopNest("Z", "2d", ("M", "N"), {"M": 1, "N": 2, "K": 1}, ("K", "M", "N")))
    assert psum.dram_words == 20 + 30 + 24 * (2 * 5 - 1)


def test_exhaustive_search_is_certified_and_agrees_with_brute_force() -> None:
    c = einsum.library.get("matmul")
    arch = _toy_arch(2, 3, capacity=64)  # 32 words: the capacity binds
    f = einsum_facts(c)[0]
    p = nest_problem(c, f, arch.arrays[0], arch, {"M": 12, "N": 10, "K": 9})
    for objective in ("latency", "energy", "edp"):
        found = search_nests(p, objective=objective)
        full = search_nests(p, objective=objective, pareto=True)  # no pruning: every point
        assert found.certified and full.evaluated == space_size(p)
        assert found.evaluated + found.pruned == full.evaluated
        assert found.best[1].objective(objective) == pytest.approx(full.best[1].objective(objective))
        assert found.bound <= found.best[1].objective(objective) * (1 + 1e-12)
        assert found.best[1].buffer_words_held <= 32
    sampled = search_nests(p, budget=200, seed=1)
    assert not sampled.certified and sampled.evaluated == 200
    assert sampled.best[1].latency_cycles >= search_nests(p).best[1].latency_cycles


@pytest.mark.slow  # CI's slow step runs it (.ci/run)
def test_search_returns_top_n_and_a_pareto_set() -> None:
    c = einsum.library.get("attention_1pass")
    w = sim.workload("BERT", "4K")
    found = explore(c, mapper.fusemax(), SearchOptions(sizes=w.sizes, top_n=5, objective="edp"))
    assert len(found.top) == 5
    edps = [t.estimate.latency_cycles * t.estimate.energy_pj for t in found.top]
    assert edps == sorted(edps)
    lat = [p.estimate.latency_cycles for p in found.pareto]
    en = [p.estimate.energy_pj for p in found.pareto]
    assert lat == sorted(lat) and en == sorted(en, reverse=True)
    with pytest.raises(
        mapper.ScheduleError,
        match="no schedule of attention_1pass on 'fusemax' meets max_latency_cycles = 10",
    ):
        explore(c, mapper.fusemax(), SearchOptions(sizes=w.sizes, max_latency_cycles=10))
    weighted = explore(
        c, mapper.fusemax(), SearchOptions(sizes=w.sizes, objective={"latency": 1, "energy": 1})
    )
    assert weighted.objective == "weighted"


def test_certified_optimum_at_bert_1k_is_fusemax_own_schedule() -> None:
    """The search costs every schedule of the space (fused tilings x bindings, and the layer-by-
    layer schedule) and certifies the optimum; FuseMax's own binding (its artifact's: the 2D array
    runs QK, LM, SLN, SLD and SLNV, the 1D array RM, PRM, SPD, RD, SPNV, RNV and AV) is that
    optimum."""
    c, a = einsum.library.get("attention_1pass"), mapper.fusemax()
    w = sim.workload("BERT", "1K")
    found = explore(c, a, SearchOptions(sizes=w.sizes, top_n=3, instances=w.instances))
    assert found.certified and found.evaluated == found.space
    best = found.best
    own = {e: ("2d" if e in ("QK", "LM", "SLN", "SLD", "SLNV") else "1d") for e in best.binding}
    assert dict(best.binding) == own and best.fusion == "fused"
    assert found.estimate.latency_cycles >= found.bound[0]
    assert found.top[1].estimate.latency_cycles >= found.estimate.latency_cycles


# -- masks ----------------------------------------------------------------------------------------


def test_causal_and_window_masks_skip_exactly_the_empty_pairs() -> None:
    c = einsum.library.get("attention_3pass_causal")
    boxes = key_boxes(256, 4096, plain="M")
    skip = mask_skip(c, query="P", key_var_boxes=boxes, query_tile=256, sizes={"P": 4096, "M": 4096, "E": 64})
    assert (skip.total, skip.skipped) == (256, 16 * 15 // 2)
    w = _file("sliding_window_attention")  # W = 512: each query tile sees its own and two earlier blocks
    skip = mask_skip(w, query="P", key_var_boxes=boxes, query_tile=256, sizes={"P": 4096, "M": 4096, "E": 64})
    live = sum(min(i + 1, 3) for i in range(16))
    assert skip.skipped == 256 - live
    # a ragged partitioned key: 1000 keys in steps of 256, the last holding 232
    c1 = einsum.library.get("attention_1pass_causal")
    boxes = key_boxes(256, 1000, outer="M1", inner="M0")
    skip = mask_skip(
        c1,
        query="P",
        key_var_boxes=boxes,
        query_tile=256,
        sizes={"P": 1000, "M": 1000, "M0": 256, "M1": 4, "E": 64},
    )
    assert (skip.total, skip.skipped) == (16, 6)


def test_masked_pairs_are_counted_a_chunk_of_query_tiles_at_a_time(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """At a million keys the pairs number in the tens of millions: they are bounded a few query
    tiles at a time. Chunks of 7 pairs (not a whole row of blocks) count what one pass counts."""
    import mapper.masks

    w = _file("sliding_window_attention")
    boxes = key_boxes(128, 4000, plain="M")
    sizes = {"P": 4000, "M": 4000, "E": 64}
    whole = mask_skip(w, query="P", key_var_boxes=boxes, query_tile=96, sizes=sizes)
    assert whole.skipped > 0 and 0 < whole.unmasked < whole.total - whole.skipped
    monkeypatch.setattr(mapper.masks, "_CHUNK", 7)
    assert mask_skip(w, query="P", key_var_boxes=boxes, query_tile=96, sizes=sizes) == whole


def test_data_dependent_mask_skips_nothing() -> None:
    src = (
        einsum.library.source("attention_3pass")
        .replace("input Q[p, e], K[m, e], V[m, f]", "input Q[p, e], K[m, e], V[m, f], G[p, m]")
        .replace("S[p, m]  = QK[p, m] * scale", "S[p, m]  = where(G[p, m] > 0, QK[p, m] * scale, -inf)")
    )
    c = einsum.parse(src)
    boxes = key_boxes(256, 1024, plain="M")
    assert (
        mask_skip(c, query="P", key_var_boxes=boxes, query_tile=256, sizes={"P": 1024, "M": 1024}).skipped
        == 0
    )


def test_causal_report_counts_skipped_tiles_and_keeps_dense_macs() -> None:
    c, a = einsum.library.get("attention_1pass_causal"), mapper.fusemax()
    w = sim.workload("BERT", "4K", batch=1)
    dense = sim.evaluate(
        einsum.library.get("attention_1pass"),
        explore(einsum.library.get("attention_1pass"), a, SearchOptions(sizes=w.sizes, fusion="fused")).best,
        a,
        w,
    )
    r = sim.evaluate(c, explore(c, a, SearchOptions(sizes=w.sizes, fusion="fused")).best, a, w)
    assert (r.tiles_skipped, r.tiles_total) == (120, 256)
    assert r.macs_executed < r.macs
    assert r.latency_cycles < 0.7 * dense.latency_cycles


# -- random cascades and architectures ------------------------------------------------------------

RANKS = ("A", "C", "D", "G")  # B and H in workload sizes are the batch and the heads


@st.composite
def random_cascade(draw: st.DrawFn) -> einsum.Cascade:
    """A chain of Einsums over four ranks: contractions, reductions (sum/max) and maps (exp,
    division, sigmoid) of earlier tensors, the last one the output."""
    n_in = draw(st.integers(1, 2))
    tensors: dict[str, tuple[str, ...]] = {}
    lines = []
    for i in range(n_in):
        ranks = tuple(draw(st.lists(st.sampled_from(RANKS), min_size=1, max_size=3, unique=True)))
        tensors[f"X{i}"] = ranks
    header = "input " + ", ".join(f"{t}[{', '.join(r.lower() for r in rs)}]" for t, rs in tensors.items())
    n = draw(st.integers(1, 4))
    for j in range(n):
        name = f"T{j}"
        kind = draw(st.sampled_from(["contract", "reduce", "map"]))
        names = list(tensors)
        a = draw(st.sampled_from(names))
        ra = tensors[a]
        if kind == "contract":
            b = draw(st.sampled_from(names))
            rb = tensors[b]
            both = tuple(dict.fromkeys(ra + rb))
            out = tuple(r for r in both if draw(st.booleans())) or both[:1]
            expr = f"{a}[{', '.join(r.lower() for r in ra)}] * {b}[{', '.join(r.lower() for r in rb)}]"
        elif kind == "reduce" and len(ra) > 1:
            out = ra[:-1]
            op = draw(st.sampled_from(["sum", "max"]))
            expr = f"{op}[{ra[-1].lower()}] {a}[{', '.join(r.lower() for r in ra)}]"
        else:
            out = ra
            fn = draw(st.sampled_from(["exp({})", "{} / 2", "sigmoid({})", "{} * {}"]))
            acc = f"{a}[{', '.join(r.lower() for r in ra)}]"
            expr = fn.format(acc, acc)
        tensors[name] = out
        lines.append(f"{name}[{', '.join(r.lower() for r in out)}] = {expr}")
    text = f"cascade rnd\n{header}\noutput T{n - 1}\n" + "\n".join(lines) + "\n"
    return einsum.parse(text)


@st.composite
def random_arch(draw: st.DrawFn) -> mapper.ArchSpec:
    base = mapper.fusemax()
    two, one = (x for x in base.arrays)
    arrays = []
    if draw(st.booleans()):
        arrays.append(
            dataclasses.replace(
                two, rows=draw(st.sampled_from([2, 4, 16, 64])), cols=draw(st.sampled_from([2, 8, 32, 256]))
            )
        )
    units = ("mac", "max", "exp", "div") if draw(st.booleans()) else ("mac", "max", "div")
    arrays.append(
        dataclasses.replace(one, cols=draw(st.sampled_from([1, 4, 64, 256])), units=units, exp_on_mac=True)
    )
    buf = draw(st.sampled_from([64 * 2**10, 2**20, 16 * 2**20]))
    return base.replace(name="rnd", arrays=tuple(arrays), buffer=mapper.Buffer(capacity_bytes=buf))


@settings(max_examples=60)
@given(
    random_cascade(),
    random_arch(),
    st.dictionaries(st.sampled_from(RANKS), st.integers(1, 300), min_size=4, max_size=4),
)
def test_reports_hold_their_invariants_on_random_cascades_and_architectures(c, arch, sizes) -> None:  # type: ignore[no-untyped-def]
    w = sim.workload(sizes={r: sizes[r] for r in c.ranks})
    try:
        found = explore(c, arch, SearchOptions(sizes=w.sizes))
    except mapper.ScheduleError as exc:
        event(f"refused: {str(exc)[:40]}")
        return  # a typed refusal (nothing fits the buffer, no unit for an operation) is allowed
    event(f"mapped {found.best.fusion}")
    r = sim.evaluate(c, found.best, arch, w)  # a broken invariant raises EvaluationError
    assert math.isfinite(r.latency_cycles) and r.latency_cycles > 0
    assert r.latency_cycles >= found.bound[0] * (1 - 1e-9)


def test_a_register_file_too_small_for_the_operands_loses_the_reuse() -> None:
    c = einsum.library.get("matmul")
    arch = _toy_arch(2, 3)
    small = arch.replace(arrays=(dataclasses.replace(arch.arrays[0], rf_words=2),))
    f = einsum_facts(c)[0]
    nest = LoopNest("Z", "2d", ("M", "N"), {"M": 2, "N": 2, "K": 5}, ("M", "N", "K"))
    big = nest_cost(nest_problem(c, f, arch.arrays[0], arch, {"M": 4, "N": 6, "K": 5}), nest)
    tiny = nest_cost(nest_problem(c, f, small.arrays[0], small, {"M": 4, "N": 6, "K": 5}), nest)
    assert tiny.dram_words == big.dram_words  # the buffer level is the same
    assert tiny.buffer_reads > big.buffer_reads


@pytest.mark.parametrize(("df", "spatial"), [("os", ("M", "N")), ("ws", ("K", "N")), ("is", ("K", "M"))])
def test_systolic_loop_nest_counts_fill_and_drain_as_scalesim(df, spatial) -> None:  # type: ignore[no-untyped-def]
    """A GEMM as one loop nest with systolic=True: the simulator's busy cycles are SCALE-Sim's
    formula for the nest's dataflow (benchmarks/scalesim_gemm.py checks the formula against
    SCALE-Sim itself on 106 points)."""
    m, n, k = 37, 91, 53
    arch = _toy_arch(8, 16)
    nest = LoopNest("Z", "2d", spatial, {"M": 1, "N": 1, "K": 1}, ("M", "N", "K"))
    s = mapper.Schedule(
        cascade="matmul",
        binding={"Z": "2d"},
        spatial={"2d": ()},
        tile={},
        residency={"A": "dram", "B": "dram", "Z": "dram"},
        kernels=(),
        interleave=False,
        lookahead=0,
        nests={"Z": nest},
    )
    w = sim.workload(sizes={"M": m, "N": n, "K": k})
    r = sim.evaluate(einsum.library.get("matmul"), s, arch, w, systolic=True)
    assert r.busy_cycles["2d"] == mapper.systolic_gemm_cycles(m, n, k, 8, 16, df)
    plain = sim.evaluate(einsum.library.get("matmul"), s, arch, w)
    assert plain.busy_cycles["2d"] < r.busy_cycles["2d"]


def test_a_budget_samples_loop_nests_and_is_not_certified() -> None:
    c = einsum.library.get("matmul")
    w = sim.workload(sizes="M=1000,K=777,N=333")
    exact = explore(c, mapper.fusemax(), SearchOptions(sizes=w.sizes, fusion="layerwise"))
    sampled = explore(
        c, mapper.fusemax(), SearchOptions(sizes=w.sizes, fusion="layerwise", budget=50, seed=3)
    )
    assert exact.certified and not sampled.certified
    assert sampled.nest_evaluations == 50 * len(mapper.fusemax().arrays)
    assert sampled.estimate.latency_cycles >= exact.estimate.latency_cycles


@pytest.mark.slow  # CI's slow step runs it (.ci/run)
def test_a_space_too_large_to_enumerate_is_sampled_and_says_so() -> None:
    """Six ranks with many divisors each: billions of loop nests. The search samples instead of
    hanging, and does not claim a certified optimum."""
    src = (
        "cascade big\ninput X[a, j, c], Y[c, d, g, i]\noutput Z\n"
        "Z[a, j, d, g, i] = X[a, j, c] * Y[c, d, g, i]\n"
    )
    c = einsum.parse(src)
    w = sim.workload(sizes={"A": 720, "J": 720, "C": 720, "D": 720, "G": 720, "I": 720})
    found = explore(c, mapper.fusemax(), SearchOptions(sizes=w.sizes, fusion="layerwise"))
    assert not found.certified
    assert 0 < found.nest_evaluations <= 2 * 50_000
    sim.evaluate(c, found.best, mapper.fusemax(), w)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"fusion": "fusd"},
            "unknown fusion 'fusd'; did you mean 'fused'?; expected one of auto, fused, layerwise",
        ),
        ({"top_n": 0}, "top_n must be a positive integer, found 0"),
        ({"budget": -5}, "budget must be a positive integer, found -5"),
        ({"max_latency_cycles": 0}, "max_latency_cycles must be a positive number, found 0"),
        ({"max_buffer_bytes": "1M"}, "max_buffer_bytes must be a positive number, found '1M'"),
        ({"objective": {"area": 1}}, "objective weights must name latency and/or energy, found {'area': 1}"),
        ({"objective": {"latency": -1}}, "objective weight of latency must be a number >= 0, found -1"),
    ],
)
def test_search_options_refuse_bad_values(kwargs, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(mapper.ScheduleError, match=re.escape(message)):
        SearchOptions(sizes={"P": 8}, **kwargs)


def test_nest_search_and_fused_only_errors() -> None:
    c = einsum.library.get("matmul")
    arch = _toy_arch(2, 3, capacity=64)
    p = nest_problem(c, einsum_facts(c)[0], arch.arrays[0], arch, {"M": 12, "N": 10, "K": 9})
    with pytest.raises(
        mapper.ScheduleError,
        match=r"no loop nest of Einsum Z on array '2d' meets the constraints "
        r"\(buffer 2 bytes\)",
    ):
        search_nests(p, max_buffer_bytes=2)
    with pytest.raises(mapper.ScheduleError, match="budget must be a positive integer, found 0"):
        search_nests(p, budget=0)
    with pytest.raises(
        mapper.ScheduleError,
        match="softmax has no fused tiling: no contraction gives a key rank; "
        "use fusion='layerwise' or 'auto'",
    ):
        explore(
            einsum.library.get("softmax"),
            mapper.fusemax(),
            SearchOptions(sizes={"P": 64, "M": 64}, fusion="fused"),
        )


def test_buffer_bandwidth_is_checked_and_bounds_the_nest() -> None:
    with pytest.raises(
        mapper.ArchError, match="buffer: bandwidth must be None, 'geometry' or words per cycle, found 'fast'"
    ):
        mapper.Buffer(capacity_bytes=2**20, bandwidth="fast")
    with pytest.raises(mapper.ArchError, match="buffer: bandwidth must be positive, found 0"):
        mapper.Buffer(capacity_bytes=2**20, bandwidth=0)
    assert (
        mapper.Buffer(
            capacity_bytes=2**20, width_bits=2048, banks=2, ports=2, bandwidth="geometry"
        ).words_per_cycle(16)
        == 2048 / 16 * 4
    )
    # a GEMM whose operands stream at 2 words a cycle per PE column: bounded by the buffer
    c = einsum.library.get("matmul")
    arch = _toy_arch(2, 3)
    slow = arch.replace(buffer=dataclasses.replace(arch.buffer, bandwidth=1))
    nest = LoopNest("Z", "2d", ("M", "N"), {"M": 1, "N": 1, "K": 1}, ("M", "N", "K"))
    cost = nest_cost(
        nest_problem(c, einsum_facts(c)[0], slow.arrays[0], slow, {"M": 4, "N": 6, "K": 5}), nest
    )
    assert cost.bound_by == "buffer" and cost.latency_cycles == (40 + 60 + 24) * 2


def test_a_hand_written_nest_that_does_not_fit_is_refused() -> None:
    arch = _toy_arch(2, 3, capacity=64)  # 32 words
    nest = LoopNest("Z", "2d", ("M", "N"), {"M": 2, "N": 2, "K": 5}, ("M", "N", "K"))
    s = mapper.Schedule(
        cascade="matmul",
        binding={"Z": "2d"},
        spatial={"2d": ()},
        tile={},
        residency={"A": "dram", "B": "dram", "Z": "dram"},
        kernels=(),
        interleave=False,
        lookahead=0,
        nests={"Z": nest},
    )
    with pytest.raises(
        sim.EvaluationError,
        match=r"the loop nest of Z holds 74 words in the buffer, which has room "
        r"for 32 beside what stays on chip: Z on 2d",
    ):
        sim.evaluate(einsum.library.get("matmul"), s, arch, sim.workload(sizes={"M": 4, "N": 6, "K": 5}))
    bad = mapper.Schedule(
        **{**s.__dict__, "nests": {"Z": LoopNest("Z", "2d", ("M", "M"), nest.tiles, nest.order)}}
    )
    with pytest.raises(
        mapper.ScheduleError, match=r"nest of Z: spatial \['M', 'M'\] must give 2 distinct rank\(s\)"
    ):
        mapper.check(einsum.library.get("matmul"), bad, arch)
