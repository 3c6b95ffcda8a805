"""The same mappings costed by einforge's hierarchy analysis and by AccelForge, side by side.

Each case is one Einsum, a storage hierarchy (main memory, a global buffer, a fanout to per-PE
registers, MACs) and one mapping, written once here and translated to both tools:

- einforge: :mod:`mapper.analysis` (Timeloop's rules) through ``Problem``, ``Storage`` and
  ``LevelMapping``;
- AccelForge (``accelforge==1.0.467``, in an environment of its own, never an einforge
  dependency): the same architecture, workload and mapping in its YAML, evaluated by
  ``Spec.evaluate_mapping()``. AccelForge places each tensor's storage node in the loop nest; the
  translation puts it where Timeloop's rules keep the tile (above the innermost loops of the level
  above that do not index the tensor), so both describe the same schedule.

The two count in different conventions; the table shows both and a third column that converts
einforge's counts to AccelForge's:

- AccelForge ``write`` = einforge ``fills + updates``;
- AccelForge ``read`` = einforge ``reads``, plus, for the output, the words each instance drains
  to the level above (AccelForge reads a partial sum out of a level to send it up; Timeloop counts
  that only as the parent's update, after the fanout's spatial reduction).

    python benchmarks/accelforge.py                          # einforge only
    python benchmarks/accelforge.py --setup-accelforge       # make AccelForge's environment (pip)
    python benchmarks/accelforge.py --accelforge-python PY   # and AccelForge, run by that Python

AccelForge needs Python 3.12 (pyenv: ``PYENV_VERSION=3.12.1 python3.12``); its SRAM model calls a
bundled CACTI binary that must be rebuilt on glibc older than 2.38 (``make clean && make`` in
``site-packages/hwcomponents_cacti/cacti``, about 9 minutes here) and its mapping renderer calls
graphviz's ``dot`` (Debian: ``apt-get install graphviz``). These cases give every energy
explicitly, so they need neither.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mapper.analysis import DataSpace, LevelMapping, Problem, Storage, analyze

ENV = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "einforge" / "accelforge-env"
ACCELFORGE = "accelforge==1.0.467"

# A case: dimensions, tensors (ranks as dimension lists; the output last), levels (name, fanout
# below it, pJ per word) and the mapping: per level, temporal loops outermost first, spatial loops.
CASES: list[dict[str, Any]] = [
    {
        "name": "gemv 8x4, K across 4 PEs",
        "dims": {"m": 8, "k": 4},
        "tensors": {"A": ["m", "k"], "B": ["k"], "Z": ["m"]},
        "levels": [("MainMemory", 1, 100.0), ("GlobalBuffer", 4, 6.0), ("Reg", 1, 1.0)],
        "mapping": [
            {"temporal": [], "spatial": []},
            {"temporal": [("m", 4)], "spatial": [("k", 4)]},
            {"temporal": [("m", 2)], "spatial": []},
        ],
    },
    {
        "name": "gemm 64x32x48, output stationary in the PEs",
        "dims": {"m": 64, "k": 32, "n": 48},
        "tensors": {"A": ["m", "k"], "B": ["k", "n"], "Z": ["m", "n"]},
        "levels": [("MainMemory", 1, 100.0), ("GlobalBuffer", 16, 6.0), ("Reg", 1, 1.0)],
        "mapping": [
            {"temporal": [("n", 3)], "spatial": []},
            {"temporal": [("m", 16), ("n", 4)], "spatial": [("m", 4), ("n", 4)]},
            {"temporal": [("k", 32)], "spatial": []},
        ],
    },
    {
        "name": "gemm 1024x768x768, N at the DRAM level (issue 25, problem 2)",
        "dims": {"m": 1024, "k": 768, "n": 768},
        "tensors": {"A": ["m", "k"], "B": ["k", "n"], "Z": ["m", "n"]},
        "levels": [("MainMemory", 1, 100.0), ("GlobalBuffer", 1024, 6.0), ("Reg", 1, 1.0)],
        "mapping": [
            {"temporal": [("n", 24)], "spatial": []},
            {"temporal": [("m", 1024), ("k", 24)], "spatial": [("k", 32), ("n", 32)]},
            {"temporal": [], "spatial": []},
        ],
    },
]


def _einforge(case: dict[str, Any]) -> tuple[dict[str, dict[str, dict[str, float]]], float]:
    """Per level and tensor, AccelForge's (read, write) in words from einforge's analysis; and the
    seconds the analysis took."""
    dims = case["dims"]
    names = list(case["tensors"])
    problem = Problem(
        name=case["name"],
        dims=tuple(dims.items()),
        spaces=tuple(
            DataSpace(name=t, projection=tuple(((d, 1),) for d in ranks), output=t == names[-1])
            for t, ranks in case["tensors"].items()
        ),
    )
    instances, storages = 1, []
    for name, fan, pj in case["levels"]:
        storages.append(Storage(name=name, instances=instances, read_pj=pj, fill_pj=pj, update_pj=pj))
        instances *= fan
    mappings = [
        LevelMapping(target=name, temporal=tuple(m["temporal"]), spatial=tuple(m["spatial"]))
        for (name, _f, _pj), m in zip(case["levels"], case["mapping"], strict=True)
    ]
    t0 = time.perf_counter()
    a = analyze(problem, storages, mappings, compute_pj=1.0, compute_instances=instances)
    seconds = time.perf_counter() - t0
    out: dict[str, dict[str, dict[str, float]]] = {}
    level_names = [s.name for s in storages]
    for i, level in enumerate(level_names):
        out[level] = {}
        for t, s in a.levels[level].items():
            drained = 0.0
            if t == names[-1] and i > 0:
                # each instance drains its partial sums; the fanout reduces them on the way up
                reduced = math.prod(
                    f for d, f in case["mapping"][i - 1]["spatial"] if d not in case["tensors"][t]
                )
                drained = a.levels[level_names[i - 1]][t].updates * reduced
            out[level][t] = {
                "einforge_reads": s.reads,
                "einforge_fills": s.fills,
                "einforge_updates": s.updates,
                "read": s.reads + drained,
                "write": s.fills + s.updates,
            }
    return out, seconds


def _accelforge_yaml(case: dict[str, Any]) -> dict[str, str]:
    """The case in AccelForge's architecture, workload and mapping YAML."""
    arch = ["arch:", "  nodes:"]
    for i, (name, fan, pj) in enumerate(case["levels"]):
        arch += [
            "  - !Memory",
            f"    name: {name}",
            "    size: inf",
            "    leak_power: 0",
            "    area: 0",
            "    tensors: {keep: All}",
            "    actions:",
            f"    - {{name: read, energy: {pj * 8}, throughput: inf}}",
            f"    - {{name: write, energy: {pj * 8}, throughput: inf}}",
        ]
        if fan > 1:
            arch += [
                "  - !Container",
                f"    name: Fanout{i}",
                "    spatial:",
                f"    - {{name: X, fanout: {fan}}}",
            ]
    arch += [
        "  - !Compute",
        "    name: MAC",
        "    leak_power: 0",
        "    area: 0",
        "    actions:",
        "    - {name: compute, energy: 1, throughput: 1}",
    ]
    names = list(case["tensors"])
    work = ["workload:", "  iteration_space_shape:"]
    work += [f"    {d}: 0 <= {d} < {n}" for d, n in case["dims"].items()]
    work += ["  bits_per_value: {All: 8}", "  einsums:", "  - name: E", "    tensor_accesses:"]
    for t, ranks in case["tensors"].items():
        out = ", output: True" if t == names[-1] else ""
        work.append(f"    - {{name: {t}, projection: [{', '.join(ranks)}]{out}}}")
    # the loops outermost first, and where each level's storage of each tensor sits among them.
    # A level's spatial loops go above its temporal ones (the same schedule: they commute), so a
    # child's storage can sit between them and keep its tile across the trailing temporal loops
    # that do not index it, as Timeloop's rules do.
    loops: list[tuple[int, str, int, bool]] = []
    for i, m in enumerate(case["mapping"]):
        loops += [(i, d, f, True) for d, f in m["spatial"]]
        loops += [(i, d, f, False) for d, f in m["temporal"]]
    place: dict[int, list[tuple[str, str]]] = {}
    for i, (level, _fan, _pj) in enumerate(case["levels"]):
        for t, ranks in case["tensors"].items():
            pos = sum(1 for lp in loops if lp[0] < i)
            # Timeloop keeps the tile across the innermost loops above that do not index it
            while i > 0 and pos > 0 and not loops[pos - 1][3] and loops[pos - 1][1] not in ranks:
                pos -= 1
            place.setdefault(pos, []).append((level, t))
    nodes = ["mapping:", "  nodes:"]
    fans = [i for i, (_n, fan, _pj) in enumerate(case["levels"]) if fan > 1]
    for pos in range(len(loops) + 1):
        by_level: dict[str, list[str]] = {}
        for level, t in place.get(pos, []):
            by_level.setdefault(level, []).append(t)
        for level, ts in by_level.items():
            nodes.append(f"  - !Storage {{tensors: [{', '.join(ts)}], component: {level}}}")
        if pos == len(loops):
            break
        i, d, f, spatial = loops[pos]
        inner = math.prod(lp[2] for lp in loops[pos + 1 :] if lp[1] == d)
        if spatial:
            nodes.append(
                f"  - !Spatial {{rank_variable: {d}, tile_shape: {inner}, name: X, "
                f"component: Fanout{[k for k in fans if k == i][0]}}}"
            )
        else:
            nodes.append(f"  - !Temporal {{rank_variable: {d}, tile_shape: {inner}}}")
    nodes.append("  - !Compute {einsum: E, component: MAC}")
    return {
        "arch": "\n".join(arch) + "\n",
        "workload": "\n".join(work) + "\n",
        "mapping": "\n".join(nodes) + "\n",
    }


