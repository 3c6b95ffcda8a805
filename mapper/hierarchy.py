"""An accelerator as a storage hierarchy of any depth, as pure data: the architecture that
:mod:`mapper.analysis` costs and :mod:`mapper.hsearch` maps one Einsum onto.

A :class:`Hierarchy` lists storage :class:`Level` s outermost (DRAM) first, each with its instances
(a ``mesh`` of X x Y, or a count), capacity per instance, block size, bandwidths, multiple
buffering, the tensors it may keep and its energy per action, then the :class:`Compute` units at
the leaves. A level that only fans out (Timeloop's ``dummy_storage``) keeps nothing
(``keep: []``). It reads and writes YAML or JSON with a did-you-mean for every unknown key::

    name: eyeriss-like
    word_bits: 16
    levels:
      - {name: DRAM, kind: dram, block_words: 4, read_pj: 512, write_pj: 512}
      - {name: shared_glb, capacity_words: 65536, block_words: 4, keep: [input0, output],
         read_pj: 18.18, write_pj: 14.14, read_bandwidth: 16, write_bandwidth: 16}
      - {name: pe_columns, instances: 14, keep: []}
      - {name: ifmap_spad, mesh: [14, 12], capacity_words: 12, keep: [input0], read_pj: 0.2, write_pj: 0.18}
      ...
    compute: {name: mac, instances: 168, energy_pj: 0.21}

``keep`` names tensors, or roles that fit any Einsum: ``output``, ``inputs``, and ``input0``,
``input1``, ... (the operands in the order the Einsum names them). Energies are pJ per access of
one block (``block_words`` words); a level that gives none is priced by a model where einforge has
one: ``kind: dram`` at ``dram_pj_per_bit`` per bit, ``kind: sram`` by the SRAM model
(:mod:`mapper.sram`, 16 KiB to 64 MiB), ``kind: regfile`` by the register-file model
(:mod:`mapper.regfile`: rows of a block, ``capacity_words / block_words`` deep, up to 4096 x
1024 bits).

:meth:`Hierarchy.storages` turns the levels into the analysis's :class:`~mapper.analysis.Storage`
for one :class:`~mapper.analysis.Problem`; :func:`einsum_problem` makes that problem from an Einsum
of a cascade; :meth:`mapper.ArchSpec.hierarchy` states a preset (FuseMax, FLAT, ...) as a
hierarchy.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from einsum.errors import MAX_RANK_SIZE, suggest
from mapper import hsearch, sram
from mapper.analysis import Analysis, DataSpace, LevelMapping, Problem, Storage, analyze
from mapper.arch import _checked
from mapper.errors import ArchError, ScheduleError

__all__ = ["KINDS", "Branch", "Compute", "Hierarchy", "Level", "einsum_problem", "load"]

KINDS = ("dram", "sram", "regfile")
#: the categories of operation a compute unit prices (einsum.OpCounts')
OP_CATEGORIES = ("mac", "add", "max", "exp", "div", "other")
#: the kinds of Einsum a compute unit may run (mapper.schedule.EinsumFacts.kind)
EINSUM_KINDS = ("contraction", "reduce", "map")
#: DRAM energy per bit when a DRAM level gives none (einforge's :class:`mapper.DRAM` default)
DRAM_PJ_PER_BIT = 3.9


def _count(owner: str, name: str, value: object, *, zero: bool = False, top: int = MAX_RANK_SIZE) -> None:
    low = 0 if zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= top:
        most = f"2**{top.bit_length() - 1}" if top > 1024 and top & (top - 1) == 0 else str(top)
        raise ArchError(f"{owner}: {name} must be an integer in {low} .. {most}, found {value!r}")


def _number(owner: str, name: str, value: object, *, positive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ArchError(f"{owner}: {name} must be a finite number, found {value!r}")
    if value < 0 or (positive and value == 0):
        raise ArchError(f"{owner}: {name} must be {'positive' if positive else '>= 0'}, found {value!r}")


#: how the outermost level's transfers are timed (:attr:`Level.transfers`)
TRANSFERS = ("average", "tile")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Level:
    """One storage level. ``instances`` in all (or ``mesh``: X x Y); capacity of one instance in
    words (``None``: unbounded); bandwidths in words per cycle per instance (``None``: unbounded);
    energies in pJ per access of a block (``None``: priced by the ``kind``'s model)."""

    name: str
    kind: str = "sram"
    instances: int = 1
    mesh: tuple[int, int] | None = None
    capacity_words: int | None = None
    word_bits: int | None = None  # None: the hierarchy's
    block_words: int = 1
    read_bandwidth: float | None = None
    write_bandwidth: float | None = None
    shared_bandwidth: float | None = None
    multiple_buffering: float = 1.0
    keep: tuple[str, ...] | None = None  # None: every tensor
    read_pj: float | None = None
    write_pj: float | None = None
    update_pj: float | None = None  # None: write_pj
    leak_pj: float = 0.0  # per instance and cycle
    area_um2: float | None = None
    # kind: dram: a memory type of mapper.dram and how many devices (stacks, channels, chips):
    # its energy per bit and its bandwidth where the level gives none
    dram_type: str | None = None
    devices: int = 1
    # the network across its fanout to the next level inward (mapper.network)
    hop_pj: float = 0.0  # per word and hop
    router_pj: float = 0.0  # per word and router passed
    reduction_pj: float = 0.0  # per spatial reduction of two partial sums
    #: cycles from a request to its data. At the outermost level with ``transfers: tile``, each
    #: tile's transfer arrives that long after its last request; at a level below, an Einsum of a
    #: fused group that streams one of the group's inputs from it pays it once per tile (a
    #: buffer's synchronous read). Both in the tile engine (:func:`mapper.fusion.timed`).
    latency_cycles: float = 0.0
    #: the outermost level only: ``average`` (a group's transfers spread evenly over its tiles,
    #: each running ahead of its compute) or ``tile`` (each tile fetches what it needs when it
    #: needs it: its query-side inputs at its first step, its key-side ones at each step of the
    #: first query tile that reads them, its outputs after it, as ``rtl.AttentionTile`` does)
    transfers: str = "average"

    def __post_init__(self) -> None:
        owner = f"level {self.name!r}"
        _number(owner, "latency_cycles", self.latency_cycles)
        if self.transfers not in TRANSFERS:
            raise ArchError(
                f"{owner}: transfers must be one of {', '.join(TRANSFERS)}, found {self.transfers!r}"
                f"{suggest(str(self.transfers), TRANSFERS)}"
            )
        if not isinstance(self.name, str) or not self.name:
            raise ArchError(f"a level needs a name, found {self.name!r}")
        if self.kind not in KINDS:
            raise ArchError(
                f"{owner}: kind must be one of {', '.join(KINDS)}, found {self.kind!r}"
                f"{suggest(str(self.kind), KINDS)}"
            )
        if self.mesh is not None:
            mesh = tuple(self.mesh) if isinstance(self.mesh, list | tuple) else None
            if mesh is None or len(mesh) != 2:
                raise ArchError(f"{owner}: mesh must be [X, Y], found {self.mesh!r}")
            for v in mesh:
                _count(owner, "mesh", v, top=2**20)
            object.__setattr__(self, "mesh", mesh)
            if self.instances not in (1, mesh[0] * mesh[1]):
                raise ArchError(f"{owner}: instances {self.instances} disagree with mesh {list(mesh)}")
            object.__setattr__(self, "instances", mesh[0] * mesh[1])
        _count(owner, "instances", self.instances)
        if self.capacity_words is not None:
            _count(owner, "capacity_words", self.capacity_words, top=2**62)
        if self.word_bits is not None:
            _count(owner, "word_bits", self.word_bits, top=1024)
        _count(owner, "block_words", self.block_words, top=2**20)
        for f in ("read_bandwidth", "write_bandwidth", "shared_bandwidth"):
            v = getattr(self, f)
            if v is not None:
                _number(owner, f, v, positive=True)
        _number(owner, "multiple_buffering", self.multiple_buffering, positive=True)
        if self.multiple_buffering < 1:
            raise ArchError(f"{owner}: multiple_buffering must be >= 1, found {self.multiple_buffering!r}")
        for f in ("read_pj", "write_pj", "update_pj", "area_um2"):
            v = getattr(self, f)
            if v is not None:
                _number(owner, f, v)
        for f in ("leak_pj", "hop_pj", "router_pj", "reduction_pj"):
            _number(owner, f, getattr(self, f))
        _count(owner, "devices", self.devices, top=2**20)
        if self.dram_type is not None:
            from mapper.dram import dram_type

            if self.kind != "dram":
                raise ArchError(
                    f"{owner}: dram_type {self.dram_type!r} is for a level of kind dram, not {self.kind}"
                )
            object.__setattr__(self, "dram_type", dram_type(self.dram_type, owner).name)
        elif self.devices != 1:
            raise ArchError(f"{owner}: devices ({self.devices}) goes with a dram_type")
        if self.keep is not None:
            if isinstance(self.keep, str) or not isinstance(self.keep, list | tuple):
                raise ArchError(f"{owner}: keep must be a list of tensors or roles, found {self.keep!r}")
            object.__setattr__(self, "keep", tuple(str(k) for k in self.keep))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Compute:
    """The compute units at the leaves: how many, and pJ per operation (a MAC). ``units`` prices
    each category of operation a PE's functional units perform (``mac``, ``add``, ``max``,
    ``exp``, ``div``, ``other``: :class:`einsum.OpCounts`' categories); with it, an Einsum's compute
    energy is its operations at those prices, and an operation the PEs have no unit for is an
    error. Without it every compute point costs ``energy_pj``."""

    name: str = "mac"
    instances: int = 1
    mesh: tuple[int, int] | None = None
    energy_pj: float = 0.0
    area_um2: float = 0.0
    units: Mapping[str, float] | None = None
    #: which functional unit issues each category of operation, and for how many cycles:
    #: ``{add: mac, exp: [mac, 6]}`` (an exponential on the MAC takes 6 of its cycles); a category
    #: not named issues on its own unit in one cycle. The units run at once, so a point takes the
    #: busiest unit's cycles (:meth:`point_cycles`). None: one point a cycle.
    issue: Mapping[str, Any] | None = None
    #: how a max reduced across the Y axis of the mesh above these units (a 2D array's rows) is
    #: combined: ``chain`` (one comparator per row: ready Y cycles after), ``registered_tree``
    #: (ceil(log2 Y)), ``tree`` (0); None: no latency (:meth:`reduction_latency`)
    row_reduction: str | None = None
    #: the kinds of Einsum these units run (``contraction``, ``reduce``, ``map``; a preset's
    #: ``einsum_kinds``), and a map that only scales a contraction run here; None: any
    kinds: tuple[str, ...] | None = None
    #: cycles a functional unit takes to drain its pipeline, by category of operation
    #: (``{div: 4}``): an Einsum of a fused group that issues such operations pays it once per
    #: tile (:func:`mapper.fusion.timed`); none named: 0
    pipeline: Mapping[str, int] | None = None
    #: the functional units do not overlap: a point takes the sum of their cycles rather than the
    #: busiest unit's (the FuseMax artifact's bookkeeping of its 1-pass cascade,
    #: :mod:`sim.accounting`'s ``summed_op_cycles_one_pass``)
    serial: bool = False
    #: a systolic mesh: a contraction spread over one rank along each axis pays the mesh's fill
    #: and drain per block, as SCALE-Sim counts them (:func:`mapper.analysis.analyze`'s
    #: ``systolic``; the template's ``sim.evaluate(..., systolic=True)``)
    systolic: bool = False

    def __post_init__(self) -> None:
        owner = f"compute {self.name!r}"
        for flag in ("serial", "systolic"):
            if not isinstance(getattr(self, flag), bool):
                raise ArchError(f"{owner}: {flag} must be true or false, found {getattr(self, flag)!r}")
        if self.pipeline is not None:
            for op, n in _by_operation(owner, "pipeline", self.pipeline, "cycles").items():
                _count(owner, f"pipeline[{op}]", n, zero=True, top=2**20)
            object.__setattr__(self, "pipeline", dict(self.pipeline))
        if self.kinds is not None:
            if not isinstance(self.kinds, list | tuple) or not self.kinds:
                raise ArchError(
                    f"{owner}: kinds must be a non-empty list of Einsum kinds, found {self.kinds!r}"
                )
            for k in self.kinds:
                if k not in EINSUM_KINDS:
                    raise ArchError(
                        f"{owner}: kinds: unknown Einsum kind {k!r}{suggest(str(k), EINSUM_KINDS)} "
                        f"(kinds: {', '.join(EINSUM_KINDS)})"
                    )
            object.__setattr__(self, "kinds", tuple(self.kinds))
        if self.mesh is not None:
            if not isinstance(self.mesh, list | tuple) or len(self.mesh) != 2:
                raise ArchError(f"{owner}: mesh must be [X, Y], found {self.mesh!r}")
            for v in self.mesh:
                _count(owner, "mesh", v, top=2**20)
            object.__setattr__(self, "mesh", tuple(self.mesh))
            object.__setattr__(self, "instances", self.mesh[0] * self.mesh[1])
        _count(owner, "instances", self.instances)
        _number(owner, "energy_pj", self.energy_pj)
        _number(owner, "area_um2", self.area_um2)
        if self.units is not None:
            for op, pj in _by_operation(owner, "units", self.units, "pJ").items():
                _number(owner, f"units.{op}", pj)
            object.__setattr__(self, "units", dict(self.units))
        if self.row_reduction is not None:
            from mapper.arch import ROW_REDUCTIONS

            if self.row_reduction not in ROW_REDUCTIONS:
                raise ArchError(
                    f"{owner}: row_reduction must be one of {', '.join(ROW_REDUCTIONS)}, found "
                    f"{self.row_reduction!r}{suggest(str(self.row_reduction), ROW_REDUCTIONS)}"
                )
        if self.issue is not None:
            for op, how in _by_operation(owner, "issue", self.issue, "a unit or [unit, cycles]").items():
                try:
                    _issue(how)
                except ValueError:
                    raise ArchError(
                        f"{owner}: issue.{op} must be a unit name or [unit, cycles] with cycles > 0, "
                        f"found {how!r}"
                    ) from None
            object.__setattr__(
                self, "issue", {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.issue.items()}
            )

    def kind_error(self, problem: Problem, with_producer: bool = False) -> str | None:
        """Why these units may not run ``problem`` by its kind (None: they may). A map that only
        scales a contraction (an epilogue) runs where its contraction does: ``with_producer``
        says the contraction runs on these units too."""
        if self.kinds is None or not problem.kind or problem.kind in self.kinds:
            return None
        if problem.epilogue_of and with_producer:
            return None
        also = (
            f" (an epilogue of {problem.epilogue_of}, it runs here only beside it)"
            if problem.epilogue_of
            else ""
        )
        return f"{problem.name} is a {problem.kind}{also}; {self.name} runs {', '.join(self.kinds)}"

    def reduction_latency(
        self, problem: Problem, mappings: Sequence[LevelMapping], mesh_x: int | None
    ) -> float:
        """Cycles after an Einsum ends before its result may be used: a max (``problem.ops``)
        reduced across the Y axis of the spatial loops just above these units (the last level
        with spatial loops; X holds the innermost of them, as many as fit ``mesh_x``), combined
        by :attr:`row_reduction` over the Y extent used. 0 otherwise."""
        from mapper.arch import row_reduction_latency
        from mapper.network import place

        if self.row_reduction is None or not dict(problem.ops).get("max"):
            return 0.0
        last = next((m for m in reversed(mappings) if m.spatial), None)
        if last is None:
            return 0.0
        _x, y = place(last.spatial, last.split, mesh_x)
        reduced = [d for d, _n in problem.dims if d not in problem.output.dims]
        rows = math.prod(f for d, f in y if d in reduced)
        return float(row_reduction_latency(self.row_reduction, rows)) if rows > 1 else 0.0

    def point_cycles(self, problem: Problem) -> float:
        """Cycles one PE spends on one point of ``problem``: per functional unit, the operations
        it issues times their cycles (:attr:`issue`); the busiest unit's (their sum where the units
        are :attr:`serial`). 1 without ``issue``."""
        if self.issue is None or not problem.ops:
            return 1.0
        per: dict[str, float] = {}
        for op, n in problem.ops:
            unit, cycles = _issue(self.issue.get(op, op))
            per[unit] = per.get(unit, 0.0) + n * cycles
        if self.serial:
            return sum(per.values()) or 1.0
        return max(per.values(), default=1.0)

    def pj_per_point(self, problem: Problem) -> float:
        """Compute energy of one point of ``problem``: its operations at ``units`` (where both
        are known), else ``energy_pj``."""
        if self.units is None or not problem.ops:
            return self.energy_pj
        missing = [op for op, n in problem.ops if n and op not in self.units]
        if missing:
            raise ArchError(
                f"compute {self.name!r} has no unit for {', '.join(missing)}, which {problem.name} needs "
                f"(its units: {', '.join(self.units) or 'none'}); map it where the PEs have one, or give "
                f"the compute units.{missing[0]}"
            )
        free = sum(n * self.units.get(op, 0.0) for op, n in problem.unpriced if n)
        return sum(n * self.units[op] for op, n in problem.ops if n) - free


def _by_operation(owner: str, field: str, value: Any, what: str) -> Mapping[str, Any]:
    """``value`` after checking it maps categories of operation (:data:`OP_CATEGORIES`) to
    ``what``; the unknown category named, with the nearest."""
    if not isinstance(value, Mapping):
        raise ArchError(f"{owner}: {field} must map operations to {what}, found {value!r}")
    for op in value:
        if op not in OP_CATEGORIES:
            raise ArchError(
                f"{owner}: {field}: unknown operation {op!r}{suggest(str(op), OP_CATEGORIES)} "
                f"(operations: {', '.join(OP_CATEGORIES)})"
            )
    return value


def _issue(how: Any) -> tuple[str, float]:
    """(unit, cycles) from a unit name or [unit, cycles]."""
    if isinstance(how, str) and how:
        return how, 1.0
    if isinstance(how, list | tuple) and len(how) == 2 and isinstance(how[0], str) and how[0]:
        c = how[1]
        if not isinstance(c, bool) and isinstance(c, int | float) and math.isfinite(c) and c > 0:
            return how[0], float(c)
    raise ValueError(how)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Branch:
    """One subtree under a hierarchy's shared levels (FuseMax's 2D and 1D arrays under one
    buffer): its own levels, outermost first, and its compute units."""

    name: str
    levels: tuple[Level, ...] = ()
    compute: Compute
    #: direct connections from this branch's arrays to other branches' (FuseMax's 2D array hands
    #: its row results to the 1D array): branch name -> pJ per word sent. A tensor a fused group
    #: keeps in this branch's levels may cross a link into the same level of the other branch
    #: instead of going through the shared levels (:mod:`mapper.fusion`).
    links: Mapping[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Hierarchy:
    """Storage levels outermost first, then the compute units; or, with ``branches``, the levels
    the branches share, then each branch's own levels and compute units (a tree: an Einsum maps
    onto one path, :meth:`branch`)."""

    name: str
    levels: tuple[Level, ...]
    compute: Compute | None = None
    branches: tuple[Branch, ...] = ()
    word_bits: int = 16
    clock_hz: float = 1e9
    dram_pj_per_bit: float = DRAM_PJ_PER_BIT

    def __post_init__(self) -> None:
        owner = f"hierarchy {self.name!r}"
        object.__setattr__(self, "levels", tuple(self.levels))
        object.__setattr__(self, "branches", tuple(self.branches))
        if not self.levels:
            raise ArchError(f"{owner}: no storage level; expected DRAM and the levels below it")
        if (self.compute is None) == (not self.branches):
            raise ArchError(
                f"{owner}: give either compute (one path down to the compute units) or branches "
                "(subtrees under the shared levels, each with its compute), not "
                + ("both" if self.compute is not None else "neither")
            )
        names = [lv.name for lv in self.levels] + [lv.name for b in self.branches for lv in b.levels]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ArchError(f"{owner}: level names must be unique, {twice} repeat")
        for lv in [*self.levels[1:], *(x for b in self.branches for x in b.levels)]:
            if lv.transfers != "average":
                raise ArchError(
                    f"{owner}: level {lv.name!r}: transfers: {lv.transfers} is for the outermost level "
                    f"({self.levels[0].name}), whose transfers the tile engine times"
                )
        bnames = [b.name for b in self.branches]
        twice = sorted({n for n in bnames if bnames.count(n) > 1})
        if twice:
            raise ArchError(f"{owner}: branch names must be unique, {twice} repeat")
        for b in self.branches:
            if not isinstance(b.links, Mapping):
                raise ArchError(f"{owner}: branch {b.name!r}: links must map branch names to pJ per word")
            for to, pj in b.links.items():
                if to not in bnames or to == b.name:
                    others = [n for n in bnames if n != b.name]
                    raise ArchError(
                        f"{owner}: branch {b.name!r} links to {to!r}, which is no other branch"
                        f"{suggest(str(to), others)} (its others: {', '.join(others) or 'none'})"
                    )
                _number(owner, f"branch {b.name}: links.{to}", pj)
            object.__setattr__(b, "links", dict(b.links))
        _count(owner, "word_bits", self.word_bits, top=1024)
        _number(owner, "clock_hz", self.clock_hz, positive=True)
        _number(owner, "dram_pj_per_bit", self.dram_pj_per_bit)
        paths = (
            [(self.levels, self.compute)]
            if self.compute is not None
            else [((*self.levels, *b.levels), b.compute) for b in self.branches]
        )
        for levels, compute in paths:
            counts = [lv.instances for lv in levels] + [compute.instances]
            for i in range(len(counts) - 1):
                if counts[i + 1] % counts[i]:
                    below = levels[i + 1].name if i + 1 < len(levels) else compute.name
                    raise ArchError(
                        f"{owner}: {below} has {counts[i + 1]} instances, not a multiple of "
                        f"{levels[i].name}'s {counts[i]}; each instance fans out to the same number below"
                    )

    # -- branches ------------------------------------------------------------------------------

    def branch(self, name: str) -> Hierarchy:
        """The path through branch ``name``: the shared levels, the branch's, its compute."""
        names = [b.name for b in self.branches]
        if name not in names:
            raise ArchError(
                f"hierarchy {self.name!r} has "
                + (f"no branch {name!r}{suggest(name, names)} (its branches: {', '.join(names)})" if names
                   else f"no branches (asked for {name!r})")
            )  # fmt: skip
        b = self.branches[names.index(name)]
        return dataclasses.replace(
            self,
            name=f"{self.name}/{b.name}",
            levels=(*self.levels, *b.levels),
            compute=b.compute,
            branches=(),
        )

    def _path(self) -> Compute:
        if self.compute is None:
            raise ArchError(
                f"hierarchy {self.name!r} has branches ({', '.join(b.name for b in self.branches)}): pick "
                "one for an Einsum (Hierarchy.branch(name), --array NAME on the command line)"
            )
        return self.compute

    # -- one Einsum on it ------------------------------------------------------------------

    def _keep(self, level: Level, problem: Problem) -> frozenset[str] | None:
        if level.keep is None:
            return None
        names = [s.name for s in problem.spaces]
        inputs = [s.name for s in problem.spaces if not s.output]
        # ``on_chip``: the tensors a fused group makes on chip, which mapper.fusion adds; alone, none
        roles = {"output": [problem.output.name], "inputs": inputs, "on_chip": []}
        roles.update({f"input{i}": [t] for i, t in enumerate(inputs)})
        out: set[str] = set()
        for k in level.keep:
            if k in names:
                out.add(k)
            elif k in roles:
                out.update(roles[k])
            elif k.startswith("input") and k[5:].isdigit():
                continue  # an operand this Einsum does not have
            else:
                raise ArchError(
                    f"level {level.name!r}: keeps {k!r}, which is neither a tensor of {problem.name} "
                    f"({', '.join(names)}) nor a role (output, inputs, input0, input1, ..., on_chip)"
                    f"{suggest(k, [*names, *roles])}"
                )
        return frozenset(out)

    def _prices(self, level: Level) -> tuple[float, float]:
        """(read, write) pJ per access of a block, given or from the kind's model."""
        bits = (level.word_bits or self.word_bits) * level.block_words
        if level.read_pj is not None and level.write_pj is not None:
            return level.read_pj, level.write_pj
        if level.kind == "dram":
            if level.dram_type is not None:
                from mapper.dram import TYPES

                e = bits * TYPES[level.dram_type].pj_per_bit
            else:
                e = bits * self.dram_pj_per_bit
        elif level.kind == "sram":
            if level.capacity_words is None:
                raise ArchError(f"level {level.name!r}: an SRAM without capacity_words cannot be priced")
            cap = level.capacity_words * (level.word_bits or self.word_bits) // 8
            try:
                c = sram.cacti_table(capacity_bytes=cap, width_bits=bits, ports=1, banks=1)
            except sram.SRAMError as exc:
                raise ArchError(f"level {level.name!r}: give read_pj and write_pj ({exc})") from None
            return (
                level.read_pj if level.read_pj is not None else c.read_pj,
                level.write_pj if level.write_pj is not None else c.write_pj,
            )
        else:
            from mapper import regfile

            if level.capacity_words is None:
                raise ArchError(
                    f"level {level.name!r}: a register file without capacity_words cannot be priced"
                )
            try:
                # a row holds a block: capacity_words / block_words rows of a block's bits
                depth = -(-level.capacity_words // level.block_words)
                c = regfile.costs(depth=depth, width_bits=bits)
            except ArchError as exc:
                raise ArchError(f"level {level.name!r}: give read_pj and write_pj ({exc})") from None
            return (
                level.read_pj if level.read_pj is not None else c.read_pj,
                level.write_pj if level.write_pj is not None else c.write_pj,
            )
        return (
            level.read_pj if level.read_pj is not None else e,
            level.write_pj if level.write_pj is not None else e,
        )

    def storages(self, problem: Problem, *, priced: bool = True) -> tuple[Storage, ...]:
        """The analysis's storage levels for ``problem`` (``priced=False``: no energies)."""
        compute = self._path()
        out = []
        for k, lv in enumerate(self.levels):
            read, write = self._prices(lv) if priced else (0.0, 0.0)
            below = self.levels[k + 1] if k + 1 < len(self.levels) else compute
            px, py = lv.mesh or (lv.instances, 1)
            cx, cy = below.mesh or (below.instances, 1)
            fanout = (cx // px, cy // py) if cx % px == 0 and cy % py == 0 else None
            cap = lv.capacity_words
            out.append(
                Storage(
                    name=lv.name,
                    instances=lv.instances,
                    block_size=lv.block_words,
                    capacity=None if cap is None else max(1, int(cap // lv.multiple_buffering)),
                    read_pj=read,
                    fill_pj=write,
                    update_pj=(lv.update_pj if lv.update_pj is not None else write) if priced else 0.0,
                    leak_pj=lv.leak_pj if priced else 0.0,
                    read_bandwidth=lv.read_bandwidth,
                    write_bandwidth=lv.write_bandwidth,
                    shared_bandwidth=self._shared_bandwidth(lv),
                    fanout_mesh=fanout,
                    hop_pj=lv.hop_pj if priced else 0.0,
                    router_pj=lv.router_pj if priced else 0.0,
                    reduction_pj=lv.reduction_pj if priced else 0.0,
                )
            )
        return tuple(out)

    def _shared_bandwidth(self, level: Level) -> float | None:
        """Words per cycle a level moves in all: given, or a DRAM type's bandwidth times its
        devices at this hierarchy's clock and word width."""
        if level.shared_bandwidth is not None or level.dram_type is None:
            return level.shared_bandwidth
        from mapper.dram import TYPES

        bytes_per_s = TYPES[level.dram_type].bandwidth_bytes_per_s * level.devices
        return bytes_per_s / self.clock_hz / ((level.word_bits or self.word_bits) / 8)

    def keeps(self, problem: Problem) -> tuple[hsearch.Constraint, ...]:
        """The levels' ``keep`` as search constraints."""
        return tuple(
            hsearch.Constraint(target=lv.name, keep=k)
            for lv in self.levels
            if (k := self._keep(lv, problem)) is not None
        )

    def _check_kind(self, problem: Problem, with_producer: bool) -> None:
        why = self._path().kind_error(problem, with_producer)
        if why is not None:
            raise ArchError(f"{self.name}: {why}")

    def analyze(
        self, problem: Problem, mappings: Sequence[LevelMapping], *, priced: bool = True, **options: Any
    ) -> Analysis:
        """The analysis of ``mappings``; a level's ``keep`` applies where a mapping leaves it open.
        ``priced=False``: counts and cycles only (no energy), for levels no model can price.
        ``with_producer``: an epilogue's contraction runs on these units too
        (:meth:`Compute.kind_error`)."""
        self._check_kind(problem, options.pop("with_producer", False))
        keeps = {c.target: c.keep for c in self.keeps(problem)}
        ms = [
            m if m.keep is not None or m.target not in keeps else dataclasses.replace(m, keep=keeps[m.target])
            for m in mappings
        ]
        compute = self._path()
        return analyze(
            problem,
            self.storages(problem, priced=priced),
            ms,
            compute_pj=compute.pj_per_point(problem) if priced else 0.0,
            compute_instances=compute.instances,
            point_cycles=compute.point_cycles(problem),
            systolic=compute.systolic,
            **options,
        )

    def search(self, problem: Problem, *, priced: bool = True, **options: Any) -> hsearch.HierarchyResult:
        """The best mapping of ``problem`` (:func:`mapper.hsearch.search`'s options);
        ``priced=False`` ranks by cycles, then accesses; ``with_producer`` as :meth:`analyze`."""
        self._check_kind(problem, options.pop("with_producer", False))
        compute = self._path()
        constraints = (*self.keeps(problem), *options.pop("constraints", ()))
        return hsearch.search(
            problem,
            self.storages(problem, priced=priced),
            compute_instances=compute.instances,
            compute_pj=compute.pj_per_point(problem) if priced else 0.0,
            point_cycles=compute.point_cycles(problem),
            constraints=constraints,
            **options,
        )

    # -- serialisation ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        def clean(d: dict[str, Any], kind: type) -> dict[str, Any]:
            defaults = {f.name: f.default for f in dataclasses.fields(kind)}
            return {
                k: (list(v) if isinstance(v, tuple) else v)
                for k, v in d.items()
                if k == "name" or v != defaults.get(k)
            }

        out: dict[str, Any] = {
            "name": self.name,
            "word_bits": self.word_bits,
            "clock_hz": self.clock_hz,
            "dram_pj_per_bit": self.dram_pj_per_bit,
            "levels": [clean(dataclasses.asdict(lv), Level) for lv in self.levels],
        }
        if self.compute is not None:
            out["compute"] = clean(dataclasses.asdict(self.compute), Compute)
        else:
            out["branches"] = [
                {
                    "name": b.name,
                    "levels": [clean(dataclasses.asdict(lv), Level) for lv in b.levels],
                    "compute": clean(dataclasses.asdict(b.compute), Compute),
                    **({"links": dict(b.links)} if b.links else {}),
                }
                for b in self.branches
            ]
        return out

    def to_yaml(self) -> str:
        import yaml

        return str(yaml.safe_dump(self.to_dict(), sort_keys=False, width=120))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Hierarchy:
        if not isinstance(data, Mapping):
            raise ArchError(f"a hierarchy must be a mapping, found {type(data).__name__}")
        fields = _checked(data, cls, "hierarchy")
        levels = fields.get("levels")
        if not isinstance(levels, list | tuple):
            raise ArchError(
                f"hierarchy: 'levels' must be a list of levels, outermost first, found {levels!r}"
            )
        fields["levels"] = tuple(Level(**_checked(lv, Level, f"levels[{i}]")) for i, lv in enumerate(levels))
        if "compute" in fields or "branches" not in fields:
            fields["compute"] = Compute(**_checked(fields.get("compute"), Compute, "compute"))
        if "branches" in fields:
            branches = fields["branches"]
            if not isinstance(branches, list | tuple) or not branches:
                raise ArchError(
                    "hierarchy: 'branches' must be a list of subtrees (name, levels, compute), "
                    f"found {branches!r}"
                )
            out = []
            for j, b in enumerate(branches):
                bf = _checked(b, Branch, f"branches[{j}]")
                blevels = bf.get("levels", ())
                if not isinstance(blevels, list | tuple):
                    raise ArchError(f"branches[{j}]: 'levels' must be a list of levels, found {blevels!r}")
                bf["levels"] = tuple(
                    Level(**_checked(lv, Level, f"branches[{j}].levels[{i}]")) for i, lv in enumerate(blevels)
                )
                bf["compute"] = Compute(**_checked(bf.get("compute"), Compute, f"branches[{j}].compute"))
                out.append(Branch(**bf))
            fields["branches"] = tuple(out)
        return cls(**fields)


def load(path: str | Path) -> Hierarchy:
    """A hierarchy from a YAML or JSON file (:meth:`Hierarchy.to_yaml`'s format)."""
    from mapper.arch import read_data

    p = Path(path)
    data = read_data(p, "hierarchy file")
    if isinstance(data, Mapping) and "hierarchy" in data and len(data) == 1:
        data = data["hierarchy"]
    try:
        return Hierarchy.from_dict(data)
    except TypeError as exc:
        raise ArchError(f"{p}: {exc}") from None


def einsum_problem(cascade: Any, name: str, sizes: Mapping[str, int]) -> Problem:
    """The Einsum of ``cascade`` that writes ``name`` as an analysis problem: its indices' ranks
    with ``sizes``, its operands (parameters left out) in the order it names them, then its
    output. Each position is an affine projection of the indices: a convolution's
    ``I[c, 2 * p + r]`` reads rank 2 of ``I`` at ``2P + R`` (stride 2), a partition's
    ``K[m1 * M0 + m0, e]`` at ``M0 * M1 + M0``; constant offsets (padding) are left out, as
    Timeloop does."""
    import einsum
    from einsum._expr import to_text
    from mapper.schedule import _accesses, _index_vars

    steps = [e for e in cascade.einsums if e.output == name and not e.init]
    if not steps:
        outs = [e.output for e in cascade.einsums]
        raise ScheduleError(
            f"cascade {cascade.name} has no Einsum {name!r}{suggest(name, outs)}; its Einsums write "
            f"{', '.join(dict.fromkeys(outs))}"
        )
    e = steps[0]
    accesses: dict[str, Any] = {}
    for a in _accesses(e.expr):
        if a.tensor in cascade.params or a.tensor in accesses or a.tensor == name:
            continue
        accesses[a.tensor] = a
    ranks: list[str] = []
    for a in accesses.values():
        ranks += [v.upper() for v in _index_vars(a) if v.upper() not in ranks]
    ranks += [v.upper() for v in e.indices if v.upper() not in ranks]
    missing = [r for r in ranks if r not in sizes]
    if missing:
        raise ScheduleError(f"Einsum {name}: no size for rank(s) {', '.join(missing)}")

    def projection(a: Any) -> tuple[tuple[tuple[str, int], ...], ...]:
        out = []
        for index in a.indices:
            try:
                terms, _offset = einsum.affine_terms(index, sizes)
            except einsum.EinsumError as exc:
                raise ScheduleError(f"Einsum {name}: reads {to_text(a)}: {exc}") from None
            if any(c < 0 for c in terms.values()):
                raise ScheduleError(
                    f"Einsum {name}: reads {to_text(a)}: a position with a negative "
                    "coefficient (a reversed window) is not modelled"
                )
            out.append(tuple((v.upper(), c) for v, c in terms.items()))
        return tuple(out)

    points = math.prod(sizes[r] for r in ranks)
    counts = einsum.op_counts(cascade)[list(cascade.einsums).index(e)].at(dict(sizes))
    from mapper.schedule import einsum_facts

    facts = next((f for f in einsum_facts(cascade) if f.name == name), None)
    return Problem(
        kind=facts.kind if facts is not None else "",
        epilogue_of=(facts.epilogue_of or "") if facts is not None else "",
        name=name,
        dims=tuple((r, sizes[r]) for r in ranks),
        spaces=(
            *(DataSpace(name=t, projection=projection(a)) for t, a in accesses.items()),
            DataSpace(name=name, projection=tuple(((v.upper(), 1),) for v in e.indices), output=True),
        ),
        ops=tuple((op, n / points) for op, n in counts.items() if n),
    )
