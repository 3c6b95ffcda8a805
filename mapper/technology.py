"""Technology scaling: energy and area of logic and memories from one CMOS node to another.

The factors are Stillmaker and Baas's fits to predictive device models (A. Stillmaker, B. Baas,
"Scaling equations for the accurate prediction of CMOS device performance from 180 nm to 7 nm",
Integration 58, 2017, pp. 74-81, doi:10.1016/j.vlsi.2017.02.002), at the ten nodes from 130 to
7 nm, as Accelergy's ``hwcomponents`` (MIT licence) tabulates them:

- **area**: a table of factors from each node to each other one (:data:`AREA`);
- **energy**: per node, a fit of switching energy in the supply voltage, ``a V^2 + b V + c``
  (:data:`ENERGY_FIT`); the factor from node X to node Y is the ratio of the two fits at the same
  supply (0.8 V unless given).

Between two listed nodes a factor is interpolated linearly in the node's position in the list (as
``hwcomponents`` does); outside 7 ... 130 nm it is an :class:`~mapper.errors.ArchError`. Leakage
power scales as energy. Delay is not scaled: the clock is the designer's to give.

>>> round(area_factor(45, 7), 4), round(energy_factor(45, 7), 4)
(0.059, 0.0943)
>>> area_factor(45, 45), energy_factor(45, 45)
(1.0, 1.0)
"""

from __future__ import annotations

import math

from mapper.errors import ArchError

__all__ = ["AREA", "DEFAULT_VDD", "ENERGY_FIT", "NODES_NM", "area_factor", "check_node", "energy_factor"]

#: The nodes of the tables, largest first (nm).
NODES_NM = (130.0, 90.0, 65.0, 45.0, 32.0, 20.0, 16.0, 14.0, 10.0, 7.0)

#: ``AREA[i][j]``: area at ``NODES_NM[j]`` over area at ``NODES_NM[i]``.
AREA = (
    (1, 0.44, 0.23, 0.16, 0.072, 0.033, 0.03, 0.027, 0.016, 0.0092),
    (2.3, 1, 0.53, 0.35, 0.16, 0.075, 0.067, 0.061, 0.036, 0.021),
    (4.3, 1.9, 1, 0.66, 0.31, 0.14, 0.13, 0.12, 0.068, 0.039),
    (6.4, 2.8, 1.5, 1, 0.46, 0.21, 0.19, 0.17, 0.1, 0.059),
    (14, 6.1, 3.3, 2.2, 1, 0.46, 0.41, 0.38, 0.22, 0.13),
    (30, 13, 7.1, 4.7, 2.2, 1, 0.89, 0.82, 0.48, 0.28),
    (34, 15, 7.9, 5.3, 2.4, 1.1, 1, 0.91, 0.54, 0.31),
    (37, 16, 8.7, 5.8, 2.7, 1.2, 1.1, 1, 0.59, 0.34),
    (63, 28, 15, 9.8, 4.5, 2.1, 1.9, 1.7, 1, 0.58),
    (110, 48, 25, 17, 7.8, 3.6, 3.2, 2.9, 1.7, 1),
)

#: Per node, ``(a, b, c)`` of the energy fit ``a V^2 + b V + c``.
ENERGY_FIT = (
    (7.171, -6.709, 2.904),
    (4.762, -4.781, 2.092),
    (3.755, -4.398, 1.975),
    (1.103, -0.362, 0.2767),
    (0.9559, -0.7823, 0.471),
    (0.373, -0.1582, 0.04104),
    (0.2958, -0.1241, 0.03024),
    (0.2363, -0.09675, 0.02239),
    (0.2068, -0.09311, 0.02375),
    (0.1776, -0.09097, 0.02447),
)

DEFAULT_VDD = 0.8


def check_node(node_nm: object, where: str = "node_nm") -> float:
    """``node_nm`` as a float, or an :class:`ArchError` naming the range."""
    if isinstance(node_nm, bool) or not isinstance(node_nm, int | float) or not math.isfinite(node_nm):
        raise ArchError(f"{where} must be a number of nanometres, found {node_nm!r}")
    if not NODES_NM[-1] <= node_nm <= NODES_NM[0]:
        raise ArchError(
            f"{where} {node_nm:g} nm is outside the scaling tables (7 ... 130 nm; Stillmaker and Baas, 2017)"
        )
    return float(node_nm)


def _position(node_nm: float) -> float:
    """The node's position in :data:`NODES_NM` (fractional between two listed nodes)."""
    for i in range(len(NODES_NM) - 1):
        big, small = NODES_NM[i], NODES_NM[i + 1]
        if small <= node_nm <= big:
            return i + (big - node_nm) / (big - small)
    return float(len(NODES_NM) - 1)


def area_factor(from_nm: float, to_nm: float) -> float:
    """Area at ``to_nm`` over area at ``from_nm``: the table, interpolated in both positions."""
    x, y = _position(check_node(from_nm, "from node")), _position(check_node(to_nm, "to node"))
    i0, j0 = math.floor(x), math.floor(y)
    i1, j1 = min(i0 + 1, len(NODES_NM) - 1), min(j0 + 1, len(NODES_NM) - 1)
    fx, fy = x - i0, y - j0
    return float(
        AREA[i0][j0] * (1 - fx) * (1 - fy)
        + AREA[i0][j1] * (1 - fx) * fy
        + AREA[i1][j0] * fx * (1 - fy)
        + AREA[i1][j1] * fx * fy
    )


def _energy_fit(node_nm: float, vdd: float) -> float:
    x = _position(node_nm)
    i0 = math.floor(x)
    i1 = min(i0 + 1, len(NODES_NM) - 1)

    def fit(i: int) -> float:
        a, b, c = ENERGY_FIT[i]
        return a * vdd * vdd + b * vdd + c

    return fit(i0) * (1 - (x - i0)) + fit(i1) * (x - i0)


def energy_factor(from_nm: float, to_nm: float, vdd: float = DEFAULT_VDD) -> float:
    """Energy (and leakage power) at ``to_nm`` over that at ``from_nm``, at supply ``vdd``."""
    if isinstance(vdd, bool) or not isinstance(vdd, int | float) or not 0.3 <= vdd <= 1.5:
        raise ArchError(f"vdd must be a supply voltage in 0.3 ... 1.5 V, found {vdd!r}")
    return _energy_fit(check_node(to_nm, "to node"), vdd) / _energy_fit(check_node(from_nm, "from node"), vdd)
