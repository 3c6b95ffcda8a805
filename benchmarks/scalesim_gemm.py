"""Systolic compute cycles against SCALE-Sim on GEMM layers.

einforge's systolic model (``systolic=True`` in :func:`sim.evaluate`, the function
:func:`mapper.systolic_gemm_cycles`) against SCALE-Sim v3 (``scalesim`` on PyPI, run in an
environment of its own because it needs NumPy < 2.4; never an einforge dependency) on 12 GEMM
shapes (BERT's Q/K/V and FFN projections for 128 tokens, a decode GEMM with one row, and odd
shapes), output-, weight- and input-stationary, on arrays from 8 x 8 to 128 x 128. SCALE-Sim
simulates every cycle of its operand traces, so the grid keeps to layers of at most
``--max-cycles`` cycles (the BERT layers run on the larger arrays). Compute cycles are SCALE-Sim's
total less its memory stalls. Beside them: ``sim.evaluate(..., systolic=True)`` of the ``matmul``
cascade as one loop nest whose spatial ranks give the dataflow.

    python benchmarks/scalesim_gemm.py --setup-scalesim        # make SCALE-Sim's environment (pip)
    python benchmarks/scalesim_gemm.py --scalesim-python PY    # or use one you have
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import einsum
import mapper
import sim

HERE = Path(__file__).resolve().parent
ENV = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "einforge" / "scalesim-env"

SHAPES = [  # name, M, N, K: Z[M, N] = A[M, K] B[K, N]
    ("bert_qkv", 128, 768, 768),
    ("bert_ffn1", 128, 3072, 768),
    ("bert_ffn2", 128, 768, 3072),
    ("decode_1row", 1, 768, 768),
    ("square64", 64, 64, 64),
    ("odd_100x50x30", 100, 50, 30),
    ("odd_37x91x53", 37, 91, 53),
    ("odd_257x129x65", 257, 129, 65),
    ("thin_7x300x11", 7, 300, 11),
    ("deep_33x17x250", 33, 17, 250),
    ("wide_16x1000x8", 16, 1000, 8),
    ("prime_97x89x83", 97, 89, 83),
]
ARRAYS = [(8, 8), (8, 16), (32, 32), (128, 128)]
DATAFLOWS = ("os", "ws", "is")


def setup() -> Path:
    py = ENV / "bin" / "python"
    if not py.exists():
        print(
            f"making SCALE-Sim's environment in {ENV} (pip install scalesim 'numpy<2.4') ...", file=sys.stderr
        )
        subprocess.run([sys.executable, "-m", "venv", str(ENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "scalesim==3.0.0", "numpy<2.4"], check=True)
    return py


def simulated(m: int, n: int, k: int, rows: int, cols: int, df: str) -> float:
    """The matmul cascade through the simulator with ``systolic=True``: one loop nest whose
    spatial ranks give the dataflow (output stationary: M down the rows, N across; weight
    stationary: K down the rows, N across; input stationary: K down the rows, M across), the
    2D array's busy cycles."""
    import dataclasses

    base = mapper.fusemax()
    arr = dataclasses.replace([a for a in base.arrays if a.is_2d][0], rows=rows, cols=cols)
    arch = base.replace(name=f"{rows}x{cols}", arrays=(arr,), dram=mapper.DRAM(bandwidth_bytes_per_s=1e18))
    c = einsum.library.get("matmul")
    w = sim.workload(sizes={"M": m, "N": n, "K": k})
    spatial = {"os": ("M", "N"), "ws": ("K", "N"), "is": ("K", "M")}[df]
    trips = {"M": m, "N": n, "K": k}
    for dim, r in zip((rows, cols), spatial, strict=True):
        trips[r] = -(-trips[r] // dim)
    nest = mapper.LoopNest("Z", arr.name, spatial, {r: 1 for r in ("M", "N", "K")}, ("M", "N", "K"))
    s = mapper.Schedule(
        cascade="matmul",
        binding={"Z": arr.name},
        spatial={arr.name: ()},
        tile={},
        residency={"A": "dram", "B": "dram", "Z": "dram"},
        kernels=(),
        interleave=False,
        lookahead=0,
        nests={"Z": nest},
    )
    return sim.evaluate(c, s, arch, w, systolic=True).busy_cycles[arr.name]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scalesim-python", help="the Python of an environment with scalesim installed")
    ap.add_argument("--setup-scalesim", action="store_true", help=f"make that environment in {ENV}")
    ap.add_argument("--max-cycles", type=int, default=40000, help="skip layers longer than this")
    args = ap.parse_args()
    python = str(setup()) if args.setup_scalesim else args.scalesim_python
    if not python:
        raise SystemExit("give --scalesim-python PY or --setup-scalesim")
    jobs = []
    for name, m, n, k in SHAPES:
        for rows, cols in ARRAYS:
            for df in DATAFLOWS:
                ours = mapper.systolic_gemm_cycles(m, n, k, rows, cols, df)
                if ours <= args.max_cycles:
                    jobs.append([name, m, n, k, rows, cols, df])
    t0 = time.perf_counter()
    out = subprocess.run(
        [python, str(HERE / "peers" / "scalesim_gemm.py"), json.dumps(jobs)],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        raise SystemExit(f"SCALE-Sim failed:\n{out.stderr[-3000:]}")
    rows_out = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    print(
        f"{len(rows_out)} layers x dataflows x arrays ({len({r['name'] for r in rows_out})} shapes) "
        f"in {time.perf_counter() - t0:.1f} s of SCALE-Sim\n"
    )
    header = (
        f"{'layer':16s} {'M':>4s} {'N':>5s} {'K':>5s} {'array':>8s} {'df':>3s} "
        f"{'SCALE-Sim':>10s} {'einforge':>10s}"
    )
    print(header + f" {'simulator':>10s}  match")
    print("-" * (len(header) + 18))
    equal = 0
    for r in rows_out:
        ours = mapper.systolic_gemm_cycles(r["M"], r["N"], r["K"], r["rows"], r["cols"], r["dataflow"])
        simc = simulated(r["M"], r["N"], r["K"], r["rows"], r["cols"], r["dataflow"])
        ok = ours == r["compute_cycles"] == simc
        equal += ok
        print(
            f"{r['name']:16s} {r['M']:4d} {r['N']:5d} {r['K']:5d} "
            f"{r['rows']:>4d}x{r['cols']:<3d} {r['dataflow']:>3s} "
            f"{r['compute_cycles']:10d} {ours:10d} {simc:10.0f}  "
            + ("yes" if ok else f"NO ({ours / r['compute_cycles'] - 1:+.2%})")
        )
    print(
        f"\n{equal} of {len(rows_out)} equal to the cycle: SCALE-Sim, einforge's systolic model "
        "(mapper.systolic_gemm_cycles) and sim.evaluate(..., systolic=True) of the matmul cascade as a "
        "loop nest in that dataflow"
    )


if __name__ == "__main__":
    main()
