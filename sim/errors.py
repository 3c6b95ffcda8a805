"""Errors of the simulator."""

from __future__ import annotations

from einsum.errors import EinforgeError

__all__ = ["EvaluationError"]


class EvaluationError(EinforgeError, ValueError):
    """A workload does not fit the cascade or the schedule, a schedule cannot make progress, or a
    report fails its self-checks."""
