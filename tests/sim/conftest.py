"""The full FuseMax sweep (5 configurations x 4 models x 6 lengths), run once per test session and
accounting."""

import pytest

import sim


def _sweep(accounting: str) -> dict[tuple[str, str, int], sim.Report]:
    return {(r["config"], r["model"], r["seq"]): r["report"] for r in sim.compare(accounting=accounting)}


@pytest.fixture(scope="session")
def sweep() -> dict[tuple[str, str, int], sim.Report]:
    """``(configuration, model, length) -> Report`` for ``sim.compare()``, physical accounting."""
    return _sweep("physical")


@pytest.fixture(scope="session")
def artifact_sweep() -> dict[tuple[str, str, int], sim.Report]:
    """The same sweep in the FuseMax artifact's accounting."""
    return _sweep("fusemax-artifact")
