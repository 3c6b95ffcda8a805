"""Reports people read: the Perfetto trace (trace-event format) and the HTML reports, the latter
rendered by headless Chromium where it is installed."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import einsum
import mapper
import sim
from einforge.cli import main
from sim.htmlreport import evaluation_html, sweep_html
from sim.trace import trace, validate_trace


def _fusemax_4k() -> tuple[einsum.Cascade, mapper.Schedule, mapper.ArchSpec, sim.Workload]:
    c, a, w = einsum.library.get("attention_1pass"), mapper.fusemax(), sim.workload("BERT", "4K")
    return c, mapper.search(c, a, mapper.SearchOptions(sizes=w.sizes, fusion="fused")), a, w


def test_trace_has_a_track_per_array_and_dram_and_valid_slices(tmp_path: Path) -> None:
    c, s, a, w = _fusemax_4k()
    data = trace(c, s, a, w, tmp_path / "t.json", max_tiles=32)
    loaded = json.loads((tmp_path / "t.json").read_text())
    validate_trace(loaded)
    names = {e["args"]["name"] for e in loaded["traceEvents"] if e["name"] == "thread_name"}
    assert names == {"2d", "1d", "dram"}
    slices = [e for e in data["traceEvents"] if e["ph"] == "X"]
    assert {e["name"].split(" ")[0] for e in slices} >= {"QK", "SLNV", "RM", "RNV"}
    # each task's slice lasts its cycles at the clock
    qk = next(e for e in slices if e["name"].startswith("QK"))
    assert qk["dur"] == pytest.approx(qk["args"]["cycles"] * 1e6 / a.clock_hz)


def test_trace_of_loop_nests_and_a_broken_trace() -> None:
    c = einsum.parse(
        (Path(__file__).resolve().parents[2] / "examples/cascades/linear_attention.ein").read_text()
    )
    w = sim.workload(sizes="P=1024,M=1024,E=64,F=64")
    s = mapper.search(c, mapper.fusemax(), mapper.SearchOptions(sizes=w.sizes))
    data = trace(c, s, mapper.fusemax(), w)
    assert any(e.get("cat") == "loop nest" and e["name"] == "KV" for e in data["traceEvents"])
    bad = {
        "traceEvents": [
            {"name": "a", "ph": "X", "pid": 1, "tid": 1, "ts": 0, "dur": 5},
            {"name": "b", "ph": "X", "pid": 1, "tid": 1, "ts": 2, "dur": 5},
        ]
    }
    with pytest.raises(ValueError, match="b starts at 2 before a ends at 5"):
        validate_trace(bad)
    with pytest.raises(ValueError, match="dur must be a number >= 0"):
        validate_trace({"traceEvents": [{"name": "a", "ph": "X", "pid": 1, "tid": 1, "ts": 0, "dur": -1}]})


def test_evaluation_html_is_self_contained() -> None:
    c, s, a, w = _fusemax_4k()
    found = mapper.explore(c, a, mapper.SearchOptions(sizes=w.sizes, fusion="fused"))
    page = evaluation_html(sim.evaluate(c, s, a, w), s, found)
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 1
    # nothing fetched: no scripts, no linked files (the SVG's namespace URIs are names, not fetches)
    assert "<script" not in page and "<link" not in page and 'src="http' not in page and "<img" not in page
    for text in ("Utilisation", "Per Einsum", "schedule of attention_1pass", "certified optimum", "SLNV"):
        assert text in page


def test_cli_writes_html_and_trace_and_checks_paths_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "evaluate",
                "--seq",
                "4K",
                "--json",
                "--html",
                str(tmp_path / "r.html"),
                "--trace",
                str(tmp_path / "t.json"),
            ]
        )
        == 0
    )
    validate_trace(json.loads((tmp_path / "t.json").read_text()))
    assert "<svg" in (tmp_path / "r.html").read_text()
    assert main(["evaluate", "--html", str(tmp_path / "nope" / "r.html")]) == 2
    assert "does not exist" in capsys.readouterr().err


def _browser() -> str | None:
    return next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


@pytest.mark.skipif(_browser() is None, reason="no headless Chromium (Debian: apt-get install chromium)")
def test_html_reports_render_in_headless_chromium(tmp_path: Path) -> None:
    import matplotlib.image

    c, s, a, w = _fusemax_4k()
    rows = [
        {
            "workload.model": "BERT",
            "param.array_dim": d,
            "latency_s": 1.0 / d,
            "energy_pj": float(d),
            "error": "",
        }
        for d in (16, 32, 64)
    ]
    pages = {
        "evaluation": evaluation_html(sim.evaluate(c, s, a, w), s),
        "sweep": sweep_html(rows, ("latency_s", "energy_pj"), "toy"),
    }
    for name, page in pages.items():
        html = tmp_path / f"{name}.html"
        html.write_text(page)
        shot = tmp_path / f"{name}.png"
        subprocess.run(
            [
                _browser(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                f"--screenshot={shot}",
                "--window-size=1200,900",
                html.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        img = matplotlib.image.imread(shot)
        assert img.shape[0] >= 800 and img.shape[1] >= 1100
        # not blank: many distinct colours (text, tables, the plot), not one background
        assert img[..., :3].std() > 0.05, f"the {name} screenshot is blank"


def test_latency_breakdown_adds_up_and_says_where_time_goes() -> None:
    c, s, a, w = _fusemax_4k()
    r = sim.evaluate(c, s, a, w)
    assert set(r.latency_breakdown) == {"compute", "memory", "fill_drain", "stalls"}
    assert sum(r.latency_breakdown.values()) == pytest.approx(r.latency_cycles)
    assert r.latency_breakdown["compute"] == pytest.approx(max(r.busy_cycles.values()))
    # FLAT at 1M tokens on a narrow DRAM waits on memory; the breakdown says so
    flat = mapper.flat(bandwidth_bytes_per_s=25 * 2**30)
    c3, w1 = einsum.library.get("attention_3pass"), sim.workload("BERT", "64K", batch=1)
    s3 = mapper.search(c3, flat, mapper.SearchOptions(sizes=w1.sizes, fusion="fused"))
    r3 = sim.evaluate(c3, s3, flat, w1)
    assert r3.latency_breakdown["memory"] > 0.1 * r3.latency_cycles
    assert "latency      compute" in str(r3)


def test_trace_slices_take_the_simulators_cycles_with_and_without_systolic() -> None:
    """Each slice lasts the cycles the simulator charges that Einsum per tile (with systolic
    fill and drain when asked): the trace and sim.evaluate agree."""
    c, s, a, w = _fusemax_4k()
    for systolic in (False, True):
        r = sim.evaluate(c, s, a, w, systolic=systolic)
        data = trace(c, s, a, w, max_tiles=8, systolic=systolic)
        qk = next(e for e in data["traceEvents"] if e["ph"] == "X" and e["name"].startswith("QK"))
        assert qk["args"]["cycles"] == pytest.approx(r.per_einsum["QK"]["cycles_per_tile"])
