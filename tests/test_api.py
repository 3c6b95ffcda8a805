"""Each package's ``__all__`` matches docs/api.md, and everything exported has a docstring."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from types import ModuleType

import pytest

import einforge
import einsum
import golden
import mapper
import rtl
import sim
from einsum import builder

DOC = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text(encoding="utf-8")


def _documented(module: str) -> list[str]:
    section = re.search(rf"^## `{re.escape(module)}`\n(.*?)(?=^## |\Z)", DOC, re.S | re.M)
    assert section, f"docs/api.md has no section for {module}"
    return re.findall(r"^- `([A-Za-z_]\w*)`", section.group(1), re.M)


@pytest.mark.parametrize(
    "module", [einsum, builder, golden, einforge, mapper, sim, rtl], ids=lambda m: m.__name__
)
def test_all_matches_the_docs(module: ModuleType) -> None:
    assert sorted(module.__all__) == sorted(_documented(module.__name__))
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"{module.__name__}.{name} has no docstring"
