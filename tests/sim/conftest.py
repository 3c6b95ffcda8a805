"""The full FuseMax sweep (5 configurations x 4 models x 6 lengths), run once per test session."""

import pytest

import sim


@pytest.fixture(scope="session")
def sweep() -> dict[tuple[str, str, int], sim.Report]:
    """``(configuration, model, length) -> Report`` for the whole sweep of ``sim.compare()``."""
    return {(r["config"], r["model"], r["seq"]): r["report"] for r in sim.compare()}
