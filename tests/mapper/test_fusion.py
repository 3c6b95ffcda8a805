"""Fused mappings over a hierarchy (mapper.fusion): a two-GEMM chain counted by hand, the search
against mapping one Einsum at a time, attention fused at the buffer (FLAT's dataflow), and the
errors of a group that cannot be fused."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

import einsum
import mapper
from einforge.cli import main
from mapper import fusion, hierarchy
from mapper.analysis import LevelMapping
from mapper.errors import ArchError, ScheduleError

CHAIN = """
cascade chain
input A[m, k], B[k, n], D[n, p]
output E

C[m, n] = A[m, k] * B[k, n]
E[m, p] = C[m, n] * D[n, p]
"""


def _toy(capacity: int = 1000) -> hierarchy.Hierarchy:
    return hierarchy.Hierarchy.from_dict(
        {
            "name": "toy",
            "levels": [
                {"name": "DRAM", "kind": "dram", "read_pj": 10, "write_pj": 10},
                {"name": "buf", "capacity_words": capacity, "read_pj": 1, "write_pj": 1},
            ],
            "compute": {"name": "mac", "energy_pj": 0},
        }
    )


def _problems(m: int = 8) -> list:
    return fusion.problems_of(einsum.parse(CHAIN), ["C", "E"], {"M": m, "K": 4, "N": 4, "P": 4})


def _at_the_buffer() -> fusion.FusedMapping:
    """The toy chain over M = 8 in two tiles of 4 at DRAM, each GEMM's tile at the buffer."""
    return fusion.FusedMapping(
        level="buf",
        shared=((("M", 2),),),
        mappings=(
            (
                LevelMapping(target="DRAM", temporal=(("M", 2),)),
                LevelMapping(target="buf", temporal=(("M", 4), ("N", 4), ("K", 4))),
            ),
            (
                LevelMapping(target="DRAM", temporal=(("M", 2),)),
                LevelMapping(target="buf", temporal=(("M", 4), ("P", 4), ("N", 4))),
            ),
        ),
    )


def test_two_gemms_fused_at_the_buffer_by_hand() -> None:
    """M = 8 in two tiles of 4 at DRAM; each GEMM's tile at the buffer. C never leaves the buffer:
    DRAM moves A once (32), B and D once (16 each, stationary) and writes E once (32)."""
    ps = _problems()
    mapping = _at_the_buffer()
    r = fusion.evaluate(_toy(), ps, mapping, names=["C", "E"])
    c, e = r.analyses
    assert r.intermediates == ("C",)
    assert set(c.levels["DRAM"]) == {"A", "B"} and set(e.levels["DRAM"]) == {"D", "E"}
    assert (c.levels["DRAM"]["A"].reads, c.levels["DRAM"]["B"].reads) == (32, 16)
    assert (e.levels["DRAM"]["D"].reads, e.levels["DRAM"]["E"].updates, e.levels["DRAM"]["E"].reads) == (
        16,
        32,
        0,
    )
    # nothing below the buffer to hand C to E in, or to send E from
    with pytest.raises(ScheduleError, match=r"forward \(C, E\): C has no level below the fusion level buf"):
        fusion.evaluate(_toy(), ps, dataclasses.replace(mapping, forward=(("C", "E"),)), names=["C", "E"])
    with pytest.raises(ScheduleError, match=r"bypass names E, but E has no level below the fusion level buf"):
        fusion.evaluate(_toy(), ps, dataclasses.replace(mapping, bypass=("E",)), names=["C", "E"])
    # C at the buffer: made there (no fills), one update per MAC, its first update of each word reads nothing
    cc = c.levels["buf"]["C"]
    assert (cc.fills, cc.updates, cc.reads) == (0, 128, 128 - 32)
    ce = e.levels["buf"]["C"]
    assert (ce.fills, ce.reads) == (0, 128)
    # the buffer holds C's tile (16) and the larger GEMM's own tiles (A 16 + B 16, or D 16 + E 16)
    assert r.footprint_words == 16 + 32
    assert r.cycles == c.cycles + e.cycles == 2 * 128
    assert r.energy_pj == pytest.approx(c.energy_pj + e.energy_pj)
    dram = 10 * (32 + 16 + 16 + 32)
    assert c.level_energy_pj["DRAM"] + e.level_energy_pj["DRAM"] == dram
    # too small a buffer for one GEMM's tiles
    with pytest.raises(
        ScheduleError, match=r"the tiles buf keeps \(A, B, C\) take 48 words, but one instance holds 40"
    ):
        fusion.evaluate(_toy(40), ps, mapping, names=["C", "E"])


def test_own_loops_above_the_fusion_level_by_hand() -> None:
    """Each GEMM streams its weights through the buffer in halves: C runs N2 and E runs P2 at DRAM,
    below the shared M2. B and D are fetched once per M tile (32 each, where fetched whole they
    stay for both, 16); A is fetched once (32) and E written once (32). C stays whole in the buffer
    while C's loop steps through it (16), beside the larger of the GEMMs' own tiles, now a half
    of their weights: A 16 + B 8. 40 words, where the unstreamed group needs 48."""
    ps = _problems()

    def fm(c_own, c_buf, e_own, e_buf, kept=()):  # type: ignore[no-untyped-def]
        return fusion.FusedMapping(
            level="buf",
            shared=((("M", 2),),),
            mappings=(
                (
                    LevelMapping(target="DRAM", temporal=(("M", 2), *c_own)),
                    LevelMapping(target="buf", temporal=c_buf),
                ),
                (
                    LevelMapping(target="DRAM", temporal=(("M", 2), *e_own)),
                    LevelMapping(target="buf", temporal=e_buf),
                ),
            ),
            kept=kept,
        )

    mapping = fm((("N", 2),), (("M", 4), ("N", 2), ("K", 4)), (("P", 2),), (("M", 4), ("P", 2), ("N", 4)))
    r = fusion.evaluate(_toy(40), ps, mapping, names=["C", "E"])
    c, e = r.analyses
    dram = {t: (s.reads, s.updates) for a in (c, e) for t, s in a.levels["DRAM"].items()}
    assert dram == {"A": (32, 0), "B": (32, 0), "D": (32, 0), "E": (0, 32)}
    assert (c.levels["buf"]["C"].updates, e.levels["buf"]["C"].reads) == (128, 128)
    assert r.footprint_words == 40 and r.cycles == 256
    assert c.level_energy_pj["DRAM"] + e.level_energy_pj["DRAM"] == 10 * 4 * 32
    with pytest.raises(ScheduleError, match=r"buf must hold 40 words at once .* but it holds 39"):
        fusion.evaluate(_toy(39), ps, mapping, names=["C", "E"])
    # E reduces N: a loop of its own over N is allowed, its output E leaves the group; the buffer
    # keeps E's tile across it (written to DRAM once), and D is fetched in halves
    r2 = fusion.evaluate(
        _toy(), ps, fm((), (("M", 4), ("N", 4), ("K", 4)), (("N", 2),), (("M", 4), ("P", 4), ("N", 2)))
    )
    assert r2.analyses[1].levels["DRAM"]["E"].updates == 32 and r2.analyses[1].levels["DRAM"]["E"].reads == 0
    # what is refused, with the reason
    # C reduces K in a loop of its own: C stays whole at the buffer across it (16 words), so its
    # partial sums stay there, read back and updated each step; never where C is sent from the
    # registers (or held below the buffer), as they would cross the loop above that level
    over_k = fm((("K", 2),), (("M", 4), ("N", 4), ("K", 2)), (), (("M", 4), ("P", 4), ("N", 4)))
    r3 = fusion.evaluate(_toy(), ps, over_k, names=["C", "E"])
    cc = r3.analyses[0].levels["buf"]["C"]
    assert (cc.updates, cc.reads, cc.fills) == (128, 128 - 32, 0) and "C" not in r3.analyses[0].levels["DRAM"]
    with pytest.raises(
        ScheduleError,
        match=r"C runs loops of its own over K at DRAM, which it reduces, but its output C is sent",
    ):
        fusion.evaluate(_toy(), ps, dataclasses.replace(over_k, through=("C",)), names=["C", "E"])
    with pytest.raises(ScheduleError, match=r"C's own loop over Q at DRAM: C has no rank Q"):
        fusion.evaluate(
            _toy(), ps, fm((("Q", 2),), (("M", 4), ("N", 4), ("K", 4)), (), (("M", 4), ("P", 4), ("N", 4)))
        )
    with pytest.raises(
        ScheduleError, match=r"then \(at DRAM, just outside the fusion level\) loops of its own"
    ):
        fusion.evaluate(_toy(), ps, dataclasses.replace(mapping, shared=((("M", 4),),)), names=["C", "E"])


def test_the_search_streams_what_does_not_fit_whole() -> None:
    """B (4 x 16) and D (16 x 16) do not fit a 48-word buffer beside the group's C. The search maps
    an Einsum that fits nowhere below the shared loops again with loops of its own above the
    buffer, and where each fits alone but the group does not, streams smaller blocks until it
    does: it finds a fused mapping at every buffer down to 24 words, each within the buffer,
    B and D fetched once per M tile in blocks, C never leaving the buffer."""
    ps = fusion.problems_of(einsum.parse(CHAIN), ["C", "E"], {"M": 8, "K": 4, "N": 16, "P": 16})
    whole = fusion.search(_toy(), ps, names=["C", "E"], level="buf", metric="energy", budget=300)
    assert whole.footprint_words > 48 and all(len(ms[0].temporal) <= 1 for ms in whole.mapping.mappings)
    for cap in (48, 24):
        r = fusion.search(_toy(cap), ps, names=["C", "E"], level="buf", metric="energy", budget=300)
        assert r.footprint_words <= cap
        shared = r.mapping.shared[0]
        own = [ms[0].temporal[len(shared) :] for ms in r.mapping.mappings]
        assert own[0] and own[1]  # both stream their weights
        assert {r for loops in own for r, _f in loops} <= {"N", "P"}  # never C's reduced K
        again = fusion.evaluate(_toy(cap), ps, r.mapping, names=["C", "E"])
        assert again.energy_pj == r.energy_pj and again.cycles == r.cycles
        dram = {t: s for a in r.analyses for t, s in a.levels["DRAM"].items()}
        m_tiles = dict(shared)["M"]
        assert dram["B"].reads == 64 * m_tiles and dram["D"].reads == 256 * m_tiles
        assert "C" not in dram
    with pytest.raises(ScheduleError, match=r"no fused mapping of C, E fits"):
        fusion.search(_toy(16), ps, names=["C", "E"], level="buf", metric="energy", budget=300)


SOFT = """
cascade soft
input A[m, k], B[k, n], D[n, p]
output E

C[m, n] = A[m, k] * B[k, n]
S[m, n] = exp(C[m, n])
E[m, p] = S[m, n] * D[n, p]
"""


def test_an_elementwise_einsum_writes_over_its_input_in_place() -> None:
    """S = exp(C) reads C last and element by element: with ``in_place`` it writes S where C was.
    A tile of C or S is 4 x 16 = 64 words; while S runs the buffer holds both (128), in place one
    (64), and the group's footprint falls to the larger of C's (A 4, B 16, C 64) and E's (S 64,
    D 16, E 4): 84. The accesses do not change."""
    ps = fusion.problems_of(einsum.parse(SOFT), ["C", "S", "E"], {"M": 8, "K": 1, "N": 16, "P": 1})
    assert fusion.in_place_pairs(ps, fusion.intermediates(ps), set()) == (("S", "C"),)

    def fm(in_place):  # type: ignore[no-untyped-def]
        own = ((("M", 4), ("N", 16), ("K", 1)), (("M", 4), ("N", 16)), (("M", 4), ("P", 1), ("N", 16)))
        return fusion.FusedMapping(
            level="buf",
            shared=((("M", 2),),),
            mappings=tuple(
                (LevelMapping(target="DRAM", temporal=(("M", 2),)), LevelMapping(target="buf", temporal=t))
                for t in own
            ),
            in_place=in_place,
        )

    apart = fusion.evaluate(_toy(), ps, fm(()), names=["C", "S", "E"])
    over = fusion.evaluate(_toy(84), ps, fm((("S", "C"),)), names=["C", "S", "E"])
    assert (apart.footprint_words, over.footprint_words) == (128, 84)
    assert over.energy_pj == apart.energy_pj and over.cycles == apart.cycles
    with pytest.raises(ScheduleError, match=r"buf keeps \(C, S\) take 128 words, but one instance holds 84"):
        fusion.evaluate(_toy(84), ps, fm(()), names=["C", "S", "E"])
    with pytest.raises(
        ScheduleError, match=r"in_place names 'E', which is none of the group's on-chip tensors"
    ):
        fusion.evaluate(_toy(), ps, fm((("E", "S"),)), names=["C", "S", "E"])
    with pytest.raises(ScheduleError, match=r"S cannot be written over A in place: S does not read A"):
        fusion.evaluate(_toy(), ps, fm((("S", "A"),)), names=["C", "S", "E"])
    # transposed, S would not read C element by element as it writes it
    flipped = SOFT.replace("S[m, n] = exp(C[m, n])", "S[n, m] = exp(C[m, n])").replace(
        "S[m, n] * D", "S[n, m] * D"
    )
    pt = fusion.problems_of(einsum.parse(flipped), ["C", "S", "E"], {"M": 8, "K": 1, "N": 16, "P": 1})
    assert fusion.in_place_pairs(pt, fusion.intermediates(pt), set()) == ()
    with pytest.raises(ScheduleError, match=r"S does not read C element by element as it writes S"):
        fusion.evaluate(_toy(), pt, fm((("S", "C"),)), names=["C", "S", "E"])


