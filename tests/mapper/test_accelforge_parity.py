"""einforge's hierarchy analysis against AccelForge's model on the cases of
``benchmarks/accelforge.py``: AccelForge's counts (recorded in accelforge_counts.json by that
benchmark, run beside AccelForge 1.0.467) equal einforge's, converted to AccelForge's convention,
on every level and tensor."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from mapper.timeloop import _Loader

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("bench_accelforge", ROOT / "benchmarks" / "accelforge.py")
assert spec is not None and spec.loader is not None
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
RECORDED = json.loads((Path(__file__).parent / "accelforge_counts.json").read_text())["cases"]


@pytest.mark.parametrize("case", bench.CASES, ids=[c["name"].split(",")[0] for c in bench.CASES])
def test_every_count_equals_accelforge_s(case: dict) -> None:
    ours, _seconds = bench._einforge(case)
    theirs = RECORDED[case["name"]]
    got = {f"{level}/{t}": [c["read"], c["write"]] for level, ts in ours.items() for t, c in ts.items()}
    assert got == theirs


def test_the_accelforge_files_describe_the_same_mapping() -> None:
    """The YAML handed to AccelForge: every loop's tile shapes multiply back to the sizes, and
    each tensor is stored at every level, outermost first."""
    case = bench.CASES[1]
    texts = bench._accelforge_yaml(case)
    mapping = yaml.load(texts["mapping"], Loader=_Loader)["mapping"]["nodes"]  # noqa: S506
    loops = [n for n in mapping if "rank_variable" in n]
    assert len(loops) == sum(len(m["temporal"]) + len(m["spatial"]) for m in case["mapping"])
    for d, n in case["dims"].items():
        shapes = [n] + [lp["tile_shape"] for lp in loops if lp["rank_variable"] == d]
        assert len(shapes) > 1 and shapes[-1] == 1
        assert all(a % b == 0 and a > b for a, b in zip(shapes, shapes[1:], strict=False))
    stored = [(n["component"], t) for n in mapping if "tensors" in n for t in n["tensors"]]
    for t in case["tensors"]:
        assert [lv for lv, tt in stored if tt == t] == [name for name, _f, _pj in case["levels"]]
