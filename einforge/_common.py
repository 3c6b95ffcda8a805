"""Helpers every command group shares (output files checked before the work, architectures named
on the command line). The command-group modules import this one and never each other's helpers,
so the command line has no import cycle."""

from __future__ import annotations

from pathlib import Path

from einsum import EinforgeError
from einsum.errors import ConfigError
from mapper import arch as archs

__all__ = ["arch_from_text", "check_output_file"]


def check_output_file(path: str, what: str) -> Path:
    """An output file, checked before any work: its folder exists and is writable, and the path
    is not a folder."""
    import os

    p = Path(path)
    if p.is_dir():
        raise EinforgeError(f"{what} {path!r} is a folder; give a file name")
    parent = p.parent if str(p.parent) else Path()
    if not parent.exists():
        raise EinforgeError(f"{what} {path!r}: folder {str(parent)!r} does not exist")
    if not parent.is_dir():
        raise EinforgeError(f"{what} {path!r}: {str(parent)!r} is a file, not a folder")
    if not os.access(parent, os.W_OK):
        raise EinforgeError(f"{what} {path!r}: folder {str(parent)!r} is not writable")
    existed = p.exists()
    try:  # what os.access cannot tell (root in /proc, a read-only mount): try it
        with p.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise EinforgeError(f"{what} {path!r}: cannot write there ({exc.strerror or exc})") from None
    if not existed:
        p.unlink()
    return p


def arch_from_text(text: str, array_dim: int | None) -> archs.ArchSpec:
    """A preset name, or an architecture file (``.yaml``, ``.yml``, ``.json``)."""
    if text in archs.presets():
        return archs.preset(text, **({"array_dim": array_dim} if array_dim is not None else {}))
    if text.endswith((".yaml", ".yml", ".json")) or Path(text).exists():
        if array_dim is not None:
            raise ConfigError(
                "--array-dim applies to a preset; edit the rows and cols in the architecture file"
            )
        return archs.load(text)
    from einsum.errors import suggest

    raise ConfigError(
        f"--arch {text!r} is neither a preset ({', '.join(archs.presets())}) nor an architecture "
        f"file (.yaml, .yml or .json){suggest(text, archs.presets())}"
    )
