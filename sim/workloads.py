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

import einsum
from einsum.errors import ConfigError, suggest

__all__ = [
    "MODELS",
    "SEQ_LENGTHS",
    "Model",
    "Workload",
    "format_seq",
    "parse_seq",
    "parse_sizes",
    "workload",
]


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
    """Self-attention (P = M = seq) of one layer of ``model`` over ``batch`` sequences, or any rank
    sizes a user gives (``rank_sizes``: they replace the preset's, so ``P = 1`` is a decode step
    and ``P = 512, M = 2048`` cross-attention; ``model = "custom"`` where no preset applies)."""

    model: str
    seq: int
    batch: int = 64
    heads: int = 12
    E: int = 64
    F: int = 64
    D: int = 768
    S: int = 3072
    rank_sizes: tuple[tuple[str, int], ...] = ()

    @property
    def sizes(self) -> dict[str, int]:
        base = {} if self.model == "custom" else {"P": self.seq, "M": self.seq, "E": self.E, "F": self.F}
        return {**base, **dict(self.rank_sizes)}

    @property
    def instances(self) -> int:
        """Independent attention problems: batch x heads."""
        return self.batch * self.heads

    def for_cascade(self, cascade: einsum.Cascade) -> Workload:
        """This workload for a cascade that indexes the batch or the heads itself (a rank ``B`` or
        ``H``, as SpAtten's head pruning does): those become rank sizes, and :attr:`instances`
        counts only the others. Unchanged for a cascade without them (or already converted)."""
        changes: dict[str, int] = {}
        extra = dict(self.rank_sizes)
        for rank, field in INSTANCE_RANKS.items():
            if rank in cascade.ranks and rank not in extra:
                extra[rank] = getattr(self, field)
                changes[field] = 1
        if not changes:
            return self
        return dataclasses.replace(self, rank_sizes=tuple(extra.items()), **changes)

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


#: Ranks of ``sizes`` that count independent problems rather than index a cascade's tensors.
INSTANCE_RANKS = {"B": "batch", "H": "heads"}


def parse_sizes(text: str) -> dict[str, int]:
    """``"P=1,M=4096,E=128"`` -> ``{"P": 1, "M": 4096, "E": 128}`` (values as in :func:`parse_seq`).

    >>> parse_sizes("P=1, M=4K")
    {'P': 1, 'M': 4096}
    """
    out: dict[str, int] = {}
    for part in (t.strip() for t in str(text).split(",")):
        if not part:
            continue
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq or not name.isidentifier():
            raise ConfigError(f"sizes: {part!r} is not RANK=SIZE (for example P=1,M=4096,E=128)")
        try:
            out[name.upper()] = parse_seq(value.strip())
        except ConfigError as exc:
            raise ConfigError(f"sizes: rank {name}: {exc}") from None
    if not out:
        raise ConfigError(f"sizes: {text!r} gives no RANK=SIZE pair")
    return out


def workload(
    model: str | None = None,
    seq: str | int | None = None,
    *,
    batch: int | None = None,
    sizes: dict[str, int] | str | None = None,
) -> Workload:
    """The named model's attention layer at sequence length ``seq`` (``1K``, ``64K``, ``4096``), or
    the rank sizes a user gives.

    ``sizes`` (a dict or ``"P=1,M=4096,E=128,F=128,B=8,H=32"``) replaces the preset's sizes, or,
    without a model, is the whole workload (``model = "custom"``). ``B`` and ``H`` are the batch and
    the heads: independent problems, not ranks of the cascade.

    >>> w = workload(sizes="P=1,M=4096,E=128,F=128,B=8,H=32")
    >>> w.sizes, w.instances
    ({'P': 1, 'M': 4096, 'E': 128, 'F': 128}, 256)
    >>> workload("BERT", "4K", sizes={"P": 1}).sizes["P"]
    1
    """
    given = parse_sizes(sizes) if isinstance(sizes, str) else dict(sizes or {})
    for r, v in given.items():
        if not isinstance(r, str) or not r.isidentifier():
            raise ConfigError(f"sizes: rank name {r!r} is not an identifier such as P or M0")
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ConfigError(f"sizes: rank {r} must be a positive integer, found {v!r}")
        if v > einsum.MAX_RANK_SIZE:
            raise ConfigError(
                f"sizes: rank {r} is {v}, above the largest size einforge models "
                f"(2**40 = {einsum.MAX_RANK_SIZE})"
            )
    inst = {INSTANCE_RANKS[r]: given.pop(r) for r in list(given) if r in INSTANCE_RANKS}
    if batch is not None:
        inst.setdefault("batch", batch)
    if model is None:
        if seq is not None:
            raise ConfigError("a sequence length needs a model (BERT, TrXL, T5, XLM); or give sizes alone")
        if not given:
            raise ConfigError("a workload needs a model and a sequence length, or rank sizes")
        length = given.get("M", given.get("P", max(given.values())))
        return Workload(
            model="custom",
            seq=length,
            batch=inst.get("batch", 1),
            heads=inst.get("heads", 1),
            E=given.get("E", 0),
            F=given.get("F", 0),
            rank_sizes=tuple(given.items()),
        )
    if seq is None:
        raise ConfigError(f"model {model!r} needs a sequence length such as 1K")
    w = _preset(model, seq, batch=inst.get("batch", 64))
    return dataclasses.replace(w, heads=inst.get("heads", w.heads), rank_sizes=tuple(given.items()))


def _preset(model: str, seq: str | int, *, batch: int) -> Workload:
    if model not in MODELS:
        raise ConfigError(
            f"unknown model {model!r}{suggest(model, MODELS)} (expected one of {', '.join(MODELS)})"
        )
    if isinstance(batch, bool) or not isinstance(batch, int) or batch <= 0:
        raise ConfigError(f"batch must be a positive integer, found {batch!r}")
    m = MODELS[model]
    return Workload(model=model, seq=parse_seq(seq), batch=batch, heads=m.H, E=m.E, F=m.E, D=m.D, S=m.S)