# run by AccelForge's interpreter: YAML texts in on stdin, words per level, tensor and action out
_RUNNER = r"""
import json, sys, tempfile, time, os
import accelforge as af
case = json.load(sys.stdin)
with tempfile.TemporaryDirectory() as d:
    paths = []
    for key in ("arch", "workload", "mapping"):
        p = os.path.join(d, key + ".yaml")
        open(p, "w").write(case[key])
        paths.append(p)
    t0 = time.perf_counter()
    r = af.Spec.from_yaml(*paths).evaluate_mapping()
    seconds = time.perf_counter() - t0
row = r.data.iloc[0]
out = {}
for c in r.data.columns:
    parts = c.split("<SEP>")
    if len(parts) == 5 and parts[1] == "action" and parts[4] in ("read", "write"):
        out.setdefault(parts[2], {}).setdefault(parts[3], {})[parts[4]] = float(row[c]) / 8
print(json.dumps({"counts": out, "seconds": seconds, "energy": float(row["Total<SEP>energy"])}))
"""


def _accelforge(python: str, case: dict[str, Any]) -> dict[str, Any]:
    run = subprocess.run(
        [python, "-c", _RUNNER],
        input=json.dumps(_accelforge_yaml(case)),
        capture_output=True,
        text=True,
        check=False,
    )
    if run.returncode:
        raise SystemExit(f"AccelForge failed on {case['name']!r}:\n{run.stderr[-2000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def setup_accelforge() -> Path:
    py = ENV / "bin" / "python"
    if not py.exists():
        print(f"making {ENV} (Python 3.12, {ACCELFORGE}) ...", file=sys.stderr)
        env = dict(os.environ, PYENV_VERSION=os.environ.get("PYENV_VERSION", "3.12.1"))
        subprocess.run(["python3.12", "-m", "venv", str(ENV)], check=True, env=env)
        subprocess.run([str(py), "-m", "pip", "install", "-q", ACCELFORGE], check=True)
    return py


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accelforge-python", help="the Python of an environment with accelforge installed")
    ap.add_argument("--setup-accelforge", action="store_true", help=f"make that environment in {ENV}")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    python = str(setup_accelforge()) if args.setup_accelforge else args.accelforge_python
    report = []
    for case in CASES:
        ours, seconds = _einforge(case)
        theirs = _accelforge(python, case) if python else None
        rows = []
        for level, tensors in ours.items():
            for t, c in tensors.items():
                row: dict[str, Any] = {"level": level, "tensor": t, **c}
                if theirs is not None:
                    af = theirs["counts"].get(level, {}).get(t, {})
                    row["accelforge_read"] = af.get("read", 0.0)
                    row["accelforge_write"] = af.get("write", 0.0)
                rows.append(row)
        report.append(
            {
                "case": case["name"],
                "einforge_s": seconds,
                "accelforge_s": theirs and theirs["seconds"],
                "rows": rows,
            }
        )
    if args.json:
        print(json.dumps(report, indent=1))
        return
    same = total = 0
    for r in report:
        print(f"\n{r['case']}  (einforge {r['einforge_s'] * 1e3:.2f} ms", end="")
        print(f", AccelForge {r['accelforge_s'] * 1e3:.0f} ms)" if r["accelforge_s"] is not None else ")")
        head = f"{'level':>13} {'tensor':>6} {'reads':>12} {'fills':>12} {'updates':>12}"
        head += f" | {'read':>12} {'write':>12}"
        if python:
            head += f" | {'AF read':>12} {'AF write':>12} {'ratio':>11}"
        print(head)
        for row in r["rows"]:
            line = f"{row['level']:>13} {row['tensor']:>6} {row['einforge_reads']:>12,.0f} "
            line += f"{row['einforge_fills']:>12,.0f} {row['einforge_updates']:>12,.0f}"
            line += f" | {row['read']:>12,.0f} {row['write']:>12,.0f}"
            if python:
                af_r, af_w = row["accelforge_read"], row["accelforge_write"]
                rr = row["read"] / af_r if af_r else math.nan
                ww = row["write"] / af_w if af_w else math.nan
                line += f" | {af_r:>12,.0f} {af_w:>12,.0f} {rr:>5.3f}/{ww:<5.3f}"
                total += 1
                same += row["read"] == af_r and row["write"] == af_w
            print(line)
    if python:
        ours_s = sum(r["einforge_s"] for r in report)
        theirs_s = sum(r["accelforge_s"] for r in report)
        print(
            f"\n{same} of {total} (level, tensor) rows equal in AccelForge's convention; one evaluation "
            f"{ours_s / len(report) * 1e3:.2f} ms against {theirs_s / len(report) * 1e3:.0f} ms "
            f"({theirs_s / ours_s:,.0f}x)"
        )


if __name__ == "__main__":
    main()
