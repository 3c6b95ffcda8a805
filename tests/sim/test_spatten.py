"""sim.spatten: SpAtten's pipeline, against hand-computed requests, the released GPT-2 traces'
own counts, and the pruning cascades' masked operation counts."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

import einsum
from mapper import arch as archs
from mapper import topk as topk_model
from sim import EvaluationError
from sim import spatten as sp

SPATTEN = archs.preset("spatten")


def test_preset_is_spatten_table_one() -> None:
    a = SPATTEN
    assert a.clock_hz == 1e9 and a.word_bits == 12
    assert a.array("qk").pes == a.array("pv").pes == 512 and a.array("softmax").pes == 8
    assert a.buffer.capacity_bytes == 2 * 1024 * 64 * 12 // 8 * 2  # key + value SRAM, double-buffered
    assert a.dram.bandwidth_bytes_per_s == 512e9
    assert [(t.role, t.parallelism, t.comparators) for t in a.topk_engines] == [
        ("token", 16, 32),
        ("value", 16, 32),
    ]
    e = archs.preset("spatten_eighth")
    assert e.array("qk").pes == 64 and e.dram.bandwidth_bytes_per_s == 64e9
    assert archs.ArchSpec.from_dict(a.to_dict()) == a


def test_one_request_by_hand() -> None:
    """One query, 128 keys of D = 64 at 6 bits, 32 values at 6 bits, 12-bit query:
    DRAM (128*64*6 + 32*64*6 + 64*12) bits / 4096 bits a cycle = 15.19 -> 16; Q x K 128 / 8 = 16;
    softmax 128 / 8 = 16; prob x V 32 * 64 / 512 = 4; the value top-k its closed form."""
    r = sp.Request(
        iteration=0, layer=0, head=0, head_dim=64, context=256, keys=128, values=32, key_bits=6, value_bits=6
    )
    rep = sp.simulate([r], SPATTEN)
    sel = topk_model.expected_select_cycles(128, 32, 16, round_overhead=3)
    filt = topk_model.expected_filter_rows(128, 32, 16)
    topk = math.ceil(max(sel, 128 / 8) + filt)
    stages = {"dram": 16, "qk": 16, "softmax": 16, "topk_value": topk, "pv": 4}
    assert dict(rep.stage_cycles) == stages
    assert (
        rep.cycles == max(stages.values()) + (sum(stages.values()) - max(stages.values())) + sp.PIPELINE_DEPTH
    )
    assert rep.dram_bits == {"keys": 128 * 64 * 6, "key_lsbs": 0, "values": 32 * 64 * 6, "queries": 64 * 12}
    assert rep.macs == 128 * 64 + 32 * 64


def test_requests_overlap_at_the_slowest_stage() -> None:
    """n identical requests cost n times the slowest stage plus one fill."""
    r = sp.Request(iteration=0, layer=0, head=0, head_dim=64, context=1024, keys=1024, values=1024)
    one, ten = sp.simulate([r], SPATTEN), sp.simulate([r] * 10, SPATTEN)
    slowest = max(one.stage_cycles.values())
    assert ten.cycles - one.cycles == 9 * slowest
    assert ten.bound == {"dram": 10, "qk": 0, "softmax": 0, "topk_value": 0, "pv": 0}


def test_a_refetch_fetches_the_lsbs_and_recomputes() -> None:
    base = sp.Request(
        iteration=0, layer=0, head=0, head_dim=64, context=512, keys=512, values=512, key_bits=8, lsb_bits=4
    )
    again = sp.simulate([sp.dataclasses.replace(base, requant=True)], SPATTEN)
    once = sp.simulate([base], SPATTEN)
    assert again.dram_bits["key_lsbs"] == 512 * 64 * 4 and once.dram_bits["key_lsbs"] == 0
    assert again.stage_cycles["qk"] == 2 * once.stage_cycles["qk"]
    assert again.macs - once.macs == 512 * 64


def test_gpt2_small_trace_counts_the_same_fetches_as_the_trace() -> None:
    """Key and value traffic, dense over pruned at the same widths, equal the trace's own
    sum L / sum keys = 3.62x and sum L / sum V = 18.2x exactly (spatten.md §1.6)."""
    reqs = sp.trace("gpt2-small-wikitext2")
    assert len(reqs) == 32 * 12 * 12
    runs = sp.compare(reqs, SPATTEN)
    sum_l, sum_k, sum_v = (sum(getattr(r, a) for r in reqs) for a in ("context", "keys", "values"))
    p, d = runs["pruned"], runs["dense"]
    assert Fraction(d.dram_bits["keys"], p.dram_bits["keys"]) == Fraction(sum_l, sum_k)
    assert Fraction(d.dram_bits["values"], p.dram_bits["values"]) == Fraction(sum_l, sum_v)
    assert round(sum_l / sum_k, 2) == 3.62 and round(sum_l / sum_v, 1) == 18.2
    assert sum(r.requant for r in reqs) / len(reqs) == pytest.approx(0.070, abs=0.001)
    assert sorted({r.token_topk for r in reqs} - {0}) == [102, 204, 716, 921]
    s = sp.savings(runs)
    assert s["speedup_pruning"] > 1 and s["speedup_total"] > s["speedup_pruning"]
    assert p.cycles >= p.token_topk_cycles


def test_the_medium_trace_prunes_heads() -> None:
    reqs = sp.trace("gpt2-medium-wikitext2-hp")
    first = [r for r in reqs if r.iteration == 1]
    assert len(first) == 354 and len(sp.dense(first)) == 24 * 16


def test_parallel_topk_engine_is_faster_on_the_pruned_trace() -> None:
    """SpAtten §5: the parallel top-k engine speeds GPT-2 up over a one-comparator engine."""
    reqs = sp.trace("gpt2-small-wikitext2")
    fast = sp.simulate(reqs, SPATTEN)
    slow = sp.simulate(reqs, archs.spatten(topk_parallelism=1))
    assert slow.cycles / fast.cycles > 2


def test_draws_and_closed_form_agree() -> None:
    reqs = sp.trace("gpt2-small-wikitext2")[:400]
    a, b = sp.simulate(reqs, SPATTEN), sp.simulate(reqs, SPATTEN, topk="draws", draws=100, seed=1)
    assert b.cycles == pytest.approx(a.cycles, rel=0.05)


def test_token_pruning_cascade_requests_follow_the_schedule() -> None:
    c = einsum.library.get("spatten_token_pruning")
    sizes = {"L": 12, "H": 4, "P": 1, "M": 1024, "E": 64, "F": 64}
    reqs = sp.requests_from_cascade(c, sizes, token_keep=0.3)
    kept = sp.keep_schedule(12, 1024, 0.3, unpruned=0.15)
    assert kept[:1] == (1024,) and all(a >= b for a, b in zip(kept, kept[1:], strict=False))
    assert sum(kept[1:11]) / 10 / 1024 == pytest.approx(0.3, abs=0.002)  # read by the pruned layers 2..11
    assert [r.keys for r in reqs if r.head == 0] == [1024, *kept[:-1]]
    assert all(r.values == r.keys for r in reqs)  # no local value pruning in this cascade


def test_pipeline_macs_equal_the_cascades_masked_op_counts() -> None:
    """The pipeline's MACs for the token-pruning cascade equal op_counts(masks=True) of its QK and
    AV Einsums at the keep ratio of the requests: the simulator and the IR analysis agree."""
    c = einsum.library.get("spatten_token_pruning")
    sizes = {"L": 6, "H": 3, "P": 5, "M": 200, "E": 64, "F": 64}
    reqs = sp.requests_from_cascade(c, sizes, token_keep=0.4)
    rep = sp.simulate(reqs, SPATTEN)
    keep = sum(r.keys for r in reqs) / (6 * 3 * 200)
    counts = dict(zip((e.output for e in c.einsums), einsum.op_counts(c, masks=True), strict=True))
    at = {**sizes, "keep_KEEP": keep}
    assert rep.macs == pytest.approx(counts["QK"].at(at)["mac"] + counts["AV"].at(at)["mac"])


def test_value_and_head_pruning_cascades() -> None:
    sizes = {"L": 10, "H": 12, "P": 1, "M": 500, "E": 64, "F": 64}
    v = sp.requests_from_cascade(einsum.library.get("spatten_local_value_pruning"), sizes)
    assert {(r.keys, r.values) for r in v} == {(500, 100)}  # the cascade's vkeep = 0.2
    h = sp.requests_from_cascade(einsum.library.get("spatten_head_pruning"), sizes, head_keep=0.8)
    assert len(h) < 10 * 12 and len(sp.dense(h)) == 10 * 12
    q = sp.requests_from_cascade(einsum.library.get("spatten_progressive_quantization"), sizes, requant=0.25)
    assert sum(r.requant for r in q) == 30 and {r.key_bits for r in q} == {8}


def test_bad_input_is_a_typed_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(EvaluationError, match=r"no SpAtten trace 'gpt3': neither a shipped trace"):
        sp.trace("gpt3")
    bad = tmp_path / "bad.csv"
    bad.write_text("iteration_id,layer_id\n0,0\n")
    with pytest.raises(EvaluationError, match=r"not a SpAtten trace: missing column\(s\) head_id"):
        sp.trace(bad)
    text = sp._shipped("gpt2-small-wikitext2").splitlines()
    text[3] = text[3].replace(",993,993,", ",993,x,", 1)
    bad.write_text("\n".join(text))
    with pytest.raises(EvaluationError, match=r"bad.csv, line 4: invalid literal for int"):
        sp.trace(bad)
    with pytest.raises(EvaluationError, match=r"need 0 <= values <= keys <= context, found values=5, keys=4"):
        sp.Request(iteration=0, layer=0, head=0, head_dim=64, context=8, keys=4, values=5)
    r = sp.Request(iteration=0, layer=0, head=0, head_dim=64, context=8, keys=8, values=4)
    with pytest.raises(EvaluationError, match=r"has no array\(s\) qk, pv, softmax"):
        sp.simulate([r], archs.preset("fusemax"))
    with pytest.raises(EvaluationError, match=r"has no top-k engine for local value pruning"):
        sp.simulate([r], SPATTEN.replace(topk_engines=()))
    with pytest.raises(EvaluationError, match=r"topk must be 'expected' or 'draws', found 'mean'"):
        sp.simulate([r], SPATTEN, topk="mean")
    with pytest.raises(EvaluationError, match=r"keep ratio must be in \(0, 1\], found 0"):
        sp.keep_schedule(4, 10, 0, unpruned=0.1)
    with pytest.raises(EvaluationError, match=r"SpAtten's pipeline needs sizes for E"):
        sp.requests_from_cascade(einsum.library.get("attention_3pass"), {"P": 1, "M": 8})
    with pytest.raises(archs.ArchError, match=r"role must be one of token, value, found 'key'"):
        archs.TopKEngine(name="x", role="key")
    with pytest.raises(archs.ArchError, match=r"top-k engine names must be unique, \['a'\] repeat"):
        SPATTEN.replace(topk_engines=(archs.TopKEngine(name="a"), archs.TopKEngine(name="a")))


def test_a_cascade_with_a_head_rank_takes_the_heads_as_its_size() -> None:
    import sim

    w = sim.workload(sizes="P=1,M=64,E=8,F=8,H=4,L=2,B=3")
    hp = w.for_cascade(einsum.library.get("spatten_head_pruning"))
    assert hp.sizes["H"] == 4 and hp.instances == 3
    assert w.for_cascade(einsum.library.get("attention_3pass")) is w and w.instances == 12
    assert hp.for_cascade(einsum.library.get("spatten_head_pruning")) == hp


def test_quantization_widths_come_from_the_cascades_operators() -> None:
    """A user's progressive quantization at 6 + 4 bits of a 10-bit format: the requests fetch 6
    MSBs and 4 LSBs, as the cascade's quantizer operators say."""
    fmt = einsum.Fixed(10, 6)
    ops = (einsum.quantizer(fmt, "qk12"), einsum.quantizer(fmt, "qk12msb", drop_lsbs=4))
    c = einsum.parse(einsum.library.source("spatten_progressive_quantization"), operators=ops)
    reqs = sp.requests_from_cascade(c, {"P": 1, "M": 64, "E": 64}, requant=0.5)
    assert {(r.key_bits, r.lsb_bits) for r in reqs} == {(6, 4)}


