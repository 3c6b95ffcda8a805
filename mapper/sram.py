"""SRAM costs from the memory's geometry: energy per access, leakage and area.

The default model, :func:`cacti_table`, interpolates a table of CACTI 7 runs at 45 nm that ships
with einforge (``mapper/cacti/sram_45nm.csv``; the script that regenerates it, the CACTI
configuration and version are beside it). The grid spans capacities of 16 KiB to 64 MiB, access
widths of 64 to 8192 bits, 1 to 4 read/write ports and 1 to 32 banks. Between grid points the model
interpolates log-log (the logarithm of each cost is multilinear in the logarithms of capacity,
width, ports and banks); a geometry outside the grid is an :class:`SRAMError`, never an
extrapolation. CACTI is C++ and is not a dependency: another model (a live CACTI, ``hwcomponents``)
plugs in as any function with :func:`cacti_table`'s signature (see :func:`hwcomponents_model`).

A CACTI access reads or writes one row of ``width_bits`` in one bank; the energy per word of a
wider-than-a-word access is the row's energy divided by the words in the row.

>>> c = cacti_table(capacity_bytes=32 * 2**20, width_bits=4096, ports=1, banks=1)
>>> round(c.read_pj / 1e3, 4), round(c.write_pj / 1e3, 4), round(c.area_um2 / 1e6, 1)
(23.8546, 27.0975, 175.7)
>>> round(c.per_word(16)[0], 2)
93.18
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import functools
import itertools
import math
from collections.abc import Callable
from pathlib import Path

from mapper.errors import ArchError

__all__ = ["SRAMCosts", "SRAMError", "SRAMModel", "TABLE", "cacti_table", "grid", "hwcomponents_model"]

TABLE = Path(__file__).resolve().parent / "cacti" / "sram_45nm.csv"
TABLE_NM = 45.0


class SRAMError(ArchError):
    """An SRAM geometry the cost model cannot price (outside its grid, or no CACTI organisation)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class SRAMCosts:
    """What one SRAM costs: energy per access of ``width_bits`` (pJ), leakage of all banks (mW),
    area of all banks (um^2), and where the figures come from."""

    read_pj: float
    write_pj: float
    leakage_mw: float
    area_um2: float
    width_bits: int
    source: str

    def per_word(self, word_bits: int) -> tuple[float, float]:
        """(read, write) energy per word of ``word_bits`` in pJ: one access moves a whole row."""
        words = max(1, self.width_bits // word_bits)
        return self.read_pj / words, self.write_pj / words


#: A cost model: ``model(capacity_bytes=, width_bits=, ports=, banks=, technology_nm=) -> SRAMCosts``.
SRAMModel = Callable[..., SRAMCosts]

_Key = tuple[int, int, int, int]


@functools.cache
def _load() -> tuple[dict[_Key, tuple[float, float, float, float]], tuple[tuple[int, ...], ...]]:
    values: dict[_Key, tuple[float, float, float, float]] = {}
    with TABLE.open(newline="") as f:
        for row in csv.DictReader(f):
            key = (int(row["capacity_bytes"]), int(row["width_bits"]), int(row["ports"]), int(row["banks"]))
            banks = key[3]
            values[key] = (
                float(row["read_nj"]) * 1e3,
                float(row["write_nj"]) * 1e3,
                float(row["leakage_mw_per_bank"]) * banks,
                float(row["area_mm2"]) * 1e6,
            )
    axes = tuple(tuple(sorted({k[i] for k in values})) for i in range(4))
    return values, axes


def grid() -> dict[str, tuple[int, ...]]:
    """The grid of the shipped table: capacities (bytes), widths (bits), ports, banks."""
    _, axes = _load()
    return dict(zip(("capacity_bytes", "width_bits", "ports", "banks"), axes, strict=True))


def _show(x: float, unit: str) -> str:
    if unit != " bytes":
        return f"{x:g}{unit}"
    for name, size in (("MiB", 2**20), ("KiB", 2**10)):
        if x >= size:
            return f"{x / size:g} {name}"
    return f"{x:g} bytes"


def _bracket(axis: tuple[int, ...], x: float, name: str, unit: str) -> tuple[int, int, float]:
    lo, hi = axis[0], axis[-1]
    if not lo <= x <= hi:
        raise SRAMError(
            f"SRAM {name} {_show(x, unit)} is outside the CACTI table's grid ({_show(lo, unit)} to "
            f"{_show(hi, unit)}); choose a value inside it or pass your own sram_model"
        )
    i = bisect.bisect_left(axis, x)
    if axis[i] == x:
        return axis[i], axis[i], 0.0
    a, b = axis[i - 1], axis[i]
    return a, b, (math.log(x) - math.log(a)) / (math.log(b) - math.log(a))


def cacti_table(
    *, capacity_bytes: float, width_bits: int, ports: int = 1, banks: int = 1, technology_nm: float = 45.0
) -> SRAMCosts:
    """CACTI 7's costs of an SRAM at 45 nm, interpolated log-log in the shipped table.

    Raises :class:`SRAMError` for a geometry outside the grid, another technology node, or a
    neighbourhood where CACTI found no organisation.
    """
    if technology_nm != TABLE_NM:
        raise SRAMError(
            f"the CACTI table is for {TABLE_NM:g} nm, not {technology_nm:g} nm; "
            "pass an sram_model for another node (for example mapper.sram.hwcomponents_model)"
        )
    values, axes = _load()
    brackets = [
        _bracket(axes[0], capacity_bytes, "capacity", " bytes"),
        _bracket(axes[1], width_bits, "width", " bits"),
        _bracket(axes[2], ports, "ports", ""),
        _bracket(axes[3], banks, "banks", ""),
    ]
    logs = [0.0, 0.0, 0.0, 0.0]
    for corner in itertools.product((0, 1), repeat=4):
        weight = 1.0
        key = []
        for (a, b, t), side in zip(brackets, corner, strict=True):
            weight *= t if side else 1 - t
            key.append(b if side else a)
        if weight == 0.0:
            continue
        v = values.get((key[0], key[1], key[2], key[3]))
        if v is None:
            raise SRAMError(
                f"CACTI finds no organisation for an SRAM of {key[0]} bytes, {key[1]}-bit accesses, "
                f"{key[2]} port(s), {key[3]} bank(s) (a grid point next to the one asked for: "
                f"{capacity_bytes:g} bytes, {width_bits} bits, {ports} port(s), {banks} bank(s)); "
                "banks this small for this width do not exist: use fewer banks or narrower accesses"
            )
        for i in range(4):
            logs[i] += weight * math.log(v[i])
    read, write, leak, area = (math.exp(x) for x in logs)
    return SRAMCosts(
        read_pj=read,
        write_pj=write,
        leakage_mw=leak,
        area_um2=area,
        width_bits=width_bits,
        source="CACTI 7 table, 45 nm (mapper/cacti/sram_45nm.csv)",
    )


def hwcomponents_model(
    *, capacity_bytes: float, width_bits: int, ports: int = 1, banks: int = 1, technology_nm: float = 45.0
) -> SRAMCosts:
    """Costs from a live CACTI through ``hwcomponents-cacti``'s ``SRAM`` model, where it is
    installed (it needs Python 3.12); any node it supports. Pass it as ``sram_model``."""
    try:
        from hwcomponents_cacti import SRAM  # type: ignore[import-not-found]
    except ImportError:
        raise SRAMError(
            "hwcomponents_model needs the hwcomponents-cacti package (pip install hwcomponents-cacti, "
            "Python 3.12 or newer); the shipped CACTI table is mapper.sram.cacti_table"
        ) from None
    s = SRAM(
        tech_node=technology_nm * 1e-9,
        width=width_bits,
        size=capacity_bytes * 8,
        n_rw_ports=ports,
        n_banks=banks,
    )
    return SRAMCosts(
        read_pj=s.read_energy * 1e12,
        write_pj=s.write_energy * 1e12,
        leakage_mw=s.cacti_leak_power * 1e3,
        area_um2=s.cacti_area * 1e12,
        width_bits=width_bits,
        source=f"hwcomponents-cacti, {technology_nm:g} nm",
    )