def test_what_may_not_be_written_in_place() -> None:
    """Each rule of ``in_place`` refuses with its reason: an output over two inputs, over an input
    the group does not make, over one a later Einsum still reads, over one read after the group,
    and with the two at different levels."""
    text = SOFT.replace(
        "E[m, p] = S[m, n] * D[n, p]", "T[m, n] = S[m, n] + C[m, n]\nE[m, p] = T[m, n] * D[n, p]"
    )
    names = ["C", "S", "T", "E"]
    ps = fusion.problems_of(einsum.parse(text), names, {"M": 8, "K": 1, "N": 4, "P": 1})
    assert fusion.in_place_pairs(ps, fusion.intermediates(ps), set()) == (("T", "S"),)
    buf = {"C": (("M", 4), ("N", 4), ("K", 1)), "S": (("M", 4), ("N", 4)), "T": (("M", 4), ("N", 4))}
    buf["E"] = (("M", 4), ("P", 1), ("N", 4))

    def fm(in_place, hier_rf=False, kept=()):  # type: ignore[no-untyped-def]
        rf = (LevelMapping(target="rf"),) if hier_rf else ()
        return fusion.FusedMapping(
            level="buf",
            shared=((("M", 2),),),
            mappings=tuple(
                (
                    LevelMapping(target="DRAM", temporal=(("M", 2),)),
                    LevelMapping(target="buf", temporal=buf[n]),
                    *rf,
                )
                for n in names
            ),
            in_place=in_place,
            kept=kept,
        )

    assert fusion.evaluate(_toy(), ps, fm((("T", "S"),)), names=names).mapping.in_place == (("T", "S"),)
    cases = [
        ((("T", "S"), ("T", "S")), {}, r"in_place writes T over two inputs"),
        (
            (("C", "A"),),
            {},
            r"C cannot be written over A in place: A is not one of the group's on-chip tensors",
        ),
        ((("S", "C"),), {}, r"S cannot be written over C in place: T reads C after S"),
        (
            (("T", "S"),),
            {"drain": frozenset({"S"})},
            r"T cannot be written over S in place: S is read after the group",
        ),
    ]
    for in_place, options, match in cases:
        with pytest.raises(ScheduleError, match=match):
            fusion.evaluate(_toy(), ps, fm(in_place), names=names, **options)
    with pytest.raises(
        ScheduleError, match=r"T cannot be written over S in place: T and S are kept at different levels"
    ):
        fusion.evaluate(_with_rf(), ps, fm((("T", "S"),), True, kept=(("S", "rf"),)), names=names)


def test_bad_own_loops_and_live_shares_are_typed_errors() -> None:
    """A loop of one Einsum above the fusion level with a factor that is no positive integer (the
    analysis's check), a mask's share named twice, and a share the analysis is given outside
    (0, 1]."""
    ps = _problems()
    own = (
        (
            LevelMapping(target="DRAM", temporal=(("M", 2), ("N", 0))),
            LevelMapping(target="buf", temporal=(("M", 4), ("N", 4), ("K", 4))),
        ),
        (
            LevelMapping(target="DRAM", temporal=(("M", 2),)),
            LevelMapping(target="buf", temporal=(("M", 4), ("P", 4), ("N", 4))),
        ),
    )
    with pytest.raises(
        ScheduleError, match=r"mapping of DRAM: factor of N must be an integer in 1 .. 2\*\*40, found 0"
    ):
        fusion.evaluate(
            _toy(),
            ps,
            fusion.FusedMapping(level="buf", shared=((("M", 2),),), mappings=own),
            names=["C", "E"],
        )
    fine = ((LevelMapping(target="DRAM", temporal=(("M", 2),)), own[0][1]), own[1])  # C without the bad loop
    twice = fusion.FusedMapping(
        level="buf", shared=((("M", 2),),), mappings=fine, live=(("C", 0.5), ("C", 0.5))
    )
    with pytest.raises(ScheduleError, match=r"live names C twice"):
        fusion.evaluate(_toy(), ps, twice, names=["C", "E"])
    with pytest.raises(ScheduleError, match=r"analysis: live must be a fraction in \(0, 1\], found 1.5"):
        _toy().analyze(ps[0], fine[0], live=1.5)


def test_a_mask_s_skipped_tiles_by_hand() -> None:
    """``live``: C computes half of its tiles (a mask leaves the others wholly masked). Its
    computes' cycles and its buffer reads and updates halve; what DRAM sends, and the buffer
    fills it makes, do not (a skipped tile's inputs are fetched for the tiles beside it)."""
    ps = _problems()
    shared = ((("M", 2),),)
    mappings = (
        (
            LevelMapping(target="DRAM", temporal=(("M", 2),)),
            LevelMapping(target="buf", temporal=(("M", 4), ("N", 4), ("K", 4))),
        ),
        (
            LevelMapping(target="DRAM", temporal=(("M", 2),)),
            LevelMapping(target="buf", temporal=(("M", 4), ("P", 4), ("N", 4))),
        ),
    )
    full = fusion.evaluate(
        _toy(), ps, fusion.FusedMapping(level="buf", shared=shared, mappings=mappings), names=["C", "E"]
    )
    half = fusion.evaluate(
        _toy(),
        ps,
        fusion.FusedMapping(level="buf", shared=shared, mappings=mappings, live=(("C", 0.5),)),
        names=["C", "E"],
    )
    c0, c1 = full.analyses[0], half.analyses[0]
    assert c1.compute_cycles == c0.compute_cycles / 2 == 64
    assert c1.levels["DRAM"] == c0.levels["DRAM"]
    a0, a1 = c0.levels["buf"]["A"], c1.levels["buf"]["A"]
    assert (a1.fills, a1.reads) == (a0.fills, a0.reads / 2)
    assert c1.levels["buf"]["C"].updates == c0.levels["buf"]["C"].updates / 2
    assert half.analyses[1] == full.analyses[1]
    assert half.cycles == 64 + 128


def test_a_longer_chain_holds_the_intermediates_that_are_live() -> None:
    """C -> E -> G, one tile after another on one path: while an Einsum runs, the buffer holds its
    own tiles and the intermediates still to be read. At C: C (16) beside A and B (32); at E: C,
    E and D (48); at G: E beside F and G (48). C is dead once E has read it, so 48 words, not
    every intermediate and the largest GEMM's own (64)."""
    text = CHAIN.replace("input A[m, k], B[k, n], D[n, p]", "input A[m, k], B[k, n], D[n, p], F[p, q]")
    text = text.replace("output E", "output G") + "G[m, q] = E[m, p] * F[p, q]\n"
    ps = fusion.problems_of(einsum.parse(text), ["C", "E", "G"], {"M": 8, "K": 4, "N": 4, "P": 4, "Q": 4})
    assert fusion.intermediates(ps) == ("C", "E")
    own = {"C": ("N", "K"), "E": ("P", "N"), "G": ("Q", "P")}
    mapping = fusion.FusedMapping(
        level="buf",
        shared=((("M", 2),),),
        mappings=tuple(
            (
                LevelMapping(target="DRAM", temporal=(("M", 2),)),
                LevelMapping(target="buf", temporal=(("M", 4), (own[n][0], 4), (own[n][1], 4))),
            )
            for n in ("C", "E", "G")
        ),
    )
    assert fusion.evaluate(_toy(48), ps, mapping, names=["C", "E", "G"]).footprint_words == 48
    with pytest.raises(ScheduleError, match=r"48 words.* holds 47"):
        fusion.evaluate(_toy(47), ps, mapping, names=["C", "E", "G"])


def test_the_search_beats_one_at_a_time_and_agrees_with_evaluate() -> None:
    ps = _problems(64)
    h = _toy(4096)
    r = fusion.search(h, ps, names=["C", "E"], metric="energy", budget=400)
    assert r.mapping.level == "buf"
    assert "C" not in {t for a in r.analyses for t in a.levels["DRAM"]}
    again = fusion.evaluate(h, ps, r.mapping, names=["C", "E"])
    assert again.energy_pj == pytest.approx(r.energy_pj) and again.cycles == r.cycles
    from mapper import staged

    apart = staged.staged(h, ps, names=["C", "E"], metric="energy", budget=400, between="DRAM")
    # one stage at a time, C goes to DRAM (64 x 4 words written, then read back): 2 x 256 x 10 pJ
    # at least
    assert apart.energy_pj - r.energy_pj >= 2 * 256 * 10 * 0.99


def test_attention_fused_at_the_buffer() -> None:
    """attention_3pass's seven Einsums on FuseMax's 2D array as a hierarchy, fused over P at the
    buffer (FLAT's dataflow): only Q, K, V and AV cross DRAM."""
    c = einsum.library.get("attention_3pass")
    names = ["QK", "S", "GM", "SN", "SD", "A", "AV"]
    import mapper

    h = mapper.fusemax(array_dim=16).hierarchy("1d")  # its PEs have the divide unit A needs
    ps = fusion.problems_of(c, names, {"P": 64, "M": 256, "E": 16, "F": 16})
    assert fusion.fused_ranks(ps) == ("P",)
    r = fusion.search(h, ps, names=names, level="buffer", budget=60)
    dram = {t for a in r.analyses for t in a.levels["DRAM"]}
    assert dram == {"Q", "K", "V", "AV"}
    assert r.intermediates == ("QK", "S", "GM", "SN", "SD", "A")


def test_groups_that_cannot_be_fused() -> None:
    c = einsum.parse(CHAIN)
    ps = _problems()
    with pytest.raises(ScheduleError, match="needs at least two Einsums"):
        fusion.search(_toy(), ps[:1])
    with pytest.raises(ScheduleError, match="E reads nothing that C write"):
        fusion.search(
            _toy(),
            [ps[0], fusion.problems_of(einsum.library.get("matmul"), ["Z"], {"M": 8, "K": 4, "N": 4})[0]],
            names=["C", "E"],
        )
    with pytest.raises(
        ScheduleError, match=r"level 'bufer' is not a level below the outermost; did you mean 'buf'"
    ):
        fusion.search(_toy(), ps, level="bufer")
    del c


