"""The spatial-model commands of the ``einforge`` command line: ``evaluate`` and ``compare``."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import einsum
import sim
from einforge._common import arch_from_text, check_output_file
from einsum.errors import ConfigError, suggest
from mapper import arch as archs
from mapper.search import SearchOptions, explore

_CONFIG_OF_ARCH = {"fusemax": "attention_1pass", "flat": "attention_3pass", "unfused": "attention_3pass"}


def _split(text: str) -> list[str]:
    return [t for t in text.split(",") if t.strip()]


def _row(r: sim.Report) -> dict[str, Any]:
    return {
        "model": r.model,
        "seq": r.seq,
        "batch": r.batch,
        "arch": r.arch,
        "cascade": r.cascade,
        "latency_s": r.latency_s,
        "latency_cycles": r.latency_cycles,
        "energy_pj": r.energy_pj,
        "traffic_bytes": r.traffic_bytes,
        "buffer_traffic_bytes": r.buffer_traffic_bytes,
        "utilization": dict(r.utilization),
        "spatial_utilization": dict(r.spatial_utilization),
        "pe_utilization": dict(r.pe_utilization),
        "fusion": r.fusion,
        "latency_breakdown": dict(r.latency_breakdown),
        "macs": r.macs,
        "per_einsum": {k: dict(v) for k, v in r.per_einsum.items()},
        "per_component_pj": dict(r.per_component_pj),
        "memory_bound_fraction": r.memory_bound_fraction,
        "accounting": r.accounting,
        "leakage": r.leakage,
        "area_mm2": r.area_mm2,
        "per_component_area_mm2": dict(r.per_component_area_mm2),
        "buffer_reads": r.buffer_reads,
        "buffer_writes": r.buffer_writes,
        "score_rows": r.score_rows,
    }


def _cascade(text: str | None, arch: str) -> einsum.Cascade:
    """A library cascade's name, or a cascade file (``.ein``) in the notation."""
    if text is None:
        return einsum.library.get(_CONFIG_OF_ARCH.get(arch, "attention_1pass"))
    if text.endswith(".ein") or Path(text).exists():
        path = Path(text)
        if not path.is_file():
            raise ConfigError(f"--cascade {text!r}: no such file")
        return einsum.parse(einsum.read_text(path, "cascade file"))
    return einsum.library.get(text)


def _objective(text: str) -> str | dict[str, float]:
    """``latency``, ``energy``, ``edp`` or weights such as ``latency=1,energy=0.5``."""
    if "=" not in text:
        return text
    out: dict[str, float] = {}
    for part in _split(text):
        k, _, v = part.partition("=")
        try:
            out[k.strip()] = float(v)
        except ValueError:
            raise ConfigError(f"--objective {text!r}: weight {part!r} is not NAME=NUMBER") from None
    return out


