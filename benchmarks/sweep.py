"""A 1,000-point design-space sweep on this machine: the local process pool against a 2-worker Dask
LocalCluster on loopback, with identical results, and one process as the peer.

The grid: FuseMax's array dimension (5 values) x buffer capacity (5) x DRAM bandwidth (20) x two
cascades (the 1-pass and the 3-pass attention), BERT at 4K tokens with batch 1, every point's
schedule searched by the mapper and simulated.

    python benchmarks/sweep.py [--points-serial 100] [--no-dask]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from sim import sweep as sw

GIB = 2**30
SPEC = {
    "name": "bench-1000",
    "arch": "fusemax",
    "params": {
        "array_dim": [32, 64, 128, 256, 512],
        "buffer_bytes": ["1M", "2M", "4M", "16M", "64M"],
        "bandwidth_bytes_per_s": [
            GIB * g
            for g in (
                25,
                50,
                75,
                100,
                125,
                150,
                175,
                200,
                250,
                300,
                350,
                400,
                500,
                600,
                700,
                800,
                1000,
                1200,
                1600,
                2000,
            )
        ],
    },
    "workloads": [{"model": "BERT", "seq": "4K", "batch": 1}],
    "cascades": ["attention_1pass", "attention_3pass"],
    "options": {"fusion": "fused"},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points-serial", type=int, default=100, help="points timed in one process (the peer)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-dask", action="store_true")
    args = ap.parse_args()
    n = len(sw.points(SPEC))
    tmp = Path(tempfile.mkdtemp())

    # the peer: one process, on the first points
    serial_spec = {
        **SPEC,
        "params": {**SPEC["params"], "bandwidth_bytes_per_s": SPEC["params"]["bandwidth_bytes_per_s"][:2]},
    }
    m = len(sw.points(serial_spec))
    t0 = time.perf_counter()
    sw.sweep(serial_spec, workers=1)
    serial = (time.perf_counter() - t0) / m

    t0 = time.perf_counter()
    local = sw.sweep(SPEC, out=tmp / "local", workers=args.workers, progress=sw.progress_bar)
    t_local = time.perf_counter() - t0
    errors = sum(1 for r in local.rows if r.get("error"))
    print(
        f"{n} points, local pool of {args.workers} processes: {t_local:.1f} s "
        f"({n / t_local:.1f} points/s; {errors} points refused with a typed error)"
    )
    print(
        f"peer: one process, {m} points at {serial * 1e3:.0f} ms each -> {serial * n:.1f} s for {n} "
        f"({serial * n / t_local:.2f}x slower than the pool)"
    )
    if not args.no_dask:
        import distributed

        t0 = time.perf_counter()
        with (
            distributed.LocalCluster(
                n_workers=args.workers, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            t_start = time.perf_counter() - t0
            t1 = time.perf_counter()
            dask = sw.sweep(SPEC, out=tmp / "dask", executor=client, progress=sw.progress_bar)
            t_dask = time.perf_counter() - t1
        same = (tmp / "dask" / "results.csv").read_bytes() == (tmp / "local" / "results.csv").read_bytes()
        print(
            f"{n} points, Dask LocalCluster of {args.workers} workers on 127.0.0.1: {t_dask:.1f} s "
            f"(+{t_start:.1f} s to start the cluster); results identical to the local pool: {same}"
        )
        assert same and dask.rows == local.rows
    front = sw.pareto(local.rows, ("latency_s", "energy_pj"))
    print(
        f"Pareto front of latency and energy: {len(front)} of {n - errors} points; table in {tmp / 'local'}"
    )


if __name__ == "__main__":
    main()
