"""``einforge topk`` (the top-k engine's cycle model), ``einforge spatten`` (SpAtten's pipeline on
a released GPT-2 trace) and the pipeline route of ``einforge evaluate`` (an architecture with
top-k engines)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from einsum import Cascade
from einsum.errors import ConfigError
from mapper import arch as archs
from mapper import topk as topk_model

__all__ = ["add_parsers", "evaluate_pipeline"]


def cmd_topk(args: argparse.Namespace) -> int:
    n, k, p, draws = args.n, args.k, args.parallelism, args.draws
    problems = []
    if n < 1:
        problems.append(f"--n must be at least 1, got {n}")
    elif not 1 <= k <= n:
        problems.append(f"--k must be in 1..n = {n}, got {k}")
    if p < 1:
        problems.append(f"--parallelism must be at least 1, got {p}")
    if draws < 1:
        problems.append(f"--draws must be at least 1, got {draws}")
    if args.round_overhead < 0:
        problems.append(f"--round-overhead must be at least 0, got {args.round_overhead}")
    if problems:
        raise ConfigError("einforge topk: " + "; ".join(problems))
    select, filt = topk_model.mean_cycles(
        n, k, p, round_overhead=args.round_overhead, draws=draws, seed=args.seed
    )
    out = {
        "n": n,
        "k": k,
        "parallelism": p,
        "round_overhead": args.round_overhead,
        "draws": draws,
        "seed": args.seed,
        "select_cycles": select,
        "filter_cycles": filt,
        "total_cycles": select + filt,
        "expected_select_cycles": topk_model.expected_select_cycles(
            n, k, p, round_overhead=args.round_overhead
        ),
        "expected_filter_cycles": topk_model.expected_filter_rows(n, k, p),
        "expected_rounds": topk_model.expected_rounds(n, k),
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(
            f"top-{k} of {n} on {p} comparators a side, {args.round_overhead} cycles a round, {draws} draws:"
        )
        print(f"  select  {select:10.1f} cycles (closed form {out['expected_select_cycles']:.1f})")
        print(f"  filter  {filt:10.1f} cycles (closed form {out['expected_filter_cycles']})")
        print(f"  total   {select + filt:10.1f} cycles")
    return 0


def _prune(text: str | None) -> dict[str, float]:
    """``token=0.3,head=0.9,requant=0.059`` -> keyword arguments of requests_from_cascade."""
    names = {"token": "token_keep", "head": "head_keep", "requant": "requant"}
    out: dict[str, float] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        k, eq, v = part.partition("=")
        if not eq or k.strip() not in names:
            raise ConfigError(
                f"--prune {text!r}: {part!r} is not NAME=RATIO with NAME one of {', '.join(names)}"
            )
        try:
            value = float(v)
        except ValueError:
            raise ConfigError(f"--prune {text!r}: {part!r}: {v!r} is not a number") from None
        if not 0 <= value <= 1 or (k.strip() != "requant" and value == 0):
            raise ConfigError(
                f"--prune {text!r}: {k.strip()} must be in (0, 1] (requant in [0, 1]), got {value}"
            )
        out[names[k.strip()]] = value
    return out


def _report_row(name: str, r: Any) -> dict[str, Any]:
    return {"run": name, **r.to_dict()}


def evaluate_pipeline(
    args: argparse.Namespace, arch: archs.ArchSpec, cascade: Cascade, work: list[Any]
) -> int:
    """``einforge evaluate`` on an architecture with top-k engines: SpAtten's pipeline over the
    requests the cascade makes (its pruning masks, at the workload's sizes)."""
    from sim import spatten

    unsupported = [
        flag
        for flag, on in (
            ("--html", args.html),
            ("--trace", args.trace),
            ("--end-to-end", args.end_to_end),
            ("--systolic", args.systolic),
            ("--bind", args.bind),
            ("--fusion", args.fusion != "auto"),
            ("--top", args.top != 1),
        )
        if on
    ]
    if unsupported:
        raise ConfigError(
            f"{', '.join(unsupported)}: not for {arch.name!r}, which has top-k engines and runs SpAtten's "
            "pipeline (one query and head at a time) rather than a mapped loop nest"
        )
    options = _prune(args.prune)
    out = []
    for w in work:
        sizes = {**w.sizes, "H": w.heads}
        reqs = spatten.requests_from_cascade(cascade, sizes, word_bits=arch.word_bits, **options)
        reqs = reqs * w.batch
        runs = spatten.compare(reqs, arch)
        if args.json:
            out.append(
                {
                    "arch": arch.name,
                    "cascade": cascade.name,
                    "sizes": sizes,
                    "batch": w.batch,
                    "runs": [_report_row(n, r) for n, r in runs.items()],
                    "savings": spatten.savings(runs),
                }
            )
        else:
            size_text = ", ".join(f"{k}={v}" for k, v in sizes.items())
            print(f"{cascade.name} on {arch.name} (SpAtten's pipeline), {size_text}, batch {w.batch}:")
            print(spatten.describe(runs))
            print()
    if args.json:
        print(json.dumps(out))
    return 0


def cmd_spatten(args: argparse.Namespace) -> int:
    from einforge._common import arch_from_text as _arch
    from sim import spatten

    arch = _arch(args.arch, None)
    if not arch.topk_engines:
        raise ConfigError(
            f"--arch {args.arch!r} has no top-k engine; SpAtten's pipeline needs one (try spatten)"
        )
    reqs = spatten.trace(args.trace, word_bits=arch.word_bits)
    if not args.json:
        print(f"{len(reqs)} requests from {args.trace}; simulating on {arch.name} ...", file=sys.stderr)
    runs = spatten.compare(reqs, arch, topk=args.topk, draws=args.draws, seed=args.seed)
    if args.json:
        print(
            json.dumps(
                {
                    "arch": arch.name,
                    "trace": args.trace,
                    "runs": [_report_row(n, r) for n, r in runs.items()],
                    "savings": spatten.savings(runs),
                    "trace_keys_ratio": sum(r.context for r in reqs) / sum(r.keys for r in reqs),
                    "trace_values_ratio": sum(r.context for r in reqs) / max(sum(r.values for r in reqs), 1),
                }
            )
        )
    else:
        print(spatten.describe(runs))
        lk = sum(r.context for r in reqs) / sum(r.keys for r in reqs)
        lv = sum(r.context for r in reqs) / max(sum(r.values for r in reqs), 1)
        print(f"the trace's own sum L / sum keys = {lk:.2f}x, sum L / sum values = {lv:.2f}x")
    return 0


def add_parsers(sub: Any) -> None:
    tk = sub.add_parser("topk", help="the top-k engine's cycle model: mean select, filter and total cycles")
    tk.add_argument("--n", type=int, required=True, help="elements to select from")
    tk.add_argument("--k", type=int, required=True, help="elements to keep")
    tk.add_argument("--parallelism", type=int, default=16, help="comparators a side (default 16)")
    tk.add_argument(
        "--draws", type=int, default=200, help="random score vectors to average over (default 200)"
    )
    tk.add_argument("--seed", type=int, default=0)
    tk.add_argument(
        "--round-overhead",
        type=int,
        default=3,
        help="cycles a quick-select round costs to decide (default 3, SpAtten's released model; "
        "1 for rtl.topk)",
    )
    tk.add_argument("--json", action="store_true", help="print one JSON object")
    tk.set_defaults(func=cmd_topk)
    sp = sub.add_parser("spatten", help="SpAtten's pipeline on a released GPT-2 trace, pruned and dense")
    sp.add_argument(
        "--trace",
        default="gpt2-small-wikitext2",
        help="a shipped trace (gpt2-small-wikitext2, gpt2-medium-wikitext2-hp, gpt2-small-wikitext2-dense) "
        "or a CSV file of the same columns",
    )
    sp.add_argument("--arch", default="spatten", help="spatten (default), spatten_eighth or a file")
    sp.add_argument(
        "--topk",
        choices=("expected", "draws"),
        default="expected",
        help="top-k cycles in closed form (default) or as the mean over random draws",
    )
    sp.add_argument("--draws", type=int, default=64)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_spatten)
