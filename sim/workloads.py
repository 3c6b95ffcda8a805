"""Workloads: the transformer models of the FuseMax evaluation at any sequence length.

>>> w = workload("BERT", "1K")
>>> (w.seq, w.batch, w.heads, w.E)
(1024, 64, 12, 64)
>>> parse_seq("64K"), parse_seq("1M"), parse_seq("4096")
(65536, 1048576, 4096)
"""

from __future__ import annotations

import dataclasses
import re

from einsum.errors import ConfigError, suggest

__all__ = ["MODELS", "SEQ_LENGTHS", "Model", "Workload", "format_seq", "parse_seq", "workload"]


@dataclasses.dataclass(frozen=True)
class Model:
    """A transformer layer's shape: model width D, head dims E = F, heads H, FFN width S."""

    name: str
    D: int
    E: int
    H: int
    S: int


MODELS = {
    m.name: m
    for m in (
        Model("BERT", 768, 64, 12, 3072),
        Model("TrXL", 1024, 64, 16, 4096),
        Model("T5", 512, 64, 8, 2048),
        Model("XLM", 2048, 128, 16, 8192),
    )
}

#: The six sequence lengths of the FuseMax evaluation.
SEQ_LENGTHS = (1 << 10, 1 << 12, 1 << 14, 1 << 16, 1 << 18, 1 << 20)


@dataclasses.dataclass(frozen=True)
class Workload:
    """Self-attention (P = M = seq) of one layer of ``model`` over ``batch`` sequences."""

    model: str
    seq: int
    batch: int = 64
    heads: int = 12
    E: int = 64
    F: int = 64
    D: int = 768
    S: int = 3072

    @property
    def sizes(self) -> dict[str, int]:
        return {"P": self.seq, "M": self.seq, "E": self.E, "F": self.F}

    @property
    def instances(self) -> int:
        """Independent attention problems: batch x heads."""
        return self.batch * self.heads

    def gemms(self) -> dict[str, tuple[int, int, int]]:
        """The layer's other GEMMs as (rows, inner, columns): Q, K, V and output projections and
        the two FFN GEMMs."""
        rows, hidden = self.batch * self.seq, self.heads * self.E
        return {
            "Q": (rows, self.D, hidden),
            "K": (rows, self.D, hidden),
            "V": (rows, self.D, hidden),
            "Z": (rows, hidden, self.D),
            "FFN1": (rows, self.D, self.S),
            "FFN2": (rows, self.S, self.D),
        }


_SEQ = re.compile(r"^\s*(\d+)\s*([kKmM]?)\s*$")


def parse_seq(text: str | int) -> int:
    """A sequence length: ``1K`` = 1024, ``1M`` = 1048576, or a plain positive integer."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        m = _SEQ.match(str(text))
        if not m:
            raise ConfigError(f"sequence length {text!r} is not a number like 1024, 1K, 64K or 1M")
        value = int(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20}[m.group(2).lower()]
    if value <= 0:
        raise ConfigError(f"sequence length must be positive, found {text!r}")
    return value


def format_seq(n: int) -> str:
    """``1024`` -> ``1K``, ``1048576`` -> ``1M``; other lengths as plain integers."""
    for unit, size in (("M", 1 << 20), ("K", 1 << 10)):
        if n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


def workload(model: str, seq: str | int, *, batch: int = 64) -> Workload:
    """The named model's attention layer at sequence length ``seq`` (``1K``, ``64K``, ``4096``)."""
    if model not in MODELS:
        raise ConfigError(
            f"unknown model {model!r}{suggest(model, MODELS)} (expected one of {', '.join(MODELS)})"
        )
    if isinstance(batch, bool) or not isinstance(batch, int) or batch <= 0:
        raise ConfigError(f"batch must be a positive integer, found {batch!r}")
    m = MODELS[model]
    return Workload(model=model, seq=parse_seq(seq), batch=batch, heads=m.H, E=m.E, F=m.E, D=m.D, S=m.S)
