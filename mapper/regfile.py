"""Register files by depth and width: energy per access and area, at 45 nm.

The model is Accelergy's ``smartbuffer_RF`` compound component, the one the FuseMax artifact
prices its PE register files with (its ``components/smartbuffer_RF.yaml`` and ``regfile.yaml``,
"copied from timeloop-accelergy exercises"):

- the storage is a ``regfile`` of at least 32 bits by 64 entries: ``width x depth`` registers and
  one comparator per entry (the address match), every access reading ``width`` registers and
  comparing in every entry;
- a smaller file is that one scaled: area by ``(width / 32) (depth / 64)``, energy by
  ``(width / 32) (depth / 64)^0.78`` (CACTI's rule of thumb: twice the depth, 1.56 times the
  dynamic energy);
- two address generators (adders of ``ceil(log2 depth)`` bits), one for reads, one for writes.

The primitives are Aladdin's (Shao et al., ISCA 2014) as Accelergy's library lists them, and as the
artifact used them at 45 nm: a register bit 0.009 pJ a read (0 a write: Aladdin's table charges
writes nothing) and 5.98 um^2; a comparator 0.02947 pJ and 71 um^2; a 32-bit adder 0.21 pJ and
278 um^2, scaled linearly in its bits for the address generators. The artifact priced its address
generators with NeuroSim instead (0.0204 pJ and 29.1 um^2 at 5 bits against 0.0328 pJ and 43.4
um^2 here), so at its geometry (32 x 16 bits) this model is 1.9 % above the artifact's read energy,
2.2 % above its write energy and 0.7 % above its area; the storage parts are equal.

>>> c = costs(depth=32, width_bits=16)
>>> round(c.read_pj, 4), round(c.write_pj, 4), round(c.area_um2, 1)
(0.6659, 0.582, 4284.6)
"""

from __future__ import annotations

import dataclasses
import math

from mapper.errors import ArchError

__all__ = ["MAX_DEPTH", "MAX_WIDTH_BITS", "RegisterFileCosts", "costs"]

REGISTER_READ_PJ = 0.009  # per bit
REGISTER_WRITE_PJ = 0.0  # per bit (Aladdin's table)
REGISTER_AREA_UM2 = 5.98  # per bit
COMPARATOR_PJ = 0.02947
COMPARATOR_AREA_UM2 = 71.0
ADDER_PJ_PER_BIT = 0.21 / 32
ADDER_AREA_UM2_PER_BIT = 278.0 / 32
MIN_WIDTH_BITS, MIN_DEPTH = 32, 64  # the smallest regfile the compound scales from
MAX_DEPTH = 4096
MAX_WIDTH_BITS = 1024
TABLE_NM = 45.0


@dataclasses.dataclass(frozen=True)
class RegisterFileCosts:
    """pJ per access (of the whole width) and um^2 of one register file."""

    read_pj: float
    write_pj: float
    area_um2: float
    depth: int
    width_bits: int


def costs(*, depth: int, width_bits: int, scaled_area: bool = True) -> RegisterFileCosts:
    """Energy per read and write of ``width_bits`` and area of a ``depth``-entry register file.

    ``scaled_area=False`` is the FuseMax artifact's bookkeeping: its Accelergy run did not apply
    the compound's ``area_share`` to the storage (its ``ART_summary_verbose.yaml`` lists
    ``area_scale: 1`` for a 32 x 16-bit file), so a file smaller than 64 entries x 32 bits was
    charged the whole 64 x 32 regfile's area (16,791 um^2 of registers and comparators). Energy
    is scaled either way, as the artifact's ERT shows.

    >>> round(costs(depth=4, width_bits=16, scaled_area=False).area_um2, 1)
    16825.8
    """
    for name, v, top in (("depth", depth, MAX_DEPTH), ("width_bits", width_bits, MAX_WIDTH_BITS)):
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= top:
            raise ArchError(
                f"register file: {name} must be an integer in 1 .. {top} (the register-file model's "
                f"range), found {v!r}; a larger memory is an SRAM (mapper.sram)"
            )
    mw, md = max(MIN_WIDTH_BITS, width_bits), max(MIN_DEPTH, depth)
    energy_share = (width_bits / mw) * (depth / md) ** 0.78
    area_share = (width_bits / mw) * (depth / md) if scaled_area else 1.0
    bits = max(1, math.ceil(math.log2(depth))) if depth > 1 else 1
    addr_pj = bits * ADDER_PJ_PER_BIT
    compare = md * COMPARATOR_PJ
    return RegisterFileCosts(
        read_pj=energy_share * (mw * REGISTER_READ_PJ + compare) + addr_pj,
        write_pj=energy_share * (mw * REGISTER_WRITE_PJ + compare) + addr_pj,
        area_um2=area_share * (mw * md * REGISTER_AREA_UM2 + md * COMPARATOR_AREA_UM2)
        + 2 * bits * ADDER_AREA_UM2_PER_BIT,
        depth=depth,
        width_bits=width_bits,
    )
