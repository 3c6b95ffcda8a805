"""Mapping cascades onto spatial-array accelerators.

``arch`` (``ArchSpec``: PE arrays and their functional units, register files, global buffer, DRAM,
clock, energy and area tables; presets ``fusemax``, ``flat``, ``unfused``), ``schedule``
(``Schedule``: binding, tiling, residency, kernels, interleaving) and ``search``
(``search(cascade, arch, options) -> Schedule``). May import ``einsum`` only.
"""

from mapper.arch import DRAM, ArchSpec, Buffer, Energy, PEArray, flat, fusemax, load, preset, presets, unfused
from mapper.errors import ArchError, ScheduleError
from mapper.schedule import Schedule, check, einsum_cycles, systolic_gemm_cycles
from mapper.search import SearchOptions, search

__all__ = [
    "DRAM",
    "ArchError",
    "ArchSpec",
    "Buffer",
    "Energy",
    "PEArray",
    "Schedule",
    "ScheduleError",
    "SearchOptions",
    "check",
    "einsum_cycles",
    "flat",
    "fusemax",
    "load",
    "preset",
    "presets",
    "search",
    "systolic_gemm_cycles",
    "unfused",
]
