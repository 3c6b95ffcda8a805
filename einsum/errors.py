"""The exception hierarchy of einforge.

Every exception the toolkit raises on purpose derives from :class:`EinforgeError`, so a caller can
catch everything einforge reports with one ``except``. ``einsum`` is the leaf package that every
other package may import, so the root lives here.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

__all__ = [
    "read_text",
    "MAX_RANK_SIZE",
    "CascadeError",
    "ConfigError",
    "EinforgeError",
    "EinsumError",
    "ParseError",
    "SizeError",
    "suggest",
]


class EinforgeError(Exception):
    """Root of every exception einforge raises on purpose."""


class EinsumError(EinforgeError, ValueError):
    """A tensor, expression, Einsum or cascade is ill-formed."""


class ParseError(EinsumError):
    """The cascade text does not follow the notation.

    Attributes:
        line: 1-based line of the offending token.
        column: 1-based column of the offending token.
        detail: the message without the position and the source excerpt.
    """

    def __init__(self, detail: str, *, line: int, column: int, source_line: str) -> None:
        self.line = line
        self.column = column
        self.detail = detail
        caret = " " * (column - 1) + "^"
        super().__init__(f"line {line}, column {column}: {detail}\n    {source_line}\n    {caret}")


class CascadeError(EinsumError):
    """A cascade is ill-formed; ``reasons`` holds every problem found, not just the first."""

    def __init__(self, reasons: Sequence[str]) -> None:
        self.reasons = tuple(reasons)
        super().__init__("ill-formed cascade:\n" + "\n".join(f"  - {r}" for r in self.reasons))


#: The largest rank size any model accepts (2**40, about 10**12): larger sizes are typing errors
#: (a size of 2**64 would make loop-nest searches enumerate its divisors for ever).
MAX_RANK_SIZE = 2**40


class SizeError(EinsumError):
    """Rank sizes are missing, inconsistent between tensors, or do not divide a partition."""


class ConfigError(EinforgeError, ValueError):
    """A user-supplied description (architecture, schedule, options, arrays) is invalid."""


def suggest(name: object, known: Iterable[str], *, prefix: str = "") -> str:
    """``"; did you mean 'x'?"`` for the closest of ``known`` to ``name`` (``prefix`` goes before
    the name, as in ``param``), or ``""`` when nothing is close: the hint every "unknown ..."
    error in einforge appends. A name that differs only in case is the closest."""
    known = list(known)
    close = [k for k in known if k.lower() == str(name).lower()]
    close = close or difflib.get_close_matches(str(name), known, n=1)
    return f"; did you mean {prefix}{close[0]!r}?" if close else ""


def read_text(path: object, what: str = "file", error: type[EinforgeError] = ConfigError) -> str:
    """The text of ``path`` as UTF-8, or ``error`` saying what could not be read and why (a missing
    file, a folder, bytes that are not UTF-8, with their offset)."""
    from pathlib import Path

    p = Path(str(path))
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        bad = exc.object[exc.start : exc.start + 1].hex()
        raise error(
            f"{what} {str(p)!r}: not UTF-8 text (byte 0x{bad} at offset {exc.start}); save it as UTF-8"
        ) from None
    except OSError as exc:
        raise error(f"cannot read {what} {str(p)!r}: {exc.strerror or exc}") from None
