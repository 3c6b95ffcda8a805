"""``ArchSpec``: a spatial-array accelerator as pure data, with the published presets.

An architecture is a set of PE arrays (FuseMax's 2D array of R x C PEs and 1D array of N PEs), the
functional units in each PE, register files, one global buffer, DRAM and a clock, plus the energy
per action and the area per component. Nothing here computes a schedule or a latency: the mapper
(:mod:`mapper.search`) and the simulator (:mod:`sim`) read these numbers.

Default energy and area tables of the functional units and register files are the 45 nm, 16-bit
Accelergy figures of the FuseMax artifact (github.com/FPSG-UIUC/micro24-fusemax-artifact); the
buffer is priced from its geometry by CACTI 7 (:mod:`mapper.sram`).

>>> arch = fusemax(array_dim=128)
>>> arch.array("2d").pes, arch.array("1d").pes
(16384, 128)
>>> ArchSpec.from_dict(arch.to_dict()) == arch
True
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from einsum.errors import read_text, suggest
from mapper import sram
from mapper.errors import ArchError
from mapper.sram import SRAMModel

__all__ = [
    "DRAM",
    "EINSUM_KINDS",
    "FUNCTIONAL_UNITS",
    "ROW_REDUCTIONS",
    "TOPK_ROLES",
    "ArchSpec",
    "Buffer",
    "BufferCosts",
    "Energy",
    "PEArray",
    "TopKEngine",
    "flat",
    "fusemax",
    "load",
    "preset",
    "presets",
    "row_reduction_latency",
    "spatten",
    "spatten_eighth",
    "unfused",
]

#: Functional units a PE may have. ``mac`` also does additions and multiplications; without an
#: ``exp`` unit an exponential is evaluated on the MAC (``PEArray.exp_macs`` MAC operations).
FUNCTIONAL_UNITS = ("mac", "max", "exp", "div")
#: How a max across a 2D array's rows is built (see :func:`row_reduction_latency`).
ROW_REDUCTIONS = ("chain", "registered_tree", "tree")
#: How the simulator times DRAM traffic (:class:`DRAM`).
DRAM_TRANSFERS = ("average", "tile")

#: What an array's control can sequence: sums of products ("contraction", a GEMM engine), max or
#: sum reductions of one operand ("reduce") and element-wise maps ("map"). A GEMM-only array also
#: runs a map that only scales a contraction's output, as the contraction's epilogue.
EINSUM_KINDS = ("contraction", "reduce", "map")

KIB = 2**10
MIB = 2**20
#: The most PEs along one dimension of an array (a million): larger values are typing errors.
MAX_ARRAY_DIM = 2**20
GIB = 2**30


def _positive(owner: str, **values: float) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ArchError(f"{owner}: {name} must be a finite number, found {value!r}")
        if value <= 0:
            raise ArchError(f"{owner}: {name} must be positive, found {value!r}")


def _non_negative(owner: str, **values: float) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ArchError(f"{owner}: {name} must be a finite number, found {value!r}")
        if value < 0:
            raise ArchError(f"{owner}: {name} must not be negative, found {value!r}")


def _integer(owner: str, **values: object) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise ArchError(f"{owner}: {name} must be an integer, found {value!r}")


def row_reduction_latency(kind: str, rows: int) -> int:
    """Cycles a max across a 2D array's ``rows`` takes beyond the cycle that delivers it, for each
    ``row_reduction``: ``chain``, one registered comparator per row, the value passing down the
    rows (FuseMax's: ``rows``); ``registered_tree``, pairwise comparators with a register per level
    (``ceil(log2 rows)``); ``tree``, pairwise and combinational (0: the path grows with the array).
    The simulator charges it (``mapper.schedule.exposed_latency``) and ``rtl.Array2D`` builds it:
    one timing description for both."""
    if kind not in ROW_REDUCTIONS:
        raise ArchError(f"unknown row_reduction {kind!r} (expected one of {', '.join(ROW_REDUCTIONS)})")
    if kind == "chain":
        return rows
    if kind == "registered_tree":
        return (rows - 1).bit_length()
    return 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class PEArray:
    """A rectangular array of identical PEs (``rows = 1`` for a 1D array).

    ``units`` are the functional units in each PE, each able to start one operation per cycle;
    ``row_reduction`` how a max across the rows is built (:func:`row_reduction_latency`);
    ``exp_macs`` is the number of MAC operations an exponential takes where there is no ``exp``
    unit (FuseMax: a 5th-order Taylor series, 5 FMAs and a multiply). The register file holds
    ``rf_words`` words per PE. ``div_latency`` is the divider's pipeline depth: an Einsum that
    divides pays it once per tile, as its last result drains (0: a combinational divider).
    """

    name: str
    rows: int
    cols: int
    units: tuple[str, ...]
    einsum_kinds: tuple[str, ...] = ("contraction", "reduce", "map")
    exp_on_mac: bool = False
    exp_macs: int = 6
    row_reduction: str = "chain"
    div_latency: int = 0
    rf_words: int
    rf_read_pj: float
    rf_write_pj: float
    rf_area_um2: float

    def __post_init__(self) -> None:
        owner = f"array {self.name!r}"
        if not isinstance(self.name, str) or not self.name or not self.name.replace("_", "").isalnum():
            raise ArchError(f"array name must be letters, digits and '_' such as '2d', found {self.name!r}")
        _integer(owner, rows=self.rows, cols=self.cols, exp_macs=self.exp_macs, rf_words=self.rf_words)
        _positive(owner, rows=self.rows, cols=self.cols, exp_macs=self.exp_macs, rf_words=self.rf_words)
        for name, v in (("rows", self.rows), ("cols", self.cols)):
            if v > MAX_ARRAY_DIM:
                raise ArchError(f"{owner}: {name} must be at most 2**20 = {MAX_ARRAY_DIM} PEs, found {v}")
        _integer(owner, div_latency=self.div_latency)
        _non_negative(owner, div_latency=self.div_latency)
        _non_negative(
            owner, rf_read_pj=self.rf_read_pj, rf_write_pj=self.rf_write_pj, rf_area_um2=self.rf_area_um2
        )
        units = tuple(self.units)
        object.__setattr__(self, "units", units)
        for u in units:
            if u not in FUNCTIONAL_UNITS:
                raise ArchError(
                    f"{owner}: unknown functional unit {u!r}{suggest(u, FUNCTIONAL_UNITS)} "
                    f"(expected some of {', '.join(FUNCTIONAL_UNITS)})"
                )
        kinds = tuple(self.einsum_kinds)
        object.__setattr__(self, "einsum_kinds", kinds)
        for k in kinds:
            if k not in EINSUM_KINDS:
                raise ArchError(
                    f"{owner}: unknown Einsum kind {k!r}; expected some of {', '.join(EINSUM_KINDS)}"
                )
        if "mac" not in units:
            raise ArchError(f"{owner}: every PE needs a 'mac' unit, found units {list(units)}")
        if self.row_reduction not in ROW_REDUCTIONS:
            hint = suggest(str(self.row_reduction), ROW_REDUCTIONS)
            raise ArchError(
                f"{owner}: unknown row_reduction {self.row_reduction!r}{hint} "
                f"(expected one of {', '.join(ROW_REDUCTIONS)})"
            )

    @property
    def pes(self) -> int:
        return self.rows * self.cols

    @property
    def is_2d(self) -> bool:
        return self.rows > 1


@dataclasses.dataclass(frozen=True, kw_only=True)
class Buffer:
    """The global (last-level on-chip) buffer, described by its geometry.

    An access reads or writes one row of ``width_bits`` in one of ``banks`` banks, each with
    ``ports`` read/write ports. Its energy per access, leakage and area come from an SRAM cost model
    (by default the shipped CACTI 7 table, :func:`mapper.sram.cacti_table`), so a bigger or wider
    buffer costs more. A figure given here (``read_pj_per_word``, ``write_pj_per_word``,
    ``area_um2``, ``leakage_mw``) overrides the model's, for a buffer whose costs you know.

    ``bandwidth`` bounds the words the buffer serves per cycle: ``None`` (the presets, as in the
    FuseMax artifact, which does not model it) leaves it unbounded; ``"geometry"`` takes
    ``width_bits / word_bits x banks x ports`` words per cycle; a number gives words per cycle.
    Where it is bounded, the simulator's latency is at least the buffer's reads and writes over it
    (for every loop nest and every tiled kernel).

    ``read_latency`` is the cycles between an array's read address and its data (a synchronous
    SRAM: 1): an Einsum that streams an input from the buffer pays it once per tile, before its
    first operation (``rtl.AttentionTile``'s buffer; 0 in the presets, as in the FuseMax artifact).
    """

    capacity_bytes: int
    width_bits: int = 4096
    banks: int = 1
    ports: int = 1
    technology_nm: float = 45.0
    read_pj_per_word: float | None = None
    write_pj_per_word: float | None = None
    area_um2: float | None = None
    leakage_mw: float | None = None
    bandwidth: float | str | None = None
    read_latency: int = 0

    def __post_init__(self) -> None:
        _integer("buffer", read_latency=self.read_latency)
        _non_negative("buffer", read_latency=self.read_latency)
        if isinstance(self.bandwidth, str):
            if self.bandwidth != "geometry":
                raise ArchError(
                    f"buffer: bandwidth must be None, 'geometry' or words per cycle, found {self.bandwidth!r}"
                )
        elif self.bandwidth is not None:
            _positive("buffer", bandwidth=self.bandwidth)
        _integer("buffer", capacity_bytes=self.capacity_bytes, width_bits=self.width_bits)
        _integer("buffer", banks=self.banks, ports=self.ports)
        _positive(
            "buffer",
            capacity_bytes=self.capacity_bytes,
            width_bits=self.width_bits,
            banks=self.banks,
            ports=self.ports,
            technology_nm=self.technology_nm,
        )
        for name in ("read_pj_per_word", "write_pj_per_word", "area_um2", "leakage_mw"):
            value = getattr(self, name)
            if value is not None:
                _non_negative("buffer", **{name: value})

    def words_per_cycle(self, word_bits: int) -> float:
        """Words the buffer serves per cycle (``inf`` where ``bandwidth`` is None)."""
        if self.bandwidth is None:
            return math.inf
        if self.bandwidth == "geometry":
            return self.width_bits / word_bits * self.banks * self.ports
        return float(self.bandwidth)

    def costs(self, word_bits: int, model: SRAMModel | None = None) -> BufferCosts:
        """Energy per word read and written (pJ), leakage (mW) and area (um^2) of this buffer:
        the model's figures for the geometry, replaced by any figure given on the buffer."""
        needed = (self.read_pj_per_word, self.write_pj_per_word, self.area_um2, self.leakage_mw)
        if all(v is not None for v in needed):
            source = "given"
            read, write, area, leak = (float(v) for v in needed)  # type: ignore[arg-type]
        else:
            c = (model or sram.cacti_table)(
                capacity_bytes=self.capacity_bytes,
                width_bits=self.width_bits,
                ports=self.ports,
                banks=self.banks,
                technology_nm=self.technology_nm,
            )
            read, write = c.per_word(word_bits)
            area, leak, source = c.area_um2, c.leakage_mw, c.source
            read = read if self.read_pj_per_word is None else self.read_pj_per_word
            write = write if self.write_pj_per_word is None else self.write_pj_per_word
            area = area if self.area_um2 is None else self.area_um2
            leak = leak if self.leakage_mw is None else self.leakage_mw
        return BufferCosts(
            read_pj_per_word=read, write_pj_per_word=write, area_um2=area, leakage_mw=leak, source=source
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class BufferCosts:
    """A buffer's priced geometry: pJ per 16-bit (``word_bits``) word read or written, um^2, mW."""

    read_pj_per_word: float
    write_pj_per_word: float
    area_um2: float
    leakage_mw: float
    source: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class DRAM:
    """Off-chip memory: bandwidth, latency and energy per bit moved.

    ``type`` names a memory type of :mod:`mapper.dram` (``HBM2``, ``HBM3``, ``LPDDR4``, ...) and
    ``devices`` how many (stacks, channels or chips): the type's energy per bit and its bandwidth
    per device times ``devices`` fill ``pj_per_bit`` and ``bandwidth_bytes_per_s`` where they are
    not given. Without a type, the bandwidth must be given and the energy is 3.9 pJ/bit (HBM2).

    ``transfers`` says how the simulator times a tiled kernel's DRAM traffic: ``"average"`` (the
    presets, as the FuseMax artifact does) spreads the kernel's bytes evenly over its tiles;
    ``"tile"`` moves what each tile needs when it needs it, as ``rtl.AttentionTile`` does: a query
    tile's inputs at its first step, the key-side inputs (K, V) at every step of the first query
    tile of each group that shares a pass over them, each transfer arriving ``latency_cycles``
    after its last request; reads and writes on channels of their own, so writes cost only the
    last query tile's output, drained after it is computed.

    >>> d = DRAM(type="HBM3", devices=2)
    >>> d.pj_per_bit, d.bandwidth_bytes_per_s / 1e9
    (4.05, 1638.4)
    """

    bandwidth_bytes_per_s: float = None  # type: ignore[assignment]  # filled from the type
    pj_per_bit: float = None  # type: ignore[assignment]
    latency_cycles: float = 0.0
    transfers: str = "average"
    type: str | None = None
    devices: int = 1

    def __post_init__(self) -> None:
        _integer("dram", devices=self.devices)
        _positive("dram", devices=self.devices)
        if self.type is not None:
            from mapper.dram import dram_type

            t = dram_type(self.type)
            object.__setattr__(self, "type", t.name)
            if self.bandwidth_bytes_per_s is None:
                object.__setattr__(self, "bandwidth_bytes_per_s", t.bandwidth_bytes_per_s * self.devices)
            if self.pj_per_bit is None:
                object.__setattr__(self, "pj_per_bit", t.pj_per_bit)
        elif self.devices != 1:
            raise ArchError(f"dram: devices ({self.devices}) needs a type (one of the types of mapper.dram)")
        if self.bandwidth_bytes_per_s is None:
            raise ArchError("dram: give bandwidth_bytes_per_s, or a type (such as HBM2) and devices")
        if self.pj_per_bit is None:
            object.__setattr__(self, "pj_per_bit", 3.9)
        _positive("dram", bandwidth_bytes_per_s=self.bandwidth_bytes_per_s)
        _non_negative("dram", pj_per_bit=self.pj_per_bit, latency_cycles=self.latency_cycles)
        if self.transfers not in DRAM_TRANSFERS:
            raise ArchError(
                f"dram: transfers must be one of {', '.join(DRAM_TRANSFERS)}, found {self.transfers!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Its fields; with a type, only what differs from the type's figures (so that changing
        the type of a saved file changes them)."""
        d = dataclasses.asdict(self)
        if self.type is None:
            del d["type"], d["devices"]
            return d
        from mapper.dram import TYPES

        t = TYPES[self.type]
        if d["bandwidth_bytes_per_s"] == t.bandwidth_bytes_per_s * self.devices:
            del d["bandwidth_bytes_per_s"]
        if d["pj_per_bit"] == t.pj_per_bit:
            del d["pj_per_bit"]
        return d


@dataclasses.dataclass(frozen=True, kw_only=True)
class Energy:
    """Energy per operation of each functional unit, in pJ, and area per unit in um^2."""

    mac_pj: float = 17.1645
    add_pj: float = 8.3395
    max_pj: float = 0.028036
    exp_pj: float = 94.6475
    div_pj: float = 36.251
    mac_area_um2: float = 1545.0
    max_area_um2: float = 49.29
    exp_area_um2: float = 8240.0
    div_area_um2: float = 23740.9

    def __post_init__(self) -> None:
        _non_negative("energy", **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)})


@dataclasses.dataclass(frozen=True, kw_only=True)
class TopKEngine:
    """A SpAtten-style top-k engine (spatten.md §2; SpAtten, HPCA 2021, §4.2): quick-select with
    ``parallelism`` comparators per array (two arrays, one keeping the elements below the pivot,
    one those above, each followed by a zero eliminator), FIFOs of ``fifo_depth`` rows, fed at
    ``input_rate`` elements per cycle; then a filter pass over the buffered input in its original
    order. Its cycles are :mod:`mapper.topk`'s model (``round_overhead`` cycles per quick-select
    round to decide and turn around: 3 in SpAtten's released latency model), the same function the
    RTL block ``rtl.topk`` is checked against.

    ``role`` says what the engine selects: ``"token"`` (cascade token and head pruning, between
    layers) or ``"value"`` (local value pruning, per query)."""

    name: str
    role: str = "token"
    parallelism: int = 16
    fifo_depth: int = 64
    input_rate: int = 8
    round_overhead: int = 3

    def __post_init__(self) -> None:
        owner = f"top-k engine {self.name!r}"
        if self.role not in TOPK_ROLES:
            raise ArchError(f"{owner}: role must be one of {', '.join(TOPK_ROLES)}, found {self.role!r}")
        _integer(
            owner,
            parallelism=self.parallelism,
            fifo_depth=self.fifo_depth,
            input_rate=self.input_rate,
            round_overhead=self.round_overhead,
        )
        _positive(owner, parallelism=self.parallelism, fifo_depth=self.fifo_depth, input_rate=self.input_rate)
        _non_negative(owner, round_overhead=self.round_overhead)

    @property
    def comparators(self) -> int:
        """Comparators in all: two arrays of ``parallelism`` (below and above the pivot)."""
        return 2 * self.parallelism


#: What a top-k engine selects: tokens (and heads) between layers, or values per query.
TOPK_ROLES = ("token", "value")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ArchSpec:
    """A spatial-array accelerator: PE arrays, global buffer, DRAM, clock and energy tables.

    ``score_row_blocks`` are the fusion granularities of a FLAT-style dataflow: when a cascade keeps
    whole rows of scores on chip, the arrays' control fuses the score rows of a whole head or of a
    block of one of these many query rows per pass over K and V, and the mapper chooses among them
    (by its objective, within the buffer). Empty (the default): the scores are held one query
    tile at a time and as many query tiles share a pass over K and V as the buffer fits.
    """

    name: str
    arrays: tuple[PEArray, ...]
    buffer: Buffer
    dram: DRAM
    clock_hz: float
    energy: Energy = dataclasses.field(default_factory=Energy)
    word_bits: int = 16
    score_row_blocks: tuple[int, ...] = ()
    topk_engines: tuple[TopKEngine, ...] = ()
    #: the CMOS node its energy and area tables are at (nm); :meth:`at_node` moves them
    node_nm: float = 45.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "arrays", tuple(self.arrays))
        object.__setattr__(self, "topk_engines", tuple(self.topk_engines))
        engines = [t.name for t in self.topk_engines]
        twice = sorted({n for n in engines if engines.count(n) > 1})
        if twice:
            raise ArchError(f"architecture {self.name!r}: top-k engine names must be unique, {twice} repeat")
        if not self.arrays:
            raise ArchError(f"architecture {self.name!r} has no compute unit; expected at least one PE array")
        names = [a.name for a in self.arrays]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ArchError(f"architecture {self.name!r}: array names must be unique, {dup} repeat")
        _positive(f"architecture {self.name!r}", clock_hz=self.clock_hz)
        _integer(f"architecture {self.name!r}", word_bits=self.word_bits)
        _positive(f"architecture {self.name!r}", word_bits=self.word_bits)
        from mapper.technology import check_node

        object.__setattr__(self, "node_nm", check_node(self.node_nm, f"architecture {self.name!r}: node_nm"))
        if self.buffer.technology_nm != self.node_nm:
            raise ArchError(
                f"architecture {self.name!r} is at {self.node_nm:g} nm but its buffer at "
                f"{self.buffer.technology_nm:g} nm; build it at 45 nm and call at_node(), "
                "or give both one node"
            )
        blocks = tuple(self.score_row_blocks)
        object.__setattr__(self, "score_row_blocks", blocks)
        for b in blocks:
            _integer(f"architecture {self.name!r}", score_row_blocks=b)
            _positive(f"architecture {self.name!r}", score_row_blocks=b)

    @property
    def word_bytes(self) -> int:
        return (self.word_bits + 7) // 8

    def array(self, name: str) -> PEArray:
        for a in self.arrays:
            if a.name == name:
                return a
        names = [a.name for a in self.arrays]
        raise ArchError(
            f"architecture {self.name!r} has no array {name!r}{suggest(name, names)} (it has {names})"
        )

    def topk_engine(self, role: str) -> TopKEngine | None:
        """The first top-k engine with this role (``"token"`` or ``"value"``); for ``"token"``
        work an engine of the other role stands in (SpAtten shares one), None without any."""
        for t in self.topk_engines:
            if t.role == role:
                return t
        return self.topk_engines[0] if self.topk_engines and role == "token" else None

    def area_um2(self, sram_model: SRAMModel | None = None) -> dict[str, float]:
        """Area per component; the adder is part of the MAC and not counted twice. The buffer's
        comes from its geometry (``sram_model``, by default the CACTI table)."""
        e = self.energy
        per_unit = {
            "mac": e.mac_area_um2,
            "max": e.max_area_um2,
            "exp": e.exp_area_um2,
            "div": e.div_area_um2,
        }
        out: dict[str, float] = {}
        for a in self.arrays:
            pe = sum(per_unit[u] for u in a.units) + a.rf_area_um2
            out[a.name] = pe * a.pes
        for t in self.topk_engines:
            out[f"topk:{t.name}"] = t.comparators * e.max_area_um2  # the comparators only
        out["buffer"] = self.buffer.costs(self.word_bits, sram_model).area_um2
        return out

    def at_node(
        self, node_nm: float, *, vdd: float | None = None, sram_model: SRAMModel | None = None
    ) -> ArchSpec:
        """This architecture at another CMOS node: every energy and area on chip (functional
        units, register files, the buffer, leakage) scaled by :mod:`mapper.technology`'s factors
        from ``node_nm`` to the new node; DRAM (off chip) and the clock stay. The name gains
        ``@<node>nm``."""
        from mapper.technology import DEFAULT_VDD, area_factor, check_node, energy_factor

        node = check_node(node_nm)
        e = energy_factor(self.node_nm, node, DEFAULT_VDD if vdd is None else vdd)
        a = area_factor(self.node_nm, node)
        energy = Energy(
            **{
                f.name: getattr(self.energy, f.name) * (a if f.name.endswith("area_um2") else e)
                for f in dataclasses.fields(Energy)
            }
        )
        arrays = tuple(
            dataclasses.replace(
                x, rf_read_pj=x.rf_read_pj * e, rf_write_pj=x.rf_write_pj * e, rf_area_um2=x.rf_area_um2 * a
            )
            for x in self.arrays
        )
        c = self.buffer.costs(self.word_bits, sram_model)
        buffer = dataclasses.replace(
            self.buffer,
            read_pj_per_word=c.read_pj_per_word * e,
            write_pj_per_word=c.write_pj_per_word * e,
            area_um2=c.area_um2 * a,
            leakage_mw=c.leakage_mw * e,
            technology_nm=node,
        )
        base = self.name.split("@")[0]
        name = base if node == 45.0 and self.node_nm == 45.0 else f"{base}@{node:g}nm"
        return dataclasses.replace(self, name=name, node_nm=node, energy=energy, arrays=arrays, buffer=buffer)

    def with_register_files(self, depths: Mapping[str, int], *, scaled_area: bool = True) -> ArchSpec:
        """This architecture with the named arrays' PE register files ``depths[array]`` words deep,
        their energy per access and area priced by :mod:`mapper.regfile` (Accelergy's
        ``smartbuffer_RF`` at this architecture's word width and node). ``scaled_area=False`` is
        the FuseMax artifact's bookkeeping (:func:`mapper.regfile.costs`). Arrays not named keep
        theirs.

        >>> a = fusemax(array_dim=16).with_register_files({"2d": 64})
        >>> a.array("2d").rf_words, round(a.array("2d").rf_area_um2)
        (64, 8500)
        """
        from mapper import regfile
        from mapper.technology import area_factor, energy_factor

        names = [a.name for a in self.arrays]
        for name in depths:
            if name not in names:
                raise ArchError(
                    f"architecture {self.name!r}: register files for an array {name!r} it does not have"
                    f"{suggest(str(name), names)} (it has {names})"
                )
        e, a = energy_factor(regfile.TABLE_NM, self.node_nm), area_factor(regfile.TABLE_NM, self.node_nm)
        arrays = []
        for x in self.arrays:
            if x.name in depths:
                c = regfile.costs(depth=depths[x.name], width_bits=self.word_bits, scaled_area=scaled_area)
                x = dataclasses.replace(
                    x,
                    rf_words=c.depth,
                    rf_read_pj=c.read_pj * e,
                    rf_write_pj=c.write_pj * e,
                    rf_area_um2=c.area_um2 * a,
                )
            arrays.append(x)
        return dataclasses.replace(self, arrays=tuple(arrays))

    def hierarchy(self, array: str | None = None, sram_model: SRAMModel | None = None) -> Any:
        """This architecture as a storage hierarchy (:class:`mapper.hierarchy.Hierarchy`) for one
        of its arrays (default: the first 2D one): DRAM, the global buffer, a register file of
        ``rf_words`` in every PE, and the PEs' functional units (``Compute.units``: the MAC, its
        adder, max, exp and divide where the array has them), with the energies the loop-nest cost
        charges (DRAM per bit, the buffer's priced geometry per word, the register file's and the
        units' tables) and the buffer's and DRAM's bandwidths in words per cycle."""
        from mapper.hierarchy import EINSUM_KINDS, Compute, Hierarchy, Level

        arr = (
            self.array(array)
            if array is not None
            else next((a for a in self.arrays if a.is_2d), self.arrays[0])
        )
        buf = self.buffer.costs(self.word_bits, sram_model)
        dram_words = self.dram.bandwidth_bytes_per_s / self.clock_hz / self.word_bytes
        buf_words = self.buffer.words_per_cycle(self.word_bits)
        mesh = (arr.cols, arr.rows)
        return Hierarchy(
            name=f"{self.name}:{arr.name}",
            word_bits=self.word_bits,
            clock_hz=self.clock_hz,
            dram_pj_per_bit=self.dram.pj_per_bit,
            levels=(
                Level(
                    name="DRAM",
                    kind="dram",
                    shared_bandwidth=dram_words,
                    read_pj=self.word_bits * self.dram.pj_per_bit,
                    write_pj=self.word_bits * self.dram.pj_per_bit,
                    transfers=self.dram.transfers,
                    latency_cycles=self.dram.latency_cycles if self.dram.transfers == "tile" else 0.0,
                ),
                Level(
                    name="buffer",
                    capacity_words=self.buffer.capacity_bytes // self.word_bytes,
                    shared_bandwidth=None if math.isinf(buf_words) else buf_words,
                    read_pj=buf.read_pj_per_word,
                    write_pj=buf.write_pj_per_word,
                    area_um2=buf.area_um2,
                    latency_cycles=self.buffer.read_latency,
                ),
                Level(
                    name="rf",
                    kind="regfile",
                    mesh=mesh,
                    capacity_words=arr.rf_words,
                    read_pj=arr.rf_read_pj,
                    write_pj=arr.rf_write_pj,
                    area_um2=arr.rf_area_um2,
                ),
            ),
            compute=Compute(
                name="mac",
                mesh=mesh,
                energy_pj=self.energy.mac_pj,
                area_um2=self.energy.mac_area_um2,
                units=self._units(arr),
                issue=self._issue(arr),
                row_reduction=arr.row_reduction if arr.is_2d else None,
                kinds=None if set(arr.einsum_kinds) >= set(EINSUM_KINDS) else tuple(arr.einsum_kinds),
                pipeline={"div": arr.div_latency} if arr.div_latency and "div" in arr.units else None,
            ),
        )

    def branched_hierarchy(self, sram_model: SRAMModel | None = None) -> Any:
        """This architecture as one storage tree: DRAM and the global buffer shared, then a
        branch per array (named as the array) with its register files (``rf_<array>``) and PEs,
        as :meth:`hierarchy` states each: the register files keep outputs and the tensors a fused
        group keeps there, and operands stream past them, as the template charges registers. Each
        array is linked to the others at no wire cost: a tensor a fused group keeps in one
        array's register files may cross to another's. A fused group binds each Einsum to a
        branch (:mod:`mapper.fusion`), as FuseMax runs QK and SLNV on its 2D array and the rest
        on the 1D one."""
        from mapper.hierarchy import Branch

        first = self.hierarchy(self.arrays[0].name, sram_model)
        branches = []
        for arr in self.arrays:
            h = self.hierarchy(arr.name, sram_model)
            # the PEs' registers hold outputs (accumulators) and what a fused group keeps there;
            # operands stream from the buffer, as the template charges them (no operand register)
            rf = dataclasses.replace(h.levels[-1], name=f"rf_{arr.name}", keep=("output", "on_chip"))
            # the arrays pass results to one another directly, as the template's fused schedules
            # do; it prices no wire, so neither do these links (the far register file's fill is)
            links = {a.name: 0.0 for a in self.arrays if a.name != arr.name}
            branches.append(Branch(name=arr.name, levels=(rf,), compute=h.compute, links=links))
        return dataclasses.replace(
            first, name=self.name, levels=first.levels[:-1], compute=None, branches=tuple(branches)
        )

    @staticmethod
    def _issue(arr: PEArray) -> dict[str, Any]:
        """Which of an array's functional units issues each category of operation, and for how
        many cycles (the loop-nest cost's ``fu_ops``): adds and the rest on the MAC, an
        exponential on the MAC over ``exp_macs`` cycles where the PE has no exp unit."""
        issue: dict[str, Any] = {"mac": "mac", "add": "mac", "other": "mac"}
        for u in ("max", "exp", "div"):
            if u in arr.units:
                issue[u] = u
        if "exp" not in arr.units and arr.exp_on_mac:
            issue["exp"] = ["mac", arr.exp_macs]
        return issue

    def _units(self, arr: PEArray) -> dict[str, float]:
        """What an array's PEs pay per operation, by category: its functional units' energies (an
        add on the MAC's adder, any other operation as a MAC; an exponential on the MAC,
        ``exp_macs`` of them, where the PE has no exp unit but ``exp_on_mac``)."""
        e = self.energy
        units: dict[str, float] = {}
        if "mac" in arr.units:
            # the rest (a select, a compare) priced as a MAC, as the template's cost table does
            units.update(mac=e.mac_pj, add=e.add_pj, other=e.mac_pj)
            if arr.exp_on_mac:
                units["exp"] = arr.exp_macs * e.mac_pj
        for u, pj in (("max", e.max_pj), ("exp", e.exp_pj), ("div", e.div_pj)):
            if u in arr.units:
                units[u] = pj
        return units

    # -- serialisation ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["dram"] = self.dram.to_dict()
        d["score_row_blocks"] = list(d["score_row_blocks"])
        d["topk_engines"] = list(d["topk_engines"])
        for a in d["arrays"]:
            a["units"] = list(a["units"])
            a["einsum_kinds"] = list(a["einsum_kinds"])
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArchSpec:
        if not isinstance(data, Mapping):
            raise ArchError(f"an architecture must be a mapping, found {type(data).__name__}")
        fields = _checked(data, cls, "architecture")
        arrays = fields.get("arrays")
        if not isinstance(arrays, list | tuple):
            raise ArchError(f"architecture: 'arrays' must be a list, found {arrays!r}")
        fields["arrays"] = tuple(
            PEArray(**_checked(a, PEArray, f"arrays[{i}]")) for i, a in enumerate(arrays)
        )
        engines = fields.get("topk_engines", ())
        if not isinstance(engines, list | tuple):
            raise ArchError(f"architecture: 'topk_engines' must be a list, found {engines!r}")
        fields["topk_engines"] = tuple(
            TopKEngine(**_checked(t, TopKEngine, f"topk_engines[{i}]")) for i, t in enumerate(engines)
        )
        for key, kind in (("buffer", Buffer), ("dram", DRAM), ("energy", Energy)):
            if key in fields:
                fields[key] = kind(**_checked(fields[key], kind, key))
        try:
            return cls(**fields)
        except TypeError as exc:  # a required field is missing
            raise ArchError(f"architecture: {exc}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_yaml(self) -> str:
        import yaml

        return str(yaml.safe_dump(self.to_dict(), sort_keys=False))

    def save(self, path: str | Path) -> None:
        """Write as JSON or YAML, chosen by the file's suffix."""
        p = Path(path)
        if p.suffix == ".json":
            p.write_text(self.to_json() + "\n")
        elif p.suffix in (".yaml", ".yml"):
            p.write_text(self.to_yaml())
        else:
            raise ArchError(f"cannot tell the format of {str(p)!r}: expected a .json, .yaml or .yml file")

    def replace(self, **changes: Any) -> ArchSpec:
        return dataclasses.replace(self, **changes)


def _checked(data: object, kind: type, where: str) -> dict[str, Any]:
    """``data`` as a dataclass's fields: a mapping with no unknown key (did-you-mean) and every
    required one."""
    if not isinstance(data, Mapping):
        raise ArchError(f"{where} must be a mapping, found {data!r}")
    known = [f.name for f in dataclasses.fields(kind)]
    for key in data:
        if key not in known:
            raise ArchError(
                f"{where}: unknown key {key!r}{suggest(str(key), known)} (known keys: {', '.join(known)})"
            )
    required = [
        f.name
        for f in dataclasses.fields(kind)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [k for k in required if k not in data]
    if missing:
        raise ArchError(f"{where}: missing key(s) {', '.join(map(repr, missing))}")
    return dict(data)


def _yaml12_loader() -> type:
    """PyYAML's SafeLoader with YAML 1.2's floats: ``1e9`` and ``4.5E+3`` are numbers (YAML 1.1, which
    PyYAML follows, needs a dot and a signed exponent, so it reads ``1e9`` as a string)."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)?(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789."),
    )
    return Loader


def read_data(path: str | Path, what: str) -> Any:
    """The data of a JSON (``.json``) or YAML (``.yaml``, ``.yml``; YAML 1.2's floats) file; an
    :class:`ArchError` naming the file for unreadable text, bad syntax or another suffix."""
    p = Path(path)
    if p.suffix not in (".json", ".yaml", ".yml"):
        raise ArchError(f"cannot tell the format of {str(p)!r}: expected a .json, .yaml or .yml file")
    text = read_text(p, what, ArchError)
    if p.suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArchError(f"{p}: not valid JSON: {exc}") from None
    import yaml

    try:
        return yaml.load(text, Loader=_yaml12_loader())  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        raise ArchError(f"{p}: not valid YAML: {exc}") from None


def load(path: str | Path) -> ArchSpec:
    """Read an architecture written by :meth:`ArchSpec.save` (JSON or YAML)."""
    return ArchSpec.from_dict(read_data(path, "architecture file"))


# -- presets (FuseMax "cloud" scale; fusemax.md section 2) ----------------------------------------


def _buffer(capacity: int) -> Buffer:
    """The artifact's buffers as CACTI priced them: one 4096-bit row (256 words) per access, one
    bank, one read/write port. (Its Accelergy specification declares 4 ports and 32 or 4 banks, but
    the CACTI plug-in never receives them; priced as declared, CACTI gives a 16 MiB buffer of
    32 four-ported banks about 20x the energy per access and 15x the area:
    ``Buffer(capacity_bytes=16 * MIB, banks=32, ports=4)``.)"""
    return Buffer(capacity_bytes=capacity, width_bits=4096, banks=1, ports=1)


def fusemax(
    *,
    array_dim: int = 256,
    buffer_bytes: int = 16 * MIB,
    bandwidth_bytes_per_s: float = 400 * GIB,
    clock_hz: float = 940e6,
) -> ArchSpec:
    """FuseMax: a ``D x D`` 2D array of MAC + max PEs (exp on the MAC) and a ``D``-PE 1D array of
    MAC + max + divide PEs, 16 MB buffer, 400 GB/s, 940 MHz."""
    _integer("fusemax", array_dim=array_dim)
    _positive("fusemax", array_dim=array_dim)
    return ArchSpec(
        name="fusemax",
        arrays=(
            PEArray(
                name="2d",
                rows=array_dim,
                cols=array_dim,
                units=("mac", "max"),
                exp_on_mac=True,
                rf_words=10,
                rf_read_pj=0.653,
                rf_write_pj=0.570,
                rf_area_um2=4256.0,
            ),
            PEArray(
                name="1d",
                rows=1,
                cols=array_dim,
                units=("mac", "max", "div"),
                exp_on_mac=True,
                rf_words=32,
                rf_read_pj=0.653,
                rf_write_pj=0.570,
                rf_area_um2=4256.0,
            ),
        ),
        buffer=_buffer(buffer_bytes),
        dram=DRAM(bandwidth_bytes_per_s=bandwidth_bytes_per_s),
        clock_hz=clock_hz,
    )


def flat(
    *,
    array_dim: int = 256,
    buffer_bytes: int = 32 * MIB,
    bandwidth_bytes_per_s: float = 400 * GIB,
    clock_hz: float = 940e6,
    score_row_blocks: tuple[int, ...] = (256, 512, 1024),
) -> ArchSpec:
    """FLAT at iso-area: a ``D x D`` 2D array of MAC PEs with 4-entry register files and a
    ``D``-PE 1D array with a pipelined exp unit, max and divide; 32 MB buffer.

    FLAT's dataflow fuses the score rows of a head or of a block of ``score_row_blocks`` query
    rows into one pass over K and V; the mapper chooses per workload. The blocks are those of the
    FuseMax artifact's table of FLAT dataflows (``flat_validation.csv``: 256, 512 and 1024 rows)."""
    _integer("flat", array_dim=array_dim)
    _positive("flat", array_dim=array_dim)
    return ArchSpec(
        name="flat",
        arrays=(
            PEArray(
                name="2d",
                rows=array_dim,
                cols=array_dim,
                units=("mac",),
                einsum_kinds=("contraction",),
                rf_words=4,
                rf_read_pj=0.2915,
                rf_write_pj=0.2253,
                rf_area_um2=1838.0,
            ),
            PEArray(
                name="1d",
                rows=1,
                cols=array_dim,
                units=("mac", "max", "exp", "div"),
                rf_words=16,
                rf_read_pj=0.385,
                rf_write_pj=0.336,
                rf_area_um2=2145.0,
            ),
        ),
        buffer=_buffer(buffer_bytes),
        dram=DRAM(bandwidth_bytes_per_s=bandwidth_bytes_per_s),
        clock_hz=clock_hz,
        score_row_blocks=score_row_blocks,
    )


def unfused(
    *,
    array_dim: int = 256,
    buffer_bytes: int = 32 * MIB,
    bandwidth_bytes_per_s: float = 400 * GIB,
    clock_hz: float = 940e6,
) -> ArchSpec:
    """The unfused baseline: FLAT's arrays and buffer, run one kernel at a time (each kernel
    holds as many query rows as the buffer fits, as the artifact's Timeloop mapper chose)."""
    return flat(
        array_dim=array_dim,
        buffer_bytes=buffer_bytes,
        bandwidth_bytes_per_s=bandwidth_bytes_per_s,
        clock_hz=clock_hz,
        score_row_blocks=(),
    ).replace(name="unfused")


def spatten(
    *,
    multipliers: int = 512,
    head_dim: int = 64,
    softmax_parallelism: int = 8,
    sram_bytes: int = 2 * 196_608,
    bandwidth_bytes_per_s: float = 512e9,
    topk_parallelism: int = 16,
    clock_hz: float = 1e9,
    node_nm: float = 40.0,
) -> ArchSpec:
    """SpAtten (Wang, Zhang, Han, HPCA 2021, arXiv 2012.09852, §5 and Table I): ``multipliers``
    12-bit multipliers for Q x K (a reconfigurable adder tree: ``multipliers / head_dim`` scores a
    cycle) and as many for prob x V, a softmax unit of ``softmax_parallelism``, a key SRAM and a
    value SRAM of 196 KB each (2 x 1024 x 64 x 12 bits, double-buffered), two top-k engines of
    ``topk_parallelism`` comparators a side (one for token and head pruning, one for local value
    pruning), HBM2 at 512 GB/s (16 channels x 32 GB/s), 1 GHz, 12-bit words.

    SpAtten was synthesised at 40 nm, and the preset is at ``node_nm = 40``: its SRAM and unit
    energies and areas are the 45 nm tables scaled by :mod:`mapper.technology` (Stillmaker and
    Baas: energy x 0.869, area x 0.792 from 45 to 40 nm); DRAM is off chip and stays.
    :func:`spatten_eighth` is the 1/8 configuration."""
    _integer("spatten", multipliers=multipliers, head_dim=head_dim, softmax_parallelism=softmax_parallelism)
    _positive("spatten", multipliers=multipliers, head_dim=head_dim, softmax_parallelism=softmax_parallelism)
    if multipliers % head_dim:
        raise ArchError(
            f"spatten: multipliers ({multipliers}) must be a multiple of head_dim ({head_dim}): the adder "
            "tree reduces one head_dim-long dot product per group"
        )
    lanes = multipliers // head_dim

    def tree(name: str) -> PEArray:
        return PEArray(
            name=name,
            rows=head_dim,
            cols=lanes,
            units=("mac",),
            einsum_kinds=("contraction",),
            rf_words=1,
            rf_read_pj=0.2915,
            rf_write_pj=0.2253,
            rf_area_um2=0.0,
        )

    return (
        ArchSpec(
            name="spatten",
            arrays=(
                tree("qk"),
                tree("pv"),
                PEArray(
                    name="softmax",
                    rows=1,
                    cols=softmax_parallelism,
                    units=("mac", "max", "exp", "div"),
                    rf_words=128,
                    rf_read_pj=0.385,
                    rf_write_pj=0.336,
                    rf_area_um2=2145.0,
                ),
            ),
            buffer=Buffer(capacity_bytes=sram_bytes, width_bits=4096, banks=2),
            dram=DRAM(bandwidth_bytes_per_s=bandwidth_bytes_per_s),
            clock_hz=clock_hz,
            word_bits=12,
            topk_engines=(
                TopKEngine(name="token", role="token", parallelism=topk_parallelism, input_rate=lanes),
                TopKEngine(name="value", role="value", parallelism=topk_parallelism, input_rate=lanes),
            ),
        )
        .at_node(node_nm)
        .replace(name="spatten")
    )


def spatten_eighth(**params: Any) -> ArchSpec:
    """SpAtten at 1/8 scale (SpAtten §5.3, compared with A3 and MNNFast; the defaults of the
    released ``run_spatten_hardware.py``): 64 + 64 multipliers (one score a cycle at D = 64), a
    softmax of 1, 64 GB/s (2 HBM channels), top-k engines of 16 comparators."""
    defaults = {"multipliers": 64, "softmax_parallelism": 1, "bandwidth_bytes_per_s": 64e9}
    return spatten(**{**defaults, **params}).replace(name="spatten_eighth")


def fusemax_tile(
    *,
    array_dim: int = 8,
    dram_beats_per_cycle: float = 1.0,
    dram_latency_cycles: float = 20.0,
    buffer_bytes: int = 256 * KIB,
    clock_hz: float = 940e6,
    row_reduction: str = "chain",
    exp_macs: int = 6,
    div_latency: int = 0,
) -> ArchSpec:
    """FuseMax at the size of ``rtl.AttentionTile``: a ``D x D`` 2D array and a ``D``-PE 1D array
    (exp on the MAC in ``exp_macs`` steps, the max across the rows as ``row_reduction``, a divider
    of ``div_latency`` pipeline stages), a
    buffer with a synchronous read (1 cycle) and a DRAM port of one ``D``-word beat a cycle at
    most, ``dram_beats_per_cycle`` on average, ``dram_latency_cycles`` from a request to its data,
    timed per tile (``DRAM.transfers = "tile"``). One ArchSpec elaborates the RTL
    (``rtl.AttentionTile.from_arch``) and drives the simulator."""
    _integer("fusemax_tile", array_dim=array_dim, buffer_bytes=buffer_bytes, exp_macs=exp_macs)
    _integer("fusemax_tile", div_latency=div_latency)
    _non_negative("fusemax_tile", div_latency=div_latency)
    _positive("fusemax_tile", array_dim=array_dim, dram_beats_per_cycle=dram_beats_per_cycle)
    if dram_beats_per_cycle > 1:
        raise ArchError(
            f"fusemax_tile: the DRAM port moves at most one beat a cycle; dram_beats_per_cycle = "
            f"{dram_beats_per_cycle}"
        )
    base = fusemax(array_dim=array_dim, buffer_bytes=buffer_bytes, clock_hz=clock_hz)
    arrays = tuple(
        dataclasses.replace(
            a,
            row_reduction=row_reduction,
            exp_macs=exp_macs,
            div_latency=div_latency if "div" in a.units else 0,
        )
        for a in base.arrays
    )
    word_bytes = (base.word_bits + 7) // 8
    return base.replace(
        name="fusemax_tile",
        arrays=arrays,
        buffer=dataclasses.replace(base.buffer, read_latency=1),
        dram=DRAM(
            bandwidth_bytes_per_s=dram_beats_per_cycle * array_dim * word_bytes * clock_hz,
            latency_cycles=dram_latency_cycles,
            transfers="tile",
        ),
    )


_PRESETS = {
    "fusemax": fusemax,
    "fusemax_tile": fusemax_tile,
    "flat": flat,
    "unfused": unfused,
    "spatten": spatten,
    "spatten_eighth": spatten_eighth,
}


def presets() -> tuple[str, ...]:
    """The names of the presets: ``fusemax``, ``fusemax_tile``, ``flat``, ``unfused``,
    ``spatten``, ``spatten_eighth``."""
    return tuple(_PRESETS)


def preset(name: str, **params: Any) -> ArchSpec:
    """The named preset with its parameters (``array_dim``, ``buffer_bytes``, ...). Parameters
    other than the preset's defaults show in its name (``fusemax(array_dim=128)``). ``node_nm``
    moves it to another CMOS node (:meth:`ArchSpec.at_node`); ``energy_model="hwcomponents"``
    prices its memories through Accelergy's hwcomponents where installed (:mod:`mapper.plugins`;
    the default ``"tables"`` uses einforge's shipped tables)."""
    if name not in _PRESETS:
        raise ArchError(
            f"unknown architecture preset {name!r}{suggest(name, _PRESETS)} "
            f"(expected one of {', '.join(_PRESETS)})"
        )
    import inspect

    known = [*inspect.signature(_PRESETS[name]).parameters, "node_nm", "energy_model"]
    node = params.pop("node_nm", None)
    energy_model = params.pop("energy_model", "tables")
    unknown = [k for k in params if k not in known]
    if unknown:
        raise ArchError(
            f"preset {name!r} has no parameter {unknown[0]!r}{suggest(unknown[0], known)} "
            f"(its parameters: {', '.join(known)})"
        )
    try:
        arch = _PRESETS[name](**params)
    except TypeError as exc:
        raise ArchError(f"preset {name!r}: {exc}") from None
    # a preset with other parameters is another architecture: its name says which
    defaults = {k: v.default for k, v in inspect.signature(_PRESETS[name]).parameters.items()}
    changed = {k: v for k, v in params.items() if defaults.get(k) != v}
    if changed:
        arch = arch.replace(name=name + "(" + ", ".join(f"{k}={v!r}" for k, v in changed.items()) + ")")
    if node is not None:
        arch = arch.at_node(node)
    from mapper import plugins

    models = plugins.ENERGY_MODELS
    if energy_model not in models:
        raise ArchError(
            f"preset {name!r}: unknown energy_model {energy_model!r}{suggest(str(energy_model), models)} "
            f"(expected one of {', '.join(models)})"
        )
    if energy_model == "hwcomponents":
        arch = plugins.price(arch)
    return arch
