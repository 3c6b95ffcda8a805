"""Where the hand-written Numba kernels are cached: by the sources' digest, not the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
CALL = "from golden._fxkernels import round_shift; assert round_shift(7, 1, True) == 4; print('ok')"


def _run(checkout: Path, cache: Path) -> None:
    env = {**os.environ, "EINFORGE_CACHE": str(cache), "PYTHONPATH": str(checkout)}
    out = subprocess.run([sys.executable, "-c", CALL], env=env, cwd=checkout, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_two_checkouts_of_the_same_sources_share_the_compiled_kernels(tmp_path: Path) -> None:
    """A fresh clone compiled the hand-written kernels again (their cache sat in the checkout's
    ``__pycache__``, about a minute of the first test run). They are cached in
    ``$EINFORGE_CACHE/numba/<digest of golden's sources>``: a second checkout of the same sources
    at another path finds them there and writes nothing beside its own sources; a change to the
    sources gets a folder of its own."""
    cache = tmp_path / "cache"
    first, second = tmp_path / "a", tmp_path / "b"
    for c in (first, second):
        shutil.copytree(ROOT / "golden", c / "golden", ignore=shutil.ignore_patterns("__pycache__"))
    _run(first, cache)
    (folder,) = (cache / "numba").iterdir()
    entries = sorted(p.name for p in folder.iterdir())
    assert any(n.startswith("_fxkernels.round_shift") and n.endswith(".nbi") for n in entries)
    stamp = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    _run(second, cache)
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamp  # loaded, not rebuilt
    assert not list((second / "golden").glob("__pycache__/*.nb*"))
    (second / "golden" / "_fxkernels.py").write_text((second / "golden" / "_fxkernels.py").read_text() + "\n")
    _run(second, cache)
    assert len(list((cache / "numba").iterdir())) == 2


def test_stale_folders_of_other_sources_are_pruned(tmp_path: Path) -> None:
    """Each version of golden's sources leaves a folder of about 2 MB. Those of other versions
    unused for 30 days, or beyond the 8 most recently used, are removed; the current one, and
    anything that is not a digest folder, stay."""
    import time

    from golden._kernel_cache import prune

    root = tmp_path / "numba"
    now = time.time()
    for i in range(12):
        d = root / f"{i:016x}"
        d.mkdir(parents=True)
        f = d / "k.nbi"
        f.write_text("x")
        age = (40 if i == 0 else i) * 86400  # folder 0: 40 days old; the others 1 to 11 days
        os.utime(f, (now - age, now - age))
    (root / "notes").mkdir()
    current = f"{5:016x}"
    gone = prune(root, current)
    left = sorted(p.name for p in root.iterdir())
    # kept: the current one, the 8 most recent of the others (1, 2, 3, 4, 6, 7, 8, 9 days), "notes"
    assert sorted(p.name for p in gone) == [f"{i:016x}" for i in (0, 10, 11)]
    assert left == sorted([*(f"{i:016x}" for i in (1, 2, 3, 4, 5, 6, 7, 8, 9)), "notes"])
    assert prune(root / "missing", current) == []
