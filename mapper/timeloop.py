"""Timeloop designs in einforge: architecture, problem and mapping YAML (Timeloop's v0.2/v0.3 tree
format, and v0.4's ``nodes`` list) turned into :mod:`mapper.analysis` objects, with energies per
action from Timeloop's ERT file.

``load(*paths, ert=None)`` reads the files (merged by their top-level keys, as Timeloop does) and
returns a :class:`Design`; ``Design.analyze()`` returns the :class:`mapper.analysis.Analysis`.
Without a mapping, ``Design.search()`` finds one (:mod:`mapper.hsearch`). Unsupported features
(sparse optimisations, compressed formats) are typed errors that name them; mapping constraints
are not read (the search spans the whole space).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from einsum.errors import suggest
from mapper import hsearch
from mapper.analysis import Analysis, DataSpace, LevelMapping, Problem, Storage, analyze
from mapper.errors import ArchError, ScheduleError
from mapper.hierarchy import Compute, Hierarchy, Level

__all__ = ["Design", "TimeloopError", "load", "read_mapping"]

_COMPUTE_CLASSES = ("mac", "intmac", "fpmac", "compute", "multiplier", "adder")
_UNSUPPORTED = ("sparse_optimizations", "sparse-optimizations")


class TimeloopError(ArchError):
    """A Timeloop file einforge cannot read: what, where, what was found and what was expected."""


@dataclasses.dataclass(frozen=True)
class Design:
    problem: Problem
    storages: tuple[Storage, ...]
    mappings: tuple[LevelMapping, ...] | None  # None: the files give no mapping (search one)
    compute_name: str
    compute_instances: int
    compute_pj: float
    priced: bool  # energies came from an ERT
    constraints: tuple[hsearch.Constraint, ...] = ()
    #: count outputs' first fills, as Timeloop did before v0.4 (:func:`mapper.analysis.analyze`)
    cold_output_fills: bool = False
    hierarchy: Hierarchy | None = None  # the architecture in einforge's terms
    unpriced: str = ""  # why the energies are not priced, where they are not

    def search(self, **options: Any) -> hsearch.HierarchyResult:
        """The best mapping over this architecture (:func:`mapper.hsearch.search`'s options)."""
        return hsearch.search(
            self.problem,
            self.storages,
            compute_instances=self.compute_instances,
            compute_pj=self.compute_pj,
            constraints=self.constraints,
            cold_output_fills=self.cold_output_fills,
            **options,
        )

    def analyze(self) -> Analysis:
        if self.mappings is None:
            raise TimeloopError("the design has no mapping: give one, or search one (Design.search)")
        return analyze(
            self.problem,
            self.storages,
            self.mappings,
            compute_pj=self.compute_pj,
            compute_instances=self.compute_instances,
            cold_output_fills=self.cold_output_fills,
        )


class _Loader(yaml.SafeLoader):
    """Safe YAML that reads Timeloop's v0.4 tags (``!Component``, ``!Container``...) as plain data."""


def _untagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


_Loader.add_multi_constructor("!", _untagged)


def _read(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TimeloopError(f"{p}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise TimeloopError(f"{p}: cannot read it ({exc.strerror})") from None
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise TimeloopError(f"{p}: not YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise TimeloopError(f"{p}: expected a mapping of top-level keys, found {type(data).__name__}")
    return data


def _instances_of(name: str) -> tuple[str, int]:
    m = re.fullmatch(r"(.*)\[(\d+)\.\.(\d+)\]", name)
    if m:
        return m.group(1), int(m.group(3)) - int(m.group(2)) + 1
    return name, 1


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TimeloopError(f"{where} must be a positive integer, found {value!r}")
    return value


def _walk_tree(node: Mapping[str, Any], mult: int, out: list[dict[str, Any]], where: str) -> None:
    """Timeloop v0.2/v0.3: ``subtree`` and ``local`` lists, outermost first."""
    for comp in node.get("local", []) or []:
        name, n = _instances_of(str(comp.get("name", "?")))
        attrs = comp.get("attributes", {}) or {}
        inst = attrs.get("instances", n * mult) if n == 1 else n * mult
        out.append(
            {"name": name, "class": str(comp.get("class", "")), "attributes": attrs, "instances": inst}
        )
    for sub in node.get("subtree", []) or []:
        _, n = _instances_of(str(sub.get("name", "?")))
        _walk_tree(sub, mult * n, out, f"{where}.{sub.get('name')}")


def _walk_nodes(nodes: list[Any], mult: int, out: list[dict[str, Any]]) -> None:
    """Timeloop v0.4: a ``nodes`` list of components and containers with ``spatial`` fanouts."""
    for node in nodes:
        if not isinstance(node, dict):
            continue
        spatial = node.get("spatial", {}) or {}
        fan = math.prod(int(v) for v in spatial.values()) if spatial else 1
        if "nodes" in node:
            _walk_nodes(node["nodes"], mult * fan, out)
            continue
        if "class" not in node:
            mult *= fan
            continue
        out.append(
            {
                "name": str(node.get("name")),
                "class": str(node.get("class")),
                "attributes": node.get("attributes", {}) or {},
                "instances": mult * fan,
            }
        )
        mult *= fan


def _components(arch: Any) -> list[dict[str, Any]]:
    if not isinstance(arch, dict):
        raise TimeloopError(f"architecture: expected a mapping, found {type(arch).__name__}")
    out: list[dict[str, Any]] = []
    if "nodes" in arch:
        _walk_nodes(arch["nodes"], 1, out)
    elif "subtree" in arch:
        _walk_tree(arch, 1, out, "architecture")
    else:
        raise TimeloopError("architecture: expected 'subtree' (Timeloop v0.2/v0.3) or 'nodes' (v0.4)")
    return out


def _block(attrs: Mapping[str, Any]) -> int:
    for key in ("block_size", "block-size", "n_words"):
        if key in attrs:
            return _int(attrs[key], f"architecture: {key}")
    bits = attrs.get("word-bits", attrs.get("datawidth", attrs.get("word_bits")))
    width = attrs.get("width")
    if isinstance(bits, int) and isinstance(width, int) and bits > 0 and width >= bits:
        return width // bits
    return 1


def _bandwidth(attrs: Mapping[str, Any], *keys: str) -> float | None:
    for key in keys:
        v = attrs.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool) and v > 0 and math.isfinite(v):
            return float(v)
    return None


def _capacity(attrs: Mapping[str, Any], block: int) -> int | None:
    """Words one instance holds: ``depth`` rows of ``block`` words (no depth: unbounded, as DRAM)."""
    for key in ("depth", "memory_depth", "memory-depth", "entries"):
        if key in attrs:
            return _int(attrs[key], f"architecture: {key}") * block
    return None


def _problem(data: Any) -> Problem:
    if not isinstance(data, dict) or "shape" not in data:
        raise TimeloopError("problem: expected a mapping with 'shape' (and the sizes, or 'instance')")
    shape = data["shape"]
    if not isinstance(shape, dict) or not isinstance(shape.get("dimensions", []), list):
        raise TimeloopError("problem.shape: expected a mapping with a 'dimensions' list and 'data-spaces'")
    dims = [str(d) for d in shape.get("dimensions", [])]
    sizes = dict(data.get("instance", {}) or {})
    sizes.update({k: v for k, v in data.items() if k in dims})
    coefs = {c["name"]: c.get("default", 1) for c in shape.get("coefficients", []) or []}
    coefs.update({k: v for k, v in sizes.items() if k in coefs})
    missing = [d for d in dims if d not in sizes]
    if missing:
        raise TimeloopError(f"problem {shape.get('name')}: no size for dimension(s) {', '.join(missing)}")
    spaces = []
    for ds in shape.get("data-spaces", shape.get("data_spaces", [])):
        ranks = []
        for rank in ds.get("projection", []):
            terms = []
            for term in rank:
                if len(term) == 1:
                    terms.append((str(term[0]), 1))
                elif len(term) == 2:
                    # [coefficient, dimension] (v0.2/v0.3) or [dimension, coefficient] (v0.4)
                    c, d = (term[1], term[0]) if term[0] in dims and term[1] not in dims else term
                    if c not in coefs:
                        raise TimeloopError(
                            f"problem: data space {ds.get('name')}: unknown coefficient {c!r}"
                            f"{suggest(str(c), list(coefs))}"
                        )
                    terms.append((str(d), int(coefs[c])))
                else:
                    raise TimeloopError(
                        f"problem: data space {ds.get('name')}: a term is [dim] or [coef, dim], found {term}"
                    )
            ranks.append(tuple(terms))
        rw = ds.get("read-write", ds.get("read_write", False))
        spaces.append(DataSpace(name=str(ds.get("name")), projection=tuple(ranks), output=bool(rw)))
    return Problem(
        name=str(shape.get("name", "problem")),
        dims=tuple((d, sizes[d]) for d in dims),
        spaces=tuple(spaces),
    )


def _factors(text: Any, where: str) -> dict[str, int]:
    if isinstance(text, list):
        text = " ".join(str(t) for t in text)
    out: dict[str, int] = {}
    for tok in str(text).replace("=", "").replace(",", " ").split():
        m = re.fullmatch(r"([A-Za-z_]\w*?)(\d+)", tok)
        if not m:
            raise TimeloopError(f"{where}: factor {tok!r} is not DIMsize such as P16")
        if int(m.group(2)) == 0:
            raise TimeloopError(f"{where}: factor {tok!r}: 0 asks the mapper to fill it in; give the factor")
        out[m.group(1)] = int(m.group(2))
    return out


def _permutation(perm: Any, dims: list[str], where: str) -> list[str]:
    """Timeloop lists a permutation innermost first; dimensions not named go outermost."""
    names = (
        [str(d) for d in perm]
        if isinstance(perm, list)
        else re.findall(r"[A-Z][a-z0-9_]*|[a-z]\w*", str(perm or ""))
    )
    for d in names:
        if d not in dims:
            raise TimeloopError(f"{where}: permutation names {d!r}, which is no dimension{suggest(d, dims)}")
    rest = [d for d in dims if d not in names]
    return list(reversed(names)) if not rest else [*rest, *reversed(names)]


def _mappings(data: Any, levels: list[str], problem: Problem) -> tuple[LevelMapping, ...]:
    entries = data.get("mapping", data) if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise TimeloopError("mapping: expected a list of {target, type, factors, permutation}")
    dims = [d for d, _n in problem.dims]
    temporal: dict[str, list[tuple[str, int]]] = {n: [] for n in levels}
    spatial: dict[str, list[tuple[str, int]]] = {n: [] for n in levels}
    keep: dict[str, frozenset[str] | None] = {n: None for n in levels}
    split: dict[str, int | None] = {n: None for n in levels}
    for i, e in enumerate(entries):
        where = f"mapping[{i}]"
        if not isinstance(e, dict):
            raise TimeloopError(f"{where}: expected {{target, type, factors, permutation}}, found {e!r}")
        target = str(e.get("target"))
        if target not in levels:
            raise TimeloopError(
                f"{where}: target {target!r} is no storage level{suggest(target, levels)}; "
                f"levels: {', '.join(levels)}"
            )
        kind = e.get("type")
        if kind in ("temporal", "spatial"):
            f = _factors(e.get("factors", ""), where)
            for d in f:
                if d not in dims:
                    raise TimeloopError(f"{where}: factor of {d!r}, which is no dimension{suggest(d, dims)}")
            order = _permutation(e.get("permutation", ""), dims, where)
            loops = [(d, f.get(d, 1)) for d in order if f.get(d, 1) > 1]
            (temporal if kind == "temporal" else spatial)[target].extend(loops)
            if kind == "spatial":
                # Timeloop's split: the first `split` dimensions of the permutation (innermost
                # first) lie along X; all of them when it is not given
                cut = e.get("split", len(dims))
                if isinstance(cut, bool) or not isinstance(cut, int) or cut < 0:
                    raise TimeloopError(f"{where}: split must be a count of dimensions, found {cut!r}")
                along_x = set(list(reversed(order))[:cut])
                split[target] = sum(1 for d, _f in loops if d in along_x)
        elif kind in ("bypass", "dataspace", "datatype"):
            names = [s.name for s in problem.spaces]
            kept = e.get("keep", []) or []
            bypassed = e.get("bypass", []) or []
            for t in [*kept, *bypassed]:
                if t not in names:
                    raise TimeloopError(f"{where}: data space {t!r} is unknown{suggest(str(t), names)}")
            keep[target] = frozenset(t for t in names if t not in bypassed)
        else:
            raise TimeloopError(f"{where}: type {kind!r} is not temporal, spatial or bypass")
    return tuple(
        LevelMapping(
            target=n, temporal=tuple(temporal[n]), spatial=tuple(spatial[n]), keep=keep[n], split=split[n]
        )
        for n in levels
    )


_CONSTRAINT_KEYS = ("mapspace_constraints", "architecture_constraints", "constraints")


def _constraint_entries(merged: Mapping[str, Any]) -> list[Any]:
    """Timeloop's constraint lists, wherever the version puts them."""
    out: list[Any] = []
    places = [merged.get(k) for k in _CONSTRAINT_KEYS]
    mapspace = merged.get("mapspace")
    if isinstance(mapspace, dict):
        places.append(mapspace.get("constraints"))
    for p in places:
        if isinstance(p, dict):
            p = p.get("targets", [])
        if p is None:
            continue
        if not isinstance(p, list):
            raise TimeloopError(f"constraints: expected a list of {{target, type, ...}}, found {p!r}")
        out += p
    return out


def _constraints(entries: list[Any], levels: list[str], problem: Problem) -> tuple[hsearch.Constraint, ...]:
    dims = [d for d, _n in problem.dims]
    names = [s.name for s in problem.spaces]
    out = []
    for i, e in enumerate(entries):
        where = f"constraints[{i}]"
        if not isinstance(e, dict):
            raise TimeloopError(f"{where}: expected {{target, type, ...}}, found {e!r}")
        target = str(e.get("target"))
        if target not in levels:
            raise TimeloopError(f"{where}: target {target!r} is no storage level{suggest(target, levels)}")
        kind = e.get("type")
        if kind in ("bypass", "dataspace", "datatype"):
            bypassed = e.get("bypass", []) or []
            kept = e.get("keep", []) or []
            for t in [*kept, *bypassed]:
                if t not in names:
                    raise TimeloopError(f"{where}: data space {t!r} is unknown{suggest(str(t), names)}")
            out.append(
                hsearch.Constraint(target=target, keep=frozenset(t for t in names if t not in bypassed))
            )
        elif kind in ("temporal", "spatial"):
            text = e.get("factors", "")
            if isinstance(text, list):
                text = " ".join(map(str, text))
            # a factor of 0 leaves it to the mapper
            toks = [
                t
                for t in str(text).replace("=", "").replace(",", " ").split()
                if not re.fullmatch(r"[A-Za-z_]\w*?\D0+|[A-Za-z_]0+", t)
            ]
            factors = _factors(" ".join(toks), where) if toks else {}
            for d in factors:
                if d not in dims:
                    raise TimeloopError(f"{where}: factor of {d!r}, which is no dimension{suggest(d, dims)}")
            perm = e.get("permutation")
            order = None
            if perm and kind == "temporal":  # the dimensions it names go innermost, the rest are free
                full = _permutation(perm, dims, where)
                named = (
                    len(perm)
                    if isinstance(perm, list)
                    else len(re.findall(r"[A-Z][a-z0-9_]*|[a-z]\w*", str(perm)))
                )
                order = tuple(full[len(full) - named :])
            out.append(
                hsearch.Constraint(target=target, spatial=kind == "spatial", factors=factors, order=order)
            )
        elif kind in ("utilization", "max_overbooked_proportion"):
            continue  # bounds on the search, not on the mappings' meaning
        else:
            raise TimeloopError(f"{where}: type {kind!r} is not temporal, spatial, bypass or utilization")
    return tuple(out)


def read_mapping(path: str | Path, levels: list[str], problem: Problem) -> tuple[LevelMapping, ...]:
    """A mapping in Timeloop's YAML format (a ``mapping:`` list of ``{target, type, factors,
    permutation}``, or the list alone) over storage levels named ``levels``, for ``problem``."""
    data = _read(path) if Path(path).suffix in (".yaml", ".yml") else None
    if data is None:
        raise TimeloopError(f"{path}: expected a Timeloop mapping in a .yaml file")
    if "mapping" not in data:
        raise TimeloopError(f"{path}: no 'mapping' list")
    try:
        return _mappings(data["mapping"], levels, problem)
    except (TypeError, AttributeError, KeyError, ValueError) as exc:
        raise TimeloopError(f"{path}: a field has the wrong shape ({type(exc).__name__}: {exc})") from None


def _ert(data: Any) -> dict[str, dict[str, float]]:
    """Per component, each action's energy. An action listed once per argument combination
    (``address_delta``, ``data_delta``: Accelergy's ERTs of 2020) costs its most expensive one,
    as Timeloop's ``Topology::ParseAccelergyERT`` reads it."""
    tables = (data.get("ERT", data) if isinstance(data, dict) else {}).get("tables", [])
    out: dict[str, dict[str, float]] = {}
    for t in tables:
        name, _ = _instances_of(str(t.get("name", "")))  # "top.shared_glb[1..1]"
        name = name.split(".")[-1]
        acts: dict[str, float] = {}
        for a in t.get("actions", []):
            e = a.get("energy")
            if e is None and a.get("arguments"):
                args = a["arguments"]
                e = (args[0] if isinstance(args, list) else args).get("energy")
            if isinstance(e, int | float):
                key = str(a.get("name"))
                acts[key] = max(acts.get(key, float(e)), float(e))
        out[name] = acts
    return out


def load(*paths: str | Path, ert: str | Path | None = None, cold_output_fills: bool = False) -> Design:
    """A Timeloop design from its YAML files (architecture, problem, mapping: one file or several,
    merged by top-level keys), priced by ``ert`` (Timeloop's ERT YAML) when given.
    ``cold_output_fills`` counts outputs' first fills as Timeloop did before v0.4."""
    try:
        return dataclasses.replace(_load(paths, ert), cold_output_fills=cold_output_fills)
    except (TypeError, AttributeError, KeyError, ValueError) as exc:
        if isinstance(exc, ArchError | ScheduleError):
            raise
        files = ", ".join(map(str, paths))
        raise TimeloopError(
            f"{files}: a field has the wrong shape ({type(exc).__name__}: {exc}); expected Timeloop's "
            "architecture, problem and mapping formats"
        ) from None


def _load(paths: tuple[str | Path, ...], ert: str | Path | None) -> Design:
    merged: dict[str, Any] = {}
    for p in paths:
        merged.update(_read(p))
    for key in _UNSUPPORTED:
        if merged.get(key):
            raise TimeloopError(f"{key}: sparse optimisations and compressed formats are not modelled")
    densities = ((merged.get("problem") or {}).get("instance") or {}).get("densities") or {}
    if isinstance(densities, dict):
        for tensor, d in densities.items():
            value = d.get("density", 1.0) if isinstance(d, dict) else d
            if isinstance(value, int | float) and value < 1:
                raise TimeloopError(
                    f"problem: densities: {tensor} has density {value:g}; sparse workloads (densities "
                    "below 1, compressed formats, skipping and gating) are not modelled"
                )
    for key in ("architecture", "problem"):
        if key not in merged:
            raise TimeloopError(
                f"no '{key}' in {', '.join(map(str, paths))}; expected the architecture, problem and "
                "mapping (the files Timeloop's front end reads, or its parsed-processed-input.yaml)"
            )
    comps = _components(merged["architecture"])
    compute = [c for c in comps if any(k in c["class"].lower() for k in _COMPUTE_CLASSES)]
    storage = [c for c in comps if c not in compute]
    if not compute or not storage:
        raise TimeloopError(
            "architecture: expected storage levels and a compute unit "
            f"(class one of {', '.join(_COMPUTE_CLASSES)}), "
            f"found {[c['name'] + ':' + c['class'] for c in comps]}"
        )
    energies = _ert(_read(ert)) if ert is not None else {}
    levels = []
    for c in storage:
        acts = energies.get(c["name"], {})
        attrs = c["attributes"]
        block = _block(attrs)
        cls = c["class"].lower()
        kind = "dram" if "dram" in cls else "regfile" if "regfile" in cls or cls.endswith("_rf") else "sram"
        read = acts.get("read")
        write = acts.get("write", acts.get("update", read))
        if "dummy" in cls:  # a level that only fans out: it holds nothing and costs nothing
            read = write = 0.0
        bits = attrs.get("word-bits", attrs.get("datawidth", attrs.get("word_bits")))
        levels.append(
            Level(
                name=c["name"],
                kind=kind,
                instances=int(c["instances"]),
                capacity_words=None if kind == "dram" else _capacity(attrs, block),
                word_bits=bits if isinstance(bits, int) and not isinstance(bits, bool) and bits > 0 else None,
                block_words=block,
                read_bandwidth=_bandwidth(attrs, "read_bandwidth", "read-bandwidth"),
                write_bandwidth=_bandwidth(attrs, "write_bandwidth", "write-bandwidth"),
                shared_bandwidth=_bandwidth(attrs, "shared_bandwidth", "shared-bandwidth"),
                multiple_buffering=float(
                    attrs.get("multiple_buffering", attrs.get("multiple-buffering", 1)) or 1
                ),
                read_pj=read,
                write_pj=write,
                update_pj=acts.get("update", write),
                leak_pj=acts.get("leak", 0.0),
            )
        )
    problem = _problem(merged["problem"])
    names = [lv.name for lv in levels]
    mappings = _mappings(merged["mapping"], names, problem) if merged.get("mapping") else None
    comp = compute[-1]
    cacts = energies.get(comp["name"], {})
    mac = next((v for k, v in cacts.items() if k.startswith("mac") or k == "compute"), 0.0)
    if ert is not None and comp["name"] not in energies:
        raise TimeloopError(f"{ert}: no table for the compute unit {comp['name']!r}")
    arch = merged["architecture"]
    hierarchy = Hierarchy(
        name=str(arch.get("name", "timeloop")) if isinstance(arch, dict) else "timeloop",
        levels=tuple(levels),
        compute=Compute(name=comp["name"], instances=int(comp["instances"]), energy_pj=mac),
    )
    unpriced = ""
    try:
        storages = hierarchy.storages(problem)
    except ArchError as exc:  # no ERT and a level einforge's models cannot price
        unpriced = str(exc)
        storages = hierarchy.storages(problem, priced=False)
    constraints = _constraints(_constraint_entries(merged), names, problem)
    kept = {c.target: c.keep for c in constraints if c.keep is not None}
    if mappings is not None:
        kept.update({m.target: m.keep for m in mappings if m.keep is not None})
    hierarchy = dataclasses.replace(
        hierarchy,
        levels=tuple(
            dataclasses.replace(lv, keep=tuple(sorted(kept[lv.name]))) if lv.name in kept else lv
            for lv in hierarchy.levels
        ),
    )
    return Design(
        problem=problem,
        storages=storages,
        mappings=mappings,
        compute_name=comp["name"],
        compute_instances=int(comp["instances"]),
        compute_pj=mac if not unpriced else 0.0,
        priced=not unpriced and (ert is not None or mac > 0),
        constraints=constraints,
        hierarchy=hierarchy,
        unpriced=unpriced
        if unpriced
        else ""
        if ert is not None or mac > 0
        else "no energy for the compute unit",
    )
