"""benchmarks/gpu_suite.py, the prepared GPU run: its plan, and a clear refusal without a GPU
(the timings themselves need a CUDA card; see docs/variants.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_suite.py"


def test_the_dry_run_lists_every_part() -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run"], capture_output=True, text=True, check=True
    )
    lines = out.stdout.splitlines()
    assert lines[0].startswith("gpu tests") and "-m gpu" in lines[0]
    assert any("P=M=4096 d64 " in ln and "--shape 1,8,4096,4096,64,64" in ln for ln in lines)
    assert lines[-1].startswith("variants") and "--device cuda" in lines[-1]
    # the parts' shares of the budget add up to the whole (each may use twice its share while
    # time is left, never more than what is left)
    seconds = [float(ln[40:].split()[0]) for ln in lines]
    assert sum(seconds) == pytest.approx(480, abs=len(seconds))


def test_without_a_gpu_it_says_so() -> None:
    numba_cuda = pytest.importorskip("numba.cuda")
    if numba_cuda.is_available():
        pytest.skip("a CUDA device is present")
    out = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True)
    assert out.returncode == 2
    assert "needs a CUDA device" in out.stderr and "Traceback" not in out.stderr
