"""The mapper: bindings, tiles, P1, residency, kernels, and its typed errors."""

import pytest

import einsum
import mapper
from mapper import ScheduleError, SearchOptions, search

LIB = einsum.library.get
BERT_1K = {"P": 1024, "M": 1024, "E": 64, "F": 64}


def test_fusemax_binding_matches_the_paper():
    s = search(LIB("attention_1pass"), mapper.fusemax(), SearchOptions(fusion="fused", sizes=BERT_1K))
    on_2d = sorted(e for e, a in s.binding.items() if a == "2d")
    assert on_2d == ["LM", "QK", "SLD", "SLN", "SLNV"]
    assert s.tile == {"P": 256, "M0": 256}
    assert s.interleave and s.lookahead == 3  # 1 + ceil(256-cycle LM chain / 154-cycle tile)


def test_cascade_on_flat_keeps_the_2d_array_to_contractions():
    s = search(LIB("attention_1pass"), mapper.flat(), SearchOptions(fusion="fused", sizes=BERT_1K))
    assert sorted(e for e, a in s.binding.items() if a == "2d") == ["QK", "SLNV"]


def test_tiles_crossing_between_the_arrays_are_staged():
    # on FLAT's PEs the 1D array computes SLN from the 2D array's QK tile and the 2D array reads it
    # back for SLNV: both 256 x 256 tiles go through the buffer, and take room from the queries in
    # flight (per query: E + RM + RD + RNV (F) + two staged rows of 256 words, 2 bytes each)
    big = dict(BERT_1K, P=1 << 16, M=1 << 16)
    s = search(LIB("attention_1pass"), mapper.flat(), SearchOptions(fusion="fused", sizes=big))
    assert s.residency["QK"] == s.residency["SLN"] == "buffer"
    kv = 2 * 256 * (64 + 64) * 2
    fit = (32 * 2**20 - kv) // (256 * (64 + 1 + 1 + 64 + 2 * 256) * 2)
    assert fit == 101 and s.query_tiles_on_chip == (64,)  # the largest divisor of 256 up to 101
    # FuseMax's 2D array reduces over the key rank before anything crosses to the 1D array
    s = search(LIB("attention_1pass"), mapper.fusemax(), SearchOptions(fusion="fused", sizes=big))
    assert s.residency["QK"] == s.residency["SLN"] == s.residency["SLNV"] == "array"


def test_flat_binds_the_scale_as_an_epilogue():
    s = search(LIB("attention_3pass"), mapper.flat(), SearchOptions(fusion="fused", sizes=BERT_1K))
    assert sorted(e for e, a in s.binding.items() if a == "2d") == ["AV", "QK", "S"]
    assert s.residency["S"] == "buffer" and s.residency["QK"] == "array"


def test_p1_from_the_buffer():
    # FuseMax's P1 rule: the largest divisor of P/256 with P1*256*(E+F+2)*2 bytes beside the K/V tile
    big = dict(BERT_1K, P=1 << 20, M=1 << 20)
    s = search(LIB("attention_1pass"), mapper.fusemax(), SearchOptions(fusion="fused", sizes=big))
    assert s.query_tiles_on_chip == (128,)
    tiny = mapper.fusemax(array_dim=2, buffer_bytes=64)
    s = search(
        LIB("attention_1pass"), tiny, SearchOptions(fusion="fused", sizes={"P": 8, "M": 8, "E": 2, "F": 2})
    )
    # (64 - 2*2*(2+2)*2) bytes left; one query tile of 2 queries x (2 + 2 + 2) words x 2 bytes = 24
    assert s.query_tiles_on_chip == (1,)


def test_flat_spills_then_streams():
    for n, where in ((16384, "buffer"), (262144, "dram")):
        s = search(
            LIB("attention_3pass"),
            mapper.flat(),
            SearchOptions(fusion="fused", sizes=dict(BERT_1K, P=n, M=n)),
        )
        assert s.residency["SN"] == where
    s = search(
        LIB("attention_3pass"),
        mapper.flat(),
        SearchOptions(fusion="fused", sizes=dict(BERT_1K, P=65536, M=65536)),
    )
    assert 0 < s.spill_fraction < 0.01


