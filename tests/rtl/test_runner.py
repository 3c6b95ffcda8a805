"""rtl.runner's build cache: builds made for an environment that is gone are removed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from rtl import runner


def test_builds_of_a_deleted_environment_are_pruned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The build key holds ``sys.prefix``, so a build made for a virtual environment that was
    deleted (a fresh clone's temporary one) can never be reused: the cache removes it. Builds of
    an environment that exists, and builds with no record of theirs, stay."""
    monkeypatch.setenv("EINFORGE_CACHE", str(tmp_path))
    root = runner.cache_root()
    gone_env = tmp_path / "deleted-venv"  # never created
    made = {}
    for name, prefix in (("live", sys.prefix), ("stale", str(gone_env)), ("unknown", None)):
        d = root / f"attention-{name}"
        (d / "verilator").mkdir(parents=True)
        (d / "verilator" / "Vtop").write_bytes(b"\0" * 16)
        if prefix is not None:
            (d / "environment").write_text(prefix)
        made[name] = d
    assert runner.prune_stale_builds(force=True) == [made["stale"]]
    assert not made["stale"].exists() and made["live"].exists() and made["unknown"].exists()
    assert runner.prune_stale_builds() == []  # once per cache and process, unless forced
    (made["live"] / "environment").write_text(str(gone_env))
    assert runner.prune_stale_builds() == []
    assert runner.prune_stale_builds(force=True) == [made["live"]]
