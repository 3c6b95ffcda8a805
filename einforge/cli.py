"""The ``einforge`` command line.

einforge demo                 the library cascades, their passes and operation counts, each
                              checked against a direct NumPy formula on a small head
einforge list                 names of the library cascades
einforge show NAME|FILE       canonical text, passes, per-Einsum operation counts
einforge check FILE...        parse and validate cascade files; every problem is listed
einforge run NAME|FILE -i NAME=FILE.npy ... [--size R=N ...] [-o OUT.npz]
                              evaluate a cascade in the float64 golden interpreter
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

import einsum
import golden
from einforge._common import check_output_file
from einsum import Cascade, EinforgeError
from golden import spatten

__all__ = ["main"]


def _load(spec: str) -> Cascade:
    path = Path(spec)
    if spec in einsum.library.names() or not path.suffix:
        return einsum.library.get(spec)
    if not path.is_file():
        raise EinforgeError(f"no library cascade or file named {spec!r}")
    return einsum.parse(einsum.read_text(path, "cascade file"))


def _sizes(items: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            raise EinforgeError(f"--size {item!r}: expected RANK=N with a positive integer N")
        out[name.strip()] = int(value)
    return out


def _counts_table(c: Cascade, sizes: dict[str, int] | None, *, masks: bool = False) -> list[str]:
    rows = []
    for e, counts in zip(c.einsums, einsum.op_counts(c, masks=masks), strict=True):
        if sizes is None:
            text = str(counts) or "-"
        else:
            text = ", ".join(f"{k}={v:,}" for k, v in counts.at(sizes).items() if v) or "-"
        rows.append(f"  {e.lhs_text:<22} {text}")
    return rows


def cmd_list(_: argparse.Namespace) -> int:
    for name in einsum.library.names():
        print(name)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    c = _load(args.cascade)
    print(c, end="")
    print()
    for rank in args.passes or [r for r in c.ranks if r == "M"]:
        print(f"passes over {rank}: {einsum.passes(c, rank)}")
    print("operations per Einsum:")
    print("\n".join(_counts_table(c, None)))
    masks = einsum.mask_tensors(c)
    if masks:
        print(
            "operations with pruning (keep_X: the fraction of mask X's points kept; "
            f"masks {', '.join(masks)}):"
        )
        print("\n".join(_counts_table(c, None, masks=True)))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    status = 0
    for name in args.files:
        try:
            c = einsum.parse(einsum.read_text(name, "cascade file"))
        except OSError as exc:
            print(f"{name}: cannot read: {exc.strerror}", file=sys.stderr)
            status = 1
        except EinforgeError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            status = 1
        else:
            print(f"{name}: ok ({len(c.einsums)} statements, outputs {', '.join(c.outputs)})")
    return status


def cmd_run(args: argparse.Namespace) -> int:
    if args.output:
        check_output_file(args.output, "-o")
    c = _load(args.cascade)
    inputs: dict[str, np.ndarray] = {}
    for item in args.input:
        name, sep, path = item.partition("=")
        if not sep:
            raise EinforgeError(f"-i {item!r}: expected NAME=FILE.npy")
        try:
            inputs[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            why = str(exc) or "the file is empty"
            raise EinforgeError(f"-i {item!r}: cannot read {path} as a .npy array: {why}") from None
    if args.backend == "cpu":
        fn = golden.compile(c)
        if fn.template is not None:
            print(f"einforge run: compiled kernel, {fn.describe()}", file=sys.stderr)
        out = fn(inputs, _sizes(args.size))  # no template: the interpreter, with a warning that says why
    else:
        out = golden.run(c, inputs, _sizes(args.size))
    if args.output:
        np.savez(args.output, **out)  # type: ignore[arg-type]
        print(f"wrote {', '.join(out)} to {args.output}")
    else:
        for name, arr in out.items():
            print(f"{name} {arr.shape}:\n{arr}")
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    c = _load(args.cascade)
    fn = golden.compile(c, backend=args.backend)
    print(f"{c.name or args.cascade}: {fn.describe()}")
    pl = fn.plan
    if pl.template is not None:
        for i, st in enumerate(pl.steps, 1):
            print(f"  {i}. {st.describe(c)}")
        if args.source:
            print(fn.kernel_source())
    return 0


# -- demo --------------------------------------------------------------------------------------


def _demo_checks() -> dict[
    str,
    tuple[
        Callable[[np.random.Generator], dict[str, np.ndarray]],
        Callable[[dict[str, np.ndarray]], np.ndarray],
        str,
    ],
]:
    def attention(rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {
            "Q": rng.normal(size=(64, 16)),
            "K": rng.normal(size=(64, 16)),
            "V": rng.normal(size=(64, 16)),
        }

    def softmax_ref(x: dict[str, np.ndarray]) -> np.ndarray:
        e = np.exp(x["X"] - x["X"].max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def layernorm_ref(x: dict[str, np.ndarray]) -> np.ndarray:
        mu = x["X"].mean(axis=1, keepdims=True)
        return (x["X"] - mu) / np.sqrt(x["X"].var(axis=1, keepdims=True) + 1e-5)

    def att_ref(x: dict[str, np.ndarray]) -> np.ndarray:
        return golden.softmax_attention(x["Q"], x["K"], x["V"])

    def causal_ref(x: dict[str, np.ndarray]) -> np.ndarray:
        return golden.softmax_attention(x["Q"], x["K"], x["V"], causal=True)

    def layered(rng: np.random.Generator) -> dict[str, np.ndarray]:  # 3 layers of 4 heads
        return {
            "Q": rng.normal(size=(3, 4, 8, 16)),
            "K": rng.normal(size=(3, 4, 64, 16)),
            "V": rng.normal(size=(3, 4, 64, 16)),
        }

    def matrix(rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {"X": rng.normal(size=(64, 64))}

    return {
        "attention_3pass": (attention, att_ref, "direct NumPy softmax attention"),
        "attention_2pass": (attention, att_ref, "direct NumPy softmax attention"),
        "attention_1pass": (attention, att_ref, "direct NumPy softmax attention"),
        **{
            f"attention_{n}pass_causal": (attention, causal_ref, "direct NumPy causal attention")
            for n in (1, 2, 3)
        },
        "softmax": (matrix, softmax_ref, "NumPy softmax"),
        "layernorm": (matrix, layernorm_ref, "NumPy mean/var normalisation"),
        "matmul": (
            lambda rng: {"A": rng.normal(size=(64, 16)), "B": rng.normal(size=(16, 64))},
            lambda x: x["A"] @ x["B"],
            "A @ B",
        ),
        **_variant_checks(attention),
        "spatten_token_pruning": (
            lambda rng: {**layered(rng), "KT": np.array([48.0, 24, 12])},
            lambda x: spatten.token_pruning(x["Q"], x["K"], x["V"], x["KT"])[0],
            "SpAtten's cascade token pruning in NumPy",
        ),
        "spatten_head_pruning": (
            lambda rng: {**layered(rng), "KH": np.array([3.0, 2, 1])},
            lambda x: spatten.head_pruning(x["Q"], x["K"], x["V"], x["KH"])[0],
            "SpAtten's cascade head pruning in NumPy",
        ),
        "spatten_local_value_pruning": (
            attention,
            lambda x: spatten.local_value_pruning(x["Q"], x["K"], x["V"], 13),  # ceil(0.2 * 64)
            "SpAtten's local value pruning in NumPy",
        ),
        "spatten_progressive_quantization": (
            attention,
            lambda x: spatten.progressive_quantization(
                x["Q"],
                x["K"],
                x["V"],
                fmt=einsum.library.PQ_FORMAT,
                lsb_bits=einsum.library.PQ_LSB_BITS,
                tau=0.1,
            )[0],
            "SpAtten's progressive quantization in NumPy",
        ),
    }


def _variant_checks(
    attention: Callable[[np.random.Generator], dict[str, np.ndarray]],
) -> dict[
    str,
    tuple[
        Callable[[np.random.Generator], dict[str, np.ndarray]],
        Callable[[dict[str, np.ndarray]], np.ndarray],
        str,
    ],
]:
    """The demo's inputs and NumPy references (golden.variants) for the attention variants."""
    from golden import variants as ref

    def qkv(x: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return x["Q"], x["K"], x["V"]

    def plus(
        **extra: Callable[[np.random.Generator], np.ndarray],
    ) -> Callable[[np.random.Generator], dict[str, np.ndarray]]:
        return lambda rng: {**attention(rng), **{k: f(rng) for k, f in extra.items()}}

    paper = "its paper's equations in NumPy"
    return {
        "sigmoid_attention": (attention, lambda x: ref.sigmoid(*qkv(x)), paper),
        "alibi_attention": (attention, lambda x: ref.alibi(*qkv(x)), paper),
        "softcap_attention": (attention, lambda x: ref.softcap(*qkv(x)), paper),
        "sliding_window_attention": (attention, lambda x: ref.sliding_window(*qkv(x)), paper),
        "document_mask_attention": (
            plus(DQ=lambda rng: np.repeat(np.arange(4.0), 16), DK=lambda rng: np.repeat(np.arange(4.0), 16)),
            lambda x: ref.document_mask(*qkv(x), x["DQ"], x["DK"]),
            paper,
        ),
        "attention_decode": (attention, lambda x: ref.decode(*qkv(x)), paper),
        "linear_attention_decay": (
            attention,
            lambda x: ref.linear_decay(*qkv(x)),
            "its recurrent form in NumPy",
        ),
        "lightning_attention2": (
            attention,
            lambda x: ref.lightning2(*qkv(x), 16),
            "the recurrent form in NumPy",
        ),
        "aaren": (
            lambda rng: {**attention(rng), "Q": rng.normal(size=16)},
            lambda x: ref.aaren(*qkv(x)),
            "an associative scan in NumPy",
        ),
        "agent_attention": (attention, lambda x: ref.agent(*qkv(x), 16), paper),
        "seer_attention": (attention, lambda x: ref.seer(*qkv(x), 16, 16), paper),
        "routing_attention": (
            plus(C=lambda rng: rng.normal(size=(4, 16))),
            lambda x: ref.routing(*qkv(x), x["C"]),
            paper,
        ),
        "landmark_attention": (
            plus(LK=lambda rng: rng.normal(size=(4, 16))),
            lambda x: ref.landmark(*qkv(x), x["LK"], 16),
            paper,
        ),
        "recycled_attention": (
            plus(PA=lambda rng: rng.random(64)),
            lambda x: ref.recycled(*qkv(x), x["PA"]),
            paper,
        ),
    }


def cmd_demo(_: argparse.Namespace) -> int:
    print("einforge demo: the library cascades, checked against direct NumPy on a small head")
    print("(P = M = 64, E = F = 16, M0 = 16; float64 golden interpreter)\n")
    rng = np.random.default_rng(0)
    checks = _demo_checks()
    failures = 0
    for name in einsum.library.names():
        c = einsum.library.get(name)
        make, reference, what = checks[name]
        inputs = make(rng)
        sizes = {r: 16 for r in ("M0", "P0") if r in c.ranks} or None
        t0 = time.perf_counter()
        out = golden.run(c, inputs, sizes)[c.outputs[0]]
        elapsed = time.perf_counter() - t0
        bound = einsum.bind_sizes(c, {k: v.shape for k, v in inputs.items()}, sizes)
        err = float(np.max(np.abs(out - reference(inputs))))
        ok = err <= 1e-12 * max(1.0, float(np.max(np.abs(out))))
        failures += not ok
        pass_text = f"{einsum.passes(c, 'M')} pass(es) over M" if "M" in c.ranks else ""
        print(f"{name}: {len(c.einsums)} statements, {pass_text}")
        totals: dict[str, int] = {}
        for counts in einsum.op_counts(c):
            for k, v in counts.at(bound).items():
                totals[k] = totals.get(k, 0) + v
        print("  operations: " + ", ".join(f"{k} {v:,}" for k, v in totals.items() if v))
        print(
            f"  golden vs {what}: max |error| {err:.2e} "
            f"in {elapsed * 1e3:.1f} ms  [{'PASS' if ok else 'FAIL'}]"
        )
    print()
    print(f"{len(checks) - failures} of {len(checks)} cascades agree with NumPy")
    from einforge import cli_sim

    cli_sim.demo_compare()
    return 1 if failures else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="einforge", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("demo", help="tour the library cascades").set_defaults(func=cmd_demo)
    sub.add_parser("list", help="list the library cascades").set_defaults(func=cmd_list)
    show = sub.add_parser("show", help="print a cascade, its passes and operation counts")
    show.add_argument("cascade", help="library name or cascade file")
    show.add_argument(
        "--passes", action="append", default=[], metavar="RANK", help="rank to count passes over (default M)"
    )
    show.set_defaults(func=cmd_show)
    check = sub.add_parser("check", help="parse and validate cascade files")
    check.add_argument("files", nargs="+")
    check.set_defaults(func=cmd_check)
    run = sub.add_parser("run", help="evaluate a cascade (the golden interpreter, or a compiled kernel)")
    run.add_argument("cascade", help="library name or cascade file")
    run.add_argument("-i", "--input", action="append", default=[], metavar="NAME=FILE.npy")
    run.add_argument("--size", action="append", default=[], metavar="RANK=N")
    run.add_argument("-o", "--output", metavar="OUT.npz")
    run.add_argument(
        "--backend",
        choices=("golden", "cpu"),
        default="golden",
        help="golden: the float64 interpreter (default); cpu: a kernel compiled from the cascade "
        "(golden.compile)",
    )
    run.set_defaults(func=cmd_run)
    comp = sub.add_parser("compile", help="which kernel template fits a cascade, and why (or why none does)")
    comp.add_argument("cascade", help="library name or cascade file")
    comp.add_argument("--source", action="store_true", help="print the generated Numba kernels")
    comp.add_argument(
        "--backend", choices=("cpu", "cuda"), default="cpu", help="the kernels' target (--source prints them)"
    )
    comp.set_defaults(func=cmd_compile)
    from einforge import cli_sim

    cli_sim.add_parsers(sub)
    from einforge import cli_rtl

    cli_rtl.add_parsers(sub)
    from einforge import cli_spatten

    cli_spatten.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 check failed, 2 bad input, 130
    interrupted). Output cut short by a closed pipe (``einforge show X | head``) ends quietly;
    Ctrl-C ends any command with one line, not a traceback (a resumable sweep keeps what it
    stored)."""
    args = _parser().parse_args(argv)
    try:
        status = int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at exit
        return status
    except EinforgeError as exc:
        print(f"einforge: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\neinforge: interrupted ({args.command})", file=sys.stderr)
        return 130
    except BrokenPipeError:
        import os

        # the reader went away: send what is left to /dev/null so that exit flushes nothing
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
