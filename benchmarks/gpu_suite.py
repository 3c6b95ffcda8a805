"""Every GPU check of einforge in one prepared run: the ``gpu`` tests, then golden.attention's CUDA
kernel against torch SDPA over a grid of shapes, then every compiled variant against torch eager,
FlexAttention and SDPA on the same card. Prints a table per part and the issue's targets, and
writes one JSON file with the card's name. Built to finish in under 8 minutes on an H100/H200:
each part runs in its own process under a share of ``--budget`` seconds, and a part that runs out
of time is recorded as such (the others still run).

    python benchmarks/gpu_suite.py [--out gpu_suite.json] [--budget 480] [--dry-run]

On the team's GPU machines (torch with CUDA, numba-cuda and scipy, no network) run it from the
repository root without installing: ``PYTHONPATH=. python3 benchmarks/gpu_suite.py``.
``--dry-run`` prints the parts and their commands and exits (no GPU needed).

Targets (issue "the GPU path"): the compiled softmax attention at least 0.5x torch SDPA (fp32) at
P = M = 4096, d = 64; every variant at least 1.0x torch eager.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: golden_gpu.py shapes: B, H, P = M, d, causal. P = 4096, d = 64 is the target point.
ATTENTION_SHAPES = (
    (1, 8, 512, 64, False),
    (1, 8, 2048, 64, False),
    (1, 8, 4096, 64, False),
    (1, 8, 4096, 64, True),
    (1, 8, 4096, 128, False),
    (4, 32, 2048, 64, False),
    (1, 8, 16384, 64, False),
)


def parts(python: str) -> list[dict[str, Any]]:
    """The suite: a name, a command, its share of the budget, how its output is read."""
    out: list[dict[str, Any]] = [
        {
            "name": "gpu tests",
            "cmd": [python, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "tests"],
            "share": 0.25,
            "parse": "pytest",
        }
    ]
    for b, h, p, d, causal in ATTENTION_SHAPES:
        cmd = [
            python,
            str(HERE / "golden_gpu.py"),
            "--json",
            "--repeat",
            "10",
            "--shape",
            f"{b},{h},{p},{p},{d},{d}",
        ]
        if causal:
            cmd.append("--causal")
        out.append(
            {
                "name": f"attention B{b} H{h} P=M={p} d{d}{' causal' if causal else ''}",
                "cmd": cmd,
                "share": 0.05,
                "parse": "json",
                "shape": [b, h, p, d, causal],
            }
        )
    out.append(
        {
            "name": "variants P=M=4096 d64",
            "cmd": [
                python,
                str(HERE / "variants.py"),
                "--device",
                "cuda",
                "--json",
                "--seq",
                "4096",
                "--repeat",
                "5",
            ],
            "share": 0.4,
            "parse": "json",
        }
    )
    return out


def run_part(part: dict[str, Any], seconds: float) -> dict[str, Any]:
    t0 = time.monotonic()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    try:
        proc = subprocess.run(
            part["cmd"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=max(10.0, seconds)
        )
    except subprocess.TimeoutExpired:
        return {
            "name": part["name"],
            "status": f"timed out after {seconds:.0f} s",
            "wall_s": time.monotonic() - t0,
        }
    res: dict[str, Any] = {
        "name": part["name"],
        "returncode": proc.returncode,
        "wall_s": time.monotonic() - t0,
    }
    if part["parse"] == "pytest":
        res["summary"] = (proc.stdout.strip().splitlines() or [""])[-1]
        res["status"] = "ok" if proc.returncode == 0 else "failed"
    else:
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode == 0 and lines:
            res["result"] = json.loads(lines[-1])
            res["status"] = "ok"
        else:
            res["status"] = "failed"
    if res["status"] == "failed":
        res["stderr_tail"] = proc.stderr[-2000:]
    return res


def targets(results: list[dict[str, Any]]) -> list[str]:
    """The issue's two targets, as lines that say met or not."""
    lines = []
    point = next((r for r in results if r["name"] == "attention B1 H8 P=M=4096 d64"), None)
    if point and point.get("status") == "ok":
        ratio = point["result"]["ratio_vs_sdpa"]
        verdict = "met" if ratio >= 0.5 else "NOT met"
        lines.append(f"softmax attention at 4K, d 64: {ratio:.2f}x SDPA (target >= 0.5): {verdict}")
    else:
        lines.append("softmax attention at 4K, d 64: not measured")
    var = next((r for r in results if r["name"].startswith("variants")), None)
    if var and var.get("status") == "ok":
        slow = [
            f"{row['variant']} {row['eager_ms'] / row['ours_ms']:.2f}x"
            for row in var["result"]["rows"]
            if row["eager_ms"] / row["ours_ms"] < 1.0
        ]
        lines.append(
            "every variant >= 1.0x eager: " + ("met" if not slow else "NOT met (" + ", ".join(slow) + ")")
        )
    else:
        lines.append("every variant >= 1.0x eager: not measured")
    return lines


