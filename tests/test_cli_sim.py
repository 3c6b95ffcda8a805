"""The spatial-model commands: evaluate (table and JSON), compare (table, plots), errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from einforge.cli import main


def test_evaluate_json_through_the_console_script() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "einforge", "evaluate", "--arch", "fusemax", "--cascade", "attention_1pass",
         "--model", "BERT,T5", "--seq", "1K,4096", "--json"],
        capture_output=True, text=True, check=True)
    rows = json.loads(proc.stdout)
    assert [(r["model"], r["seq"]) for r in rows] == [("BERT", 1024), ("BERT", 4096), ("T5", 1024), ("T5", 4096)]
    for r in rows:
        assert {"model", "seq", "latency_s", "latency_cycles", "energy_pj", "traffic_bytes", "utilization",
                "per_einsum", "per_component_pj"} <= set(r)
        assert set(r["utilization"]) == {"2d", "1d"}
    assert rows[0]["latency_s"] == pytest.approx(2.013e-3, rel=0.01)
    assert rows[0]["per_einsum"]["QK"]["unit"] == "2d"


def test_evaluate_table_and_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--arch", "flat", "--seq", "1K", "--end-to-end"]) == 0
    out = capsys.readouterr().out
    assert "attention_3pass on flat: BERT, seq 1024, batch 64" in out
    assert "gemms" in out
    assert main(["evaluate", "--arch", "fusemax", "--array-dim", "128", "--seq", "1K", "--no-interleave",
                 "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["utilization"]["1d"] < 0.5  # without interleaving the arrays wait on each other


def test_evaluate_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--seq", "1000"]) == 2
    assert "M = 1000 is not divisible by the key tile M0 = 256" in capsys.readouterr().err
    assert main(["evaluate", "--seq", "1G"]) == 2
    assert "sequence length '1G' is not a number like 1024, 1K, 64K or 1M" in capsys.readouterr().err
    assert main(["evaluate", "--model", "GPT"]) == 2
    assert "unknown model 'GPT'" in capsys.readouterr().err


def test_compare_writes_table_and_plots(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "--model", "BERT", "--seq", "1K,256K", "--out", str(tmp_path), "--format", "svg",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "FuseMax        mean speedup vs FLAT" in out
    for name in ("results.txt", "results.json", "speedup.svg", "energy_ratio.svg", "utilization.svg",
                 "energy_breakdown.svg"):
        assert (tmp_path / name).stat().st_size > 0
    assert len(json.loads((tmp_path / "results.json").read_text())) == 10
