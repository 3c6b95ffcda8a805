"""Shared test settings.

Hypothesis runs under one fixed profile everywhere (CI and local): 200 examples per property,
derandomised so that a run is reproducible, no deadline (the 2-core CI machine is slow).
"""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("ci")


def pytest_addoption(parser):  # type: ignore[no-untyped-def]
    parser.addoption("--run-slow", action="store_true", help="also run the tests marked slow")


def pytest_collection_modifyitems(config, items):  # type: ignore[no-untyped-def]
    """Tests marked ``slow`` (minutes: rebuilding CACTI) run with ``--run-slow`` or ``-m slow``."""
    import pytest

    if config.getoption("--run-slow") or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