def test_a_2_pass_tensor_read_after_the_whole_key_rank_is_held_whole():
    # FuseMax's 2-pass A reads SLN beside SD, a sum over every key block: SLN waits for the
    # whole key rank, as the 3-pass cascade's S does. One query tile's rows of it (256 x M words)
    # fit the 16 MiB buffer at 16K (8 MiB) and not at 64K (32 MiB), where SLN goes through DRAM:
    # written once by the 2D array and read once by A on the 1D array. (Held a key block at a
    # time, 128 query tiles' blocks took the whole buffer with no room for LM.)
    import sim

    c = LIB("attention_2pass")
    at = {}
    for seq in ("16K", "64K"):
        w = sim.workload("BERT", seq, batch=1)
        s = search(c, mapper.fusemax(), SearchOptions(fusion="fused", sizes=w.sizes))
        at[seq] = (s, sim.evaluate(c, s, mapper.fusemax(), w))
    assert at["16K"][0].residency["SLN"] == "buffer" and at["16K"][0].query_tiles_on_chip == (64,)
    s, report = at["64K"]
    assert s.residency["SLN"] == "dram" and s.spill_fraction == 0
    n, heads = 1 << 16, sim.workload("BERT", "64K", batch=1).instances
    sln = n * n * heads * 2  # bytes
    # 3-pass's S at the same point goes the same way. The 2-pass's query tiles also hold their
    # per-block statistics until GM is known (LM and SLD: 256 words a query each), so fewer of them
    # share a pass over K and V: 32 against the 3-pass's 128
    c3 = LIB("attention_3pass")
    s3 = search(c3, mapper.fusemax(), SearchOptions(fusion="fused", sizes=sim.workload("BERT", "64K").sizes))
    assert s3.residency["S"] == "dram" and s3.query_tiles_on_chip == (128,)
    assert s.query_tiles_on_chip == (32,)
    # beside SLN: Q read and AV written once, K (pass 1) and V (pass 2) once per group of 32 tiles
    word = n * 64 * 2  # bytes of one of Q, K, V, AV per head
    assert report.traffic_bytes - 2 * sln == heads * (2 * word + (256 // 32) * 2 * word)
    # the 3-pass's S, SN and A: each written once and read back once (SN's pass on the 2D array
    # reads S back: until 2026-12 the template charged it nothing, 4 x N^2 words)
    r3 = sim.evaluate(c3, s3, mapper.fusemax(), sim.workload("BERT", "64K"))
    heads3 = sim.workload("BERT", "64K").instances
    assert r3.traffic_bytes == heads3 * (3 * 2 * n * n * 2 + 2 * word + (256 // 128) * 2 * word)


def test_a_2_pass_query_tile_holds_its_block_statistics_until_the_pass_ends():
    # LM[p, m1] and SLD[p, m1] are made a key block at a time and read after GM, the max over every
    # block (PRM beside GM, SD beside PRM): each query holds M1 words of each through the pass.
    # At 64K (M1 = 256) the Q and output rows (128 words a query) and these (512) of 128 query
    # tiles took 42 MB of a 16 MiB buffer; 32 tiles (10.5 MB) fit beside the SLN row being staged
    from mapper.search import _block_stats, einsum_facts, layout

    c = LIB("attention_2pass")
    sizes = {"P": 1 << 16, "M": 1 << 16, "M1": 256, "M0": 256, "E": 64, "F": 64}
    assert _block_stats(einsum_facts(c), layout(c), sizes) == {"LM": 256, "SLD": 256}
    for name in ("attention_1pass", "attention_3pass"):  # a recurrence's state; no partition
        assert _block_stats(einsum_facts(LIB(name)), layout(LIB(name)), sizes) == {}
    arch = mapper.fusemax()
    s = search(c, arch, SearchOptions(fusion="fused", sizes={"P": 1 << 16, "M": 1 << 16, "E": 64, "F": 64}))
    per_query = (128 + 512) * arch.word_bytes
    (tiles,) = s.query_tiles_on_chip
    assert tiles * 256 * per_query <= arch.buffer.capacity_bytes < 2 * tiles * 256 * per_query


def test_query_tiles_sharing_a_pass_over_k_and_v_hold_their_own_rows():
    # A 2-pass schedule whose SLN rows (256 x M words a query tile) stay in the buffer lets its
    # query tiles share a pass over K and V in one of two ways: all of them, K and V whole in the
    # buffer beside one tile's rows (BERT 16K: 2M + 4M words of 8M), or a group streaming K and V
    # past it, each tile holding its own rows. XLM 16K (E = F = 128) fits neither (K and V whole
    # and one tile's rows, or two tiles' rows, take the whole buffer with no room for the key tile
    # or the Q and output rows): one tile a pass. (The template let 32 tiles share a pass while
    # holding one tile's rows: 1/32 of the K and V traffic, and a schedule the tree could not fit.)
    import sim
    from mapper import as_tree

    c = LIB("attention_2pass")
    arch = mapper.fusemax()
    words = arch.buffer.capacity_bytes // arch.word_bytes
    for model, tiles in (("BERT", 64), ("XLM", 1)):
        w = sim.workload(model, "16K", batch=1)
        s = search(c, arch, SearchOptions(fusion="fused", sizes=w.sizes))
        assert s.residency["SLN"] == "buffer" and s.query_tiles_on_chip == (tiles,), model
        rows = 256 * (1 << 14)  # one query tile's SLN
        kv = (1 << 14) * (w.sizes["E"] + w.sizes["F"])
        assert rows + kv < words if tiles > 1 else (2 * rows >= words and rows + kv >= words)
        report = sim.evaluate(c, s, arch, w)
        tree = as_tree.fused(c, s, arch, w.for_cascade(c).sizes, w.instances).evaluate()
        assert tree.scalar_accesses("DRAM") * arch.word_bytes == report.traffic_bytes, model
        assert tree.cycles == report.latency_cycles, model


def test_unfused_kernels():
    s = search(
        LIB("attention_3pass"), mapper.unfused(), SearchOptions(fusion="fused", sizes=BERT_1K, fuse=False)
    )
    assert s.kernels == (("QK", "S"), ("GM", "SN", "SD", "A"), ("AV",))
    assert s.residency["S"] == s.residency["A"] == "dram"


def test_unfused_runs_a_cascade_without_kernels_layer_by_layer():
    """The Unfused baseline's kernels need a key rank to tile; a scan (aaren) has none. The default
    search with ``fuse=False`` (``einforge evaluate --arch unfused``) ran out of candidates with an
    empty reason ("no schedule of aaren on 'unfused': "); it runs the cascade layer by layer, and
    an attention cascade still gets its kernels."""
    sizes = {**BERT_1K, "M": 1024}
    s = search(LIB("aaren"), mapper.unfused(), SearchOptions(sizes=sizes, fuse=False))
    assert s.fusion == "layerwise" and set(s.nests) == {e.output for e in LIB("aaren").einsums if not e.init}
    s = search(LIB("attention_3pass"), mapper.unfused(), SearchOptions(sizes=BERT_1K, fuse=False))
    assert s.kernels == (("QK", "S"), ("GM", "SN", "SD", "A"), ("AV",)) and not s.nests
    with pytest.raises(ScheduleError, match=r"^aaren has no fused tiling: no contraction gives a key rank"):
        search(LIB("aaren"), mapper.unfused(), SearchOptions(sizes=sizes, fuse=False, fusion="fused"))


def test_a_key_block_staged_in_the_buffer_is_not_part_of_what_spills():
    """FLAT's causal 2-pass at XLM 16K spills 1/32 of its score rows. BQK, the masked key block the
    1D array reads again in a later pass, is staged in the buffer a block at a time: the spilled
    fraction covers the rows (SBQK, SLN, A), not the block, so staging it moves no DRAM bytes (a
    first version spilled it too: +13.8% DRAM bytes). A ``spilled`` name that is not
    buffer-resident is refused."""
    import dataclasses

    import sim

    c, arch = LIB("attention_2pass_causal"), mapper.preset("flat")
    w = sim.workload("XLM", "16K", batch=1)
    s = search(c, arch, SearchOptions(sizes=w.for_cascade(c).sizes, fusion="fused"))
    assert s.spill_fraction == pytest.approx(1 / 32) and s.residency["BQK"] == "buffer"
    assert s.spilled == ("A", "SBQK", "SLN") and "spill fraction 0.0312 of A, SBQK, SLN" in s.describe()
    in_pes = dataclasses.replace(s, residency={**s.residency, "BQK": "array"})
    staged, held = sim.evaluate(c, s, arch, w), sim.evaluate(c, in_pes, arch, w)
    assert staged.traffic_bytes == held.traffic_bytes and staged.latency_cycles == held.latency_cycles
    assert staged.energy_pj > held.energy_pj  # its buffer write and read back
    with pytest.raises(
        ScheduleError,
        match=r"spilled names 'GM', which is not a buffer-resident tensor \(residency 'array'\)",
    ):
        mapper.check(c, dataclasses.replace(s, spilled=("GM",)), arch)


def test_no_unit_can_execute():
    arch = mapper.fusemax()
    no_div = arch.replace(
        arrays=(
            arch.array("2d"),
            mapper.PEArray(
                name="1d",
                rows=1,
                cols=256,
                units=("mac", "max"),
                exp_on_mac=True,
                rf_words=32,
                rf_read_pj=0,
                rf_write_pj=0,
                rf_area_um2=0,
            ),
        )
    )
    with pytest.raises(
        ScheduleError,
        match=r"no unit can execute Einsum AV \(operations: div; tried "
        r"2d \(no 'div' unit\); 1d \(no 'div' unit\)\)",
    ):
        search(LIB("attention_1pass"), no_div, SearchOptions(fusion="fused", sizes=BERT_1K))


def test_tile_does_not_fit():
    with pytest.raises(
        ScheduleError,
        match=r"the running state of one query tile \(256 queries x 260 bytes\) "
        r"and the key tile \(131072 bytes\) do not fit the 65536-byte buffer",
    ):
        search(
            LIB("attention_1pass"),
            mapper.fusemax(buffer_bytes=65536),
            SearchOptions(fusion="fused", sizes=BERT_1K),
        )


def test_ragged_length_is_costed_as_its_tiles():
    """M = P = 1000 on 256 x 256: four key steps and four query tiles, the last of each holding
    232; the actions are those of 1000 keys (the same QK MACs as the unpartitioned cascade), the
    time that of four full steps (the idle rows and columns still take their cycles)."""
    import sim

    arch = mapper.fusemax()
    reports = {}
    for n in (768, 1000, 1024):
        w = sim.workload(sizes=dict(BERT_1K, P=n, M=n))
        for name in ("attention_1pass", "attention_3pass"):
            c = LIB(name)
            s = search(c, arch, SearchOptions(fusion="fused", sizes=w.sizes))
            reports[name, n] = sim.evaluate(c, s, arch, w)
    assert reports["attention_1pass", 1000].per_einsum["QK"]["macs"] == 1000 * 1000 * (
        64 + 1
    )  # and the scale
    assert reports["attention_3pass", 1000].per_einsum["QK"]["macs"] == 1000 * 1000 * 64
    lat = {n: reports["attention_1pass", n].latency_cycles for n in (768, 1000, 1024)}
    assert lat[768] < lat[1000] <= lat[1024]
    # the same number of (query tile, key step) pairs as 1024: the same time within the DRAM share
    assert lat[1000] == pytest.approx(lat[1024], rel=0.02)


def test_workload_sizes_do_not_fit_the_cascade():
    with pytest.raises(ScheduleError, match=r"workload gives no size for rank\(s\) F of attention_1pass"):
        search(
            LIB("attention_1pass"),
            mapper.fusemax(),
            SearchOptions(fusion="fused", sizes={"P": 1024, "M": 1024, "E": 64}),
        )


def test_hand_written_schedule_is_checked():
    s = search(LIB("attention_1pass"), mapper.fusemax(), SearchOptions(fusion="fused", sizes=BERT_1K))
    bad = mapper.Schedule(**{**s.__dict__, "binding": {**s.binding, "AV": "2d"}})
    with pytest.raises(ScheduleError, match=r"Einsum AV needs 'div', which array '2d' cannot execute"):
        mapper.check(LIB("attention_1pass"), bad, mapper.fusemax())
    flat_bad = search(LIB("attention_1pass"), mapper.flat(), SearchOptions(fusion="fused", sizes=BERT_1K))
    flat_bad = mapper.Schedule(**{**flat_bad.__dict__, "binding": {**flat_bad.binding, "SLD": "2d"}})
    with pytest.raises(ScheduleError, match=r"Einsum SLD is a reduce, which array '2d' does not run"):
        mapper.check(LIB("attention_1pass"), flat_bad, mapper.flat())


def test_bad_options():
    with pytest.raises(ScheduleError, match="unknown objective 'speed'"):
        SearchOptions(fusion="fused", sizes=BERT_1K, objective="speed")


def test_a_score_row_that_does_not_fit():
    with pytest.raises(
        ScheduleError,
        match=r"a row of M = 1048576 words \(2097152 bytes\) does not fit the "
        r"1048576-byte buffer beside the key tile \(131072 bytes\)",
    ):
        search(
            LIB("attention_3pass"),
            mapper.flat(buffer_bytes=1 << 20),
            SearchOptions(fusion="fused", sizes=dict(BERT_1K, P=1 << 20, M=1 << 20)),
        )


def test_flat_granularity_search_and_its_errors():
    import dataclasses

    import sim

    w = sim.workload("BERT", "64K")
    c = einsum.library.get("attention_3pass")
    arch = mapper.flat()
    s = mapper.search(c, arch, mapper.SearchOptions(fusion="fused", sizes=w.sizes))
    # 256 rows x 64K keys x 2 bytes = 32 MiB: the largest block whose scores (nearly) fit
    assert s.score_rows == 256 and s.query_tiles_on_chip == (1,)
    assert "score rows fused per pass over K and V: 256" in s.describe()
    pinned = mapper.search(c, arch, mapper.SearchOptions(fusion="fused", sizes=w.sizes, score_rows=1024))
    assert pinned.score_rows == 1024 and pinned.query_tiles_on_chip == (4,)
    assert pinned.residency["SN"] == "dram"  # 1024 rows of 64K scores stream through DRAM
    with pytest.raises(
        mapper.ScheduleError,
        match=r"score_rows = 300 is not a granularity of 'flat' for P = 65536 "
        r"\(expected one of 256, 512, 1024, 65536\)",
    ):
        mapper.search(c, arch, mapper.SearchOptions(fusion="fused", sizes=w.sizes, score_rows=300))
    with pytest.raises(mapper.ScheduleError, match=r"has none to choose"):
        mapper.search(
            einsum.library.get("attention_1pass"),
            mapper.fusemax(),
            mapper.SearchOptions(fusion="fused", sizes=w.sizes, score_rows=256),
        )
    with pytest.raises(mapper.ScheduleError, match=r"score_rows must be a positive integer, found 0"):
        mapper.SearchOptions(fusion="fused", sizes=w.sizes, score_rows=0)
    with pytest.raises(
        mapper.ScheduleError, match=r"score_rows must be a positive integer or None, found -1"
    ):
        mapper.check(c, dataclasses.replace(s, score_rows=-1), arch)


def test_bind_names_an_unknown_einsum_or_array():
    sizes = {"P": 512, "M": 512, "E": 64, "F": 64}
    c = einsum.library.get("attention_1pass")
    with pytest.raises(
        ScheduleError,
        match=r"bind names Einsum 'XX', which attention_1pass does not have "
        r"\(its Einsums that do work: QK, LM, ",
    ):
        search(c, mapper.fusemax(), SearchOptions(fusion="fused", sizes=sizes, bind={"XX": "2d"}))
    with pytest.raises(
        ScheduleError,
        match=r"bind names Einsum 'qk', which attention_1pass does not have; did you mean 'QK'\?",
    ):
        search(c, mapper.fusemax(), SearchOptions(fusion="fused", sizes=sizes, bind={"qk": "2d"}))
    with pytest.raises(mapper.ArchError, match=r"has no array '2D'; did you mean '2d'\?"):
        search(c, mapper.fusemax(), SearchOptions(fusion="fused", sizes=sizes, bind={"QK": "2D"}))


def test_no_fusion_granularity_fits_says_why_for_each():
    import sim

    w = sim.workload("BERT", "16K")
    with pytest.raises(
        ScheduleError,
        match=r"no fusion granularity of 'flat' fits: 256 rows: a row of M = 16384 words "
        r"\(32768 bytes\) does not fit the 65536-byte buffer beside the key tile "
        r"\(131072 bytes\) and the Q and output rows of 256 queries; 512 rows: ",
    ):
        search(
            einsum.library.get("attention_3pass"),
            mapper.flat(buffer_bytes=64 * 1024),
            SearchOptions(fusion="fused", sizes=w.sizes),
        )


def test_buffer_geometry_is_validated():
    with pytest.raises(mapper.ArchError, match=r"buffer: ports must be positive, found 0"):
        mapper.Buffer(capacity_bytes=1024, ports=0)
    with pytest.raises(mapper.ArchError, match=r"buffer: width_bits must be an integer, found 64.5"):
        mapper.Buffer(capacity_bytes=1024, width_bits=64.5)
    with pytest.raises(mapper.ArchError, match=r"buffer: read_pj_per_word must not be negative, found -1"):
        mapper.Buffer(capacity_bytes=1024, read_pj_per_word=-1)
