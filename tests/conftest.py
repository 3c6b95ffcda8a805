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
