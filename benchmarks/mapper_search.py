"""Mapping evaluations per second, against ZigZag's LOMA on the same GEMM and architecture.

The layer is BERT's Q projection for one 1,024-token sequence (M = 1024, K = 768, N = 768, 16-bit);
the architecture is ZigZag's shipped TPU-like accelerator described in einforge's terms: one
32 x 32 array of MACs, a 2 MiB global buffer serving 2 x 2048 bits per cycle, DRAM at 64 bits per
cycle. einforge enumerates every loop nest of the layer (spatial ranks x buffer tiles x loop
orders, :mod:`mapper.nest`) and costs each; ZigZag (``zigzag-dse``, in an environment of its own,
never an einforge dependency) runs its LOMA temporal-mapping search with the array's spatial
mapping fixed, and the benchmark counts the mappings its cost model evaluates.

    python benchmarks/mapper_search.py                      # einforge only
    python benchmarks/mapper_search.py --zigzag-python PY   # and ZigZag, run by that interpreter
    python benchmarks/mapper_search.py --setup-zigzag       # first make that environment (pip)
    python benchmarks/mapper_search.py --accelforge-python PY   # and AccelForge's mapper (FFM)

Prints both tools' evaluations per second, their ratio, and each tool's best latency, energy and
mapping side by side.
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
from mapper.nest import nest_problem, search_nests
from mapper.schedule import einsum_facts

M, K, N = 1024, 768, 768
HERE = Path(__file__).resolve().parent
ENV = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "einforge" / "zigzag-env"


def tpu_like() -> mapper.ArchSpec:
    """ZigZag's ``tpu_like.yaml`` in einforge's terms (its 32 x 32 MAC array, 2 MiB buffer with a
    2048-bit read and a 2048-bit write port, DRAM at 64 bits per cycle, clock 1 GHz)."""
    base = mapper.fusemax()
    arr = [a for a in base.arrays if a.is_2d][0]
    import dataclasses

    array = dataclasses.replace(arr, rows=32, cols=32, units=("mac",), einsum_kinds=("contraction",))
    return base.replace(
        name="tpu-like",
        arrays=(array,),
        buffer=mapper.Buffer(capacity_bytes=2 * 2**20, width_bits=2048, ports=2, bandwidth="geometry"),
        dram=mapper.DRAM(bandwidth_bytes_per_s=8e9),
        clock_hz=1e9,
    )


def ours(repeat: int) -> dict[str, object]:
    c = einsum.library.get("matmul")
    arch = tpu_like()
    f = einsum_facts(c)[0]
    prob = nest_problem(c, f, arch.arrays[0], arch, {"M": M, "K": K, "N": N})
    best_full = None
    t_full = []
    for _ in range(repeat):  # the whole space, no pruning (the Pareto set needs every point)
        t0 = time.perf_counter()
        r = search_nests(prob, objective="latency", pareto=True)
        t_full.append(time.perf_counter() - t0)
        best_full = r
    t0 = time.perf_counter()
    pruned = search_nests(prob, objective="latency")
    t_pruned = time.perf_counter() - t0
    assert best_full is not None
    seconds = min(t_full)
    nest, cost = pruned.best
    return {
        "evaluations": best_full.evaluated,
        "seconds": seconds,
        "evals_per_s": best_full.evaluated / seconds,
        "pruned_search": {
            "evaluated": pruned.evaluated,
            "pruned": pruned.pruned,
            "seconds": t_pruned,
            "certified": pruned.certified,
            "bound_cycles": pruned.bound,
        },
        "latency_cycles": cost.latency_cycles,
        "bound_by": cost.bound_by,
        "energy_pj": cost.energy_pj,
        "mapping": nest.describe(),
        "pareto_points": len(best_full.pareto),
    }


def setup_zigzag() -> Path:
    py = ENV / "bin" / "python"
    if not py.exists():
        print(f"making ZigZag's environment in {ENV} (pip install zigzag-dse six) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(ENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "zigzag-dse==3.9.1", "six"], check=True)
    return py


def zigzag(python: str) -> dict[str, object]:
    out = subprocess.run(
        [python, str(HERE / "peers" / "zigzag_gemm.py"), str(M), str(K), str(N)],
        capture_output=True,
        text=True,
        check=False,
        cwd=str(Path.home()),
    )
    if out.returncode:
        raise SystemExit(f"ZigZag failed:\n{out.stderr[-3000:]}")
    row: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    row["evals_per_s"] = float(row["evaluations"]) / float(row["seconds"])  # type: ignore[arg-type]
    return row


def accelforge(python: str) -> dict[str, object]:
    """AccelForge's mapper on the same GEMM and architecture, priced with einforge's numbers."""
    arch = tpu_like()
    arr = arch.arrays[0]
    buf = arch.buffer.costs(arch.word_bits)
    w = arch.word_bits
    prices = {
        "word_bits": w,
        "rows": arr.rows,
        "cols": arr.cols,
        "buffer_bits": arch.buffer.capacity_bytes * 8,
        "dram_pj_bit": arch.dram.pj_per_bit,
        "buffer_read_pj_bit": buf.read_pj_per_word / w,
        "buffer_write_pj_bit": buf.write_pj_per_word / w,
        "rf_read_pj_bit": arr.rf_read_pj / w,
        "rf_write_pj_bit": arr.rf_write_pj / w,
        "mac_pj": arch.energy.mac_pj,
    }
    out = subprocess.run(
        [python, str(HERE / "peers" / "accelforge_gemm.py"), str(M), str(K), str(N), json.dumps(prices)],
        capture_output=True,
        text=True,
        check=False,
        cwd=str(Path.home()),
    )
    if out.returncode:
        raise SystemExit(f"AccelForge failed:\n{out.stderr[-3000:]}")
    row: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--zigzag-python", help="the Python of an environment with zigzag-dse installed")
    ap.add_argument("--setup-zigzag", action="store_true", help=f"make that environment in {ENV}")
    ap.add_argument(
        "--accelforge-python",
        help="the Python of an environment with accelforge==1.0.467 (see benchmarks/accelforge.py)",
    )
    ap.add_argument("--repeat", type=int, default=3, help="einforge's runs; the fastest counts")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    a = ours(args.repeat)
    python = str(setup_zigzag()) if args.setup_zigzag else args.zigzag_python
    z = zigzag(python) if python else None
    af = accelforge(args.accelforge_python) if args.accelforge_python else None
    if args.json:
        print(json.dumps({"einforge": a, "zigzag": z, "accelforge": af}))
        return
    print(f"GEMM M={M} K={K} N={N} (16-bit) on a TPU-like 32x32 array, 2 MiB buffer, DRAM 64 bit/cycle")
    print(
        f"einforge: {a['evaluations']} loop nests (the whole space) in {a['seconds']:.3f} s "
        f"= {a['evals_per_s']:,.0f} evaluations/s on one core"
    )
    ps = a["pruned_search"]
    assert isinstance(ps, dict)
    print(
        f"          certified search: {ps['evaluated']} evaluated, {ps['pruned']} pruned by the bound, "
        f"{ps['seconds']:.3f} s"
    )
    if z is not None:
        print(
            f"ZigZag {z['zigzag']}: {z['evaluations']} temporal mappings (LOMA) in {z['seconds']:.2f} s "
            f"= {z['evals_per_s']:,.0f} evaluations/s"
        )
        print(f"ratio: einforge / ZigZag = {float(a['evals_per_s']) / float(z['evals_per_s']):,.0f}x")  # type: ignore[arg-type]
    print()
    print(f"{'':10s} {'latency (cycles)':>18s} {'energy (pJ)':>14s}  mapping")
    print(
        f"{'einforge':10s} {a['latency_cycles']:18,.0f} {a['energy_pj']:14.4g}  "
        f"{a['mapping']} ({a['bound_by']}-bound)"
    )
    if af is not None:
        ps_s = float(ps["seconds"])
        print(
            f"{'AccelForge':10s} {af['latency_cycles']:18,.0f} {af['energy_pj']:14.4g}  "
            f"(its mapper, FFM: {af['seconds']:.1f} s end to end; einforge's certified search "
            f"{ps_s:.2f} s, {float(af['seconds']) / ps_s:,.0f}x faster)"  # type: ignore[arg-type]
        )
    if z is not None:
        print(f"{'ZigZag':10s} {z['latency_cycles']:18,.0f} {z['energy_pj']:14.4g}  {z['mapping']}")
        print(
            "\nThe energies use each tool's own tables (einforge: the 45 nm Accelergy/CACTI figures of "
            "FuseMax's artifact; ZigZag: tpu_like.yaml's), so only their orders of magnitude compare. "
            "The latencies differ where the models do: ZigZag charges stalls when a memory port cannot "
            "keep up within a loop; einforge bounds the whole nest by compute, DRAM and buffer time, "
            "which overlap under double buffering. Both find the compute time of the same spatial mapping "
            "(the layer's N and K across the array) when nothing stalls: ZigZag's ideal is "
            f"{z.get('ideal_cycles', 0):,.0f} cycles. ZigZag's time is its whole API call (parsing, "
            "spatial mapping, LOMA)."
        )


if __name__ == "__main__":
    main()
