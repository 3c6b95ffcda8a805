"""Design-space sweeps as data: a grid of architectures x workloads x cascades x mapper options,
each point searched by the mapper and simulated, written as a table.

A sweep is a dict (or a YAML file, :func:`load_spec`)::

    name: buffer-and-array
    arch: fusemax                      # a preset, or an architecture file
    params:                            # preset parameters, each a list: their grid
      array_dim: [64, 128, 256]
      buffer_bytes: [4M, 16M]
    workloads:                         # each a model and length, or rank sizes
      - {model: BERT, seq: 4K}
      - {sizes: "P=1,M=4096,E=128,F=128,B=8,H=32"}
    cascades: [attention_1pass, attention_3pass]
    options: {objective: latency, fusion: auto}    # SearchOptions fields (bind, top_n, ...)
    accounting: physical

:func:`sweep` runs every point (in a local process pool sized to the machine, or any
``concurrent.futures``-style executor, a Dask ``Client`` included), keeps each finished point in an
on-disk store keyed by a hash of what determines it (so a killed sweep resumes and recomputes only
what is missing; every file is written atomically), and returns the rows in the grid's order: the
same table whatever the executor, the worker count or ``PYTHONHASHSEED``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import dataclasses
import hashlib
import io
import itertools
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import einsum
from einsum.errors import ConfigError, EinforgeError

log = logging.getLogger(__name__)

__all__ = [
    "SweepResult",
    "groups",
    "load_spec",
    "pareto",
    "plot_pareto",
    "points",
    "run_point",
    "sweep",
    "write_atomic",
]

_KEYS = ("name", "arch", "params", "workloads", "cascades", "options", "accounting", "pareto", "area")
_SIZE_UNITS = {"K": 2**10, "M": 2**20, "G": 2**30}


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("einforge")
    except Exception:  # noqa: BLE001 - an uninstalled checkout
        return "0+unknown"


def _number(text: Any, where: str) -> Any:
    """``16M`` -> 16777216; other values unchanged."""
    if isinstance(text, str):
        t = text.strip().upper().removesuffix("B").removesuffix("I")
        if t and t[-1] in _SIZE_UNITS:
            try:
                return int(float(t[:-1]) * _SIZE_UNITS[t[-1]])
            except ValueError:
                raise ConfigError(f"{where}: {text!r} is not a size like 4M or 64K") from None
        try:
            return float(t) if any(c in t for c in ".E") else int(t)
        except ValueError:
            return text
    return text


def load_spec(path: str | Path) -> dict[str, Any]:
    """Read a sweep from YAML (YAML 1.2 numbers: ``1e9`` is a number) or JSON."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"sweep file {str(path)!r} does not exist")
    text = einsum.read_text(p, "sweep file")
    if p.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"sweep file {str(p)!r}: not valid JSON: {exc}") from None
    else:
        import yaml

        from mapper.arch import _yaml12_loader

        try:
            data = yaml.load(text, Loader=_yaml12_loader())  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as exc:
            raise ConfigError(f"sweep file {p}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"sweep file {p}: expected a mapping with {', '.join(_KEYS)}")
    return data


def _check(spec: Mapping[str, Any]) -> None:
    unknown = [k for k in spec if k not in _KEYS]
    if unknown:
        from einsum.errors import suggest

        raise ConfigError(
            f"sweep: unknown key {unknown[0]!r}{suggest(unknown[0], _KEYS)} (keys: {', '.join(_KEYS)})"
        )
    for key in ("workloads", "cascades"):
        if not spec.get(key):
            raise ConfigError(f"sweep: {key!r} must list at least one entry")
    params = spec.get("params") or {}
    if not isinstance(params, dict):
        raise ConfigError(f"sweep: params must map a parameter to a list of values, found {params!r}")


def _options(options: Any) -> dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise ConfigError(
            f"sweep: options must map option names to values, such as {{objective: edp}}, found {options!r}"
        )
    return dict(options)


def _workload_entry(w: Any) -> dict[str, Any]:
    if isinstance(w, dict):
        return dict(w)
    if isinstance(w, str):
        return {"model": w}
    raise ConfigError(
        f'sweep: a workload is a mapping such as {{model: BERT, seq: 16K}} or {{sizes: "P=1,M=4096"}}, '
        f"found {w!r}"
    )


def points(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The sweep's points in grid order: every architecture parameter combination x workload x
    cascade. Each point is plain data (it is hashed, sent to workers and written out)."""
    _check(spec)
    params = {k: v if isinstance(v, list) else [v] for k, v in (spec.get("params") or {}).items()}
    empty = [k for k, v in params.items() if not v]
    if empty:
        raise ConfigError(f"sweep: params.{empty[0]} lists no value")
    for key in ("workloads", "cascades"):
        if not isinstance(spec[key], list):
            raise ConfigError(f"sweep: {key!r} must be a list, found {spec[key]!r}")
    names = sorted(str(k) for k in params)
    params = {str(k): v for k, v in params.items()}
    combos = list(itertools.product(*(params[k] for k in names))) or [()]
    archs = spec.get("arch", "fusemax")
    archs = archs if isinstance(archs, list) else [archs]
    if not archs or not all(isinstance(a, str) and a for a in archs):
        raise ConfigError(
            f"sweep: arch is a preset or an architecture file, or a list of them, found {spec.get('arch')!r}"
        )
    out = []
    for arch_name, combo in itertools.product(archs, combos):
        arch_params = {k: _number(v, f"params.{k}") for k, v in zip(names, combo, strict=True)}
        for w in spec["workloads"]:
            for c in spec["cascades"]:
                out.append(
                    {
                        "arch": arch_name,
                        "params": arch_params,
                        "workload": _workload_entry(w),
                        "cascade": str(c),
                        "options": _options(spec.get("options")),
                        "accounting": str(spec.get("accounting", "physical")),
                        "area": str(spec.get("area", "tables")),
                    }
                )
    return out


def point_key(point: Mapping[str, Any]) -> str:
    """A hash of what determines a point's result (and the einforge version that computed it)."""
    blob = json.dumps({"point": point, "version": _version()}, sort_keys=True, default=str)
    cascade = point["cascade"]
    if cascade.endswith(".ein") and Path(cascade).is_file():  # a file: its text, not its name
        blob += einsum.read_text(cascade, "cascade file")
    if str(point["arch"]).endswith((".yaml", ".yml", ".json")) and Path(point["arch"]).is_file():
        blob += einsum.read_text(point["arch"], "architecture file")
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _arch(point: Mapping[str, Any]) -> Any:
    from mapper import arch as archs

    name, params = point["arch"], point["params"]
    if name in archs.presets():
        return archs.preset(name, **params)
    a = archs.load(name)
    if not params:
        return a
    # a file's own fields: dotted paths into it (buffer.capacity_bytes, arrays.0.rows, ...)
    data = json.loads(json.dumps(a.to_dict()))  # plain lists and dicts
    node = params.get("node_nm")
    for path, value in params.items():
        if path != "node_nm":
            _set_field(data, str(path), value, name)
    try:
        a = archs.ArchSpec.from_dict(data)
        if node is not None:
            a = a.at_node(node)
    except archs.ArchError as exc:
        raise ConfigError(f"sweep: {name} with {params}: {exc}") from None
    label = ", ".join(f"{k}={v!r}" for k, v in params.items())
    return a.replace(name=f"{a.name}({label})")


def _set_field(data: Any, path: str, value: Any, file: str) -> None:
    """Set the field at a dotted ``path`` (``arrays.0.rows``) of an architecture's dict; an unknown
    key or index is a ConfigError with a did-you-mean."""
    from einsum.errors import suggest

    parts = path.split(".")
    node = data
    for i, part in enumerate(parts):
        where = ".".join(parts[: i + 1])
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                at = ".".join(parts[:i]) or "the top"
                raise ConfigError(
                    f"sweep: params.{path}: {file} has {len(node)} item(s) at {at}; "
                    f"{part!r} is no index of them"
                )
            key: Any = int(part)
        elif isinstance(node, dict):
            if part not in node:
                known = [str(k) for k in node]
                raise ConfigError(
                    f"sweep: params.{path}: {file} has no field {where!r}{suggest(part, known)} "
                    f"(fields there: {', '.join(known)})"
                )
            key = part
        else:
            raise ConfigError(
                f"sweep: params.{path}: {'.'.join(parts[:i])} of {file} is a value, not a group"
            )
        if last:
            node[key] = value
        else:
            node = node[key]


def _workload(spec: Mapping[str, Any]) -> Any:
    import sim

    spec = dict(spec)
    sizes = spec.pop("sizes", None)
    model = spec.pop("model", None)
    seq = spec.pop("seq", None)
    batch = spec.pop("batch", None)
    if sizes is not None and not isinstance(sizes, str | dict):
        raise ConfigError(f'sweep: a workload\'s sizes are "P=1,M=4096,..." or a mapping, found {sizes!r}')
    if model is not None and not isinstance(model, str):
        raise ConfigError(f"sweep: a workload's model is a name such as BERT, found {model!r}")
    if spec:
        raise ConfigError(f"sweep: a workload takes model, seq, batch and sizes; found {sorted(spec)}")
    return sim.workload(model, seq, batch=batch, sizes=sizes)


def _cascade(name: str) -> einsum.Cascade:
    if name.endswith(".ein"):
        return einsum.parse(einsum.read_text(name, "cascade file"))
    return einsum.library.get(name)


def validate(pts: Sequence[Mapping[str, Any]]) -> None:
    """Resolve every point's architecture, workload, cascade and search options before any point
    runs; raise one ConfigError listing every distinct problem (a typo in an option, a negative
    preset parameter, a missing cascade file), so a sweep never starts work that must fail."""
    from mapper.search import SearchOptions

    problems: dict[str, list[int]] = {}
    cascades: dict[str, Any] = {}
    for i, point in enumerate(pts):
        try:
            w = _workload(point["workload"])
            name = point["cascade"]
            if name not in cascades:
                try:
                    cascades[name] = _cascade(name)
                except EinforgeError as exc:
                    cascades[name] = exc
            c = cascades[name]
            if isinstance(c, EinforgeError):
                raise c
            plain, rules = _split_rules(point)
            if rules:
                _arch({**point, "params": plain})
            else:
                arch = _arch(point)
                # the report prices the buffer: a geometry outside the SRAM model fails here
                from sim.accounting import accounting as _accounting

                _accounting(point["accounting"]).priced_buffer(arch.buffer).costs(arch.word_bits)
            options = point["options"]
            if not isinstance(options, dict):
                raise ConfigError(f"options must map option names to values, found {options!r}")
            wc = w.for_cascade(c)
            try:
                SearchOptions(sizes=wc.sizes, **{"instances": wc.instances, **options})
            except TypeError:
                from einsum.errors import suggest

                fields = [f for f in SearchOptions.__dataclass_fields__ if f not in ("sizes", "progress")]
                bad = [k for k in options if k not in fields]
                known = ", ".join(fields)
                raise ConfigError(
                    f"options: unknown option {bad[0]!r}{suggest(bad[0], fields)} (options: {known})"
                    if bad
                    else f"options: a value has the wrong type: {options!r}"
                ) from None
        except EinforgeError as exc:
            problems.setdefault(str(exc), []).append(i)
        except (TypeError, ValueError, AttributeError) as exc:
            problems.setdefault(f"a field has the wrong type ({exc})", []).append(i)
    if problems:
        lines = [
            (
                f"point {idx[0]}"
                if len(idx) == 1
                else f"{len(idx)} points ({', '.join(map(str, idx[:5]))}"
                + (" ..." if len(idx) > 5 else "")
                + ")"
            )
            + f": {msg}"
            for msg, idx in list(problems.items())[:8]
        ]
        more = len(problems) - len(lines)
        raise ConfigError(
            f"sweep: {sum(map(len, problems.values()))} of {len(pts)} points cannot run; nothing was run:\n  "
            + "\n  ".join(lines)
            + (f"\n  and {more} more problems" if more > 0 else "")
        )


#: Named rules for a parameter that depends on the others (an anchor's own rule, behind its name).
RULES = {"buffer_bytes": ("fusemax-fig12",), "rf_words": ("fusemax-fig12",)}
BUFFER_RULES = RULES["buffer_bytes"]


def _split_rules(point: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """A point's parameters: the plain ones, and those given as a named rule (checked)."""
    plain, rules = {}, {}
    for k, v in point["params"].items():
        if isinstance(v, str) and k in RULES:
            if v not in RULES[k]:
                what = "a size" if k == "buffer_bytes" else "a number"
                raise ConfigError(f"sweep: {k} {v!r} is neither {what} nor a rule ({', '.join(RULES[k])})")
            rules[k] = v
        else:
            plain[k] = v
    if rules and (point["arch"] != "fusemax" or "array_dim" not in plain):
        k, v = next(iter(rules.items()))
        raise ConfigError(f"sweep: {k}: {v} needs arch: fusemax and an array_dim")
    return plain, rules


def fig12_min_tiles(array_dim: int, e: int) -> int:
    """The fewest query tiles that keep FuseMax's arrays busy, by the artifact's rule
    (``get_l3_sz`` in workspace/src/utils/pareto.py): ``2 * max(1, PE // E)``."""
    return max(1, array_dim // e) * 2


def fig12_buffer_bytes(array_dim: int, e: int, seq: int, multiplier: int = 1) -> int:
    """The FuseMax artifact's buffer for its Figure 12 sweep (``get_l3_sz`` in
    workspace/src/utils/pareto.py of github.com/FPSG-UIUC/micro24-fusemax-artifact): room for the
    Q and running-state fibres of the fewest query tiles that keep the arrays busy,
    ``PE * P1 * E * 8 fibres * 2 bytes`` with ``P1 = max(1, min_tiles // (seq / PE))`` and
    ``min_tiles = 2 * max(1, PE // E)``, times ``multiplier``."""
    min_tiles = fig12_min_tiles(array_dim, e)
    num_tiles = max(1, seq // array_dim)
    min_p1 = max(1, min_tiles // num_tiles)
    return array_dim * min_p1 * e * 8 * 2 * multiplier


def fig12_rf_words(array_dim: int, e: int) -> dict[str, int]:
    """The FuseMax artifact's PE register files for its Figure 12 sweep (``accelergy_arch_cb`` in
    workspace/src/utils/pareto.py): ``2 * min_tiles`` words in each 2D PE, ``8 * min_tiles`` in
    each 1D PE."""
    t = fig12_min_tiles(array_dim, e)
    return {"2d": 2 * t, "1d": 8 * t}


def _evaluate(point: Mapping[str, Any], arch: Any, w: Any, c: einsum.Cascade) -> tuple[Any, Any]:
    import sim
    from mapper.search import SearchOptions, explore

    wc = w.for_cascade(c)
    options = {"instances": wc.instances, **point["options"]}
    found = explore(c, arch, SearchOptions(sizes=wc.sizes, **options))
    return found, sim.evaluate(c, found.best, arch, w, accounting=point["accounting"])


def _with_rules(point: Mapping[str, Any], w: Any, c: einsum.Cascade) -> tuple[Any, Any, Any]:
    """The point's architecture with its named rules applied, searched and simulated.

    - ``buffer_bytes: fusemax-fig12``: the artifact's smallest buffer, one PE row of words wide
      (``accelergy_arch_cb`` sets the width to ``PE * 16`` bits), doubled until the point is
      compute-bound (its DRAM time no longer exceeds the busiest array's time), as the artifact's
      Figure 12 sweep does.
    - ``rf_words: fusemax-fig12``: the artifact's PE register files (:func:`fig12_rf_words`),
      priced by :mod:`mapper.regfile` from their depth; under the ``fusemax-artifact`` accounting
      their area is the artifact's (``rf_area_unscaled``).
    """
    from dataclasses import replace

    from mapper import arch as archs
    from sim.accounting import accounting

    params, rules = _split_rules(point)
    e = w.E or 64
    if "rf_words" in rules:
        params.pop("rf_words", None)
    multiplier = 1
    while True:
        extra = {}
        if "buffer_bytes" in rules:
            extra["buffer_bytes"] = fig12_buffer_bytes(params["array_dim"], e, w.seq, multiplier)
        arch = archs.preset("fusemax", **params, **extra)
        if "buffer_bytes" in rules:
            arch = arch.replace(buffer=replace(arch.buffer, width_bits=params["array_dim"] * arch.word_bits))
        if "rf_words" in rules:
            arch = arch.with_register_files(
                fig12_rf_words(params["array_dim"], e),
                scaled_area=not accounting(point["accounting"]).rf_area_unscaled,
            )
            rf = f"rf_words={rules['rf_words']}"
            name = f"{arch.name[:-1]}, {rf})" if arch.name.endswith(")") else f"{arch.name}({rf})"
            arch = arch.replace(name=name)
        found, r = _evaluate(point, arch, w, c)
        if "buffer_bytes" not in rules:
            return arch, found, r
        dram_cycles = r.memory_bound_fraction * r.latency_cycles
        if dram_cycles <= max(r.busy_cycles.values()) or arch.buffer.capacity_bytes >= 64 * 2**20:
            return arch, found, r
        multiplier *= 2


def run_point(
    point: Mapping[str, Any], area_model: Callable[[Any], Mapping[str, float]] | None = None
) -> dict[str, Any]:
    """Search and simulate one point; the row: its inputs, the schedule's kind and every figure,
    the energy and area per component included. A point that cannot run gives a row with its
    ``error`` (a typed einforge error) instead of figures."""
    row: dict[str, Any] = {
        "arch": point["arch"],
        **{f"param.{k}": v for k, v in sorted(point["params"].items())},
        **{f"workload.{k}": v for k, v in sorted(point["workload"].items())},
        "cascade": point["cascade"],
        **{
            f"option.{k}": json.dumps(v) if isinstance(v, dict | list) else v
            for k, v in sorted(point["options"].items())
        },
        "accounting": point["accounting"],
    }
    try:
        w = _workload(point["workload"])
        c = _cascade(point["cascade"])
        if _split_rules(point)[1]:
            arch, found, r = _with_rules(point, w, c)
        else:
            arch = _arch(point)
            found, r = _evaluate(point, arch, w, c)
    except EinforgeError as exc:
        row["error"] = f"{type(exc).__name__}: {exc}"
        return row
    row.update(
        {
            "arch_name": arch.name,
            "buffer_bytes": arch.buffer.capacity_bytes,
            "error": "",
            "fusion": found.best.fusion,
            "latency_s": r.latency_s,
            "latency_cycles": r.latency_cycles,
            "energy_pj": r.energy_pj,
            "edp_js": r.latency_s * r.energy_pj * 1e-12,
            "area_mm2": r.area_mm2,
            "traffic_bytes": r.traffic_bytes,
            "buffer_reads": r.buffer_reads,
            "buffer_writes": r.buffer_writes,
            "memory_bound_fraction": r.memory_bound_fraction,
            "macs": r.macs,
            "tiles_skipped": r.tiles_skipped,
            "search_certified": found.certified,
        }
    )
    for a, u in sorted(r.utilization.items()):
        row[f"utilization.{a}"] = u
    for a, u in sorted(r.spatial_utilization.items()):
        row[f"spatial_utilization.{a}"] = u
    for k, v in r.latency_breakdown.items():
        row[f"latency_cycles.{k}"] = v
    for k, v in sorted(r.per_component_pj.items()):
        row[f"energy_pj.{k}"] = v
    for k, v in sorted(r.per_component_area_mm2.items()):
        row[f"area_mm2.{k}"] = v
    if area_model is not None:  # a second area, from another model (einforge's synthesised RTL)
        other = area_model(arch)
        row["area_mm2_rtl"] = sum(other.values()) / 1e6
        for k, v in sorted(other.items()):
            row[f"area_mm2_rtl.{k}"] = v / 1e6
    return row


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename: a
    reader (or a resumed sweep) sees the old file or the new one, never half of one. The file
    gets the mode a plain ``open`` would give it (0644 under the usual umask 022)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # a name of this process and thread, opened with a plain open(): the file gets the mode a user
    # expects (0666 less the umask: 0644), not mkstemp's private 0600
    import threading

    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="") as f:  # a leftover of a dead process: overwritten
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """The rows of a sweep in grid order, how many were computed now and how many came from the
    store, and the files written."""

    rows: tuple[dict[str, Any], ...]
    computed: int
    reused: int
    seconds: float
    files: tuple[Path, ...] = ()

    def columns(self) -> list[str]:
        cols: list[str] = []
        for r in self.rows:
            for k in r:
                if k not in cols:
                    cols.append(k)
        return cols

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns(), lineterminator="\n")
        writer.writeheader()
        for r in self.rows:
            writer.writerow({k: _cell(v) for k, v in r.items()})
        return buf.getvalue()

    def to_jsonl(self) -> str:
        return "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.rows)


def _cell(v: Any) -> Any:
    return repr(v) if isinstance(v, float) else v


def _digest(point: Mapping[str, Any], row: Mapping[str, Any]) -> str:
    blob = json.dumps({"point": point, "row": row}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _stored_row(f: Path, point: Mapping[str, Any]) -> dict[str, Any] | None:
    """The row a store file holds for ``point``, or None (with a warning that names the file) when
    the file is malformed, holds another point, or was edited since it was written."""
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        why = f"unreadable ({exc})"
    else:
        if not isinstance(data, dict) or not isinstance(data.get("row"), dict):
            why = "malformed (no point and row)"
        elif json.loads(json.dumps(point)) != data.get("point"):
            why = "holds another point (a file copied or swapped in)"
        elif data.get("digest") != _digest(data["point"], data["row"]):
            why = "edited since it was written (its digest does not match)"
        else:
            return dict(data["row"])
    log.warning("sweep store: %s is %s; recomputing the point", f, why)
    return None


def check_out_dir(out: str | Path) -> Path:
    """The output folder, checked before any work: it may exist (a folder) or be creatable."""
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"output folder {str(out)!r} is a file, not a folder")
    parent = p
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"output folder {str(out)!r}: {str(parent)!r} is a file, not a folder")
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"output folder {str(out)!r}: {str(parent)!r} is not writable")
    try:  # what os.access cannot tell (root in /proc, a read-only mount): make it now
        p.mkdir(parents=True, exist_ok=True)
        probe = p / ".einforge-write-check"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"output folder {str(out)!r}: cannot write there ({exc.strerror or exc})") from None
    return p


LOCK = ".sweep.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextlib.contextmanager
def folder_lock(out: Path) -> Iterator[None]:
    """Hold ``out/.sweep.lock`` while a sweep writes to ``out``: a second sweep into the same folder
    is a typed error that names the first (its process id and start), not a second run of the same
    points. A lock left by a sweep that died (its process is gone) is taken over with a warning."""
    import socket

    path = out / LOCK
    me = f"{os.getpid()} {socket.gethostname()} {time.strftime('%Y-%m-%d %H:%M:%S')}"
    for _attempt in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                held = path.read_text(encoding="utf-8").split(maxsplit=2)
                pid, host = int(held[0]), held[1]
                since = held[2] if len(held) > 2 else "?"
            except (OSError, ValueError, IndexError):
                pid, host, since = -1, "", "?"
            if pid > 0 and (host != socket.gethostname() or _alive(pid)):
                raise ConfigError(
                    f"output folder {str(out)!r} is in use by another sweep (process {pid} on {host}, "
                    f"since {since}); wait for it to finish, or give another --out (if no sweep runs, "
                    f"delete {str(path)!r})"
                ) from None
            log.warning("sweep: %s was left by a sweep that is gone; taking it over", path)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(me + "\n")
        break
    else:
        raise ConfigError(f"output folder {str(out)!r}: could not take its lock {str(path)!r}")
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def sweep(
    spec: Mapping[str, Any],
    *,
    out: str | Path | None = None,
    executor: Any = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    area_model: Callable[[Any], Mapping[str, float]] | None = None,
) -> SweepResult:
    """Run every point of ``spec`` and return the table (see the module's text).

    ``out`` (a folder) keeps the store (``out/store/<key>.json``, one file per point) and, at the
    end, ``results.csv`` and ``results.jsonl``; a sweep run again with the same ``out`` reuses
    every point already there. ``executor`` is anything with ``submit`` returning futures (a
    ``concurrent.futures`` executor or a ``dask.distributed.Client``); by default a local process
    pool of ``workers`` (default: the machine's CPUs) runs the points. ``progress(done, total)``
    is called as points finish. ``area_model(arch) -> {component: um^2}`` (a module-level
    function, so that workers can receive it) adds a second area to every row (``area_mm2_rtl``):
    ``einforge sweep`` passes :func:`einforge.rtlflow.area.arch_area_from_rtl` where the sweep file
    says ``area: rtl``.
    """
    t0 = time.perf_counter()
    pts = points(spec)
    validate(pts)
    if out is None:
        return _sweep(spec, pts, None, t0, workers, executor, progress, area_model)
    base = check_out_dir(out)
    with folder_lock(base):
        return _sweep(spec, pts, base, t0, workers, executor, progress, area_model)


def _sweep(
    spec: Mapping[str, Any],
    pts: list[dict[str, Any]],
    out: Path | None,
    t0: float,
    workers: int | None,
    executor: Any,
    progress: Callable[[int, int], None] | None,
    area_model: Any,
) -> SweepResult:
    store = None
    if out is not None:
        store = out / "store"
        store.mkdir(parents=True, exist_ok=True)
        # the temporary files of a sweep killed mid-write (this one holds the folder's lock, so
        # no live sweep is writing them): never read, removed
        for leftover in (*store.glob(".*.tmp"), *out.glob(".*.tmp")):
            leftover.unlink(missing_ok=True)
    keys = [point_key(p) for p in pts]
    rows: dict[int, dict[str, Any]] = {}
    if store is not None:
        for i, k in enumerate(keys):
            f = store / f"{k}.json"
            if f.is_file():
                row = _stored_row(f, pts[i])
                if row is not None:
                    rows[i] = row
    reused = len(rows)
    todo = [i for i in range(len(pts)) if i not in rows]
    done = reused
    if progress:
        progress(done, len(pts))

    def finish(i: int, row: dict[str, Any]) -> None:
        nonlocal done
        rows[i] = row
        if store is not None:
            # the row keeps its column order (the table's columns come from it)
            write_atomic(
                store / f"{keys[i]}.json",
                json.dumps({"point": pts[i], "row": row, "digest": _digest(pts[i], row)}),
            )
        done += 1
        if progress:
            progress(done, len(pts))

    if todo:
        own = None
        if executor is None and (workers == 1 or len(todo) == 1):
            for i in todo:
                finish(i, run_point(pts[i], area_model))
        else:
            if executor is None:
                own = concurrent.futures.ProcessPoolExecutor(
                    max_workers=workers or os.cpu_count() or 1,
                    initializer=_exit_with_parent,
                    initargs=(os.getpid(),),
                )
            ex = executor or own
            try:
                futures = {ex.submit(run_point, pts[i], area_model): i for i in todo}
                for fut in _as_completed(futures):
                    finish(futures[fut], fut.result())
            finally:
                if own is not None:
                    own.shutdown(cancel_futures=True)
    ordered = tuple(rows[i] for i in range(len(pts)))
    result = SweepResult(rows=ordered, computed=len(todo), reused=reused, seconds=time.perf_counter() - t0)
    if out is not None:
        base = Path(out)
        write_atomic(base / "results.csv", result.to_csv())
        write_atomic(base / "results.jsonl", result.to_jsonl())
        result = dataclasses.replace(result, files=(base / "results.csv", base / "results.jsonl"))
    return result


def _exit_with_parent(parent: int) -> None:
    """In a pool worker: exit when the sweep that started it is gone (killed with SIGKILL, which
    leaves it no chance to stop its workers); a thread checks the parent once a second."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="einforge-parent-watch").start()


def _as_completed(futures: Mapping[Any, int]) -> Iterable[Any]:
    first = next(iter(futures), None)
    if first is not None and type(first).__module__.startswith("distributed"):
        from distributed import as_completed  # a Dask Client's futures

        return as_completed(list(futures))
    return concurrent.futures.as_completed(list(futures))


def pareto(
    rows: Sequence[Mapping[str, Any]],
    objectives: Sequence[str] = ("latency_s", "energy_pj"),
    rel_tol: float = 1e-9,
) -> list[int]:
    """Indices of the rows on the Pareto front of ``objectives`` (all minimised): no other row is
    at least as good in every objective and better in one. Values within ``rel_tol`` of each
    other are equal (floating-point noise, 2e-11 apart, does not make two fronts): of rows equal
    in every objective the first stays. Rows with an error are left out."""
    good = [i for i, r in enumerate(rows) if not r.get("error")]
    missing = [k for k in objectives if good and not any(k in rows[i] for i in good)]
    ok = [i for i in good if all(k in rows[i] for k in objectives)]
    if missing:
        raise ConfigError(f"pareto: no row has {', '.join(missing)}")

    def close(a: float, b: float) -> bool:
        return abs(a - b) <= rel_tol * max(abs(a), abs(b))

    front = []
    for i in ok:
        vi = [float(rows[i][k]) for k in objectives]
        dominated = False
        for j in ok:
            if j == i:
                continue
            vj = [float(rows[j][k]) for k in objectives]
            pairs = list(zip(vj, vi, strict=True))
            if all(a <= b or close(a, b) for a, b in pairs) and (
                any(a < b and not close(a, b) for a, b in pairs) or j < i
            ):
                dominated = True
                break
        if not dominated:
            front.append(i)
    return front


def progress_bar(done: int, total: int) -> None:
    """A one-line progress bar on standard error."""
    step = max(1, total // 100)
    if done not in (0, total) and done % step:  # redraw once a percent, not once a point
        return
    width = 30
    filled = width * done // total if total else width
    print(
        f"\r  [{'#' * filled}{'.' * (width - filled)}] {done}/{total} points",
        end="",
        file=sys.stderr,
        flush=True,
    )
    if done == total:
        print(file=sys.stderr)


def groups(rows: Sequence[Mapping[str, Any]], by: str = "workload.") -> dict[str, list[int]]:
    """Row indices grouped by the columns starting with ``by`` (a Pareto front compares designs
    on the same work): label -> indices, in first-seen order."""
    out: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        label = ", ".join(
            f"{k.removeprefix(by)}={v}" for k, v in r.items() if k.startswith(by) and v not in ("", None)
        )
        out.setdefault(label or "all", []).append(i)
    return out


def plot_pareto(
    rows: Sequence[Mapping[str, Any]],
    x: str,
    y: str,
    path: str | Path,
    *,
    title: str = "",
    by: str = "workload.",
) -> Path:
    """A scatter of every row's ``x`` and ``y``: the dominated points faint, each group's Pareto
    front (both minimised) drawn in its own colour and labelled in a legend outside the data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.8))
    colours = plt.get_cmap("tab20").colors
    for n, (label, idx) in enumerate(groups(rows, by).items()):
        sub = [rows[i] for i in idx]
        ok = [r for r in sub if not r.get("error")]
        if not ok:
            continue
        colour = colours[(2 * n) % len(colours)]
        ax.scatter([r[x] for r in ok], [r[y] for r in ok], s=14, color=colour, alpha=0.25, zorder=1)
        front = sorted((sub[i] for i in pareto(sub, (x, y))), key=lambda r: r[x])
        ax.plot(
            [r[x] for r in front],
            [r[y] for r in front],
            "-o",
            color=colour,
            ms=5,
            zorder=2,
            label=f"{label}: front of {len(front)}",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title or f"{y} against {x}; faint: dominated points")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, fontsize=8)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out)
    plt.close(fig)
    return out
