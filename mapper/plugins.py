"""Live component models: ``energy_model="hwcomponents"`` prices an architecture's memories through
Accelergy's ``hwcomponents`` packages where they are installed (Python 3.12 or newer:
``pip install hwcomponents hwcomponents-cacti hwcomponents-library``), at the architecture's node.

What the plug-in prices, and what stays einforge's:

- **the global buffer**: a live CACTI through ``hwcomponents-cacti``'s ``SRAM`` (the shipped table
  was generated from the same CACTI; at a grid point at 45 nm the two are equal);
- **the PE register files**: Accelergy's ``smartbuffer_RF`` compound (the model of
  :mod:`mapper.regfile`) over ``hwcomponents-library``'s Aladdin register, comparator and adder.
  That library scales the primitives from their 40 nm table to the node itself, charges a register
  write as much as a read, and sizes each address comparator to the address's bits, where the
  FuseMax artifact's Accelergy charged writes nothing and every comparator 32 bits;
- **DRAM of a named type**: ``hwcomponents-cacti``'s ``DRAM`` (its HBM2 is 6.25 pJ/bit against
  the 3.9 of the earlier table that einforge and the FuseMax artifact use);
- **the functional units stay einforge's tables**: the FuseMax MAC, max, exp and divide units are
  Aladdin's 16-bit floating-point figures, which ``hwcomponents-library`` does not carry.

Without the packages, asking for the plug-in is an :class:`~mapper.errors.ArchError` that says
what to install; the shipped tables stay the default.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from typing import Any

from mapper.errors import ArchError
from mapper.regfile import MIN_DEPTH, MIN_WIDTH_BITS, RegisterFileCosts

__all__ = ["ENERGY_MODELS", "available", "price", "regfile_costs"]

ENERGY_MODELS = ("tables", "hwcomponents")
PACKAGES = ("hwcomponents", "hwcomponents_cacti", "hwcomponents_library")


def available() -> bool:
    """Whether the hwcomponents packages are importable here."""
    return all(importlib.util.find_spec(p) is not None for p in PACKAGES)


def _require() -> Any:
    if not available():
        missing = [p for p in PACKAGES if importlib.util.find_spec(p) is None]
        raise ArchError(
            f"energy_model 'hwcomponents' needs {', '.join(m.replace('_', '-') for m in missing)} "
            "(pip install hwcomponents hwcomponents-cacti hwcomponents-library; Python 3.12 or newer); "
            "the default energy_model 'tables' needs nothing"
        )
    import hwcomponents
    import hwcomponents_library  # noqa: F401  (registers the Aladdin models)

    return hwcomponents


def _pj(hwc: Any, component: str, attrs: dict[str, Any], action: str) -> float:
    return float(hwc.get_action_cost(component, attrs, action, {}).energy) * 1e12


def _um2(hwc: Any, component: str, attrs: dict[str, Any]) -> float:
    return float(hwc.get_area(component, attrs)) * 1e12


def regfile_costs(*, depth: int, width_bits: int, node_nm: float) -> RegisterFileCosts:
    """A register file priced as :func:`mapper.regfile.costs` composes it, with hwcomponents'
    primitives at ``node_nm``."""
    hwc = _require()
    node = node_nm * 1e-9
    mw, md = max(MIN_WIDTH_BITS, width_bits), max(MIN_DEPTH, depth)
    energy_share = (width_bits / mw) * (depth / md) ** 0.78
    area_share = (width_bits / mw) * (depth / md)
    reg = {"tech_node": node, "width": 1}
    cmp = {"tech_node": node, "width": max(1, math.ceil(math.log2(md)))}
    bits = max(1, math.ceil(math.log2(depth))) if depth > 1 else 1
    add = {"tech_node": node, "width": bits}
    compare = md * _pj(hwc, "Comparator", cmp, "compare")
    addr_pj = _pj(hwc, "Adder", add, "add")
    return RegisterFileCosts(
        read_pj=energy_share * (mw * _pj(hwc, "Register", reg, "read") + compare) + addr_pj,
        write_pj=energy_share * (mw * _pj(hwc, "Register", reg, "write") + compare) + addr_pj,
        area_um2=area_share * (mw * md * _um2(hwc, "Register", reg) + md * _um2(hwc, "Comparator", cmp))
        + 2 * _um2(hwc, "Adder", add),
        depth=depth,
        width_bits=width_bits,
    )


def dram_pj_per_bit(dram_type: str) -> float:
    """Energy per bit of a DRAM type by ``hwcomponents-cacti``."""
    hwc = _require()
    width = 2048 if dram_type == "HBM4" else 1024 if dram_type.startswith("HBM") else 64
    try:
        return _pj(hwc, dram_type, {"width": width}, "read") / width
    except Exception as exc:  # the plug-in's own errors (a type it lacks)
        raise ArchError(f"hwcomponents has no DRAM model of type {dram_type!r} ({exc})") from None


def price(arch: Any) -> Any:
    """``arch`` with its buffer, PE register files and typed DRAM priced by hwcomponents at the
    architecture's node (see the module text); the name gains ``[hwcomponents]``."""
    from mapper import sram

    _require()
    node = arch.node_nm
    buf = dataclasses.replace(arch.buffer, read_pj_per_word=None, write_pj_per_word=None, area_um2=None,
                              leakage_mw=None)  # fmt: skip
    c = buf.costs(arch.word_bits, sram.hwcomponents_model)
    buffer = dataclasses.replace(
        arch.buffer,
        read_pj_per_word=c.read_pj_per_word,
        write_pj_per_word=c.write_pj_per_word,
        area_um2=c.area_um2,
        leakage_mw=c.leakage_mw,
    )
    arrays = []
    for a in arch.arrays:
        rf = regfile_costs(depth=a.rf_words, width_bits=arch.word_bits, node_nm=node)
        arrays.append(
            dataclasses.replace(a, rf_read_pj=rf.read_pj, rf_write_pj=rf.write_pj, rf_area_um2=rf.area_um2)
        )
    dram = arch.dram
    if dram.type is not None:
        dram = dataclasses.replace(dram, pj_per_bit=dram_pj_per_bit(dram.type))
    return dataclasses.replace(
        arch, name=f"{arch.name}[hwcomponents]", buffer=buffer, arrays=tuple(arrays), dram=dram
    )
