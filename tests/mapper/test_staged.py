"""A chain in stages over a hierarchy (mapper.staged): each Einsum alone, a recurrence's halves
together, the tensors between stages kept whole in the buffer (or through DRAM where they do not
fit); counted by hand on a two-GEMM chain, and FuseMax's 1-pass cascade on its tree."""

from __future__ import annotations

import pytest

import einsum
from mapper import fusion, staged
from mapper.errors import ScheduleError
from tests.mapper.test_fusion import CHAIN, DECAY, _toy


def _chain():  # type: ignore[no-untyped-def]
    c = einsum.parse(CHAIN)
    return fusion.problems_of(c, ["C", "E"], {"M": 8, "K": 4, "N": 4, "P": 4})


def test_two_gemms_in_stages_by_hand() -> None:
    """C then E, C (32 words) kept whole in the buffer between them: DRAM moves A (32), B (16),
    D (16) once and writes E (32) once; C never goes there. Each stage is one GEMM of 128 MACs,
    one a cycle: 256 cycles in all."""
    r = staged.staged(_toy(1000), _chain(), names=["C", "E"], metric="energy", budget=200)
    assert r.between == "buf" and r.crossing == (("C", 32),)
    assert [s.names for s in r.stages] == [("C",), ("E",)]
    dram = {t: st for s in r.stages for a in s.analyses for t, st in a.levels["DRAM"].items()}
    assert set(dram) == {"A", "B", "D", "E"}
    assert r.scalar_accesses("DRAM") == 32 + 16 + 16 + 32
    c_buf = r.stages[0].analyses[0].levels["buf"]["C"]
    assert c_buf.fills == 0 and c_buf.updates == 128  # made in the buffer, written nowhere above
    assert r.stages[1].analyses[0].levels["buf"]["C"].fills == 0  # read where it lives
    assert r.cycles == 256
    assert r.energy_pj == pytest.approx(sum(a.energy_pj for s in r.stages for a in s.analyses))
    assert r.peak_words >= 32 and "tensors between stages in buf" in r.describe()
    assert r.to_dict()["crossing"] == {"C": 32}


def test_a_tensor_read_after_the_chain_goes_out_even_between_stages() -> None:
    """C is also read after the chain: it is written to DRAM once (32 words) and read back by E
    (32), beside A, B, D and E's own traffic."""
    r = staged.staged(
        _toy(1000), _chain(), names=["C", "E"], after=frozenset({"C", "E"}), metric="energy", budget=200
    )
    assert r.out_and_back == ("C",) and r.scalar_accesses("DRAM") == 32 + 16 + 16 + 32 + 2 * 32
    assert "C out and back (read after the chain too)" in r.describe()


def test_stages_go_through_dram_when_the_buffer_cannot_hold_what_crosses() -> None:
    """A 40-word buffer holds one GEMM's tiles but not C beside them: C goes to DRAM and back
    (32 words written, 32 read)."""
    r = staged.staged(_toy(40), _chain(), names=["C", "E"], metric="energy", budget=200)
    assert r.between == "DRAM" and r.peak_words == 0
    assert r.scalar_accesses("DRAM") == 32 + 16 + 16 + 32 + 2 * 32
    assert "through DRAM" in r.describe()


def test_a_recurrence_s_halves_run_as_one_stage() -> None:
    """D reads the state R that the later R writes: neither can run whole first, so D and R are
    one stage, fused over the recurrence's steps; L and Y are stages of their own."""
    c = einsum.parse(DECAY)
    names = ["L", "D", "R", "Y"]
    ps = fusion.problems_of(c, names, {"P": 4, "M": 16, "M1": 4, "M0": 4})
    steps = fusion.steps_of(c)
    assert staged.stages_of(ps, steps) == [(0, 0), (1, 2), (3, 3)]
    r = staged.staged(_toy(1000), ps, names=names, steps=steps, after=fusion.read_after(c, names), budget=50)
    assert [s.names for s in r.stages] == [("L",), ("D", "R"), ("Y",)]
    assert r.stages[1].group is not None and r.stages[1].group.states == {"R": "M1"}
    assert {t for s in r.stages for a in s.analyses for t in a.levels["DRAM"]} == {"BX", "Y"}


