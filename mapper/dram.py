"""Off-chip memory types: energy per bit and bandwidth of one device, with where each comes from.

A :class:`mapper.arch.DRAM` (or an architecture file's ``dram:``) may name a ``type`` and a
number of ``devices`` instead of giving its figures; the type's energy per bit and its bandwidth
per device (times ``devices``) fill what is not given.

**Energy per bit** comes from the component libraries Timeloop users price DRAM with; each
entry names its library and the origin that library cites:

- Accelergy's CACTI plug-in, whose ``DRAM`` estimator has one figure per type (``LPDDR4``: 8
  pJ/bit, "public data"; ``LPDDR``: 40, Malladi et al., ISCA 2012; ``DDR3``: 70, Chatterjee et
  al., MICRO 2017; ``GDDR5``: 14; ``HBM2``: 3.9; ``HMC``: 4.2, doi:10.1145/3093336.3037702). The FuseMax
  artifact's Accelergy output prices its HBM2 at 249.6 pJ per 64-bit access, 3.9 pJ/bit, which is
  also einforge's default.
- ``hwcomponents-cacti`` 1.0.40 (the package whose CACTI builds einforge's SRAM table) adds
  ``HBM3`` (4.05) and ``HBM4`` (3.2). It lists HBM2 at 6.25 pJ/bit; einforge keeps the 3.9 of
  the earlier table and of the FuseMax artifact, so the FuseMax figures stay as published.

**Bandwidth per device** is the standard's data rate times its interface width (JEDEC JESD79-3
DDR3-1600 and JESD209-4 LPDDR4-4266 per 64-bit channel, JESD235A HBM2 at 2.0 Gb/s on 1024 bits,
JESD238 HBM3 at 6.4 Gb/s on 1024 bits, JESD270-4 HBM4 at 8 Gb/s on 2048 bits, GDDR5 at 8 Gb/s on a
32-bit chip, LPDDR (LPDDR1-400) per 64-bit channel, HMC 1.0's 160 GB/s cube).

DDR4, LPDDR5 and HBM2E are not listed: no energy figure for them with a source was at hand. Give
such a memory's ``pj_per_bit`` and ``bandwidth_bytes_per_s`` yourself.

>>> t = TYPES["HBM2"]
>>> t.pj_per_bit, t.bandwidth_bytes_per_s / 1e9
(3.9, 256.0)
"""

from __future__ import annotations

import dataclasses

from einsum.errors import suggest
from mapper.errors import ArchError

__all__ = ["TYPES", "DRAMType", "dram_type"]

ACCELERGY = "Accelergy's CACTI plug-in, DRAM estimator"
HWCOMPONENTS = "hwcomponents-cacti 1.0.40, hwcomponents_cacti.DRAM"


@dataclasses.dataclass(frozen=True)
class DRAMType:
    """One memory type: energy per bit moved, bandwidth of one device (bytes/s), the sources."""

    name: str
    pj_per_bit: float
    bandwidth_bytes_per_s: float
    device: str
    energy_source: str
    bandwidth_source: str


def _gbps(pin_gbit_s: float, bits: int) -> float:
    return pin_gbit_s * 1e9 * bits / 8


TYPES: dict[str, DRAMType] = {
    t.name: t
    for t in (
        DRAMType(
            "LPDDR",
            40.0,
            _gbps(0.4, 64),
            "64-bit channel",
            f"{ACCELERGY} (Malladi et al., ISCA 2012)",
            "LPDDR-400, 64 bits",
        ),
        DRAMType(
            "LPDDR4",
            8.0,
            _gbps(4.266, 64),
            "64-bit channel",
            f"{ACCELERGY} (public data)",
            "JESD209-4 LPDDR4-4266, 64 bits",
        ),
        DRAMType(
            "DDR3",
            70.0,
            _gbps(1.6, 64),
            "64-bit channel",
            f"{ACCELERGY} (Chatterjee et al., MICRO 2017)",
            "JESD79-3 DDR3-1600, 64 bits",
        ),
        DRAMType("GDDR5", 14.0, _gbps(8.0, 32), "32-bit chip", ACCELERGY, "GDDR5 at 8 Gb/s, 32 bits"),
        DRAMType(
            "HMC",
            4.2,
            160e9,
            "cube",
            f"{ACCELERGY} (doi:10.1145/3093336.3037702)",
            "HMC 1.0, 160 GB/s a cube",
        ),
        DRAMType(
            "HBM2",
            3.9,
            _gbps(2.0, 1024),
            "stack",
            f"{ACCELERGY}; the FuseMax artifact's ERT",
            "JESD235A, 2.0 Gb/s, 1024 bits",
        ),
        DRAMType("HBM3", 4.05, _gbps(6.4, 1024), "stack", HWCOMPONENTS, "JESD238, 6.4 Gb/s, 1024 bits"),
        DRAMType("HBM4", 3.2, _gbps(8.0, 2048), "stack", HWCOMPONENTS, "JESD270-4, 8 Gb/s, 2048 bits"),
    )
}

MISSING = ("DDR4", "LPDDR5", "HBM2E")


def dram_type(name: object, where: str = "dram") -> DRAMType:
    """The named type, or an ArchError with a did-you-mean (and, for a type without a sourced
    figure, what to give instead)."""
    if isinstance(name, str):
        key = name.upper()
        if key in TYPES:
            return TYPES[key]
        if key in MISSING:
            raise ArchError(
                f"{where}: no energy figure with a source ships for DRAM type {name!r}; give its "
                f"pj_per_bit and bandwidth_bytes_per_s instead of a type (types: {', '.join(TYPES)})"
            )
    raise ArchError(
        f"{where}: unknown DRAM type {name!r}{suggest(str(name).upper(), TYPES)} "
        f"(expected one of {', '.join(TYPES)})"
    )
