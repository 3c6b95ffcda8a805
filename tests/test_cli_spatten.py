"""einforge topk, einforge spatten and evaluate on SpAtten: output and errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from einforge.cli import main


def test_topk_json_through_the_console_script() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "einforge",
            "topk",
            "--n",
            "1024",
            "--k",
            "307",
            "--parallelism",
            "16",
            "--draws",
            "200",
            "--seed",
            "0",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    out = json.loads(proc.stdout)
    assert out["total_cycles"] == pytest.approx(out["select_cycles"] + out["filter_cycles"])
    assert out["select_cycles"] == pytest.approx(250, rel=0.05)  # SpAtten's released table
    assert 0 < out["filter_cycles"] <= 1024 / 16


def test_topk_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topk", "--n", "64", "--k", "16", "--draws", "50"]) == 0
    text = capsys.readouterr().out
    assert "top-16 of 64 on 16 comparators a side" in text and "select" in text and "filter" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--n", "10", "--k", "11"], r"--k must be in 1..n = 10, got 11"),
        (["--n", "10", "--k", "2", "--parallelism", "0"], r"--parallelism must be at least 1, got 0"),
        (["--n", "10", "--k", "2", "--draws", "0"], r"--draws must be at least 1, got 0"),
        (["--n", "0", "--k", "1"], r"--n must be at least 1, got 0"),
        (["--n", "9", "--k", "1", "--round-overhead", "-1"], r"--round-overhead must be at least 0, got -1"),
    ],
)
def test_topk_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topk", *argv]) == 2
    import re

    assert re.search(message, capsys.readouterr().err)


def test_evaluate_token_pruning_on_spatten(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "evaluate",
        "--arch",
        "spatten",
        "--cascade",
        "spatten_token_pruning",
        "--sizes",
        "L=12,H=12,P=1,M=1024,E=64,F=64",
        "--json",
    ]
    assert main(argv) == 0
    [row] = json.loads(capsys.readouterr().out)
    runs = {r["run"]: r for r in row["runs"]}
    assert runs["pruned"]["cycles"] < runs["dense"]["cycles"]
    assert row["savings"]["dram_keys"] > 2
    assert main([*argv[:-1], "--prune", "token=0.5"]) == 0
    assert "saved: DRAM keys" in capsys.readouterr().out


def test_spatten_trace_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spatten", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["savings"]["dram_keys"] == pytest.approx(out["trace_keys_ratio"], rel=1e-12)
    assert out["savings"]["dram_values"] == pytest.approx(out["trace_values_ratio"], rel=1e-12)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["evaluate", "--arch", "fusemax", "--sizes", "P=1,M=64,E=8,F=8", "--prune", "token=0.5"],
            r"--prune applies to an architecture with top-k engines \(spatten\); 'fusemax' has none",
        ),
        (
            [
                "evaluate",
                "--arch",
                "spatten",
                "--cascade",
                "spatten_token_pruning",
                "--sizes",
                "L=2,P=1,M=64,E=8,F=8",
                "--prune",
                "tokens=0.5",
            ],
            r"'tokens=0.5' is not NAME=RATIO with NAME one of token, head, requant",
        ),
        (
            [
                "evaluate",
                "--arch",
                "spatten",
                "--cascade",
                "spatten_token_pruning",
                "--sizes",
                "L=2,P=1,M=64,E=8,F=8",
                "--prune",
                "token=1.5",
            ],
            r"token must be in \(0, 1\] \(requant in \[0, 1\]\), got 1.5",
        ),
        (
            [
                "evaluate",
                "--arch",
                "spatten",
                "--cascade",
                "spatten_token_pruning",
                "--sizes",
                "L=2,P=1,M=64,E=8,F=8",
                "--prune",
                "token=x",
            ],
            r"'token=x': 'x' is not a number",
        ),
        (
            ["evaluate", "--arch", "spatten", "--sizes", "P=1,M=64,E=8,F=8", "--systolic"],
            r"--systolic: not for 'spatten', which has top-k engines and runs SpAtten's pipeline",
        ),
        (["spatten", "--arch", "fusemax"], r"--arch 'fusemax' has no top-k engine"),
        (["spatten", "--trace", "nope.csv"], r"no SpAtten trace 'nope.csv'"),
    ],
)
def test_spatten_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    import re

    assert main(argv) == 2
    assert re.search(message, capsys.readouterr().err)


def test_show_prints_what_pruning_saves(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "spatten_local_value_pruning"]) == 0
    text = capsys.readouterr().out
    assert "passes over M: 4" in text
    assert "operations with pruning" in text and "mac=F*M*P*keep_VK" in text
