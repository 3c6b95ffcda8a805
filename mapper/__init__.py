"""Mapping cascades onto spatial-array accelerators (to be filled by the spatial-model issue).

Will hold ``arch.py`` (``ArchSpec``: 2D and 1D PE arrays, their functional units, register files,
global buffer, DRAM, clock, energy and area tables, presets ``fusemax``, ``flat``, ``unfused``),
``schedule.py`` (``Schedule``: which unit runs each Einsum, tiling, buffer residency,
interleaving) and ``search.py`` (``search(cascade, arch, options) -> Schedule``).
May import ``einsum`` only.
"""

__all__: list[str] = []
