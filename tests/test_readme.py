"""The README's Python example runs and says what it claims."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert blocks
    scope: dict[str, object] = {}
    exec(compile(blocks[0], str(README), "exec"), scope)
    import einsum

    assert einsum.passes(scope["c"], "M") == 3  # type: ignore[arg-type]
    assert [str(n) for n in einsum.op_counts(scope["c"])][:1] == ["mac=E*M*P"]  # type: ignore[arg-type]
    assert scope["av"].shape == (128, 64)  # type: ignore[attr-defined]
