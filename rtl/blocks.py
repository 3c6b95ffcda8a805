"""The block catalogue: names, parameters with defaults, and how to build each block.

>>> from rtl.blocks import resolve
>>> resolve("topk", {"n": "20"})
{'n': 20, 'parallelism': 4, 'width': 16}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from amaranth.lib import wiring

from einsum import Fixed
from einsum.errors import suggest
from mapper.arch import ROW_REDUCTIONS
from rtl._params import RTLConfigError
from rtl.array1d import Array1D
from rtl.array2d import Array2D
from rtl.topk import TopK

__all__ = ["BLOCKS", "BlockSpec", "build", "resolve"]


@dataclass(frozen=True)
class BlockSpec:
    name: str
    summary: str
    defaults: Mapping[str, int | str]
    make: Callable[[dict[str, Any]], wiring.Component]
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # the named-choice parameters


def _fmt(p: dict[str, int]) -> Fixed:
    return Fixed(p["width"], p["frac"])


BLOCKS: dict[str, BlockSpec] = {
    "array2d": BlockSpec(
        "array2d",
        "rows x cols PE array: QK, LM, SLN, SLD, SLNV of one tile",
        {"rows": 4, "cols": 4, "e": 8, "f": 4, "width": 16, "frac": 8, "degree": 3, "reduction": "tree"},
        lambda p: Array2D(
            rows=p["rows"],
            cols=p["cols"],
            e=p["e"],
            f=p["f"],
            fmt=_fmt(p),
            degree=p["degree"],
            reduction=p["reduction"],
        ),
        {"reduction": ROW_REDUCTIONS},
    ),
    "array1d": BlockSpec(
        "array1d",
        "pes-PE vector array: RM, PRM, SPD, RD, SPNV, RNV, AV",
        {"pes": 4, "f": 4, "width": 16, "frac": 8, "degree": 3},
        lambda p: Array1D(pes=p["pes"], f=p["f"], fmt=_fmt(p), degree=p["degree"]),
    ),
    "topk": BlockSpec(
        "topk",
        "SpAtten quick-select top-k engine over up to n scores",
        {"n": 16, "parallelism": 4, "width": 16},
        lambda p: TopK(n=p["n"], parallelism=p["parallelism"], width=p["width"]),
    ),
}


def spec(block: str) -> BlockSpec:
    if block not in BLOCKS:
        raise RTLConfigError(
            f"unknown block {block!r}: expected one of {', '.join(BLOCKS)}{suggest(block, BLOCKS)}"
        )
    return BLOCKS[block]


def resolve(block: str, overrides: Mapping[str, Any], *, extra: Mapping[str, Any] = {}) -> dict[str, Any]:
    """The block's parameters: defaults updated by ``overrides`` (strings or ints), validated.

    ``extra`` names parameters a caller adds on top (a testbench's ``k``); they are converted and
    returned too. Unknown names are errors with a did-you-mean hint.
    """
    s = spec(block)
    known = {**s.defaults, **extra}
    params: dict[str, Any] = dict(known)
    for name, value in overrides.items():
        if name not in known:
            raise RTLConfigError(
                f"{block}: unknown parameter {name!r} (parameters: {', '.join(known)}){suggest(name, known)}"
            )
        if name in s.choices:
            if value not in s.choices[name]:
                raise RTLConfigError(
                    f"{block}: parameter {name} must be one of {', '.join(s.choices[name])}, got {value!r}"
                    f"{suggest(str(value), s.choices[name])}"
                )
            params[name] = value
            continue
        try:
            params[name] = int(value)
        except (TypeError, ValueError):
            raise RTLConfigError(f"{block}: parameter {name} must be an integer, got {value!r}") from None
    return params


def build(block: str, params: Mapping[str, Any]) -> wiring.Component:
    """The Amaranth component for ``block`` with resolved ``params`` (hardware parameters only)."""
    s = spec(block)
    return s.make({k: params[k] if k in s.choices else int(params[k]) for k in s.defaults})