def test_pruned_keys_and_values_are_not_read_from_the_sram() -> None:
    """Two queries against 100 keys of which 40 are kept and 10 values: the SRAMs get the 40 keys
    and the kept values (20: the two queries' union, at most) once, and each query reads its keys
    and values."""
    r = sp.Request(iteration=0, layer=0, head=0, head_dim=8, context=100, keys=40, values=10, queries=2)
    rep = sp.simulate([r], SPATTEN)
    assert rep.sram_words == {"writes": (40 + 20) * 8, "reads": 2 * (40 + 10) * 8}
    buf = SPATTEN.buffer.costs(12)
    assert rep.energy_pj["sram"] == pytest.approx(
        rep.sram_words["reads"] * buf.read_pj_per_word + rep.sram_words["writes"] * buf.write_pj_per_word
    )
    dense = sp.simulate(sp.dense([r]), SPATTEN)
    assert dense.sram_words["reads"] == 2 * 200 * 8


def test_more_bad_input_is_typed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(
        EvaluationError, match=r"the unpruned fraction of layers must be in \[0, 1\], found 1.5"
    ):
        sp.keep_schedule(4, 10, 0.5, unpruned=1.5)
    bad = tmp_path / "t.csv.gz"
    bad.write_bytes(b"not gzip")
    with pytest.raises(EvaluationError, match=r"cannot read SpAtten trace '.*t.csv.gz': "):
        sp.trace(bad)
    with pytest.raises(
        EvaluationError,
        match=r"lsb_bits and token_topk must be >= 0 \(token_topk <= context\), found lsb_bits=-1",
    ):
        sp.Request(iteration=0, layer=0, head=0, head_dim=8, context=8, keys=8, values=8, lsb_bits=-1)
    with pytest.raises(EvaluationError, match=r"head_dim must be a positive integer, found 0"):
        sp.Request(iteration=0, layer=0, head=0, head_dim=0, context=8, keys=8, values=8)