@pytest.mark.slow  # CI's slow step runs it (.ci/run)
def test_fusemax_s_layer_by_layer_schedule_on_its_tree() -> None:
    """FuseMax's 1-pass cascade at P = 256, M = 1024 in stages on the preset's tree, by cycles:
    the template's best schedule of this workload is layer by layer (801.163 cycles); the tree's
    stages, each Einsum on the array where it is fastest and SPD/RD and SPNV/RNV stepped together,
    take fewer. Q, K and V cross DRAM once and AV is written once."""
    import mapper

    c = einsum.library.get("attention_1pass")
    names = "QK,LM,RM,SLN,SLD,SLNV,PRM,SPD,RD,SPNV,RNV,AV".split(",")
    ps = fusion.problems_of(c, names, {"P": 256, "M": 1024, "E": 64, "F": 64, "M0": 256, "M1": 4})
    r = staged.staged(
        mapper.fusemax().branched_hierarchy(), ps, names=names, steps=fusion.steps_of(c),
        after=fusion.read_after(c, names), metric="cycles", budget=60, between="buffer",
    )  # fmt: skip
    assert [s.names for s in r.stages][7:9] == [("SPD", "RD"), ("SPNV", "RNV")]
    assert r.between == "buffer"
    assert r.scalar_accesses("DRAM") == 16384 + 65536 + 65536 + 16384
    assert r.cycles < 801.163


def test_staged_errors_are_typed() -> None:
    with pytest.raises(ScheduleError, match="metric must be one of"):
        staged.staged(_toy(1000), _chain(), metric="speed")
    with pytest.raises(ScheduleError, match=r"no schedule of C, E in stages fits"):
        staged.staged(_toy(2), _chain(), names=["C", "E"], budget=20)


def test_stages_given_by_hand_as_the_unfused_baseline_s_kernels() -> None:
    """The Unfused baseline's three kernels (QK with its epilogue S, the softmax, AV) as given
    stages, their tensors through DRAM: S and A go out and come back, QK, GM and SD stay inside
    their kernel."""
    import mapper

    c = einsum.library.get("attention_3pass")
    names = ["QK", "S", "GM", "SN", "SD", "A", "AV"]
    ps = fusion.problems_of(c, names, {"P": 64, "M": 256, "E": 16, "F": 16})
    r = staged.staged(
        mapper.unfused(array_dim=16).branched_hierarchy(), ps, names=names, after=fusion.read_after(c, names),
        spans=[(0, 1), (2, 5), (6, 6)], between="DRAM", budget=10,
    )  # fmt: skip
    assert [s.names for s in r.stages] == [("QK", "S"), ("GM", "SN", "SD", "A"), ("AV",)]
    assert r.through_outermost and dict(r.crossing) == {"S": 64 * 256, "A": 64 * 256}
    dram = {t for s in r.stages for a in s.analyses for t in a.levels["DRAM"]}
    assert {"S", "A"} <= dram and not {"QK", "GM", "SD"} & dram
    with pytest.raises(ScheduleError, match=r"spans must cover the Einsums 0 .. 6 in order"):
        staged.staged(
            mapper.unfused(array_dim=16).branched_hierarchy(), ps, names=names, spans=[(0, 1), (3, 6)]
        )
    with pytest.raises(ScheduleError, match=r"between names 'dram', which is no level .*did you mean 'DRAM'"):
        staged.staged(mapper.unfused(array_dim=16).branched_hierarchy(), ps, names=names, between="dram")


def test_given_stages_may_not_cut_a_recurrence() -> None:
    c = einsum.parse(DECAY)
    names = ["L", "D", "R", "Y"]
    ps = fusion.problems_of(c, names, {"P": 4, "M": 16, "M1": 4, "M0": 4})
    with pytest.raises(ScheduleError, match=r"spans cut D, R, which a recurrence ties into one stage"):
        staged.staged(_toy(1000), ps, names=names, steps=fusion.steps_of(c), spans=[(0, 1), (2, 3)])