def card() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown (nvidia-smi did not answer)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="gpu_suite.json", help="the JSON file to write")
    ap.add_argument("--budget", type=float, default=480.0, help="seconds for the whole suite (default 480)")
    ap.add_argument("--dry-run", action="store_true", help="print the parts and exit")
    args = ap.parse_args()
    suite = parts(sys.executable)
    if args.dry_run:
        for p in suite:
            print(f"{p['name']:40s} {p['share'] * args.budget:5.0f} s  {' '.join(p['cmd'][1:])}")
        return 0
    try:
        from numba import cuda
    except ImportError:
        print("benchmarks/gpu_suite.py needs numba (pip install -e '.[gpu]')", file=sys.stderr)
        return 2
    if not cuda.is_available():
        print(
            "benchmarks/gpu_suite.py needs a CUDA device (numba.cuda.is_available() is False)",
            file=sys.stderr,
        )
        return 2
    name = card()
    print(f"card: {name}", flush=True)
    start = time.monotonic()
    results = []
    for p in suite:
        left = args.budget - (time.monotonic() - start)
        if left <= 10:
            results.append({"name": p["name"], "status": "skipped: the budget ran out"})
            continue
        r = run_part(p, min(left, p["share"] * args.budget * 2))
        results.append(r)
        shown = r.get("summary") or (
            f"{r['result']['ratio_vs_sdpa']:.2f}x SDPA, {r['result']['ours_tflops']:.1f} TFLOP/s"
            if r.get("status") == "ok" and "ratio_vs_sdpa" in r.get("result", {})
            else ""
        )
        print(f"{p['name']:40s} {r['status']:10s} {r.get('wall_s', 0):6.1f} s  {shown}", flush=True)
    var = next((r for r in results if r["name"].startswith("variants") and r.get("status") == "ok"), None)
    if var:
        print("\nvariant                     ours ms   eager x   flex x   sdpa x")
        for row in var["result"]["rows"]:
            flex = f"{row['flex_ms'] / row['ours_ms']:7.2f}" if row.get("flex_ms") else "      -"
            sdpa = f"{row['sdpa_ms'] / row['ours_ms']:7.2f}" if row.get("sdpa_ms") else "      -"
            eager = row["eager_ms"] / row["ours_ms"]
            print(f"{row['variant']:26s} {row['ours_ms']:8.2f} {eager:8.2f} {flex}  {sdpa}")
    print()
    lines = targets(results)
    for line in lines:
        print(line)
    total = time.monotonic() - start
    Path(args.out).write_text(
        json.dumps({"card": name, "wall_s": total, "targets": lines, "parts": results}, indent=1) + "\n"
    )
    print(f"\n{total:.0f} s; wrote {args.out}")
    return 0 if all(r.get("status") == "ok" for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
