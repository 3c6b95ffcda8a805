"""Validation of generator parameters: keyword-only, typed, with errors that say what and where."""

from __future__ import annotations

from typing import Any

from einsum import Fixed
from einsum.errors import ConfigError

__all__ = ["DEFAULT_FORMAT", "RTLConfigError", "check_int", "name_states"]

DEFAULT_FORMAT = Fixed(16, 8)


class RTLConfigError(ConfigError):
    """A block's parameters are invalid (which block, which parameter, what was found, what is allowed)."""


def check_int(block: str, name: str, value: object, lo: int, hi: int, *, owner: object = None) -> int:
    """``value`` if it is an integer in ``lo..hi``; else an error naming the block and parameter.

    ``owner``: the component being constructed; a rejected one is never elaborated, so Amaranth's
    "unused elaboratable" warning is silenced for it.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        if owner is not None:
            owner._MustUse__silence = True  # type: ignore[attr-defined]
        raise RTLConfigError(f"{block}: parameter {name} must be an integer in {lo}..{hi}, got {value!r}")
    return value


def name_states(m: Any, fsm: Any, prefix: str) -> None:
    """One named signal per state of ``fsm``, ``<prefix>_is_<STATE>``, high while it is in that
    state: a waveform then reads the controller's states by name (the state register itself
    dumps as a number)."""
    from amaranth.hdl import Signal

    for state in fsm.encoding:
        flag = Signal(name=f"{prefix}_is_{state}")
        m.d.comb += flag.eq(fsm.ongoing(state))