def _bind(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        for part in _split(item):
            name, eq, array = part.partition("=")
            if not eq or not name.strip() or not array.strip():
                raise ConfigError(f"--bind {part!r} is not EINSUM=ARRAY (for example QK=2d)")
            out[name.strip()] = array.strip()
    return out


def cmd_evaluate(args: argparse.Namespace) -> int:
    for flag, path in (("--html", args.html), ("--trace", args.trace)):
        if path:
            check_output_file(path, flag)  # before the work
    arch = arch_from_text(args.arch, args.array_dim)
    cascade = _cascade(args.cascade, args.arch)
    if args.prune and not arch.topk_engines:
        raise ConfigError(
            f"--prune applies to an architecture with top-k engines (spatten); {arch.name!r} has none"
        )
    if args.sizes and args.model is None and args.seq is None:
        work = [sim.workload(sizes=args.sizes, batch=args.batch)]
    else:
        models = _split(args.model or "BERT")
        seqs = [sim.parse_seq(s) for s in _split(args.seq or "1K")]
        if not models or not seqs:
            raise ConfigError("give at least one --model and one --seq")
        work = [
            sim.workload(m, s, batch=args.batch if args.batch is not None else 64, sizes=args.sizes)
            for m in models
            for s in seqs
        ]
    if args.sizes:
        given = [r for r in sim.parse_sizes(args.sizes) if r not in ("B", "H")]
        unknown = [r for r in given if r not in cascade.ranks]
        if unknown:
            known = sorted(cascade.ranks)
            hints = "".join(suggest(r, [*known, "B", "H"]) for r in unknown[:1])
            raise ConfigError(
                f"--sizes names rank(s) {', '.join(unknown)} that {cascade.name or 'the cascade'} does not "
                f"have{hints}; its ranks are {', '.join(known)} (B and H are the batch and the heads)"
            )
    if args.end_to_end and any(w.model == "custom" for w in work):
        raise ConfigError(
            "--end-to-end adds a model's projection and FFN GEMMs: give --model (with --sizes to change "
            "its ranks), or evaluate the matmul cascade with --sizes M=...,K=...,N=..."
        )
    if arch.topk_engines:
        from einforge.cli_spatten import evaluate_pipeline

        return evaluate_pipeline(args, arch, cascade, work)
    objective = _objective(args.objective)
    bind = _bind(args.bind)
    # the report prices the buffer: a geometry the SRAM model cannot price fails now, not after
    # the search
    sim.accounting(args.accounting).priced_buffer(arch.buffer).costs(arch.word_bits)
    rows = []

    def progress(line: str) -> None:
        print(f"\r  searching: {line:60s}", end="", file=sys.stderr, flush=True)

    for w in work:
        options = SearchOptions(
            sizes=w.for_cascade(cascade).sizes,
            instances=w.for_cascade(cascade).instances,
            systolic=args.systolic,
            interleave=not args.no_interleave,
            fuse=args.arch != "unfused",
            fusion=args.fusion,
            objective=objective,
            bind=bind,
            top_n=args.top,
            # progress lines are for a person at a terminal, not for a log or a pipe
            progress=progress if not args.json and sys.stderr.isatty() else None,
        )
        found = explore(cascade, arch, options)
        if not args.json and sys.stderr.isatty():
            print("\r" + " " * 74 + "\r", end="", file=sys.stderr, flush=True)
        report = sim.evaluate(
            cascade,
            found.best,
            arch,
            w,
            systolic=args.systolic,
            accounting=args.accounting,
            leakage=args.leakage,
        )
        checked = _tree_check(cascade, found.best, arch, w, report, args) if args.check_tree else None
        if args.end_to_end:
            report = report.with_gemms(
                [
                    sim.gemm_report(a, b, c, arch, n, accounting=args.accounting)
                    for n, (a, b, c) in w.gemms().items()
                ]
            )
        if not rows and args.html:
            from sim.htmlreport import evaluation_html

            Path(args.html).write_text(evaluation_html(report, found.best, found), encoding="utf-8")
            print(f"wrote {args.html}", file=sys.stderr)
        if not rows and args.trace:
            from sim.trace import trace

            trace(cascade, found.best, arch, w, args.trace, systolic=args.systolic)
            print(f"wrote {args.trace} (open it in https://ui.perfetto.dev)", file=sys.stderr)
        rows.append((report, found, checked))
        if not args.json and (len(work) == 1 or args.details):
            print(found.describe())
            print(found.best.describe())
            print(report)
            if checked is not None:
                what = checked.get("compared", "latency and DRAM bytes")
                rel = checked.get("latency_rel")
                print(
                    f"checked against the tree (mapper.as_tree): {what} equal"
                    + (f"; the tree's latency {rel:+.2%}" if rel is not None else "")
                    + f"; the tree's energy {checked['energy_rel']:+.2%} (not compared: the template's "
                    "bookkeeping, docs/mapper.md)"
                    if checked["stated"]
                    else f"not checked against the tree: {checked['why']}"
                )
            print()
    if args.json:
        print(
            json.dumps(
                [
                    {**_row(r), "search": _search_row(f), **({"tree_check": c} if c is not None else {})}
                    for r, f, c in rows
                ]
            )
        )
    elif len(work) > 1:  # several points: one line each (--details for the full reports)
        table = [
            {
                "model": r.model,
                "seq": sim.format_seq(r.seq),
                "batch": r.batch,
                "fusion": r.fusion,
                "latency_ms": r.latency_s * 1e3,
                "energy_pj": r.energy_pj,
                **{f"util_{a}": u for a, u in sorted(r.utilization.items())},
                "traffic_bytes": r.traffic_bytes,
                "search": "certified" if f.certified else "sampled",
                **({"tree": _tree_cell(c)} if c is not None else {}),
            }
            for r, f, c in rows
        ]
        print(f"{cascade.name} on {arch.name} ({args.accounting} accounting):")
        print(sim.table(table, list(table[0])))
    return 0


def _tree_cell(c: Mapping[str, Any]) -> str:
    """The ``tree`` column: equal (latency and DRAM bytes), the DRAM bytes equal and the latency's
    difference, or not stated; with the tree's energy against the report's (the template's
    bookkeeping, docs/mapper.md)."""
    if not c["stated"]:
        return "not stated"
    energy = f", energy {c['energy_rel']:+.1%}" if "energy_rel" in c else ""
    if "latency_rel" in c:
        return f"DRAM equal, latency {c['latency_rel']:+.2%}{energy}"
    return f"equal{energy}"


def _tree_check(cascade: Any, schedule: Any, arch: Any, w: Any, report: Any, args: Any) -> dict[str, Any]:
    """``--check-tree``: the schedule stated in the preset's tree (:mod:`mapper.as_tree`) must give
    the report's latency and DRAM bytes; ``{"stated": False, "why": ...}`` where the tree does not
    state it yet. A difference is an error (two costings of one schedule that disagree). The tree's
    energy is reported against the report's (``energy_rel``), not compared."""
    from mapper import as_tree
    from mapper.errors import ScheduleError

    wc = w.for_cascade(cascade)
    if schedule.nests and not schedule.kernels:
        state = as_tree.layerwise
    else:
        state = as_tree.fused if len(schedule.kernels) == 1 else as_tree.kernels
    book = sim.accounting(args.accounting).bookkeeping(cascade)
    try:
        tree = state(
            cascade, schedule, arch, wc.sizes, wc.instances, bookkeeping=book, systolic=args.systolic
        )
        r = tree.evaluate()
    except ScheduleError as exc:
        return {"stated": False, "why": str(exc).removeprefix("as_tree: ")}
    words = r.dram_words if isinstance(r, as_tree.KernelsResult) else r.scalar_accesses("DRAM")
    # the engine's tiles differ from the template's, or a mask skips tiles (the template rounds each
    # unit's operations up per tile, the mask's index arithmetic a cycle a tile): the DRAM bytes only
    masked = bool(tree.live)
    coarser = tree.coarser or masked
    same_cycles = coarser or abs(r.cycles - report.latency_cycles) <= 1e-9 * max(1.0, report.latency_cycles)
    if not same_cycles or words * arch.word_bytes != report.traffic_bytes:
        raise sim.EvaluationError(
            f"--check-tree: the tree gives {r.cycles:,.3f} cycles and {words * arch.word_bytes:,.0f} DRAM "
            f"bytes for {w.model} {sim.format_seq(w.seq)}, the report {report.latency_cycles:,.3f} and "
            f"{report.traffic_bytes:,.0f}: two costings of one schedule disagree (a bug: please report it "
            "with this command)"
        )
    # not compared: the template's register and buffer bookkeeping differs (docs/mapper.md)
    energy_rel = r.energy_pj / report.energy_pj - 1 if report.energy_pj else 0.0
    if coarser:
        why = (
            "a mask skips tiles: the template rounds each unit's work up per tile"
            if masked
            else (
                "the tree's tiles differ: coarser, or the systolic fill charged per key block"
                if args.systolic
                else "the tree's tiles are coarser"
            )
        )
        return {
            "stated": True,
            "equal": True,
            "compared": f"DRAM bytes ({why})",
            "latency_rel": r.cycles / report.latency_cycles - 1,
            "energy_rel": energy_rel,
        }
    return {"stated": True, "equal": True, "energy_rel": energy_rel}


def _search_row(f: Any) -> dict[str, Any]:
    return {
        "objective": f.objective,
        "fusion": f.best.fusion,
        "evaluated": f.evaluated,
        "loop_nests_evaluated": f.nest_evaluations,
        "space": f.space,
        "certified": f.certified,
        "estimate": {"latency_cycles": f.estimate.latency_cycles, "energy_pj": f.estimate.energy_pj},
        "bound": {"latency_cycles": f.bound[0], "energy_pj": f.bound[1]},
        "gap": f.gap,
        "schedule": f.best.to_dict(),
        "top": [_candidate_row(c) for c in f.top],
        "pareto": [_candidate_row(c) for c in f.pareto],
    }


def _candidate_row(c: Any) -> dict[str, Any]:
    return {
        "latency_cycles": c.estimate.latency_cycles,
        "energy_pj": c.estimate.energy_pj,
        "binding": dict(c.schedule.binding),
        "fusion": c.schedule.fusion,
    }


def cmd_compare(args: argparse.Namespace) -> int:
    from sim.sweep import check_out_dir

    models = _split(args.model)
    seqs = [sim.parse_seq(s) for s in _split(args.seq)]
    out = check_out_dir(args.out)  # before the sweep, not after it
    t0 = time.perf_counter()

    def progress(done: int, total: int, what: str) -> None:
        if not args.quiet and sys.stderr.isatty():
            print(f"\r  [{done:3d}/{total}] {what:40s}", end="", file=sys.stderr, flush=True)

    results = list(
        sim.compare(
            models,
            seqs,
            batch=args.batch,
            end_to_end=args.end_to_end,
            progress=progress,
            accounting=args.accounting,
        )
    )
    elapsed = time.perf_counter() - t0
    if not args.quiet and sys.stderr.isatty():
        print(file=sys.stderr)
    by = {(r["config"], r["model"], r["seq"]): r["report"] for r in results}
    table_rows = []
    for r in results:
        rep = r["report"]
        base = by[("FLAT", r["model"], r["seq"])]
        table_rows.append(
            {
                "config": r["config"],
                "model": r["model"],
                "seq": sim.format_seq(r["seq"]),
                "latency_s": rep.latency_s,
                "energy_pj": rep.energy_pj,
                "speedup_vs_flat": base.latency_s / rep.latency_s,
                "energy_vs_flat": rep.energy_pj / base.energy_pj,
                "util_2d": rep.utilization.get("2d", 0.0),
                "util_1d": rep.utilization.get("1d", 0.0),
                "area_mm2": rep.area_mm2,
                "score_rows": rep.score_rows if rep.score_rows is not None else "-",
            }
        )
    text = sim.table(table_rows, list(table_rows[0]))
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.txt").write_text(text + "\n")
    full_rows = [
        {
            **row,
            "latency_cycles": r["report"].latency_cycles,
            "traffic_bytes": r["report"].traffic_bytes,
            "per_component_pj": dict(r["report"].per_component_pj),
            "per_component_area_mm2": dict(r["report"].per_component_area_mm2),
            "latency_breakdown": dict(r["report"].latency_breakdown),
            "utilization": dict(r["report"].utilization),
            "spatial_utilization": dict(r["report"].spatial_utilization),
        }
        for row, r in zip(table_rows, results, strict=True)
    ]
    (out / "results.json").write_text(json.dumps(full_rows, indent=1) + "\n")
    paths = sim.plot_compare(results, out, args.format)
    print(text)
    print()
    for c in sim.CONFIGS:
        sp = [row["speedup_vs_flat"] for row in table_rows if row["config"] == c.name]
        en = [row["energy_vs_flat"] for row in table_rows if row["config"] == c.name]
        print(
            f"{c.name:14s} mean speedup vs FLAT {statistics.mean(sp):6.3f}x   "
            f"mean energy vs FLAT {statistics.mean(en):6.3f}"
        )
    print(f"({args.accounting} accounting)")
    print(
        f"\n{len(results)} evaluations in {elapsed:.2f} s; wrote {out / 'results.txt'}, results.json and "
        + ", ".join(p.name for p in paths)
    )
    return 0


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, found {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, found {n}")
    return n


def _bytes(text: str) -> int:
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    try:
        return int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(t)
    except (ValueError, OverflowError):
        raise ConfigError(f"buffer size {text!r} is not a size like 16M, 16MiB, 4096K or 1048576") from None


def _dram_option(text: str, old: Any) -> Any:
    """``--dram HBM3x2``: that memory type and device count, keeping the latency and transfers."""
    import re

    m = re.fullmatch(r"([A-Za-z0-9]+?)(?:x(\d+))?", text.strip())
    if not m:
        raise ConfigError(f"--dram: expected TYPE or TYPExN such as HBM2 or HBM3x2, found {text!r}")
    return archs.DRAM(
        type=m.group(1),
        devices=int(m.group(2) or 1),
        latency_cycles=old.latency_cycles,
        transfers=old.transfers,
    )


def cmd_costs(args: argparse.Namespace) -> int:
    """The architecture's energy and area reference tables (Accelergy's ERT and ART)."""
    if args.arch in archs.presets():
        params: dict[str, Any] = {"array_dim": args.array_dim if args.array_dim is not None else 256}
        if args.buffer_bytes:
            params["buffer_bytes"] = _bytes(args.buffer_bytes)
        arch = archs.preset(args.arch, **params)
    else:
        if args.buffer_bytes:
            raise ConfigError("--buffer-bytes applies to a preset; edit the buffer in the architecture file")
        arch = arch_from_text(args.arch, args.array_dim)
    if args.node is not None:
        arch = arch.at_node(args.node)
    if args.dram is not None:
        arch = arch.replace(dram=_dram_option(args.dram, arch.dram))
    if args.energy_model == "hwcomponents":
        from mapper import plugins

        arch = plugins.price(arch)
    acct = sim.accounting(args.accounting)
    buffer = acct.priced_buffer(arch.buffer)
    buf = buffer.costs(arch.word_bits)
    e = arch.energy
    rows: list[dict[str, Any]] = []
    for a in arch.arrays:
        for unit in a.units:
            pj = {"mac": e.mac_pj, "max": e.max_pj, "exp": e.exp_pj, "div": e.div_pj}[unit]
            rows.append({"component": f"{a.name}.{unit}", "action": "op", "pj": pj})
            if unit == "mac":
                rows.append({"component": f"{a.name}.mac", "action": "add", "pj": e.add_pj})
        if a.exp_on_mac:
            rows.append({"component": f"{a.name}.mac", "action": "exp", "pj": a.exp_macs * e.mac_pj})
        scale = acct.rf_share(a)
        rows.append({"component": f"{a.name}.rf", "action": "read", "pj": a.rf_read_pj * scale})
        rows.append({"component": f"{a.name}.rf", "action": "write", "pj": a.rf_write_pj * scale})
    words = buffer.width_bits // arch.word_bits
    rows.append({"component": "buffer", "action": "read (word)", "pj": buf.read_pj_per_word})
    rows.append({"component": "buffer", "action": "write (word)", "pj": buf.write_pj_per_word})
    rows.append(
        {"component": "buffer", "action": f"read ({words}-word row)", "pj": buf.read_pj_per_word * words}
    )
    rows.append({"component": "dram", "action": "bit", "pj": arch.dram.pj_per_bit})
    area = arch.replace(buffer=buffer).area_um2()
    out = {
        "arch": arch.name,
        "accounting": acct.name,
        "dram": {
            "type": arch.dram.type,
            "devices": arch.dram.devices,
            "bandwidth_bytes_per_s": arch.dram.bandwidth_bytes_per_s,
            "pj_per_bit": arch.dram.pj_per_bit,
        },
        "buffer": {
            "capacity_bytes": buffer.capacity_bytes,
            "width_bits": buffer.width_bits,
            "banks": buffer.banks,
            "ports": buffer.ports,
            "technology_nm": buffer.technology_nm,
            "leakage_mw": buf.leakage_mw,
            "source": buf.source,
        },
        "energy_pj": rows,
        "area_mm2": {k: v / 1e6 for k, v in area.items()},
    }
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    b = out["buffer"]
    print(
        f"{arch.name} ({acct.name} accounting): buffer {b['capacity_bytes'] / 2**20:g} MiB, "
        f"{b['width_bits']}-bit rows, {b['banks']} bank(s), {b['ports']} port(s), {b['technology_nm']:g} nm "
        f"({b['source']}); leakage {b['leakage_mw']:.4g} mW"
    )
    d = out["dram"]
    kind = f"{d['type']} x {d['devices']}" if d["type"] else "given figures"
    print(f"dram: {kind}, {d['bandwidth_bytes_per_s'] / 1e9:.4g} GB/s, {d['pj_per_bit']:g} pJ/bit")
    print("\nenergy per action:")
    print(sim.table(rows, ["component", "action", "pj"]))
    print("\narea:")
    print(sim.table([{"component": k, "mm2": v} for k, v in out["area_mm2"].items()], ["component", "mm2"]))
    print(f"total {sum(out['area_mm2'].values()):.4g} mm^2")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run a sweep file: every point searched and simulated, the table, the Pareto front, a plot."""
    from sim import sweep as sw

    spec = sw.load_spec(args.spec)
    out = sw.check_out_dir(args.out)  # before any work
    objectives = (
        _split(args.pareto) if args.pareto else list(spec.get("pareto") or ["latency_s", "energy_pj"])
    )
    pts = sw.points(spec)
    print(f"sweep {spec.get('name', Path(args.spec).stem)}: {len(pts)} points -> {out}", file=sys.stderr)
    client = None
    if args.dask:
        try:
            from distributed import Client
        except ImportError:
            raise ConfigError(
                "--dask needs Dask's distributed package: pip install 'einforge[dask]'"
            ) from None
        try:
            client = Client(args.dask, timeout="10s")
        except OSError as exc:
            raise ConfigError(f"--dask {args.dask!r}: cannot reach the scheduler ({exc})") from None
    try:
        area_model = None
        if spec.get("area", "tables") == "rtl":
            from einforge.rtlflow.area import arch_area_from_rtl

            area_model = arch_area_from_rtl
        elif spec.get("area", "tables") == "rtl_tile":
            from einforge.rtlflow.area import arch_area_from_tile_parts

            area_model = arch_area_from_tile_parts
        elif spec.get("area", "tables") != "tables":
            raise ConfigError(
                f"sweep: area is 'tables' (default), 'rtl' or 'rtl_tile', found {spec['area']!r}"
            )
        result = sw.sweep(
            spec,
            out=out,
            workers=args.workers,
            executor=client,
            progress=None if args.quiet or not sys.stderr.isatty() else sw.progress_bar,
            area_model=area_model,
        )
    finally:
        if client is not None:
            client.close()
    rows = result.rows
    errors = [r for r in rows if r.get("error")]
    several = len({r.get("arch") for r in rows}) > 1  # a sweep over several designs: label them
    cols = [
        c
        for c in dict.fromkeys(
            (*(("arch",) if several else ()), "arch_name", "cascade", "fusion", *objectives, "area_mm2")
        )
        if c in result.columns()
    ]
    params = [c for c in result.columns() if c.startswith("param.")]
    any_front = False
    for label, idx in sw.groups(rows).items():
        sub = [rows[i] for i in idx]
        if all(r.get("error") for r in sub):
            continue
        front = sorted((sub[i] for i in sw.pareto(sub, objectives)), key=lambda r: r[objectives[0]])
        any_front = True
        print(f"\n{label}: Pareto front of {' and '.join(objectives)} ({len(front)} of {len(sub)} points)")
        print(sim.table(front, params + cols))
    front = [0] if any_front else []
    files = list(result.files)
    from sim.htmlreport import sweep_html

    page = out / "report.html"
    sw.write_atomic(page, sweep_html(rows, objectives, str(spec.get("name", Path(args.spec).stem))))
    files.append(page)
    if len(objectives) >= 2 and front:
        files.append(
            sw.plot_pareto(
                rows,
                objectives[0],
                objectives[1],
                out / f"pareto.{args.format}",
                title=str(spec.get("name", "")),
            )
        )
    print(
        f"{len(rows)} points ({result.computed} computed, {result.reused} from the store) in "
        f"{result.seconds:.1f} s; wrote " + ", ".join(str(f) for f in files)
    )
    if errors:
        reasons = dict.fromkeys(str(r["error"]) for r in errors)
        print(
            f"einforge sweep: {len(errors)} of {len(rows)} point(s) could not run ({len(reasons)} reason(s); "
            f"their rows say which): " + "; ".join(list(reasons)[:3]),
            file=sys.stderr,
        )
        return 1
    return 0


def demo_compare() -> None:
    """The FuseMax-vs-FLAT part of ``einforge demo``: BERT at 1K and 64K tokens."""
    print("\nFuseMax vs FLAT (BERT, batch 64, one layer's attention; schedules derived by the mapper):")
    for seq in ("1K", "64K"):
        w = sim.workload("BERT", seq)
        fm = sim.run_config(sim.CONFIGS[0], w)
        fl = sim.run_config(sim.CONFIGS[3], w)
        print(
            f"  {seq:>4s}: FuseMax {fm.latency_s * 1e3:10.3f} ms, FLAT {fl.latency_s * 1e3:10.3f} ms "
            f"-> {fl.latency_s / fm.latency_s:.2f}x faster; 2D/1D utilisation "
            f"{fm.utilization['2d']:.2f}/{fm.utilization['1d']:.2f} vs {fl.utilization['2d']:.2f}/"
            f"{fl.utilization['1d']:.2f}"
        )


def _whole(x: float) -> float | int:
    return int(x) if float(x).is_integer() else x


def _map_and_report(
    args: argparse.Namespace,
    problem: Any,
    mappings: Any,
    search: Any,
    analyze: Any,
    *,
    compute_name: str,
    priced: bool,
    unpriced: str,
) -> int:
    """Analyse the given mapping, or search one and analyse it; print the table or one object
    (``einforge timeloop`` and ``einforge map``)."""
    import yaml

    from mapper import hsearch

    found = None
    dims = [d for d, _n in problem.dims]
    if mappings is None:
        if args.write_mapping:
            check_output_file(args.write_mapping, "--write-mapping")  # before the search
        tty = not args.json and sys.stderr.isatty()

        def progress(done: int, total: int) -> None:
            print(f"\r  searching: {done:,} of {total:,} mappings", end="", file=sys.stderr, flush=True)

        found = search(
            metric=args.metric,
            budget=args.budget,
            seed=args.seed,
            progress=progress if tty else None,
            imperfect=args.imperfect,
        )
        if tty:
            print("\r" + " " * 60 + "\r", end="", file=sys.stderr, flush=True)
        a = found.analysis
        if args.write_mapping:
            from sim.sweep import write_atomic

            text = yaml.safe_dump({"mapping": hsearch.to_timeloop(found.mappings, dims)}, sort_keys=False)
            write_atomic(Path(args.write_mapping), text)
    elif args.write_mapping:
        raise ConfigError("--write-mapping writes a searched mapping: the files give one already")
    else:
        a = analyze(mappings)
    out = a.to_dict()
    out["bound_by"] = a.bound_by
    if not priced:
        out["energy_pj"] = None
        for lv in out["levels"].values():  # type: ignore[union-attr]
            lv["energy_pj"] = None
    if found is not None:
        out["search"] = {
            "metric": found.metric if priced or found.metric == "cycles" else "cycles, then accesses",
            "valid": found.evaluated,
            "rejected": found.rejected,
            "space": found.space,
            "exhaustive": found.exhaustive,
            "seed": found.seed,
        }
        out["mapping"] = hsearch.to_timeloop(found.mappings, dims)
    if args.json:
        print(json.dumps(out))
        return 0
    print(
        f"{problem.name}: {a.computes} computes on {a.compute_instances} x {compute_name}, "
        f"{a.cycles:.6g} cycles (bound by {a.bound_by}), utilization {a.utilization:.3f}"
    )
    if found is not None:
        print(found.describe() + ("" if priced else " (energy not priced: cycles, then accesses)"))
        print(yaml.safe_dump({"mapping": out["mapping"]}, sort_keys=False, width=120).rstrip())
    print(f"energy: {a.energy_pj:.6g} pJ" if priced else f"energy: not priced ({unpriced})")
    rows = []
    for level, stats in a.levels.items():
        for t, st in stats.items():
            rows.append(
                {
                    "level": level,
                    "instances": a.instances[level],
                    "tensor": t,
                    "reads": _whole(st.reads),
                    "fills": _whole(st.fills),
                    "updates": _whole(st.updates),
                }
            )
    print(sim.table(rows, list(rows[0])) if rows else "(no storage)")
    if a.networks:  # a level prices its network: what crosses each fanout
        net = [
            {
                "fanout of": level,
                "tensor": t,
                "words": _whole(n.words),
                "multicast": n.multicast,
                "hops": _whole(n.hops),
                "reductions": _whole(n.reductions),
                "pJ": a.network_energy_pj.get(level, 0.0) if i == 0 else "",
            }
            for level, stats in a.networks.items()
            for i, (t, n) in enumerate(stats.items())
        ]
        print("\non-chip networks:")
        print(sim.table(net, list(net[0])))
    return 0


def cmd_timeloop(args: argparse.Namespace) -> int:
    from mapper import timeloop

    if args.write_arch:
        check_output_file(args.write_arch, "--write-arch")
    design = timeloop.load(*args.files, ert=args.ert, cold_output_fills=args.cold_output_fills)
    if args.write_arch and design.hierarchy is not None:
        from sim.sweep import write_atomic

        write_atomic(Path(args.write_arch), design.hierarchy.to_yaml())
    return _map_and_report(
        args,
        design.problem,
        design.mappings,
        lambda **o: design.search(**o),
        lambda _m: design.analyze(),
        compute_name=design.compute_name,
        priced=design.priced,
        unpriced=f"{design.unpriced}; give --ert ERT.yaml",
    )


def cmd_map(args: argparse.Namespace) -> int:
    from mapper import hierarchy, timeloop

    if Path(args.arch).suffix in (".yaml", ".yml", ".json"):
        h = hierarchy.load(args.arch)
        if args.array and not h.branches:
            raise ConfigError(
                "--array picks a branch (an array) of a hierarchy with branches; this one has none"
            )
        if args.array:
            h = h.branch(args.array)
    else:
        spec = archs.preset(args.arch)
        # a fused group on a preset binds its Einsums to the arrays, unless --array picks one
        h = spec.branched_hierarchy() if args.fuse and not args.array else spec.hierarchy(args.array)
    cascade = _cascade(args.cascade, "")
    sizes = sim.workload(sizes=args.sizes).sizes
    if args.fuse:
        return _map_fused(args, h, cascade, sizes)
    if args.fusion_level or args.mixed:
        flag = "--fusion-level" if args.fusion_level else "--mixed"
        raise ConfigError(f"{flag} goes with --fuse E1,E2,...")
    if h.branches:
        raise ConfigError(
            f"{args.arch} has branches ({', '.join(b.name for b in h.branches)}): pick one for a single "
            "Einsum with --array NAME (a fused group, --fuse, binds each Einsum to one)"
        )
    name = args.einsum
    if name is None:
        outs = [e.output for e in cascade.einsums if not e.init]
        if len(outs) != 1:
            raise ConfigError(
                f"cascade {cascade.name} has {len(outs)} Einsums ({', '.join(outs)}): name one with --einsum"
            )
        name = outs[0]
    problem = hierarchy.einsum_problem(cascade, name, sizes)
    unpriced = ""
    try:
        h.storages(problem)
    except archs.ArchError as exc:
        unpriced = str(exc)
    mappings = None
    if args.mapping:
        mappings = timeloop.read_mapping(args.mapping, [lv.name for lv in h.levels], problem)

    return _map_and_report(
        args,
        problem,
        mappings,
        lambda **o: h.search(problem, priced=not unpriced, **o),
        lambda m: h.analyze(problem, m, priced=not unpriced),
        compute_name=h.compute.name if h.compute is not None else "",
        priced=not unpriced,
        unpriced=unpriced,
    )


def _map_fused(args: argparse.Namespace, h: Any, cascade: Any, sizes: Any) -> int:
    """``einforge map --fuse E1,E2``: the best fused mapping of the chain, beside the chain in
    stages (each Einsum alone, a recurrence's halves together; :mod:`mapper.staged`)."""
    from mapper import fusion, hsearch, staged

    if args.einsum or args.mapping or args.write_mapping:
        raise ConfigError("--fuse maps a group; it does not take --einsum, --mapping or --write-mapping")
    outs = [e.output for e in cascade.einsums if not e.init]
    names = list(dict.fromkeys(outs)) if args.fuse.strip().lower() == "all" else _split(args.fuse)
    for n in names:
        if n not in outs:
            raise ConfigError(
                f"--fuse: cascade {cascade.name} has no Einsum {n!r}{suggest(n, outs)} "
                f"(its Einsums: {', '.join(outs)})"
            )
    problems = fusion.problems_of(cascade, names, sizes)
    progress = None if args.json else (lambda msg: print(f"  searching {msg}", file=sys.stderr, flush=True))
    r = fusion.search(
        h,
        problems,
        names=names,
        level=args.fusion_level,
        metric=args.metric,
        budget=args.budget,
        seed=args.seed,
        progress=progress,
        imperfect=args.imperfect,
        steps=fusion.steps_of(cascade),
        drain=fusion.read_after(cascade, names),
    )
    chain: dict[str, Any] = dict(
        names=names,
        steps=fusion.steps_of(cascade),
        after=fusion.read_after(cascade, names),
        metric=args.metric,
        budget=args.budget,
        seed=args.seed,
        imperfect=args.imperfect,
        progress=progress,
    )
    st = staged.staged(h, problems, **chain)
    mix = staged.mixed(h, problems, **chain, longest=args.mixed) if args.mixed else None
    key = hsearch.metric_key
    options = {"fused": r, "stages": st, **({"mixed": mix} if mix is not None else {})}
    best = min(options, key=lambda n: key(options[n].cycles, options[n].energy_pj, args.metric))
    if args.json:
        extra = {"mixed": mix.to_dict()} if mix is not None else {}
        print(json.dumps({**r.to_dict(), "staged": st.to_dict(), **extra, "best": best}, indent=1))
        return 0
    print(r.describe())
    print(st.describe())
    if mix is not None:
        print(f"cut searched (runs of up to {args.mixed} stages): {mix.describe()}")
    what = {"fused": "the fused group", "stages": "the stages", "mixed": "the cut searched"}[best]
    print(
        f"best by {args.metric}: {what} (fused: "
        f"{st.cycles / r.cycles:.2f}x the speed of the stages, {st.energy_pj / r.energy_pj:.2f}x less "
        f"energy); {r.evaluated} fused candidates costed"
    )
    rows = []
    for n, a in zip(r.names, r.analyses, strict=True):
        for lv, stats in a.levels.items():
            for t, st in stats.items():
                rows.append({"einsum": n, "level": lv, "tensor": t, "reads": st.reads, "fills": st.fills,
                             "updates": st.updates})  # fmt: skip
    print(sim.table(rows, ["einsum", "level", "tensor", "reads", "fills", "updates"]))
    return 0


def _add_search_flags(p: Any) -> None:
    """The mapping search's flags, shared by ``timeloop`` and ``map``."""
    p.add_argument(
        "--metric",
        choices=("edp", "energy", "cycles"),
        default="edp",
        help="without a mapping, search one minimising this (default edp)",
    )
    p.add_argument(
        "--budget",
        type=_positive_int,
        default=20_000,
        help="search: at most this many candidates (all of them when the space is smaller; default 20000)",
    )
    p.add_argument("--seed", type=int, default=0, help="search: the seed of the random draws (default 0)")
    p.add_argument(
        "--imperfect",
        action="store_true",
        help="search: also try imperfect factors (a dimension padded up to a multiple of each fanout, "
        "its last trips short), as AccelForge's tile shapes; default exact factors, as Timeloop's mapper",
    )
    p.add_argument("--write-mapping", metavar="FILE", help="search: write the mapping found as Timeloop YAML")


def add_parsers(sub: Any) -> None:
    ev = sub.add_parser("evaluate", help="map a cascade onto an accelerator and simulate it")
    ev.add_argument(
        "--arch",
        default="fusemax",
        help="a preset (fusemax, flat, unfused, spatten, spatten_eighth) or an architecture file "
        "(.yaml/.json)",
    )
    ev.add_argument(
        "--cascade",
        help="a library cascade or a cascade file (.ein); "
        "default: attention_1pass (attention_3pass on flat, unfused)",
    )
    ev.add_argument(
        "--model", help="BERT, TrXL, T5, XLM (comma-separated; default BERT unless --sizes alone)"
    )
    ev.add_argument("--seq", help="sequence lengths such as 1K,64K,1M (comma-separated; default 1K)")
    ev.add_argument(
        "--sizes",
        help="rank sizes such as P=1,M=4096,E=128,F=128,B=8,H=32 (B batch, H heads); alone they are the "
        "whole workload, with --model they replace the model's",
    )
    ev.add_argument("--batch", type=int, default=None, help="batch (default 64 with --model, 1 with --sizes)")
    ev.add_argument(
        "--objective",
        default="latency",
        help="latency (default), energy, edp, or weights like latency=1,energy=0.5",
    )
    ev.add_argument(
        "--bind",
        action="append",
        default=[],
        help="fix an Einsum's array, EINSUM=ARRAY (repeat or comma-separate)",
    )
    ev.add_argument(
        "--fusion",
        choices=("auto", "fused", "layerwise"),
        default="auto",
        help="fused tilings, layer-by-layer loop nests, or the best of both (default)",
    )
    ev.add_argument(
        "--top", type=int, default=1, help="list this many of the best schedules the search found"
    )
    ev.add_argument("--html", metavar="FILE.html", help="a self-contained HTML report (the first point)")
    ev.add_argument(
        "--trace", metavar="FILE.json", help="a Perfetto/Chrome trace of the schedule (the first point)"
    )
    ev.add_argument("--no-interleave", action="store_true", help="do not overlap tiles across the arrays")
    ev.add_argument("--end-to-end", action="store_true", help="add the projections and FFN GEMMs")
    ev.add_argument("--array-dim", type=int, default=None, help="a preset's PE array dimension (default 256)")
    ev.add_argument("--systolic", action="store_true", help="charge the 2D array's systolic fill and drain")
    ev.add_argument("--json", action="store_true", help="print one JSON array, one object per (model, seq)")
    ev.add_argument(
        "--details",
        action="store_true",
        help="with several points, each one's full report (default: a table)",
    )
    ev.add_argument(
        "--accounting",
        choices=tuple(sim.ACCOUNTINGS),
        default="physical",
        help="physical (default) or fusemax-artifact (the FuseMax artifact's bookkeeping)",
    )
    ev.add_argument("--leakage", action="store_true", help="add the buffer's leakage over the latency")
    ev.add_argument(
        "--check-tree",
        action="store_true",
        help="check each point's latency and DRAM bytes against the same schedule stated in the preset's "
        "tree and costed by the hierarchy analysis and the tile engine (mapper.as_tree); a difference is "
        "an error (where the tree's tiles are coarser or a mask skips tiles, the DRAM bytes only, and the "
        "latency's difference is reported)",
    )
    ev.add_argument(
        "--prune",
        metavar="token=R,head=R,requant=F",
        help="on an architecture with top-k engines (spatten): the mean kept ratio of tokens (default 0.3) "
        "and heads (0.9) over the pruned layers, and the fraction of requests refetching LSBs (0.059)",
    )
    ev.set_defaults(func=cmd_evaluate)
    co = sub.add_parser(
        "costs", help="an architecture's energy per action and area (Accelergy's ERT and ART)"
    )
    co.add_argument(
        "--arch",
        default="fusemax",
        help=f"a preset ({', '.join(archs.presets())}) or an architecture file (.yaml/.json)",
    )
    co.add_argument("--array-dim", type=int, default=None, help="a preset's PE array dimension (default 256)")
    co.add_argument("--buffer-bytes", help="buffer capacity such as 4M, 64MiB (default: the preset's)")
    co.add_argument("--accounting", choices=tuple(sim.ACCOUNTINGS), default="physical")
    co.add_argument(
        "--node",
        type=float,
        default=None,
        help="CMOS node in nm (7 ... 130): on-chip energies and areas scaled from 45 nm (Stillmaker & Baas)",
    )
    co.add_argument(
        "--dram",
        metavar="TYPE[xN]",
        default=None,
        help="off-chip memory: a type of mapper.dram (HBM2, HBM3, LPDDR4, ...) and how many devices, "
        "such as HBM3x2",
    )
    co.add_argument(
        "--energy-model",
        choices=("tables", "hwcomponents"),
        default="tables",
        help="price the buffer, register files and typed DRAM through Accelergy's hwcomponents "
        "(installed separately, Python 3.12+); default: einforge's shipped tables",
    )
    co.add_argument("--json", action="store_true")
    co.set_defaults(func=cmd_costs)
    sw = sub.add_parser("sweep", help="a design-space sweep from a YAML/JSON file: table, Pareto front, plot")
    sw.add_argument("spec", help="the sweep file (see sim.sweep)")
    sw.add_argument("--out", required=True, help="folder for the store, results.csv, results.jsonl and plots")
    sw.add_argument("--workers", type=_positive_int, default=None, help="local processes (default: the CPUs)")
    sw.add_argument("--dask", metavar="tcp://HOST:PORT", help="run the points on a Dask cluster's scheduler")
    sw.add_argument(
        "--pareto",
        help="figures to minimise, comma-separated (default: the file's pareto, else latency_s,energy_pj)",
    )
    sw.add_argument("--format", choices=("png", "svg"), default="png")
    sw.add_argument("--quiet", action="store_true", help="no progress bar")
    sw.set_defaults(func=cmd_sweep)
    tl = sub.add_parser(
        "timeloop",
        help="a Timeloop design (architecture, problem, mapping): accesses per level, cycles, energy",
    )
    tl.add_argument("files", nargs="+", help="Timeloop YAML files, merged by their top-level keys")
    tl.add_argument("--ert", help="Timeloop's ERT YAML: energies per action (else energy is not priced)")
    tl.add_argument(
        "--json", action="store_true", help="one object: cycles, energy_pj, computes, utilization, levels"
    )
    _add_search_flags(tl)
    tl.add_argument(
        "--cold-output-fills",
        action="store_true",
        help="count each output word's first fill, as Timeloop did before v0.4 (its 2021 exercises)",
    )
    tl.add_argument(
        "--write-arch", metavar="FILE", help="write the architecture as an einforge hierarchy (YAML)"
    )
    tl.set_defaults(func=cmd_timeloop)
    mp = sub.add_parser(
        "map",
        help="map one Einsum of a cascade onto a storage hierarchy (a hierarchy file or a preset's array)",
    )
    mp.add_argument(
        "--arch", required=True, help="a hierarchy file (.yaml/.json) or a preset (fusemax, flat, ...)"
    )
    mp.add_argument(
        "--array",
        help="a preset's array (default: the first 2D one; with --fuse, every array, each Einsum bound to "
        "one), or a branch of a hierarchy file with branches",
    )
    mp.add_argument("--cascade", required=True, help="a library cascade or a cascade file (.ein)")
    mp.add_argument("--einsum", help="the Einsum's output tensor (needed when the cascade has several)")
    mp.add_argument("--sizes", required=True, help="rank sizes such as M=1024,K=768,N=768")
    mp.add_argument("--mapping", help="evaluate this mapping (Timeloop's mapping YAML) instead of searching")
    mp.add_argument(
        "--fuse",
        metavar="E1,E2,...",
        help="map a chain of Einsums as one fused group (all: every Einsum of the cascade): the tensors one "
        "makes and the next reads stay on chip (mapper.fusion); compared with running them in stages, one "
        "after another (mapper.staged)",
    )
    mp.add_argument("--fusion-level", help="with --fuse: the level to fuse at (default: search every level)")
    mp.add_argument(
        "--mixed",
        nargs="?",
        const=4,
        type=_positive_int,
        metavar="N",
        help="with --fuse: also search where to cut the chain into stages, each one Einsum or a fused group "
        "of up to N of the smallest stages (default 4; mapper.staged.mixed; slower: each run is searched)",
    )
    mp.add_argument("--json", action="store_true", help="one object: cycles, energy_pj, levels, mapping, ...")
    _add_search_flags(mp)
    mp.set_defaults(func=cmd_map)
    cp = sub.add_parser("compare", help="the five FuseMax configurations over models and lengths, with plots")
    cp.add_argument("--model", default="BERT,TrXL,T5,XLM")
    cp.add_argument("--seq", default="1K,4K,16K,64K,256K,1M")
    cp.add_argument("--batch", type=int, default=64)
    cp.add_argument("--end-to-end", action="store_true")
    cp.add_argument("--out", default="compare-results", help="folder for the table and plots")
    cp.add_argument("--format", choices=("png", "svg"), default="png")
    cp.add_argument("--quiet", action="store_true", help="no progress line")
    cp.add_argument(
        "--accounting",
        choices=tuple(sim.ACCOUNTINGS),
        default="physical",
        help="physical (default) or fusemax-artifact: the FuseMax artifact's bookkeeping",
    )
    cp.set_defaults(func=cmd_compare)