def test_einforge_map_fuse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cas = tmp_path / "chain.ein"
    cas.write_text(CHAIN)
    arch = tmp_path / "toy.yaml"
    arch.write_text(_toy(4096).to_yaml())
    base = ["map", "--arch", str(arch), "--cascade", str(cas), "--sizes", "M=64,K=4,N=4,P=4"]
    assert main([*base, "--fuse", "C,E", "--budget", "200"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("fused C -> E at buf") and "in 2 stages, one after another:" in out
    assert "best by edp:" in out
    assert main([*base, "--fuse", "all", "--budget", "50"]) == 0  # every Einsum of the cascade
    assert capsys.readouterr().out.startswith("fused C -> E at buf")
    assert main([*base, "--fuse", "C,F"]) == 2
    assert "has no Einsum 'F'" in capsys.readouterr().err
    assert main([*base, "--fuse", "C,E", "--einsum", "C"]) == 2
    assert "--fuse maps a group; it does not take --einsum" in capsys.readouterr().err


def test_einforge_map_fuse_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    cas = tmp_path / "chain.ein"
    cas.write_text(CHAIN)
    arch = tmp_path / "toy.yaml"
    arch.write_text(_toy(4096).to_yaml())
    args = ["map", "--arch", str(arch), "--cascade", str(cas), "--sizes", "M=64,K=4,N=4,P=4"]
    assert main([*args, "--fuse", "C,E", "--fusion-level", "buf", "--budget", "100", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["einsums"] == ["C", "E"] and out["fusion_level"] == "buf" and out["intermediates"] == ["C"]
    assert out["cycles"] == sum(e["cycles"] for e in out["per_einsum"].values())
    assert "C" not in out["per_einsum"]["C"]["levels"]["DRAM"]["per_tensor"]
    assert [s["einsums"] for s in out["staged"]["stages"]] == [["C"], ["E"]]
    assert out["best"] in ("fused", "stages")
    assert main([*args, "--einsum", "C", "--fusion-level", "buf"]) == 2
    assert "--fusion-level goes with --fuse" in capsys.readouterr().err
    # --mixed: the cut searched too (here C | E or C E), and the best of the three by the metric
    assert main([*args, "--fuse", "C,E", "--budget", "100", "--mixed", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    cuts = [[s["einsums"] for s in out["mixed"]["stages"]]]
    assert cuts[0] in ([["C"], ["E"]], [["C", "E"]])
    figures = {"fused": out["cycles"] * out["energy_pj"]} | {
        n: out[k]["cycles"] * out[k]["energy_pj"] for n, k in (("stages", "staged"), ("mixed", "mixed"))
    }
    assert figures[out["best"]] == min(figures.values())
    with pytest.raises(SystemExit):  # argparse: not a positive integer
        main([*args, "--fuse", "C,E", "--budget", "100", "--mixed", "0"])
    assert "--mixed: " in capsys.readouterr().err
    assert main([*args, "--einsum", "C", "--mixed"]) == 2
    assert "--mixed goes with --fuse" in capsys.readouterr().err


def test_fused_mappings_that_break_the_rules() -> None:
    ps = _problems()
    own = (LevelMapping(target="buf", temporal=(("M", 4), ("N", 4), ("K", 4))),)
    own_e = (LevelMapping(target="buf", temporal=(("M", 4), ("P", 4), ("N", 4))),)

    def mapping(shared_c, shared_e, shared=((("M", 2),),)):  # type: ignore[no-untyped-def]
        return fusion.FusedMapping(
            level="buf",
            shared=shared,
            mappings=(
                (LevelMapping(target="DRAM", temporal=shared_c), *own),
                (LevelMapping(target="DRAM", temporal=shared_e), *own_e),
            ),
        )

    with pytest.raises(
        ScheduleError,
        match=r"E's mapping of DRAM must be the shared loops \[\('M', 2\)\], then \(at DRAM.*loops of its own; "
        r"found temporal \[\('M', 4\)\]",
    ):
        fusion.evaluate(_toy(), ps, mapping((("M", 2),), (("M", 4),)), names=["C", "E"])
    with pytest.raises(
        ScheduleError, match=r"the shared loop over K at DRAM: K is not a fused rank \(\['M'\]\)"
    ):
        fusion.evaluate(
            _toy(), ps, mapping((("K", 2),), (("K", 2),), shared=((("K", 2),),)), names=["C", "E"]
        )
    with pytest.raises(ScheduleError, match=r"expected shared loops for the 1 level\(s\) outside buf"):
        fusion.evaluate(_toy(), ps, mapping((("M", 2),), (("M", 2),), shared=()), names=["C", "E"])
    keeps_nothing = hierarchy.Hierarchy.from_dict(
        {
            "name": "t",
            "levels": [
                {"name": "DRAM", "kind": "dram", "read_pj": 10, "write_pj": 10},
                {"name": "buf", "capacity_words": 1000, "read_pj": 1, "write_pj": 1, "keep": ["inputs"]},
            ],
            "compute": {"name": "mac"},
        }
    )
    with pytest.raises(ScheduleError, match=r"buf may not keep C's on-chip tensors"):
        fusion.evaluate(keeps_nothing, ps, mapping((("M", 2),), (("M", 2),)), names=["C", "E"])


def test_analyze_names_bad_produced_tensors() -> None:
    from mapper.analysis import analyze

    p = _problems()[0]
    storages = [s for s in _toy().storages(p)]
    maps = [
        LevelMapping(target="DRAM", keep=frozenset({"A", "B"})),
        LevelMapping(target="buf", temporal=(("M", 8), ("N", 4), ("K", 4))),
    ]
    with pytest.raises(ScheduleError, match=r"produced names 'X', which is no data space"):
        analyze(p, storages, maps, produced=frozenset({"X"}))
    hidden = [maps[0], LevelMapping(target="buf", temporal=maps[1].temporal, keep=frozenset({"A", "B"}))]
    with pytest.raises(ScheduleError, match=r"C is made on chip \(produced\) but no level keeps it"):
        analyze(p, storages, hidden, produced=frozenset({"C"}))
    with pytest.raises(
        ScheduleError, match=r"the outermost level DRAM must keep every tensor not made on chip"
    ):
        analyze(p, storages, maps)
    # made on chip and kept at the buffer: no parent, so no fills and no DRAM traffic for C
    a = analyze(p, storages, maps, produced=frozenset({"C"}))
    assert "C" not in a.levels["DRAM"] and a.levels["buf"]["C"].fills == 0


DECAY = """
cascade decay
input X[p, m]
partition M -> M1, M0
output Y

BX[p, m1, m0] = X[p, m1 * M0 + m0]
init R[p, m1 = 0] = 0
L[p, m1] = sum[m0] BX[p, m1, m0]
D[p, m1] = R[p, m1] * 0.5
R[p, m1 + 1] = D[p, m1] + L[p, m1]
Y[p] = R[p, M1]
"""


def test_a_recurrence_fused_keeps_its_state_on_chip_by_hand() -> None:
    """A decayed running sum over key blocks (the shape of FuseMax's 1-pass RD and RNV): D reads
    the state R that a later Einsum of the group writes, so R is a running state over M1, on chip
    one step a tile; only X crosses DRAM, once (P x M = 64 words), and R's last step is written
    out once (P = 4 words) for Y, which is outside the group."""
    c = einsum.parse(DECAY)
    names = ["L", "D", "R"]
    sizes = {"P": 4, "M": 16, "M1": 4, "M0": 4}
    ps = fusion.problems_of(c, names, sizes)
    steps, drain = fusion.steps_of(c), fusion.read_after(c, names)
    assert steps == {"R": "M1"} and drain == {"R"}
    h = _toy()
    r = fusion.search(h, ps, names=names, level="buf", metric="energy", budget=50, steps=steps, drain=drain)
    assert r.states == {"R": "M1"} and set(r.intermediates) == {"L", "D", "R"}
    assert r.mapping.shared == ((("M1", 4),),)  # one step of the recurrence a tile
    dram = {t: s for a in r.analyses for t, s in a.levels["DRAM"].items()}
    assert set(dram) == {"BX"} and dram["BX"].reads == 64
    assert r.drained == (("R", 4),)
    assert r.drain_pj == 4 * 1 + 4 * 10  # read at the buffer, written to DRAM
    assert r.scalar_accesses("DRAM") == 64 + 4
    # the state's tile (P = 4), L's and D's, and the largest Einsum's own tiles fit the buffer
    assert r.footprint_words <= 1000
    # a mapping that does not step M1 one at a time in the shared loops is refused
    bad = fusion.FusedMapping(
        level="buf",
        shared=((("M1", 2),),),
        mappings=tuple(
            (
                LevelMapping(target="DRAM", temporal=(("M1", 2),)),
                LevelMapping(
                    target="buf", temporal=tuple((d, n // 2 if d == "M1" else n) for d, n in p.dims)
                ),
            )
            for p in ps
        ),
    )
    with pytest.raises(ScheduleError, match=r"R is a running state over M1: the shared loops must step M1"):
        fusion.evaluate(h, ps, bad, names=names, steps=steps, drain=drain)
    # a state steps one tile at a time: no Einsum of its group runs loops of its own above the level
    first = r.mapping.mappings[0]
    own = (dataclasses.replace(first[0], temporal=(*first[0].temporal, ("P", 2))), *first[1:])
    with pytest.raises(
        ScheduleError, match=r"L runs loops of its own at DRAM .* in a group with running states"
    ):
        fusion.evaluate(
            h, ps, dataclasses.replace(r.mapping, mappings=(own, *r.mapping.mappings[1:])),
            names=names, steps=steps, drain=drain,
        )  # fmt: skip
    # without the cascade's recurrences, a read before the write is no chain
    with pytest.raises(ScheduleError, match=r"R is read by an Einsum before the one that writes it"):
        fusion.evaluate(h, ps, r.mapping, names=names)


def test_fusemax_s_1_pass_attention_is_a_fused_mapping(capsys) -> None:  # type: ignore[no-untyped-def]
    """The 1-pass cascade fused at FuseMax's buffer, one key block a tile (the shared loop over
    M1): RD and RNV are running states on chip, every intermediate stays there, and DRAM moves Q,
    K and V once, and RD's and RNV's last step once for AV (FuseMax's dataflow)."""
    args = [
        "map", "--arch", "fusemax", "--array", "1d", "--cascade", "attention_1pass",
        "--fuse", "QK,LM,RM,SLN,SLD,SLNV,PRM,SPD,RD,SPNV,RNV",
        "--sizes", "P=16,M=64,E=8,F=8,M0=16,M1=4", "--budget", "30", "--fusion-level", "buffer", "--json",
    ]  # fmt: skip
    assert main(args) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["running_states"] == {"RD": "M1", "RNV": "M1"}
    assert d["shared_loops"] == {"DRAM": [["M1", 4]]} and d["drained"] == {"RD": 16, "RNV": 16 * 8}
    dram = {
        (n, t): s["reads"]
        for n, a in d["per_einsum"].items()
        for t, s in a["levels"]["DRAM"]["per_tensor"].items()
    }
    # each once: read by the Einsums, or loaded whole into the buffer before the tiles
    moved = {t: w for (_n, t), w in dram.items()} | d["preloaded"]
    assert moved == {"Q": 16 * 8, "BK": 64 * 8, "BV": 64 * 8} and len(dram) + len(d["preloaded"]) == 3


SCALE = """
cascade scaled
input A[m, k], B[k, n], D[m]
output E

C[m, n] = A[m, k] * B[k, n]
E[m, n] = C[m, n] / D[m]
"""


def _tree() -> hierarchy.Hierarchy:
    """DRAM and a buffer shared by two arrays: 'mac' (4 PEs, multiply-accumulate only) and
    'div' (2 PEs that also divide)."""
    return hierarchy.Hierarchy.from_dict(
        {
            "name": "tree",
            "levels": [
                {"name": "DRAM", "kind": "dram", "read_pj": 10, "write_pj": 10},
                {"name": "buf", "capacity_words": 1000, "read_pj": 1, "write_pj": 1},
            ],
            "branches": [
                {
                    "name": "mac",
                    "levels": [
                        {
                            "name": "rf_mac",
                            "instances": 4,
                            "capacity_words": 64,
                            "read_pj": 0.1,
                            "write_pj": 0.1,
                        }
                    ],
                    "compute": {"name": "pe", "instances": 4, "units": {"mac": 1, "add": 0.5}},
                },
                {
                    "name": "div",
                    "levels": [
                        {
                            "name": "rf_div",
                            "instances": 2,
                            "capacity_words": 64,
                            "read_pj": 0.1,
                            "write_pj": 0.1,
                        }
                    ],
                    "compute": {"name": "pe", "instances": 2, "units": {"mac": 1, "add": 0.5, "div": 4}},
                },
            ],
        }
    )


def test_a_hierarchy_with_branches_round_trips_and_names_its_errors(tmp_path: Path) -> None:
    h = _tree()
    f = tmp_path / "tree.yaml"
    f.write_text(h.to_yaml())
    assert hierarchy.load(f) == h
    path = h.branch("div")
    assert [lv.name for lv in path.levels] == ["DRAM", "buf", "rf_div"] and path.compute.instances == 2
    with pytest.raises(ArchError, match=r"no branch 'dvi'; did you mean 'div'"):
        h.branch("dvi")
    d = h.to_dict()
    with pytest.raises(ArchError, match=r"give either compute .* or branches .*, not both"):
        hierarchy.Hierarchy.from_dict({**d, "compute": {"name": "x"}})
    twice = {**d, "branches": [d["branches"][0], {**d["branches"][1], "levels": d["branches"][0]["levels"]}]}
    with pytest.raises(ArchError, match=r"level names must be unique, \['rf_mac'\] repeat"):
        hierarchy.Hierarchy.from_dict(twice)
    with pytest.raises(ArchError, match=r"branches\[0\]: unknown key 'level'; did you mean 'levels'"):
        hierarchy.Hierarchy.from_dict({**d, "branches": [{"name": "x", "level": [], "compute": {}}]})
    p = fusion.problems_of(einsum.parse(SCALE), ["C"], {"M": 4, "K": 2, "N": 2})[0]
    with pytest.raises(ArchError, match=r"has branches \(mac, div\): pick one"):
        h.search(p)


THREE = """
cascade three
input A[m, k], B[k, n], D[m]
output G

C[m, n] = A[m, k] * B[k, n]
E[m, n] = C[m, n] / D[m]
G[m, n] = E[m, n] * E[m, n]
"""


def test_the_tile_engine_times_a_group_on_two_arrays_by_hand() -> None:
    """4 tiles. C on array a (10 cycles a tile), then E on b (30), which waits for C's tile: C
    runs ahead, E's tiles follow one another: 10 + 4 x 30 = 130 (the busiest array's work, 120,
    bounds it; one after another it would be 160). C on a, E on b, G on a again (10 each): a runs
    C's four tiles ahead, then each G waits for E: the tiles end at 50, 60, 70, 80."""
    c = einsum.parse(THREE)
    ps = fusion.problems_of(c, ["C", "E", "G"], {"M": 8, "K": 4, "N": 4})
    shared = ((("M", 4),),)
    assert fusion.timed(ps[:2], ["C", "E"], [40, 120], ["a", "b"], shared, {}) == 130
    assert fusion.busiest([40, 120], ["a", "b"]) == 120 and fusion.busiest([40, 120], []) == 160
    assert fusion.timed(ps, ["C", "E", "G"], [40, 40, 40], ["a", "b", "a"], shared, {}) == 80


def test_a_group_binds_each_einsum_to_a_branch_that_can_run_it() -> None:
    """C = A B, then E = C / D: E divides, so it runs on the 'div' array; C goes where the group's
    cycles (the tile engine's) are least. The figures are each Einsum's on its own path, and the
    intermediate C stays in the shared buffer."""
    c = einsum.parse(SCALE)
    ps = fusion.problems_of(c, ["C", "E"], {"M": 8, "K": 4, "N": 4})
    r = fusion.search(_tree(), ps, names=["C", "E"], metric="cycles", budget=60)
    assert r.mapping.binding[1] == "div" and r.intermediates == ("C",)
    again = fusion.evaluate(_tree(), ps, r.mapping, names=["C", "E"])
    assert again.analyses == r.analyses and again.cycles == r.cycles
    if len(set(r.mapping.binding)) > 1:  # two arrays at once: the tile engine's time
        want = fusion.timed(
            ps, ["C", "E"], [a.cycles for a in r.analyses], r.mapping.binding, r.mapping.shared, {}
        )
        assert r.cycles == want and r.bound <= r.cycles
    # bound by hand to the wrong array, E cannot run: the 'mac' PEs do not divide
    with pytest.raises(ArchError, match=r"has no unit for div"):
        fusion.evaluate(_tree(), ps, dataclasses.replace(r.mapping, binding=("mac", "mac")), names=["C", "E"])


def test_fusemax_s_arrays_as_branches(capsys) -> None:  # type: ignore[no-untyped-def]
    """A preset's arrays are branches under its buffer (ArchSpec.branched_hierarchy). A group
    fused there may bind each Einsum to either array: its space holds every binding the 2D array
    alone has, so (searched whole, the same candidates per Einsum) it is no slower."""
    import mapper

    h = mapper.fusemax().branched_hierarchy()
    assert [lv.name for lv in h.levels] == ["DRAM", "buffer"] and [b.name for b in h.branches] == ["2d", "1d"]
    assert h.branch("1d").compute.units is not None and "div" in h.branch("1d").compute.units
    args = [
        "map", "--arch", "fusemax", "--cascade", "attention_1pass", "--fuse", "QK,LM,RM,SLN,SLD,SLNV",
        "--sizes", "P=16,M=64,E=8,F=8,M0=16,M1=4", "--budget", "20", "--fusion-level", "buffer",
        "--metric", "cycles", "--json",
    ]  # fmt: skip
    assert main(args) == 0
    tree = json.loads(capsys.readouterr().out)
    assert main([*args, "--array", "2d"]) == 0
    alone = json.loads(capsys.readouterr().out)
    assert set(tree["binding"].values()) <= {"2d", "1d"} and not alone["binding"]
    assert tree["cycles"] <= alone["cycles"]
    bad = ["map", "--arch", "fusemax", "--cascade", "attention_1pass", "--einsum", "QK"]
    assert main([*bad, "--sizes", "P=4,M=8,E=4,F=4,M0=4,M1=2", "--array", "3d"]) != 0
    assert "has no array '3d'" in capsys.readouterr().err


def test_a_compute_unit_issues_operations_over_cycles() -> None:
    """issue: which unit runs each operation and for how many cycles; a point takes the busiest
    unit's. A softmax numerator (a subtract and an exponential a point) on a PE whose exp runs on
    the MAC for 6 cycles: 7 cycles; with an exp unit of its own: 1."""
    c = einsum.library.get("attention_1pass")
    sln = fusion.problems_of(c, ["SLN"], {"P": 4, "M": 8, "E": 4, "F": 4, "M0": 4, "M1": 2})[0]
    on_mac = hierarchy.Compute(issue={"add": "mac", "exp": ["mac", 6]})
    own = hierarchy.Compute(issue={"add": "mac", "exp": "exp"})
    assert (on_mac.point_cycles(sln), own.point_cycles(sln), hierarchy.Compute().point_cycles(sln)) == (
        7,
        1,
        1,
    )
    with pytest.raises(ArchError, match=r"issue: unknown operation 'exq'; did you mean 'exp'"):
        hierarchy.Compute(issue={"exq": "mac"})
    with pytest.raises(ArchError, match=r"issue.exp must be a unit name or \[unit, cycles\]"):
        hierarchy.Compute(issue={"exp": ["mac", 0]})


def test_fusemax_s_own_schedule_stated_in_the_hierarchy(capsys) -> None:  # type: ignore[no-untyped-def]
    """FuseMax's fused schedule of the 1-pass cascade at P = 256, M = 1024 (the template's: query
    tiles of 256, key blocks of 256, QK, LM, SLN, SLD and SLNV on the 2D array, the rest and AV on
    the 1D one) written as a fused mapping of the preset's tree. Each Einsum's compute cycles are
    the template's busy cycles, and the tile engine on the tree's numbers gives the template's
    latency and its lower bound, to the last digit; DRAM moves the same bytes. (The energy is
    higher: the tree keeps the group's intermediates in the shared buffer, where FuseMax keeps a
    tile's in the PEs.)"""
    import mapper

    assert (
        main(
            [
                "evaluate",
                "--arch",
                "fusemax",
                "--sizes",
                "P=256,M=1024,E=64,F=64",
                "--fusion",
                "fused",
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    point = out[0]
    c = einsum.library.get("attention_1pass")
    names = "QK,LM,RM,SLN,SLD,SLNV,PRM,SPD,RD,SPNV,RNV,AV".split(",")
    ps = fusion.problems_of(c, names, {"P": 256, "M": 1024, "E": 64, "F": 64, "M0": 256, "M1": 4})
    on_2d = {"QK", "LM", "SLN", "SLD", "SLNV"}

    def own(p, n):  # type: ignore[no-untyped-def]
        dims = dict(p.dims)
        b = "2d" if n in on_2d else "1d"
        # the 2D array: M0 down its rows (Y), P across its columns (X, the innermost loop)
        spatial = (*((("M0", 256),) if b == "2d" and "M0" in dims else ()), ("P", 256))
        return (
            LevelMapping(target="DRAM", temporal=(("M1", 4),) if n != "AV" else ()),
            LevelMapping(
                target="buffer",
                temporal=tuple((d, dims[d]) for d in ("E", "F") if d in dims),
                spatial=spatial,
            ),
            LevelMapping(target=f"rf_{b}"),
        )

    fm = fusion.FusedMapping(
        level="buffer",
        shared=((("M1", 4),),),
        mappings=tuple(own(p, n) for p, n in zip(ps, names, strict=True)),
        binding=tuple("2d" if n in on_2d else "1d" for n in names),
    )
    r = fusion.evaluate(
        mapper.fusemax().branched_hierarchy(), ps, fm, names=names, steps=fusion.steps_of(c),
        drain=fusion.read_after(c, names),
    )  # fmt: skip
    assert fusion.finals(ps, fusion.steps_of(c)) == {11}  # AV: once per query tile, after the last step
    template = {"QK": 260, "LM": 4, "RM": 4, "SLN": 28, "SLD": 4, "SLNV": 256, "PRM": 28, "SPD": 4, "RD": 4,
                "SPNV": 256, "RNV": 256, "AV": 64}  # fmt: skip
    assert {n: a.compute_cycles for n, a in zip(names, r.analyses, strict=True)} == template
    assert r.cycles == pytest.approx(point["latency_cycles"], rel=1e-12)
    assert r.bound == pytest.approx(point["search"]["bound"]["latency_cycles"], rel=1e-12)
    assert r.scalar_accesses("DRAM") * 2 == point["traffic_bytes"] and not r.drained
    # FuseMax keeps a tile's scores in the PEs: QK and SLN in the 2D array's register files, PRM
    # and SPD in the 1D array's (what stays on one array); the timing does not change
    kept = (("QK", "rf_2d"), ("SLN", "rf_2d"), ("PRM", "rf_1d"), ("SPD", "rf_1d"))
    pes = fusion.evaluate(
        mapper.fusemax().branched_hierarchy(), ps, dataclasses.replace(fm, kept=kept), names=names,
        steps=fusion.steps_of(c), drain=fusion.read_after(c, names),
    )  # fmt: skip
    # (the 1D register files hold 4 words at once: the most of those live while one Einsum runs)
    assert pes.cycles == r.cycles and pes.held_below == (("rf_2d", 3), ("rf_1d", 4))
    comp = point["per_component_pj"]
    assert sum(a.compute_energy_pj for a in pes.analyses) == pytest.approx(
        sum(v for k, v in comp.items() if k.split(".")[-1] in ("mac", "add", "max", "exp", "div")), rel=1e-12
    )
    assert sum(a.level_energy_pj["DRAM"] for a in pes.analyses) == pytest.approx(comp["dram"], rel=1e-12)
    # the buffer: the inputs exactly as FuseMax's accounting moves them (Q filled once and read each
    # step, K and V blocks once each), and what crosses between the arrays or steps
    at_buf = {t: s for a in pes.analyses for t, s in a.levels["buffer"].items() if t in ("Q", "BK", "BV")}
    assert {t: (s.fills, s.reads) for t, s in at_buf.items()} == {
        "Q": (16384, 65536), "BK": (65536, 65536), "BV": (65536, 65536)
    }  # fmt: skip
    assert {t for a in pes.analyses for t in a.levels["buffer"]} == {
        "Q", "BK", "BV", "LM", "RM", "SLD", "SLNV", "RD", "SPNV", "RNV", "AV"
    }  # fmt: skip
    # the tree's registers hold outputs and the group's tensors, operands stream past them: its
    # 2D register files cost what the template's output-register charge does, within its first
    # reads (the tree skips them) and the outputs of Einsums that reduce nothing (it writes them)
    rf = sum(a.level_energy_pj["rf_2d"] for a in pes.analyses if "rf_2d" in a.level_energy_pj)
    assert rf == pytest.approx(comp["2d.rf"], rel=0.005)
    # over the template (0.695e9): SLNV and SPNV through the buffer, and the states read once per
    # reader
    assert 0.709e9 < pes.energy_pj < 0.711e9 < 0.79e9 < r.energy_pj
    # LM and SLD cross the preset's link from the 2D array into the 1D one (no wire cost; the 1D
    # register files' fills are charged)
    more = dataclasses.replace(fm, kept=(*kept, ("LM", "rf_2d"), ("SLD", "rf_2d")))
    linked = fusion.evaluate(
        mapper.fusemax().branched_hierarchy(), ps, more, names=names, steps=fusion.steps_of(c),
        drain=fusion.read_after(c, names),
    )  # fmt: skip
    assert linked.linked == (("LM", "2d", "1d", 1024), ("SLD", "2d", "1d", 1024))
    assert linked.cycles == r.cycles and linked.energy_pj < pes.energy_pj
    # SLNV and SPNV, made one F at a time (the F loop at the buffer), stay in the PEs too: RNV
    # steps F with them, a group nested in the group. SLNV crosses the link one F at a time. Each
    # register file holds a slice: a word of SLNV, of SPNV. Now the buffer sees only Q, K, V, the
    # states, RM and AV, and the energy is the template's within 0.1%
    nested = dataclasses.replace(fm, kept=(*more.kept, ("SLNV", "rf_2d"), ("SPNV", "rf_1d")))
    inner = fusion.evaluate(
        mapper.fusemax().branched_hierarchy(), ps, nested, names=names, steps=fusion.steps_of(c),
        drain=fusion.read_after(c, names),
    )  # fmt: skip
    # (live at once: 3 words in a 2D PE, 5 in a 1D PE; every kept tensor beside the largest
    # Einsum's own tiles would be 6 and 9)
    assert inner.cycles == r.cycles and inner.held_below == (("rf_2d", 3), ("rf_1d", 5))
    assert inner.linked[-1] == ("SLNV", "2d", "1d", 65536)
    assert {t for a in inner.analyses for t in a.levels["buffer"]} == {
        "Q",
        "BK",
        "BV",
        "RM",
        "RD",
        "RNV",
        "AV",
    }
    assert inner.energy_pj == pytest.approx(point["energy_pj"], rel=1e-3)
    # RNV stepping F inside its register file instead does not step with SLNV's writer
    rnv = names.index("RNV")
    apart = list(nested.mappings)
    apart[rnv] = (
        apart[rnv][0],
        dataclasses.replace(apart[rnv][1], temporal=()),
        dataclasses.replace(apart[rnv][2], temporal=(("F", 64),)),
    )
    with pytest.raises(
        ScheduleError,
        match=r"SLNV runs a temporal loop over F \(64\) at buffer, above it, which RNV does not",
    ):
        fusion.evaluate(
            mapper.fusemax().branched_hierarchy(), ps, dataclasses.replace(nested, mappings=tuple(apart)),
            names=names, steps=fusion.steps_of(c), drain=fusion.read_after(c, names),
        )  # fmt: skip


def test_the_tree_s_errors_are_typed(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """A row reduction that is none of the kinds; --array on a file without branches; a single
    Einsum on a tree without --array; a final that is not last; recurrences whose rank is not the
    innermost shared loop."""
    with pytest.raises(
        ArchError, match=r"row_reduction must be one of chain, registered_tree, tree, found 'chian'"
    ):
        hierarchy.Compute(row_reduction="chian")
    flat = tmp_path / "flat.yaml"
    flat.write_text(_toy().to_yaml())
    tree = tmp_path / "tree.yaml"
    tree.write_text(_tree().to_yaml())
    base = ["map", "--cascade", "matmul", "--sizes", "M=8,K=4,N=4"]
    assert main([*base, "--arch", str(flat), "--array", "mac"]) != 0
    assert "this one has none" in capsys.readouterr().err
    assert main([*base, "--arch", str(tree)]) != 0
    assert (
        "has branches (mac, div): pick one for a single Einsum with --array NAME" in capsys.readouterr().err
    )
    c = einsum.parse(DECAY.replace("Y[p] = R[p, M1]", "Y[p] = R[p, M1]\nZ[p, m1] = L[p, m1] * 2"))
    names = ["L", "D", "R", "Y", "Z"]
    ps = fusion.problems_of(c, names, {"P": 4, "M": 16, "M1": 4, "M0": 4})
    with pytest.raises(
        ScheduleError, match=r"Y reads the recurrences' last step, .* must come after every other"
    ):
        fusion.search(_toy(), ps, names=names, steps=fusion.steps_of(c))
    ps = fusion.problems_of(c, ["L", "D", "R"], {"P": 4, "M": 16, "M1": 4, "M0": 4})
    with pytest.raises(
        ScheduleError, match=r"the recurrences step over M1, which must be the innermost shared loops"
    ):
        fusion.timed(
            ps,
            ["L", "D", "R"],
            [1.0, 1.0, 1.0],
            ["a", "b", "a"],
            ((("M1", 4), ("P", 2)),),
            fusion.steps_of(c),
        )


def _with_rf(capacity: int = 16) -> hierarchy.Hierarchy:
    """The toy with a register file of ``capacity`` words in each of 4 PEs under its buffer."""
    d = _toy().to_dict()
    d["levels"].append(
        {
            "name": "rf",
            "kind": "regfile",
            "instances": 4,
            "capacity_words": capacity,
            "read_pj": 0.1,
            "write_pj": 0.1,
        }
    )
    d["compute"]["instances"] = 4
    return hierarchy.Hierarchy.from_dict(d)


def _chain_in_pes(  # type: ignore[no-untyped-def]
    e_buf: LevelMapping | None = None,
    kept: tuple[tuple[str, str], ...] = (("C", "rf"),),
    e_rf: tuple[tuple[str, int], ...] = (("M", 4),),
):
    """C and E over M = 8 in two tiles; both spread N across the 4 PEs and run M inside them."""
    c_maps = (
        LevelMapping(target="DRAM", temporal=(("M", 2),)),
        LevelMapping(target="buf", temporal=(("K", 4),), spatial=(("N", 4),)),
        LevelMapping(target="rf", temporal=(("M", 4),)),
    )
    e_maps = (
        LevelMapping(target="DRAM", temporal=(("M", 2),)),
        e_buf or LevelMapping(target="buf", temporal=(("P", 4),), spatial=(("N", 4),)),
        LevelMapping(target="rf", temporal=e_rf),
    )
    return fusion.FusedMapping(level="buf", shared=((("M", 2),),), mappings=(c_maps, e_maps), kept=kept)


def test_a_register_file_holds_an_input_from_outside_the_group_its_mapping_keeps_by_hand() -> None:
    """The register files keep only the output and what the group makes (``output``, ``on_chip``).
    E's mapping of rf keeping D (Timeloop's keep) holds D[n, p] in each PE across its 4 steps of M,
    which do not index D: the buffer reads D 32 times (4 PEs x 4 p x 2 tiles of M) instead of 128,
    and the register file takes D's 32 fills and 128 reads. Energy: 96 buffer reads saved at 1 pJ,
    160 register accesses added at 0.1 pJ: 80 pJ less. A PE holds C 4, D 1 and E 4: 9 words. A
    keep naming none of the group's tensors is a typed error."""
    d = _with_rf().to_dict()
    d["levels"][-1]["keep"] = ["output", "on_chip"]
    h = hierarchy.Hierarchy.from_dict(d)
    ps = _problems()
    m = _chain_in_pes(kept=())
    plain = fusion.evaluate(h, ps, m, names=["C", "E"])

    def keeping(*names: str) -> fusion.FusedMapping:
        e_maps = (*m.mappings[1][:2], dataclasses.replace(m.mappings[1][2], keep=names))
        return dataclasses.replace(m, mappings=(m.mappings[0], e_maps))

    r = fusion.evaluate(h, ps, keeping("D"), names=["C", "E"])
    before, after = plain.analyses[1].levels, r.analyses[1].levels
    assert "D" not in before["rf"] and before["buf"]["D"].reads == 128
    assert after["buf"]["D"].reads == 32
    assert (after["rf"]["D"].fills, after["rf"]["D"].reads) == (32, 128)
    assert plain.energy_pj - r.energy_pj == pytest.approx(96 * 1 - 160 * 0.1)
    assert r.cycles == plain.cycles
    d["levels"][-1]["capacity_words"] = 8
    with pytest.raises(
        ScheduleError, match=r"the tiles rf keeps \(C, D, E\) take 9 words, but one instance holds 8"
    ):
        fusion.evaluate(hierarchy.Hierarchy.from_dict(d), ps, keeping("D"), names=["C", "E"])
    with pytest.raises(
        ScheduleError,
        match=r"^fusion: E's mapping of rf keeps 'd', which is none of the group's tensors \(A, B, C, D, E\); did you mean 'D'",
    ):
        fusion.evaluate(h, ps, keeping("d"), names=["C", "E"])


def test_an_intermediate_kept_in_the_pes_by_hand() -> None:
    """C kept in the PEs' register files, below the fusion level: each PE n writes C[m, n] for
    its 4 m and E reads them there. The buffer never sees C (it did: 32 updates, 32 reads); the
    register file takes C's 128 updates (96 reads back) and E's 128 reads, with no fills."""
    ps = _problems()
    at_buf = fusion.evaluate(_with_rf(), ps, _chain_in_pes(kept=()), names=["C", "E"])
    assert at_buf.analyses[0].levels["buf"]["C"].updates == 32
    assert at_buf.analyses[1].levels["buf"]["C"].reads == 32
    r = fusion.evaluate(_with_rf(), ps, _chain_in_pes(), names=["C", "E"])
    c, e = r.analyses
    assert "C" not in c.levels["buf"] and "C" not in e.levels["buf"]
    cc, ce = c.levels["rf"]["C"], e.levels["rf"]["C"]
    assert (cc.fills, cc.updates, cc.reads) == (0, 128, 96)
    assert (ce.fills, ce.reads, ce.updates) == (0, 128, 0)
    # the buffer's saving is C's 64 accesses (1 pJ each); the register file's cost is C's fills
    # it no longer takes from the buffer (32 x 0.1 pJ for E) and nothing else
    assert at_buf.energy_pj - r.energy_pj == pytest.approx(64 * 1 + 32 * 0.1)
    # each PE holds C's 4 words and the larger Einsum's own (A 4 + B 1): 9
    assert r.held_below == (("rf", 9),)
    assert r.to_dict()["kept_below"] == {"C": "rf"}
    assert "in rf: C" in r.describe()
    with pytest.raises(
        ScheduleError, match=r"the tiles rf keeps \(A, B, C\) take 9 words, but one instance holds 8"
    ):
        fusion.evaluate(_with_rf(8), ps, _chain_in_pes(), names=["C", "E"])
    # C -> E -> G with E in the PEs: E is live from E to G. While E runs a PE holds E's 4 beside C
    # 4 and D 1; while G runs E's 4 beside F 1 and G 4; while C runs E is not made yet: 9 words,
    # not E's 4 beside the largest Einsum's own 9 (13)
    text = CHAIN.replace("input A[m, k], B[k, n], D[n, p]", "input A[m, k], B[k, n], D[n, p], F[p, q]")
    text = text.replace("output E", "output G") + "G[m, q] = E[m, p] * F[p, q]\n"
    ps3 = fusion.problems_of(einsum.parse(text), ["C", "E", "G"], {"M": 8, "K": 4, "N": 4, "P": 4, "Q": 4})
    two = _chain_in_pes()
    g = (
        LevelMapping(target="DRAM", temporal=(("M", 2),)),
        LevelMapping(target="buf", temporal=(("Q", 4),), spatial=(("P", 4),)),
        LevelMapping(target="rf", temporal=(("M", 4),)),
    )
    e = (
        two.mappings[1][0],
        LevelMapping(target="buf", temporal=(("N", 4),), spatial=(("P", 4),)),
        two.mappings[1][2],
    )
    three = dataclasses.replace(two, mappings=(two.mappings[0], e, g), kept=(("E", "rf"),))
    assert fusion.evaluate(_with_rf(9), ps3, three, names=["C", "E", "G"]).held_below == (("rf", 9),)
    with pytest.raises(ScheduleError, match=r"take 9 words, but one instance holds 8"):
        fusion.evaluate(_with_rf(8), ps3, three, names=["C", "E", "G"])
    with pytest.raises(ScheduleError, match=r"spreads N \(none of C's ranks\)|temporal loop over N"):
        fusion.evaluate(_with_rf(9), ps3, dataclasses.replace(three, kept=(("C", "rf"), ("E", "rf"))))


def test_what_may_not_be_kept_below_the_fusion_level() -> None:
    """Each mapping here is valid with C at the buffer; kept in the PEs, each breaks one rule."""
    ps = _problems()
    h = _with_rf(64)
    with pytest.raises(ScheduleError, match=r"temporal loop over N \(4\) at buf, above it"):
        fusion.evaluate(h, ps, _chain_in_pes(LevelMapping(target="buf", temporal=(("P", 4), ("N", 4)))))
    with pytest.raises(ScheduleError, match=r"spreads P \(none of C's ranks\) across the instances"):
        e = LevelMapping(target="buf", spatial=(("P", 4),))
        fusion.evaluate(h, ps, _chain_in_pes(e, e_rf=(("M", 4), ("N", 4))))
    fusion.evaluate(h, ps, _chain_in_pes(e, e_rf=(("M", 4), ("N", 4)), kept=()))  # valid at the buffer
    with pytest.raises(ScheduleError, match=r"C and E spread it across the instances differently"):
        e = LevelMapping(target="buf", temporal=(("P", 4),), spatial=(("M", 4),))
        fusion.evaluate(h, ps, _chain_in_pes(e, e_rf=(("N", 4),)))
    fusion.evaluate(h, ps, _chain_in_pes(e, e_rf=(("N", 4),), kept=()))
    with pytest.raises(ScheduleError, match=r"kept names 'D', which is none of the group's on-chip tensors"):
        fusion.evaluate(h, ps, _chain_in_pes(kept=(("D", "rf"),)))
    with pytest.raises(
        ScheduleError, match=r"reaches no such level below the fusion level buf.*did you mean 'rf'"
    ):
        fusion.evaluate(h, ps, _chain_in_pes(kept=(("C", "rff"),)))
    with pytest.raises(ScheduleError, match=r"C is read after the group"):
        fusion.evaluate(h, ps, _chain_in_pes(), drain=frozenset({"C"}))


def test_the_search_keeps_an_intermediate_in_the_pes_when_that_pays() -> None:
    """On a tree the fusion level is a shared one (the buffer); the search then moves C into the
    register files of the branch both GEMMs run on, which saves energy."""
    ps = _problems(16)
    h = _tree()
    r = fusion.search(h, ps, names=["C", "E"], metric="energy", budget=400)
    assert r.mapping.level == "buf" and len(set(r.mapping.binding)) == 1
    assert r.mapping.kept == (("C", f"rf_{r.mapping.binding[0]}"),)
    again = fusion.evaluate(h, ps, r.mapping, names=["C", "E"])
    assert again.energy_pj == pytest.approx(r.energy_pj)
    flat = dataclasses.replace(r.mapping, kept=())
    assert fusion.evaluate(h, ps, flat, names=["C", "E"]).energy_pj > r.energy_pj
    # C also read after the group, E reading it in the group: it cannot be sent past the buffer
    with pytest.raises(ScheduleError, match=r"bypass names C, but E reads it in the group: only its writer"):
        fusion.evaluate(
            h, ps, dataclasses.replace(flat, bypass=("C",)), names=["C", "E"], drain=frozenset({"C"})
        )
    # E, the group's output, can: the same DRAM words, no buffer update of E
    sent = fusion.evaluate(h, ps, dataclasses.replace(flat, bypass=("E",)), names=["C", "E"])
    assert "E" not in sent.analyses[1].levels["buf"] and sent.scalar_accesses("DRAM") == fusion.evaluate(
        h, ps, flat, names=["C", "E"]
    ).scalar_accesses("DRAM")


def test_the_fused_search_tries_each_split_of_the_shared_loops_once() -> None:
    """Each split of a fused rank over the levels outside the fusion level multiplies to the rank
    (the last factor is the rest); a running state's rank is stepped whole in the shared loops."""
    assert fusion._splits(4, 2) == [(1, 4), (2, 2), (4, 1)]
    assert fusion._splits(8, 3) == [
        (1, 1, 8),
        (1, 2, 4),
        (1, 4, 2),
        (1, 8, 1),
        (2, 1, 4),
        (2, 2, 2),
        (2, 4, 1),
        (4, 1, 2),
        (4, 2, 1),
        (8, 1, 1),
    ]
    seen: list[str] = []
    fusion.search(
        _toy(4096), _problems(16), names=["C", "E"], metric="energy", budget=50, progress=seen.append
    )
    assert len(seen) == len(set(seen)) == 5  # M = 16 over DRAM: 1, 2, 4, 8, 16


def test_a_compute_unit_runs_the_einsum_kinds_its_array_does() -> None:
    """FLAT's 2D array runs contractions only (its preset's einsum_kinds), and a map that only
    scales one (S, QK's epilogue) beside it: the tree says so, and a fused group or stages never
    put GM, SN, SD or A there; S goes there only with QK."""
    import mapper

    h = mapper.flat().branched_hierarchy()
    assert [b.compute.kinds for b in h.branches] == [("contraction",), None]
    c = einsum.library.get("attention_3pass")
    names = ["QK", "S", "GM", "SN", "SD", "A", "AV"]
    ps = fusion.problems_of(c, names, {"P": 64, "M": 256, "E": 16, "F": 16})
    assert [(p.kind, p.epilogue_of) for p in ps[:3]] == [("contraction", ""), ("map", "QK"), ("reduce", "")]
    two_d = h.branch("2d")
    with pytest.raises(ArchError, match=r"SD is a reduce; mac runs contraction"):
        two_d.search(ps[4], budget=10)
    with pytest.raises(ArchError, match=r"S is a map \(an epilogue of QK, it runs here only beside it\)"):
        two_d.search(ps[1], budget=10)
    assert two_d.search(ps[1], budget=10, with_producer=True).evaluated
    r = fusion.search(h, ps, names=names, metric="cycles", budget=40, level="buffer")
    on = dict(zip(names, r.mapping.binding, strict=True))
    assert all(on[n] == "1d" for n in ("GM", "SN", "SD", "A"))
    assert on["S"] == "1d" or on["QK"] == "2d"
    with pytest.raises(
        ArchError, match=r"compute 'pe': kinds: unknown Einsum kind 'reduction'; did you mean 'reduce'"
    ):
        hierarchy.Compute(name="pe", kinds=["contraction", "reduction"])
    # a hierarchy file says it, and round trips
    d = _tree().to_dict()
    d["branches"][0]["compute"]["kinds"] = ["contraction"]
    back = hierarchy.Hierarchy.from_dict(d)
    assert back.branches[0].compute.kinds == ("contraction",)
    assert hierarchy.Hierarchy.from_dict(back.to_dict()) == back


def _template_point(arch: str, p_size: int, m_size: int) -> dict:  # type: ignore[type-arg]
    """``einforge evaluate --arch ARCH --sizes P=..,M=..,E=64,F=64 --fusion fused --json``: the
    template's fused schedule and its figures."""
    import io
    from contextlib import redirect_stdout

    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["evaluate", "--arch", arch, "--sizes", f"P={p_size},M={m_size},E=64,F=64",
                     "--fusion", "fused", "--json"]) == 0  # fmt: skip
    return json.loads(out.getvalue())[0]  # type: ignore[no-any-return]


def _fusemax_template_as_tree(p_size: int, m_size: int):  # type: ignore[no-untyped-def]
    """The template's fused schedule of the 1-pass cascade at P x M (``einforge evaluate --fusion
    fused``) and the same schedule as a fused mapping of FuseMax's tree: query tiles and key
    blocks as the template tiles them, its bindings, and Q and the K and V blocks loaded whole
    into the buffer before the tiles (the template's query tiles held on chip)."""
    import mapper

    point = _template_point("fusemax", p_size, m_size)
    sched = point["search"]["schedule"]
    tp, tm = sched["tile"]["P"], sched["tile"]["M0"]
    q, m1 = p_size // tp, m_size // tm
    c = einsum.library.get("attention_1pass")
    names = "QK,LM,RM,SLN,SLD,SLNV,PRM,SPD,RD,SPNV,RNV,AV".split(",")
    ps = fusion.problems_of(c, names, {"P": p_size, "M": m_size, "E": 64, "F": 64, "M0": tm, "M1": m1})
    on = {n: sched["binding"][n] for n in names}
    outer = ((("P", q),) if q > 1 else ()) + (("M1", m1),)

    def own(p, n):  # type: ignore[no-untyped-def]
        dims = dict(p.dims)
        spatial = (*((("M0", tm),) if on[n] == "2d" and "M0" in dims else ()), ("P", tp))
        return (
            LevelMapping(target="DRAM", temporal=outer if n != "AV" else outer[:-1]),
            LevelMapping(
                target="buffer",
                temporal=tuple((d, dims[d]) for d in ("E", "F") if d in dims),
                spatial=spatial,
            ),  # fmt: skip
            LevelMapping(target=f"rf_{on[n]}"),
        )

    fm = fusion.FusedMapping(
        level="buffer", shared=(outer,), mappings=tuple(own(p, n) for p, n in zip(ps, names, strict=True)),
        binding=tuple(on[n] for n in names), preload=("Q", "BK", "BV"),
    )  # fmt: skip
    r = fusion.evaluate(
        mapper.fusemax().branched_hierarchy(), ps, fm, names=names, steps=fusion.steps_of(c),
        drain=fusion.read_after(c, names),
    )  # fmt: skip
    return point, r


@pytest.mark.parametrize(("p_size", "m_size"), [(256, 1024), (1024, 4096), (4096, 4096)])
def test_fusemax_s_fused_schedules_are_instances_of_its_tree(p_size: int, m_size: int) -> None:
    """At every size the template's fused schedule, stated in the tree with its inputs loaded
    whole into the buffer, takes the template's latency to the last digit (the tile engine on
    the analysis's numbers), and DRAM moves the template's bytes. At 1024 x 4096 the template
    holds 4 query tiles on chip and at 4096 x 4096 16: each K and V block is loaded once."""
    point, r = _fusemax_template_as_tree(p_size, m_size)
    assert r.cycles == pytest.approx(point["latency_cycles"], rel=1e-12)
    assert r.scalar_accesses("DRAM") * 2 == point["traffic_bytes"]
    assert r.bound <= r.cycles
    assert dict(r.loaded) == {"Q": p_size * 64, "BK": m_size * 64, "BV": m_size * 64}
    if p_size == 256:
        assert r.bound == pytest.approx(point["search"]["bound"]["latency_cycles"], rel=1e-12)


def test_an_input_preloaded_into_the_fusion_level_by_hand() -> None:
    """B loaded whole into the buffer before the two tiles: DRAM reads it once there (16 words,
    10 pJ each) and the buffer takes 16 fills (1 pJ each); C's own analysis no longer reads B
    from DRAM. The totals do not move (B was stationary), the accounting does."""
    ps = _problems()
    plain = fusion.evaluate(_toy(), ps, _two_tiles(), names=["C", "E"])
    r = fusion.evaluate(_toy(), ps, dataclasses.replace(_two_tiles(), preload=("B",)), names=["C", "E"])
    assert "B" not in r.analyses[0].levels["DRAM"] and r.analyses[0].levels["buf"]["B"].fills == 0
    assert r.loaded == (("B", 16),) and r.load_pj == 16 * 10 + 16 * 1
    assert r.scalar_accesses("DRAM") == plain.scalar_accesses("DRAM")
    assert r.energy_pj == pytest.approx(plain.energy_pj)
    assert "loaded whole into buf before the tiles: B (16 words" in r.describe()
    assert r.to_dict()["preloaded"] == {"B": 16}
    with pytest.raises(
        ScheduleError, match=r"preload names 'C', which is no input of C, E read from outside it"
    ):
        fusion.evaluate(_toy(), ps, dataclasses.replace(_two_tiles(), preload=("C",)), names=["C", "E"])
    with pytest.raises(ScheduleError, match=r"preload names 'BB'.*did you mean 'B'"):
        fusion.evaluate(_toy(), ps, dataclasses.replace(_two_tiles(), preload=("BB",)), names=["C", "E"])
    with pytest.raises(
        ScheduleError, match=r"buf must hold 64 words at once \(what it keeps of the preloaded B"
    ):
        fusion.evaluate(_toy(63), ps, dataclasses.replace(_two_tiles(), preload=("B",)), names=["C", "E"])
    # loaded again under the shared loop over M (B has no M): twice, 32 words, 16 held at once
    again = fusion.evaluate(
        _toy(), ps, dataclasses.replace(_two_tiles(), preload=("B",), preload_outside=1), names=["C", "E"]
    )
    assert again.loaded == (("B", 32),) and again.footprint_words == r.footprint_words
    assert again.scalar_accesses("DRAM") == plain.scalar_accesses("DRAM") + 16
    with pytest.raises(
        ScheduleError, match=r"preload_outside must be an integer in 0 \.\. 1 \(the shared loops\), found 2"
    ):
        fusion.evaluate(_toy(), ps, dataclasses.replace(_two_tiles(), preload=("B",), preload_outside=2))


def _two_tiles() -> fusion.FusedMapping:
    """The hand-counted chain's mapping: M in two tiles at DRAM, each GEMM's tile at the buffer."""
    return fusion.FusedMapping(
        level="buf",
        shared=((("M", 2),),),
        mappings=(
            (
                LevelMapping(target="DRAM", temporal=(("M", 2),)),
                LevelMapping(target="buf", temporal=(("M", 4), ("N", 4), ("K", 4))),
            ),
            (
                LevelMapping(target="DRAM", temporal=(("M", 2),)),
                LevelMapping(target="buf", temporal=(("M", 4), ("P", 4), ("N", 4))),
            ),
        ),
    )


def _linked(pj: float = 0.5) -> hierarchy.Hierarchy:
    """The two-array tree with a link from the 'mac' array to the 'div' one."""
    d = _tree().to_dict()
    d["branches"][0]["links"] = {"div": pj}
    return hierarchy.Hierarchy.from_dict(d)


def _across():  # type: ignore[no-untyped-def]
    """C = A B on 'mac' and E = C / D on 'div', M = 8 in two tiles; each spreads M over 2 of its PEs."""
    c = (
        LevelMapping(target="DRAM", temporal=(("M", 2),)),
        LevelMapping(target="buf", temporal=(("K", 4),), spatial=(("M", 2),)),
        LevelMapping(target="rf_mac", temporal=(("M", 2), ("N", 4))),
    )
    e = (
        LevelMapping(target="DRAM", temporal=(("M", 2),)),
        LevelMapping(target="buf", spatial=(("M", 2),)),
        LevelMapping(target="rf_div", temporal=(("M", 2), ("N", 4))),
    )
    return fusion.FusedMapping(
        level="buf", shared=((("M", 2),),), mappings=(c, e), binding=("mac", "div"), kept=(("C", "rf_mac"),)
    )


def test_a_tensor_crosses_a_link_between_arrays_by_hand() -> None:
    """C made in the 'mac' PEs' register files crosses the link into the 'div' PEs' (0.5 pJ a
    word): its 32 words go over the link once and fill the far register files once (0.1 pJ each);
    the buffer never sees C, and E reads it where it arrived."""
    ps = fusion.problems_of(einsum.parse(SCALE), ["C", "E"], {"M": 8, "K": 4, "N": 4})
    r = fusion.evaluate(_linked(), ps, _across(), names=["C", "E"])
    assert r.linked == (("C", "mac", "div", 32),) and r.link_fills == (("rf_div", 32),)
    assert r.link_pj == pytest.approx(32 * 0.5 + 32 * 0.1)
    assert "C" not in r.analyses[0].levels["buf"] and "C" not in r.analyses[1].levels["buf"]
    assert r.analyses[1].levels["rf_div"]["C"].reads == 32 and r.analyses[1].levels["rf_div"]["C"].fills == 0
    assert r.scalar_accesses("rf_div") == sum(a.scalar_accesses("rf_div") for a in r.analyses[1:]) + 32
    assert "across links: C mac -> div (32 words)" in r.describe()
    at_buf = fusion.evaluate(_linked(), ps, dataclasses.replace(_across(), kept=()), names=["C", "E"])
    assert at_buf.energy_pj - r.energy_pj > 0  # 64 buffer accesses at 1 pJ saved, 16 + 3.2 paid
    with pytest.raises(ScheduleError, match=r"no link runs from mac to div"):
        fusion.evaluate(_tree(), ps, _across(), names=["C", "E"])
    with pytest.raises(
        ScheduleError, match=r"C crosses the link from mac to div, but E spreads its ranks differently"
    ):
        m = _across()
        e = (m.mappings[1][0], LevelMapping(target="buf", spatial=(("N", 2),)),
             LevelMapping(target="rf_div", temporal=(("M", 4), ("N", 2))))  # fmt: skip
        fusion.evaluate(_linked(), ps, dataclasses.replace(m, mappings=(m.mappings[0], e)), names=["C", "E"])
    with pytest.raises(
        ArchError, match=r"branch 'mac' links to 'dvi', which is no other branch; did you mean 'div'"
    ):
        d = _tree().to_dict()
        d["branches"][0]["links"] = {"dvi": 1.0}
        hierarchy.Hierarchy.from_dict(d)
    assert hierarchy.Hierarchy.from_dict(_linked().to_dict()) == _linked()


def test_the_documented_two_array_tree_parses_and_its_link_carries_a_tensor() -> None:
    """docs/architecture.md's two-array hierarchy, as written there, with its link from 'mac' to
    'div': the chain C = A B, E = C / D keeps C in 'mac''s register files and reads it in 'div''s."""
    import yaml

    text = (Path(__file__).parents[2] / "docs" / "architecture.md").read_text()
    block = text.split("```yaml\nname: two-arrays\n", 1)[1].split("```", 1)[0]
    h = hierarchy.Hierarchy.from_dict(yaml.safe_load("name: two-arrays\n" + block))
    assert h.branches[0].links == {"div": 0.5}
    ps = fusion.problems_of(einsum.parse(SCALE), ["C", "E"], {"M": 8, "K": 4, "N": 4})
    r = fusion.evaluate(h, ps, _across(), names=["C", "E"])
    assert r.linked == (("C", "mac", "div", 32),)


def _flat_mapping(p, array: str, outer: tuple[tuple[str, int], ...]):  # type: ignore[no-untyped-def]
    """How FLAT's template maps an Einsum of a query tile: on the 2D array M down the rows and P
    across the columns, the rest of M, E and F in time; on the 1D array P across, M in time;
    ``outer``: the query tiles at DRAM."""
    dims = dict(p.dims)
    if array == "2d":
        spatial = (("M", 256), ("P", 256)) if "M" in dims else (("P", 256),)
        steps = {"M": dims.get("M", 1) // 256, "E": dims.get("E", 1), "F": dims.get("F", 1)}
        temporal = tuple((d, f) for d, f in steps.items() if d in dims and f > 1)
    else:
        spatial, temporal = (("P", 256),), tuple((d, dims[d]) for d in ("M",) if d in dims)
    return (
        LevelMapping(target="DRAM", temporal=outer),
        LevelMapping(target="buffer", temporal=temporal, spatial=spatial),
        LevelMapping(target=f"rf_{array}"),
    )


def _flat_template_as_tree(p_size: int, m_size: int):  # type: ignore[no-untyped-def]
    """The template's fused schedule of the 3-pass cascade on FLAT at P x M and the same schedule
    as a fused mapping of FLAT's tree: query tiles as the template tiles them (the scores of a tile
    whole, M down the 2D array's rows and P across), QK, S and AV on the 2D array and the softmax
    on the 1D one, Q, K and V preloaded where several query tiles share them."""
    import mapper

    point = _template_point("flat", p_size, m_size)
    sched = point["search"]["schedule"]
    q = p_size // sched["tile"]["P"]
    c = einsum.library.get("attention_3pass")
    names = ["QK", "S", "GM", "SN", "SD", "A", "AV"]
    ps = fusion.problems_of(c, names, {"P": p_size, "M": m_size, "E": 64, "F": 64})
    on = sched["binding"]
    outer = (("P", q),) if q > 1 else ()

    fm = fusion.FusedMapping(
        level="buffer", shared=(outer,), mappings=tuple(_flat_mapping(p, on[n], outer) for p, n in zip(ps, names, strict=True)),
        binding=tuple(on[n] for n in names), preload=("Q", "K", "V") if q > 1 else (),
    )  # fmt: skip
    return point, fusion.evaluate(mapper.flat().branched_hierarchy(), ps, fm, names=names)


@pytest.mark.parametrize(("p_size", "m_size"), [(256, 1024), (1024, 1024), (256, 4096)])
def test_flat_s_fused_schedules_are_instances_of_its_tree(p_size: int, m_size: int) -> None:
    """FLAT's fused schedule (every score of a query tile on chip, the arrays one after another)
    stated in FLAT's tree takes the template's latency to the last digit, with the template's
    busy cycles Einsum by Einsum and its DRAM bytes."""
    point, r = _flat_template_as_tree(p_size, m_size)
    assert r.cycles == pytest.approx(point["latency_cycles"], rel=1e-12)
    assert r.scalar_accesses("DRAM") * 2 == point["traffic_bytes"]
    busy = {n: a.compute_cycles for n, a in zip(r.names, r.analyses, strict=True)}
    assert busy == {n: v["busy_cycles"] for n, v in point["per_einsum"].items()}


def test_flat_s_scores_handed_to_their_epilogue_inside_the_pes() -> None:
    """FLAT hands QK to its epilogue S one M block at a time (both step M at the buffer): QK
    kept in the 2D array's register files is a group nested in the group, and the buffer no longer
    sees it. SN cannot stay in the 1D PEs the same way: A reads it beside SD, their sum over M."""
    import mapper

    point, r = _flat_template_as_tree(256, 1024)
    c = einsum.library.get("attention_3pass")
    names = ["QK", "S", "GM", "SN", "SD", "A", "AV"]
    ps = fusion.problems_of(c, names, {"P": 256, "M": 1024, "E": 64, "F": 64})
    h = mapper.flat().branched_hierarchy()
    inner = fusion.evaluate(h, ps, dataclasses.replace(r.mapping, kept=(("QK", "rf_2d"),)), names=names)
    assert inner.cycles == r.cycles == pytest.approx(point["latency_cycles"], rel=1e-12)
    assert all("QK" not in a.levels["buffer"] for a in inner.analyses)
    # QK's 262,144 words written and read once each at the buffer are gone
    saved = sum(a.levels["buffer"]["QK"].accesses for a in r.analyses if "QK" in a.levels["buffer"])
    assert saved == 2 * 256 * 1024
    assert inner.energy_pj < r.energy_pj
    with pytest.raises(ScheduleError, match=r"A reads it beside SD, which is made from SN over all of M"):
        fusion.evaluate(h, ps, dataclasses.replace(r.mapping, kept=(("SN", "rf_1d"),)), names=names)


def test_the_rest_of_the_kept_preload_and_link_errors() -> None:
    """A tensor kept twice, an input preloaded twice, a crossing whose far branch has no level at
    that depth, and links that are not a map of branches to non-negative pJ."""
    ps = _problems()
    with pytest.raises(ScheduleError, match=r"kept names C twice"):
        fusion.evaluate(_with_rf(), ps, _chain_in_pes(kept=(("C", "rf"), ("C", "rf"))))
    with pytest.raises(ScheduleError, match=r"preload names B twice"):
        fusion.evaluate(_toy(), ps, dataclasses.replace(_two_tiles(), preload=("B", "B")), names=["C", "E"])
    d = _linked().to_dict()
    d["branches"][1]["levels"] = []  # 'div' has no register file below the buffer
    d["branches"][1]["compute"]["instances"] = 1
    shallow = hierarchy.Hierarchy.from_dict(d)
    ps2 = fusion.problems_of(einsum.parse(SCALE), ["C", "E"], {"M": 8, "K": 4, "N": 4})
    m = _across()
    e = (m.mappings[1][0], LevelMapping(target="buf", temporal=(("M", 4), ("N", 4))))
    with pytest.raises(
        ScheduleError, match=r"C crosses from mac to div, but div has no level at the depth of rf_mac"
    ):
        fusion.evaluate(shallow, ps2, dataclasses.replace(m, mappings=(m.mappings[0], e)), names=["C", "E"])
    for links, why in (
        ([1], r"links must map branch names to pJ per word"),
        ({"div": -1}, r"links.div must be >= 0"),
    ):
        d = _tree().to_dict()
        d["branches"][0]["links"] = links
        with pytest.raises(ArchError, match=why):
            hierarchy.Hierarchy.from_dict(d)


def _pes_with_buffers(capacity: int = 64) -> hierarchy.Hierarchy:
    """DRAM, a global buffer, and 4 PEs each with a buffer of its own and one MAC (Simba-like)."""
    return hierarchy.Hierarchy.from_dict(
        {
            "name": "pe-buffers",
            "levels": [
                {"name": "DRAM", "kind": "dram", "read_pj": 10, "write_pj": 10},
                {"name": "glb", "capacity_words": 4096, "read_pj": 2, "write_pj": 2},
                {"name": "pebuf", "instances": 4, "capacity_words": capacity, "read_pj": 1, "write_pj": 1},
            ],
            "compute": {"name": "mac", "instances": 4, "energy_pj": 0},
        }
    )


def _split_across_pes(spatial: tuple[tuple[str, int], ...] = (("M", 4),)) -> fusion.FusedMapping:
    """C then E fused at the PE buffers, M = 16 spread over the 4 PEs (4 rows each), no temporal
    shared loop: each PE makes its 4 x 4 block of C and reads it back for E."""
    rows = 16 // math.prod(f for _r, f in spatial)
    c = (
        LevelMapping(target="DRAM"),
        LevelMapping(target="glb", spatial=spatial),
        LevelMapping(target="pebuf", temporal=(("M", rows), ("N", 4), ("K", 4))),
    )
    e = (
        LevelMapping(target="DRAM"),
        LevelMapping(target="glb", spatial=spatial),
        LevelMapping(target="pebuf", temporal=(("M", rows), ("P", 4), ("N", 4))),
    )
    return fusion.FusedMapping(level="pebuf", shared=((), ()), mappings=(c, e), shared_spatial=((), spatial))


def test_a_group_fused_at_the_pes_buffers_with_shared_spatial_loops_by_hand() -> None:
    """Fused at the PE buffers, the group spreads M over the 4 PEs as one shared spatial loop:
    each PE makes its 4 rows of C (64 MACs) and E reads them there (64): 128 cycles, against
    512 on one PE. C never reaches the global buffer or DRAM; B and D are read once from DRAM and
    multicast to the 4 PEs; A and E move once. Each PE holds C's block (16) beside the larger
    Einsum's own tiles (32): 48 words."""
    ps = _problems(16)
    h = _pes_with_buffers()
    r = fusion.evaluate(h, ps, _split_across_pes(), names=["C", "E"])
    assert r.cycles == 128 and r.footprint_words == 48
    assert all("C" not in a.levels[lv] for a in r.analyses for lv in ("DRAM", "glb"))
    dram = {t: s for a in r.analyses for t, s in a.levels["DRAM"].items()}
    assert {t: (s.reads, s.updates) for t, s in dram.items()} == {
        "A": (64, 0), "B": (16, 0), "D": (16, 0), "E": (0, 64)
    }  # fmt: skip
    assert r.analyses[0].levels["pebuf"]["B"].fills == 64  # each PE its copy of B
    one = fusion.evaluate(_pes_with_buffers(256), ps, _split_across_pes(()), names=["C", "E"])
    assert one.cycles == 512  # on one PE (whose buffer must then hold 16 rows)
    assert r.to_dict()["shared_spatial_loops"] == {"glb": [["M", 4]]}
    assert "glb: M4 across" in r.describe()
    # the search tries it: the fusion level has 4 instances under the global buffer
    best = fusion.search(h, ps, names=["C", "E"], level="pebuf", metric="cycles", budget=200)
    assert best.cycles == 128 and best.mapping.shared_spatial == ((), (("M", 4),))


def test_the_shared_spatial_loops_errors() -> None:
    ps = _problems(16)
    h = _pes_with_buffers()
    bad = dataclasses.replace(_split_across_pes(), shared_spatial=((), (("K", 4),)))
    with pytest.raises(ScheduleError, match=r"shared spatial loop over K at glb: K is not a fused rank"):
        fusion.evaluate(h, ps, bad, names=["C", "E"])
    with pytest.raises(ScheduleError, match=r"preload with shared spatial loops"):
        fusion.evaluate(h, ps, dataclasses.replace(_split_across_pes(), preload=("B",)), names=["C", "E"])
    with pytest.raises(ScheduleError, match=r"shared_spatial gives 3 levels, but only 2 lie outside"):
        fusion.evaluate(h, ps, dataclasses.replace(_split_across_pes(), shared_spatial=((), (), ())))
    apart = _split_across_pes()
    e = (apart.mappings[1][0], LevelMapping(target="glb", spatial=(("M", 2),)), apart.mappings[1][2])
    with pytest.raises(
        ScheduleError, match=r"E's mapping of glb must be the shared loops \[\] and the shared "
    ):
        fusion.evaluate(h, ps, dataclasses.replace(apart, mappings=(apart.mappings[0], e)), names=["C", "E"])
    c = einsum.parse(DECAY)
    dps = fusion.problems_of(c, ["D", "R"], {"P": 4, "M": 16, "M1": 4, "M0": 4})
    with pytest.raises(ScheduleError, match=r"a recurrence steps M1 one tile at a time"):
        fusion.evaluate(
            h, dps,
            fusion.FusedMapping(level="pebuf", shared=((("M1", 4),), ()), mappings=((), ()),
                                shared_spatial=((), (("M1", 2),))),
            names=["D", "R"], steps=fusion.steps_of(c),
        )  # fmt: skip


def _tile_template_as_tree(arch, p: int, m: int, e: int, f: int, interleave: bool):  # type: ignore[no-untyped-def]
    """The RTL attention tile's schedule (``einforge.rtlflow.tile.model_attention``: the template's
    fused 1-pass schedule, an array's rows over M0 and columns over P, every query tile sharing one
    pass over K and V) as a fused mapping of the tile preset's tree (:func:`mapper.as_tree.fused`):
    K and V preloaded (fetched by the first query tile, kept for the others), the template's
    lookahead and interleaving; the preset's DRAM times its transfers tile by tile with its latency,
    the buffer's synchronous read costs a cycle a tile to the Einsums that stream an input, the
    divider drains once a tile."""
    from einforge.rtlflow.tile import model_attention
    from mapper import as_tree

    report, sched = model_attention(arch, p=p, m=m, e=e, f=f, interleave=interleave)
    c = einsum.library.get("attention_1pass")
    tree = as_tree.fused(c, sched, arch, {"P": p, "M": m, "E": e, "F": f}, 1)
    assert tree.mapping.preload == ("BK", "BV") and tree.mapping.lookahead == sched.lookahead
    return report, tree.evaluate(), list(tree.problems)


@pytest.mark.parametrize("reduction", ["chain", "registered_tree", "tree"])
@pytest.mark.parametrize("interleave", [True, False])
@pytest.mark.parametrize(("e", "f"), [(16, 24), (64, 8)])
def test_the_rtl_tile_s_schedule_is_an_instance_of_its_tree(
    reduction: str, interleave: bool, e: int, f: int
) -> None:
    """The tile preset (``fusemax_tile``, the RTL's timing) as a tree, with the configurations of
    ``tests/rtl/test_tile.py::test_task_cycles_are_the_models``: the tile engine on the tree's
    numbers gives the template's latency to the last digit, and DRAM moves its bytes."""
    from einforge.rtlflow.tile import buffer_for, tile_arch

    div = 4 if interleave else 0
    arch = tile_arch(array=8, reduction=reduction, buffer_bytes=buffer_for(8, 128, e, f), div_latency=div)
    report, r, _ps = _tile_template_as_tree(arch, 64, 128, e, f, interleave)
    assert r.cycles == report.latency_cycles
    assert r.scalar_accesses("DRAM") * 2 == report.traffic_bytes
    assert r.tile_transfers and r.bound <= r.cycles


def test_the_rtl_tile_s_measured_cycles_are_the_tree_s() -> None:
    """The runs of ``tests/rtl/test_tile.py::test_deterministic_dram_cycles_equal_the_model``, where
    the RTL's measured cycles are the template's exactly (a DRAM of fixed latency 7, one beat a
    cycle): the tree gives the same cycles, with and without interleaving, with a 3-stage
    divider. Recorded RTL runs: 1,910, 2,664 and 1,934 cycles at 32 queries and keys; 4,174, 5,944
    and 4,210 at 48."""
    from einforge.rtlflow.tile import buffer_for, tile_arch

    got = []
    for seq in (32, 48):
        for interleave, div in ((True, 0), (False, 0), (True, 3)):
            arch = tile_arch(array=4, dram_bandwidth=1.0, dram_latency=7, dram_jitter=0,
                             buffer_bytes=buffer_for(4, 48, 8, 8), div_latency=div)  # fmt: skip
            report, r, _ps = _tile_template_as_tree(arch, seq, seq, 8, 8, interleave)
            assert r.cycles == report.latency_cycles
            got.append(r.cycles)
    assert got == [1910, 2664, 1934, 4174, 5944, 4210]


def test_tile_transfers_and_latencies_in_a_hierarchy_file() -> None:
    """``transfers: tile`` and ``latency_cycles`` on the outermost level, ``latency_cycles`` on a
    buffer, ``pipeline`` on compute units: they round trip, and the errors are typed."""
    from mapper.arch import fusemax_tile

    h = fusemax_tile(div_latency=2).branched_hierarchy()
    assert (h.levels[0].transfers, h.levels[0].latency_cycles, h.levels[1].latency_cycles) == (
        "tile",
        20.0,
        1,
    )
    assert {b.name: b.compute.pipeline for b in h.branches} == {"2d": None, "1d": {"div": 2}}
    back = hierarchy.Hierarchy.from_dict(h.to_dict())
    assert back == h
    d = h.to_dict()
    d["levels"][1]["transfers"] = "tile"
    with pytest.raises(
        ArchError, match=r"level 'buffer': transfers: tile is for the outermost level \(DRAM\)"
    ):
        hierarchy.Hierarchy.from_dict(d)
    d = h.to_dict()
    d["levels"][0]["transfers"] = "tiles"
    with pytest.raises(
        ArchError, match=r"transfers must be one of average, tile, found 'tiles'; did you mean"
    ):
        hierarchy.Hierarchy.from_dict(d)
    d = h.to_dict()
    d["branches"][1]["compute"]["pipeline"] = {"dvi": 2}
    with pytest.raises(ArchError, match=r"pipeline: unknown operation 'dvi'; did you mean 'div'"):
        hierarchy.Hierarchy.from_dict(d)
    d["branches"][1]["compute"]["pipeline"] = 3
    with pytest.raises(ArchError, match=r"compute 'mac': pipeline must map operations to cycles, found 3"):
        hierarchy.Hierarchy.from_dict(d)
    d["branches"][1]["compute"]["pipeline"] = {"div": -1}
    with pytest.raises(ArchError, match=r"pipeline\[div\] must be an integer in 0 \.\. "):
        hierarchy.Hierarchy.from_dict(d)


def test_the_tile_engine_s_settings_are_checked() -> None:
    """A negative lookahead, and with transfers tile by tile K preloaded but V fetched by every query
    tile, are typed errors."""
    from einforge.rtlflow.tile import buffer_for, tile_arch

    arch = tile_arch(
        array=4, dram_bandwidth=1.0, dram_latency=7, dram_jitter=0, buffer_bytes=buffer_for(4, 32, 8, 8)
    )
    _report, r, ps = _tile_template_as_tree(arch, 32, 32, 8, 8, True)
    c = einsum.library.get("attention_1pass")
    kw = dict(names=r.names, steps=fusion.steps_of(c), drain=fusion.read_after(c, r.names))
    with pytest.raises(ScheduleError, match=r"lookahead must be an integer >= 0, found -1"):
        fusion.evaluate(arch.branched_hierarchy(), ps, dataclasses.replace(r.mapping, lookahead=-1), **kw)
    with pytest.raises(ScheduleError, match=r"preloaded all or none"):
        half = dataclasses.replace(r.mapping, preload=("BK",))
        fusion.evaluate(arch.branched_hierarchy(), ps, half, **kw)


def test_the_pe_buffers_example_fuses_a_chain_across_its_pes() -> None:
    """``examples/pe_buffers.yaml``: two GEMMs fused at the 16 PE buffers spread M over them (a
    shared spatial loop), each PE running both on its own rows."""
    h = hierarchy.load(Path(__file__).parents[2] / "examples" / "pe_buffers.yaml")
    text = (Path(__file__).parents[2] / "examples" / "cascades" / "two_gemms.ein").read_text()
    ps = fusion.problems_of(einsum.parse(text), ["C", "E"], {"M": 64, "K": 16, "N": 16, "P": 16})
    r = fusion.search(h, ps, names=["C", "E"], level="pebuf", metric="cycles", budget=60)
    assert r.mapping.shared_spatial == ((), (("M", 16),))
    # 2 x 16,384 MACs on 256 MACs would take 128 cycles at best; one PE's 16 MACs, 2,048
    assert 128 <= r.cycles < 256


def test_the_search_hands_a_tensor_to_a_reader_in_the_registers_when_that_pays() -> None:
    """FLAT's 3-pass cascade on its tree: SN stays in the buffer for A, which needs SD whole, and
    the search lets SD take it from the 1D array's registers as SN is made, SD stepping SN's loops
    (``FusedMapping.forward``), which saves energy; the same mapping without it costs more."""
    import einsum

    arch = mapper.preset("flat")
    h = arch.branched_hierarchy()
    c = einsum.library.get("attention_3pass")
    names = [e.output for e in c.einsums]
    ps = fusion.problems_of(c, names, {"P": 64, "M": 256, "E": 16, "F": 16})
    drain = fusion.read_after(c, names)
    r = fusion.search(h, ps, names=names, metric="energy", budget=50, drain=drain)
    assert r.mapping.forward == (("SN", "SD"),)
    assert r.mapping.mappings[names.index("SD")] == r.mapping.mappings[names.index("SN")]
    without = fusion.evaluate(h, ps, dataclasses.replace(r.mapping, forward=()), names=names, drain=drain)
    assert without.energy_pj > r.energy_pj
    assert without.analyses[names.index("SD")].levels["buffer"]["SN"].reads == 64 * 256
    assert "SN" not in r.analyses[names.index("SD")].levels["buffer"]
    assert r.analyses[names.index("A")].levels["buffer"]["SN"].reads == 64 * 256


def test_a_tensor_through_the_outermost_level_between_passes_by_hand() -> None:
    """C made in the PEs and sent to DRAM (``through``): C's writer writes it once from its
    register files (32 words, never into the buffer) and E reads it back into its register files
    past the buffer, as an input, once per M tile (32 words). DRAM moves 64 words more than with C
    held in the buffer (96); the buffer holds E's own tiles (D 16 + E 16 = 32, where C's tile took
    16 more), and the register files what C's writer holds (9 per PE)."""
    ps = _problems()
    held = fusion.evaluate(_with_rf(), ps, _chain_in_pes(kept=()), names=["C", "E"])
    m = dataclasses.replace(_chain_in_pes(kept=()), through=("C",))
    r = fusion.evaluate(_with_rf(), ps, m, names=["C", "E"])
    c, e = r.analyses
    assert "C" not in c.levels["buf"] and "C" not in c.levels["DRAM"]
    assert r.drained == (("C", 32),)
    assert "C" not in e.levels["buf"] and (e.levels["DRAM"]["C"].reads, e.levels["rf"]["C"].fills) == (32, 32)
    assert (held.scalar_accesses("DRAM"), r.scalar_accesses("DRAM")) == (96, 96 + 32 + 32)
    assert (held.footprint_words, r.footprint_words) == (48, 32) and r.held_below == (("rf", 9),)
    # the write out is priced at DRAM (10 pJ a word) and the read back as E's fills
    assert r.drain_pj == 32 * 10
    assert r.to_dict()["through"] == ["C"] and "through DRAM between passes" in r.describe()
    bad = {
        "E": r"through names 'E', which is none of the tensors the group makes other than running states",
        "X": r"through names 'X'",
    }
    for t, msg in bad.items():
        with pytest.raises(ScheduleError, match=msg):
            fusion.evaluate(_with_rf(), ps, dataclasses.replace(m, through=(t,)), names=["C", "E"])
    with pytest.raises(ScheduleError, match=r"through names C twice"):
        fusion.evaluate(_with_rf(), ps, dataclasses.replace(m, through=("C", "C")), names=["C", "E"])
    with pytest.raises(ScheduleError, match=r"through names C, which is kept below the fusion level too"):
        fusion.evaluate(_with_rf(), ps, dataclasses.replace(m, kept=(("C", "rf"),)), names=["C", "E"])
    with pytest.raises(
        ScheduleError, match=r"through names C, but C has no level below the fusion level buf"
    ):
        fusion.evaluate(_toy(), ps, dataclasses.replace(_two(), through=("C",)), names=["C", "E"])


def _two(together: tuple[tuple[str, ...], ...] = ()) -> fusion.FusedMapping:
    """C and E each stream N in halves at DRAM, below the shared M2."""
    return fusion.FusedMapping(
        level="buf",
        shared=((("M", 2),),),
        mappings=(
            (
                LevelMapping(target="DRAM", temporal=(("M", 2), ("N", 2))),
                LevelMapping(target="buf", temporal=(("M", 4), ("N", 2), ("K", 4))),
            ),
            (
                LevelMapping(target="DRAM", temporal=(("M", 2), ("N", 2))),
                LevelMapping(target="buf", temporal=(("M", 4), ("P", 4), ("N", 2))),
            ),
        ),
        together=together,
    )


def test_einsums_that_step_their_own_loops_together_hold_one_step_by_hand() -> None:
    """C and E both run N in halves of their own at DRAM. One after the other, the buffer holds C
    whole (16) while C steps through it, beside the larger Einsum's own tiles (A 16 + B 8 = 24):
    40. Stepping together (``together``), C then E for each half, it holds one half of C (8):
    32. The accesses and the cycles are the same."""
    ps = _problems()
    apart = fusion.evaluate(_toy(), ps, _two(), names=["C", "E"])
    r = fusion.evaluate(_toy(), ps, _two((("C", "E"),)), names=["C", "E"])
    assert (apart.footprint_words, r.footprint_words) == (40, 32)
    assert (r.energy_pj, r.cycles) == (apart.energy_pj, apart.cycles)
    with pytest.raises(ScheduleError, match=r"buf must hold 40 words at once"):
        fusion.evaluate(_toy(39), ps, _two(), names=["C", "E"])
    assert fusion.evaluate(_toy(32), ps, _two((("C", "E"),)), names=["C", "E"]).footprint_words == 32
    assert (
        r.to_dict()["together"] == [["C", "E"]] and "stepping their own loops together: C, E" in r.describe()
    )
    with pytest.raises(ScheduleError, match=r"together names 'G', which is no Einsum of the group"):
        fusion.evaluate(_toy(), ps, _two((("C", "G"),)), names=["C", "E"])
    with pytest.raises(ScheduleError, match=r"together runs C: a run is two or more consecutive Einsums"):
        fusion.evaluate(_toy(), ps, _two((("C",),)), names=["C", "E"])
    with pytest.raises(ScheduleError, match=r"together names C twice"):
        fusion.evaluate(_toy(), ps, _two((("C", "E"), ("C",))), names=["C", "E"])
    differ = dataclasses.replace(
        _two((("C", "E"),)),
        mappings=(
            _two().mappings[0],
            (
                LevelMapping(target="DRAM", temporal=(("M", 2), ("P", 2))),
                LevelMapping(target="buf", temporal=(("M", 4), ("P", 2), ("N", 4))),
            ),
        ),
    )
    with pytest.raises(
        ScheduleError, match=r"together runs C, E, whose own loops above buf differ or are none"
    ):
        fusion.evaluate(_toy(), ps, differ, names=["C", "E"])


def test_a_tensor_read_back_by_a_run_that_steps_together_is_read_back_once_a_step_by_hand() -> None:
    """C goes through DRAM (``through``) and D (C's row sums) and E (C scaled by them) read it back,
    a row of M a step under their own loops. Apart, each reads C back past the buffer: 32 words
    each. Stepping together (``together``), D reads each row back into the buffer once (32 reads
    at DRAM, 32 fills) and E reads it there (32 buffer reads, none at DRAM), as FLAT's 1D array
    holds a few rows of scores for its max's pass and its exponent's: DRAM moves A 32 + B 16 + C
    out 32 + C back 32 + E 32 = 144 words against 176; energy 320 pJ of DRAM reads less, 96 of
    buffer accesses more (224 pJ less); the same cycles."""
    text = """
cascade rows
input A[m, k], B[k, n]
output E

C[m, n] = A[m, k] * B[k, n]
D[m] = C[m, n]
E[m, n] = C[m, n] * D[m]
"""
    ps = fusion.problems_of(einsum.parse(text), ["C", "D", "E"], {"M": 8, "K": 4, "N": 4})
    c = (
        LevelMapping(target="DRAM", temporal=(("M", 2),)),
        LevelMapping(target="buf", temporal=(("K", 4),), spatial=(("N", 4),)),
        LevelMapping(target="rf", temporal=(("M", 4),)),
    )
    row = (
        LevelMapping(target="DRAM", temporal=(("M", 2), ("M", 4))),
        LevelMapping(target="buf", spatial=(("N", 4),)),
        LevelMapping(target="rf"),
    )
    m = fusion.FusedMapping(level="buf", shared=((("M", 2),),), mappings=(c, row, row), through=("C",))
    apart = fusion.evaluate(_with_rf(), ps, m, names=["C", "D", "E"])
    r = fusion.evaluate(_with_rf(), ps, dataclasses.replace(m, together=(("D", "E"),)), names=["C", "D", "E"])
    _c, d, e = r.analyses
    assert (d.levels["DRAM"]["C"].reads, d.levels["buf"]["C"].fills, d.levels["buf"]["C"].reads) == (
        32,
        32,
        32,
    )
    assert "C" not in e.levels["DRAM"] and e.levels["buf"]["C"].reads == 32
    assert [a.levels["DRAM"]["C"].reads for a in apart.analyses[1:]] == [32, 32]
    assert (apart.scalar_accesses("DRAM"), r.scalar_accesses("DRAM")) == (176, 144)
    assert apart.energy_pj - r.energy_pj == pytest.approx(224)
    assert r.cycles == apart.cycles


def test_a_spilled_share_of_a_held_tensor_goes_out_and_back_by_hand() -> None:
    """C held in the buffer between the two GEMMs, a quarter of it spilled (``spill``, as FLAT
    spills the part of its rows of scores its buffer cannot hold): C's writer writes 8 of its 32
    words to DRAM and E reads them back, 16 DRAM words more (96 -> 112, 160 pJ at 10 pJ a word),
    moved by the group as its loads and drains are (the Einsums' own counts unchanged); the
    buffer holds 12 of C's 16-word tile (48 -> 44 words at once); the cycles are the same (DRAM
    is not the bottleneck)."""
    ps = _problems()
    m = _at_the_buffer()
    held = fusion.evaluate(_toy(), ps, m, names=["C", "E"])
    r = fusion.evaluate(_toy(), ps, dataclasses.replace(m, spill=(("C", 0.25),)), names=["C", "E"])
    assert r.spilled == (("C", 8, 8),) and r.analyses == held.analyses
    assert (held.scalar_accesses("DRAM"), r.scalar_accesses("DRAM")) == (96, 112)
    assert r.energy_pj - held.energy_pj == pytest.approx(160)
    assert (held.footprint_words, r.footprint_words) == (48, 44) and r.cycles == held.cycles
    assert r.to_dict()["spill"] == [["C", 0.25]]
    assert r.to_dict()["spilled"] == [{"tensor": "C", "out": 8, "back": 8}]
    assert "spilled: C (8 words out, 8 back), 160 pJ" in r.describe()
    bad = {
        (("E", 0.25),): r"spill names 'E', which is none of the group's on-chip tensors",
        (("C", 1.0),): r"spill fraction of C must be in \(0, 1\), found 1.0",
        (("C", 0.25), ("C", 0.5)): r"spill names C twice",
    }
    for spill, msg in bad.items():
        with pytest.raises(ScheduleError, match=msg):
            fusion.evaluate(_toy(), ps, dataclasses.replace(m, spill=spill), names=["C", "E"])
    with pytest.raises(ScheduleError, match=r"spill names 'C', which is sent from the registers or through"):
        fusion.evaluate(
            _with_rf(), ps, dataclasses.replace(_chain_in_pes(kept=()), through=("C",), spill=(("C", 0.5),)),
            names=["C", "E"],
        )  # fmt: skip


def test_a_tensor_through_the_outermost_level_is_not_written_over_in_place() -> None:
    """D = 2 C element by element may write D over C in place where C stays on chip; not where C
    goes out through DRAM and comes back (``through``): the error says which tensor goes."""
    text = """
cascade scaled
input A[m, k], B[k, n]
output E

C[m, n] = A[m, k] * B[k, n]
D[m, n] = C[m, n] * 2
E[m, n] = D[m, n] * D[m, n]
"""
    ps = fusion.problems_of(einsum.parse(text), ["C", "D", "E"], {"M": 8, "K": 4, "N": 4})
    maps = tuple(
        (
            LevelMapping(target="DRAM", temporal=(("M", 2),)),
            LevelMapping(target="buf", temporal=loops, spatial=(("N", 4),)),
            LevelMapping(target="rf", temporal=(("M", 4),)),
        )
        for loops in ((("K", 4),), (), ())
    )
    m = fusion.FusedMapping(level="buf", shared=((("M", 2),),), mappings=maps, in_place=(("D", "C"),))
    assert fusion.evaluate(_with_rf(), ps, m, names=["C", "D", "E"]).footprint_words > 0
    with pytest.raises(
        ScheduleError, match=r"D cannot be written over C in place: C goes through the outermost"
    ):
        fusion.evaluate(_with_rf(), ps, dataclasses.replace(m, through=("C",)), names=["C", "D", "E"])
