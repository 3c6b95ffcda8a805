"""Mapping cascades onto spatial-array accelerators.

``arch`` (``ArchSpec``: PE arrays and their functional units, register files, global buffer, DRAM,
clock, energy and area tables; presets ``fusemax``, ``flat``, ``unfused``), ``sram`` (SRAM costs
from geometry: the shipped CACTI 7 table), ``cost`` (the traffic of a schedule), ``schedule``
(``Schedule``: binding, tiling, residency, kernels, interleaving) and ``search``
(``search(cascade, arch, options) -> Schedule``). May import ``einsum`` only.
"""

from mapper.arch import (
    DRAM,
    ArchSpec,
    Buffer,
    BufferCosts,
    Energy,
    PEArray,
    flat,
    fusemax,
    load,
    preset,
    presets,
    unfused,
)
from mapper.errors import ArchError, ScheduleError
from mapper.schedule import Schedule, check, einsum_cycles, systolic_gemm_cycles
from mapper.search import SearchOptions, search
from mapper.sram import SRAMCosts, SRAMError, cacti_table

__all__ = [
    "DRAM",
    "ArchError",
    "ArchSpec",
    "Buffer",
    "BufferCosts",
    "Energy",
    "PEArray",
    "SRAMCosts",
    "SRAMError",
    "Schedule",
    "ScheduleError",
    "SearchOptions",
    "cacti_table",
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
