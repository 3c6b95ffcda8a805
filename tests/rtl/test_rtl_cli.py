"""`einforge rtl check --json`, `rtl area --json` and `--waves` through the console entry point."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.rtl


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "einforge", "rtl", *args], capture_output=True, text=True, check=True
    )


def test_check_json_line() -> None:
    out = _run(
        "check", "topk", "--param", "n=12", "--param", "k=3", "--seed", "4", "--items", "10", "--json"
    ).stdout
    row = json.loads(out)  # exactly one JSON line on stdout, nothing else
    assert set(row) == {"block", "sim", "seed", "items", "mismatches", "cycles", "model_cycles"}
    assert (row["block"], row["sim"], row["seed"], row["items"], row["mismatches"]) == (
        "topk",
        "verilator",
        4,
        10,
        0,
    )
    assert row["cycles"] == row["model_cycles"] > 0


def test_check_waves_says_where() -> None:
    proc = _run(
        "check", "array1d", "-p", "pes=1", "-p", "f=1", "--sim", "verilator", "--items", "2", "--waves"
    )
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("waves: ")][0]
    assert line.endswith((".vcd", ".fst"))


def test_area_json() -> None:
    row = json.loads(
        _run("area", "topk", "-p", "n=4", "-p", "parallelism=2", "-p", "width=4", "--json").stdout
    )
    assert row["block"] == "topk" and row["cells"] > 100 and row["area_um2"] > 100.0


def test_area_array2d_is_per_pe() -> None:
    """array2d synthesises in seconds (it once hung in ABC's SAT sweep) and its area is per PE:
    four PEs cost three to four and a half times one (one multiplier each, little shared logic)."""
    small = ("-p", "e=2", "-p", "f=1", "-p", "width=8", "-p", "frac=4", "--json")
    one = json.loads(_run("area", "array2d", "-p", "rows=1", "-p", "cols=1", *small).stdout)
    four = json.loads(_run("area", "array2d", "-p", "rows=2", "-p", "cols=2", *small).stdout)
    assert 3.0 < four["area_um2"] / one["area_um2"] < 4.5
