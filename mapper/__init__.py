"""Mapping cascades onto spatial-array accelerators.

``arch`` (``ArchSpec``: PE arrays and their functional units, register files, global buffer, DRAM,
clock, energy and area tables, top-k engines; presets ``fusemax``, ``fusemax_tile``, ``flat``, ``unfused``,
``spatten``, ``spatten_eighth``), ``sram`` (SRAM costs
from geometry: the shipped CACTI 7 table), ``schedule`` (``Schedule``: binding, tiling, residency,
kernels, interleaving, loop nests), ``nest`` (``LoopNest`` mappings of one Einsum, their cost and
their exhaustive or random search), ``masks`` (wholly masked tiles), ``cost`` (the traffic and
the estimate of a schedule) and ``search`` (``explore(cascade, arch, options) -> SearchResult``,
``search(...) -> Schedule``). May import ``einsum`` only. See docs/mapper.md.
"""

from mapper.arch import (
    DRAM,
    ArchSpec,
    Buffer,
    BufferCosts,
    Energy,
    PEArray,
    TopKEngine,
    flat,
    fusemax,
    fusemax_tile,
    load,
    preset,
    presets,
    row_reduction_latency,
    spatten,
    spatten_eighth,
    unfused,
)
from mapper.errors import ArchError, ScheduleError
from mapper.nest import LoopNest, NestCost, search_nests
from mapper.schedule import Schedule, check, einsum_cycles, systolic_gemm_cycles
from mapper.search import Candidate, SearchOptions, SearchResult, explore, search
from mapper.sram import SRAMCosts, SRAMError, cacti_table

__all__ = [
    "DRAM",
    "ArchError",
    "ArchSpec",
    "Buffer",
    "BufferCosts",
    "Candidate",
    "Energy",
    "LoopNest",
    "NestCost",
    "PEArray",
    "SRAMCosts",
    "SRAMError",
    "Schedule",
    "ScheduleError",
    "SearchOptions",
    "SearchResult",
    "TopKEngine",
    "cacti_table",
    "check",
    "einsum_cycles",
    "explore",
    "flat",
    "fusemax",
    "fusemax_tile",
    "load",
    "preset",
    "presets",
    "row_reduction_latency",
    "search",
    "search_nests",
    "spatten",
    "spatten_eighth",
    "systolic_gemm_cycles",
    "unfused",
]