@pytest.mark.parametrize(("p_size", "m_size"), [(256, 1024), (1024, 1024), (256, 4096)])
def test_the_unfused_baseline_s_schedules_are_instances_of_its_tree(p_size: int, m_size: int) -> None:
    """The Unfused baseline's schedule (three kernels: QK with S, the softmax, AV; S and A through
    DRAM) stated as stages of FLAT's arrays: the two groups fused at the buffer, with the inputs
    several of their Einsums or query tiles read loaded once (the template's kernels hold them),
    and AV a kernel of its own. Each timed by the tile engine, as the template times its kernels,
    they take the template's latency to the last digit, and move its DRAM bytes."""
    import mapper
    from tests.mapper.test_fusion import _flat_mapping, _template_point

    point = _template_point("unfused", p_size, m_size)
    sched = point["search"]["schedule"]
    on, q = sched["binding"], p_size // sched["tile"]["P"]
    c = einsum.library.get("attention_3pass")
    names = ["QK", "S", "GM", "SN", "SD", "A", "AV"]
    ps = fusion.problems_of(c, names, {"P": p_size, "M": m_size, "E": 64, "F": 64})
    outer = (("P", q),) if q > 1 else ()

    def own(p, n):  # type: ignore[no-untyped-def]
        return _flat_mapping(p, on[n], outer)

    h = mapper.unfused().branched_hierarchy()
    cycles = words = 0.0
    for a, b in [(0, 1), (2, 5), (6, 6)]:
        sub, ns = ps[a : b + 1], names[a : b + 1]
        made = {p.output.name for p in sub}
        ins = [s.name for p in sub for s in p.spaces if not s.output and s.name not in made]
        again = tuple(dict.fromkeys(t for t in ins if ins.count(t) > 1 or (q > 1 and t in ("K", "V"))))
        if b > a:
            fm = fusion.FusedMapping(
                level="buffer", shared=(outer,), mappings=tuple(own(p, n) for p, n in zip(sub, ns, strict=True)),
                binding=tuple(on[n] for n in ns), preload=again,
            )  # fmt: skip
            r = fusion.evaluate(h, sub, fm, names=ns)
            cycles += r.cycles
            words += r.scalar_accesses("DRAM")
        else:
            path = h.branch(on[ns[0]])
            an = path.analyze(sub[0], own(sub[0], ns[0]))
            cycles += staged.engine_cycles(path, sub[0], ns[0], an, own(sub[0], ns[0]))
            words += an.scalar_accesses("DRAM")
            assert staged.engine_cycles(path, sub[0], ns[0], an, own(sub[0], ns[0])) >= an.cycles
    assert cycles == pytest.approx(point["latency_cycles"], rel=1e-12)
    assert words * 2 == point["traffic_bytes"]


def _decay():  # type: ignore[no-untyped-def]
    c = einsum.parse(DECAY)
    names = ["L", "D", "R", "Y"]
    ps = fusion.problems_of(c, names, {"P": 4, "M": 16, "M1": 4, "M0": 4})
    return ps, names, dict(steps=fusion.steps_of(c), after=fusion.read_after(c, names))


@pytest.mark.parametrize("metric", ["cycles", "energy", "edp"])
def test_the_cut_searched_beats_all_in_stages_and_all_in_one_group(metric: str) -> None:
    """L, then D and R (a recurrence: one stage at least), then Y: the cut is searched over the
    runs of those stages (L | DR | Y, L DR | Y, L | DR Y, L DR Y). Its figure is what staged()
    gives for its spans, never worse than all in stages or the whole chain in one group at the
    buffer, and with runs of one it is all in stages."""
    from mapper import hsearch

    ps, names, chain = _decay()
    h = _toy(1000)
    r = staged.mixed(h, ps, names=names, metric=metric, budget=50, **chain)
    spans = [(names.index(s.names[0]), names.index(s.names[-1])) for s in r.stages]
    again = staged.staged(
        h, ps, names=names, metric=metric, budget=50, spans=spans, between=r.between, **chain
    )
    assert (again.cycles, again.energy_pj) == (r.cycles, r.energy_pj)
    key = lambda x: hsearch.metric_key(x.cycles, x.energy_pj, metric)  # noqa: E731
    whole = fusion.search(h, ps, names=names, level="buf", metric=metric, budget=50, steps=chain["steps"],
                          drain=chain["after"])  # fmt: skip
    assert key(r) <= key(staged.staged(h, ps, names=names, metric=metric, budget=50, **chain))
    assert key(r) <= key(whole)
    one = staged.mixed(h, ps, names=names, metric=metric, budget=50, longest=1, **chain)
    plain = staged.staged(h, ps, names=names, metric=metric, budget=50, **chain)
    assert [s.names for s in one.stages] == [s.names for s in plain.stages] == [("L",), ("D", "R"), ("Y",)]
    assert (one.cycles, one.energy_pj) == (plain.cycles, plain.energy_pj)
    with pytest.raises(ScheduleError, match="longest must be at least 1"):
        staged.mixed(h, ps, names=names, longest=0, **chain)
    with pytest.raises(ScheduleError, match="between names 'buff'.*did you mean 'buf'"):
        staged.mixed(h, ps, names=names, between="buff", **chain)
