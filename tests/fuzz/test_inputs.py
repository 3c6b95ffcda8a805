"""Seeded mutation tests over every kind of input: cascade text, architecture files, hierarchy
files, sweep specs and command lines. Each case must give a result or a typed einforge error, never another
exception, and finish within a bound. ``FUZZ_CASES`` cases per kind in the default run;
``--run-slow`` runs ``SLOW_CASES`` per kind."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import einsum
import mapper
from einsum.errors import EinforgeError
from sim import sweep as sw

FUZZ_CASES = 60
SLOW_CASES = 1300
BOUND_S = 20.0

CASCADE = str(einsum.library.get("attention_1pass"))
ARCH = mapper.fusemax(array_dim=8).to_dict()
SWEEP = {
    "name": "f",
    "arch": "fusemax",
    "params": {"array_dim": [8, 16], "buffer_bytes": ["1M"]},
    "workloads": [{"model": "BERT", "seq": "1K"}, {"sizes": "P=16,M=64,E=8,F=8"}],
    "cascades": ["attention_1pass"],
    "options": {"objective": "latency"},
}
HIERARCHY = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "examples" / "eyeriss_like.yaml").read_text()
)
BRANCHED = mapper.fusemax(array_dim=8).branched_hierarchy().to_dict()  # two arrays under the buffer
VALUES = [None, 0, -1, 2**64, 1e308, float("nan"), "", "x", [], {}, True, 1.5, "16M", [None], {"a": 1}]


def mutate(rng: random.Random, data: Any, depth: int = 0) -> Any:
    """One random change somewhere in a JSON-like value."""
    if isinstance(data, dict) and data and depth < 6:
        k = rng.choice(list(data))
        out = dict(data)
        r = rng.random()
        if r < 0.12:
            del out[k]
        elif r < 0.3:
            out[k] = rng.choice(VALUES)
        elif r < 0.38:
            out[str(k) + "x"] = out.pop(k)
        else:
            out[k] = mutate(rng, data[k], depth + 1)
        return out
    if isinstance(data, list) and data and depth < 6:
        i = rng.randrange(len(data))
        out_l = list(data)
        r = rng.random()
        if r < 0.15:
            del out_l[i]
        elif r < 0.3:
            out_l.append(rng.choice(VALUES))
        else:
            out_l[i] = mutate(rng, data[i], depth + 1)
        return out_l
    return rng.choice(VALUES)


def mutate_text(rng: random.Random, text: str) -> str:
    """A character-level change: delete, duplicate, swap a span, or insert a token."""
    tokens = [
        "[",
        "]",
        "(",
        ")",
        ",",
        "=",
        "*",
        "+",
        "-",
        "/",
        "max",
        "sum",
        "exp",
        "m",
        "p",
        "E",
        "1e23",
        "\n",
        "#",
        "input",
        "output",
        "param",
        "partition",
        "\xff",
        "é",
        "0",
        "-1",
        ":",
        ";",
    ]
    n = len(text)
    i, j = sorted(rng.randrange(n + 1) for _ in range(2))
    r = rng.random()
    if r < 0.3:
        return text[:i] + text[j:]
    if r < 0.5:
        return text[:i] + text[i:j] * 2 + text[j:]
    return text[:i] + rng.choice(tokens) + text[i:]


def _run(kind: str, seed: int, tmp_path: Path) -> None:
    rng = random.Random(f"{kind}-{seed}")
    t0 = time.perf_counter()
    try:
        if kind == "cascade":
            text = CASCADE
            for _ in range(rng.randint(1, 3)):
                text = mutate_text(rng, text)
            c = einsum.parse(text)
            einsum.op_counts(c)
            for r in sorted(c.ranks)[:2]:
                einsum.passes(c, r)
        elif kind == "arch":
            data = mutate(rng, ARCH)
            path = tmp_path / ("a.yaml" if rng.random() < 0.5 else "a.json")
            path.write_text(yaml.safe_dump(data) if path.suffix == ".yaml" else json.dumps(data))
            a = mapper.load(path)
            a.area_um2()
        elif kind == "hierarchy":
            from mapper import hierarchy

            tree = seed % 2 == 1
            data = mutate(rng, BRANCHED if tree else HIERARCHY)
            path = tmp_path / ("h.yaml" if rng.random() < 0.5 else "h.json")
            path.write_text(yaml.safe_dump(data) if path.suffix == ".yaml" else json.dumps(data))
            h = hierarchy.load(path)
            problem = hierarchy.einsum_problem(einsum.library.get("matmul"), "Z", {"M": 28, "K": 12, "N": 16})
            if h.branches:
                h = h.branch(h.branches[-1].name)
            h.search(problem, budget=40, imperfect=rng.random() < 0.5)
        elif kind == "sweep":
            spec = mutate(rng, SWEEP)
            if not isinstance(spec, dict):
                spec = {"spec": spec}
            sw.validate(sw.points(spec))
        elif kind == "cli":
            from einforge.cli import main

            argv = rng.choice(
                [
                    ["show", "attention_1pass"],
                    ["check", "x.ein"],
                    ["costs", "--arch", "fusemax", "--buffer-bytes", "16M"],
                    ["evaluate", "--sizes", "P=16,M=64,E=8,F=8", "--array-dim", "8", "--json"],
                    [
                        "evaluate",
                        "--cascade",
                        "matmul",
                        "--sizes",
                        "M=8,K=8,N=8",
                        "--array-dim",
                        "4",
                        "--json",
                    ],
                    ["topk", "--help"],
                ]
            )
            argv = list(argv)
            i = rng.randrange(len(argv))
            argv[i] = rng.choice(
                [
                    argv[i] + "x",
                    "",
                    "-1",
                    "0",
                    "inf",
                    "nan",
                    "1e400",
                    "P=0",
                    "M=2**64",
                    "E=-3",
                    "\xe9",
                    "--",
                    "-h",
                ]
            )
            try:
                main(argv)
            except SystemExit as exc:  # argparse: usage errors and --help
                assert exc.code in (0, 2), exc.code
    except EinforgeError:
        pass
    assert time.perf_counter() - t0 < BOUND_S, f"{kind} case {seed} took longer than {BOUND_S} s"


def _cases(n: int) -> list[tuple[str, int]]:
    return [(k, s) for k in ("cascade", "arch", "hierarchy", "sweep", "cli") for s in range(n)]


@pytest.mark.parametrize(("kind", "seed"), _cases(FUZZ_CASES))
def test_input_gives_a_result_or_a_typed_error(
    kind: str, seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    _run(kind, seed, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "seed"), _cases(SLOW_CASES)[:0] or [("all", 0)])
def test_many_inputs_give_a_result_or_a_typed_error(
    kind: str, seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The slow run: SLOW_CASES cases of each kind (6,500 in all)."""
    monkeypatch.chdir(tmp_path)
    failures = []
    for k, s in _cases(SLOW_CASES):
        try:
            _run(k, s, tmp_path)
        except Exception as exc:
            failures.append(f"{k} {s}: {type(exc).__name__}: {str(exc)[:200]}")
        capsys.readouterr()
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:30])
