"""Fixed-point number formats: pure data shared by the bit-true golden models and the RTL.

A :class:`Fixed` format describes a signed two's-complement number of ``width`` bits with
``frac`` fraction bits: the raw integer ``r`` stands for ``r / 2**frac``. How a result is brought
back into the format is part of the format: ``rounding`` (``"nearest"``: round half up, which is
``(v + half) >> s`` in hardware; ``"truncate"``: round towards minus infinity, a plain arithmetic
shift) and ``overflow`` (``"saturate"`` to the largest or smallest value, or ``"wrap"``).

``golden.fixed`` implements the arithmetic bit-true (Numba); ``rtl`` builds the same arithmetic in
hardware. Both read the exp approximation's constants from :func:`exp2_coefficients` and
:func:`log2e_raw`, so the two cannot drift apart.

    >>> from einsum import Fixed
    >>> fmt = Fixed(16, 8)
    >>> fmt.max_value, fmt.ulp
    (127.99609375, 0.00390625)
    >>> fmt.quantize(0.3), fmt.to_float(fmt.quantize(0.3))
    (77, 0.30078125)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import numpy as np

from einsum.errors import ConfigError

if TYPE_CHECKING:
    from einsum._expr import Operator

__all__ = ["Fixed", "exp2_coefficients", "log2e_raw", "quantizer"]

_ROUNDING = ("nearest", "truncate")
_OVERFLOW = ("saturate", "wrap")


@dataclass(frozen=True)
class Fixed:
    """A signed fixed-point format: ``width`` bits in all, ``frac`` of them after the point."""

    width: int = 16
    frac: int = 8
    rounding: str = "nearest"
    overflow: str = "saturate"

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.width, int) or not 2 <= self.width <= 32:
            problems.append(f"width must be an integer in 2..32, got {self.width!r}")
        elif not isinstance(self.frac, int) or not 0 <= self.frac < self.width:
            problems.append(f"frac must be an integer in 0..{self.width - 1} (width - 1), got {self.frac!r}")
        if self.rounding not in _ROUNDING:
            problems.append(f"rounding must be one of {', '.join(_ROUNDING)}, got {self.rounding!r}")
        if self.overflow not in _OVERFLOW:
            problems.append(f"overflow must be one of {', '.join(_OVERFLOW)}, got {self.overflow!r}")
        if problems:
            raise ConfigError("invalid fixed-point format: " + "; ".join(problems))

    @property
    def min_raw(self) -> int:
        return -(1 << (self.width - 1))

    @property
    def max_raw(self) -> int:
        return (1 << (self.width - 1)) - 1

    @property
    def ulp(self) -> float:
        """The value of one unit in the last place, ``2**-frac``."""
        return 2.0**-self.frac

    @property
    def min_value(self) -> float:
        return self.min_raw * self.ulp

    @property
    def max_value(self) -> float:
        return self.max_raw * self.ulp

    @property
    def code(self) -> tuple[int, int, int, int]:
        """``(width, frac, round_nearest, saturate)`` as integers, the form Numba kernels take."""
        return (self.width, self.frac, int(self.rounding == "nearest"), int(self.overflow == "saturate"))

    def quantize(self, x: float | np.ndarray) -> np.ndarray | int:
        """Raw integers nearest to ``x`` (by this format's rounding and overflow rules)."""
        scaled = np.asarray(x, dtype=np.float64) * (1 << self.frac)
        raw = np.floor(scaled + 0.5) if self.rounding == "nearest" else np.floor(scaled)
        if self.overflow == "saturate":
            raw = np.clip(raw, self.min_raw, self.max_raw)
            out = raw.astype(np.int64)
        else:
            out = raw.astype(np.int64)
            span = 1 << self.width
            out = (out - self.min_raw) % span + self.min_raw
        return int(out) if out.ndim == 0 else out

    def to_float(self, raw: int | np.ndarray) -> float | np.ndarray:
        """The value a raw integer (or array of them) stands for."""
        value = np.asarray(raw, dtype=np.float64) * self.ulp
        return float(value) if value.ndim == 0 else value

    def __str__(self) -> str:
        return f"fixed<{self.width},{self.frac}>"


def log2e_raw(fmt: Fixed) -> int:
    """``log2(e)`` as a raw integer with ``fmt.frac`` fraction bits (the exp's range-reduction step)."""
    return int(math.floor(math.log2(math.e) * (1 << fmt.frac) + 0.5))


@cache
def exp2_coefficients(fmt: Fixed, degree: int) -> tuple[int, ...]:
    """Raw coefficients ``c0..c_degree`` of the polynomial that approximates ``2**f`` on [0, 1).

    ``c0`` is exactly 1.0, so ``exp(0) == 1`` bit for bit; the other coefficients are a
    least-squares fit of ``(2**f - 1) / f`` on Chebyshev nodes, rounded to ``fmt.frac`` fraction
    bits. The hardware evaluates the polynomial by Horner's rule, one MAC per coefficient.
    """
    if not isinstance(degree, int) or not 1 <= degree <= 8:
        raise ConfigError(f"exp polynomial degree must be an integer in 1..8, got {degree!r}")
    nodes = 0.5 - 0.5 * np.cos(np.pi * (np.arange(64) + 0.5) / 64)
    target = np.expm1(nodes * math.log(2.0)) / nodes
    q = np.polynomial.polynomial.polyfit(nodes, target, degree - 1)
    coeffs = [1.0, *(float(c) for c in q)]
    return tuple(int(math.floor(c * (1 << fmt.frac) + 0.5)) for c in coeffs)


def quantizer(fmt: Fixed, name: str, *, drop_lsbs: int = 0) -> Operator:
    """A unary operator that rounds a value to ``fmt`` bit for bit (its golden) and costs one
    ``other`` action: linear symmetric quantization with a power-of-two scale.

    With ``drop_lsbs = b`` it keeps only the most significant ``width - b`` bits of the code (an
    arithmetic shift right by ``b`` and back, i.e. the code rounded towards minus infinity to a
    multiple of ``2**b``): the value SpAtten's progressive quantization computes with when it has
    fetched only a number's MSBs.

    Example:
        >>> from einsum import Fixed, quantizer
        >>> q = quantizer(Fixed(12, 8), "q12")
        >>> msb = quantizer(Fixed(12, 8), "q12msb", drop_lsbs=4)
        >>> float(q.golden(0.30)), float(msb.golden(0.30))
        (0.30078125, 0.25)
    """
    from einsum._expr import Actions, Operator

    if not isinstance(drop_lsbs, int) or not 0 <= drop_lsbs < fmt.width:
        raise ConfigError(
            f"quantizer {name!r}: drop_lsbs must be an integer in 0..{fmt.width - 1}, got {drop_lsbs!r}"
        )

    def golden(x: np.ndarray) -> np.ndarray:
        raw = np.asarray(fmt.quantize(x), dtype=np.int64)
        if drop_lsbs:
            raw = (raw >> drop_lsbs) << drop_lsbs
        return np.asarray(fmt.to_float(raw), dtype=np.float64)

    golden.quantizer = (fmt, drop_lsbs)  # type: ignore[attr-defined]  # read by sim.spatten
    return Operator(name=name, arity=1, golden=golden, cost=Actions(other=1))
