"""Errors of the mapper: bad architecture descriptions and schedules that cannot run."""

from __future__ import annotations

from einsum.errors import ConfigError, EinforgeError

__all__ = ["ArchError", "CapacityError", "ScheduleError"]


class ArchError(ConfigError):
    """An architecture description is invalid (a field, a value, a missing unit)."""


class ScheduleError(EinforgeError, ValueError):
    """A schedule cannot run the cascade on the architecture: no unit can execute an Einsum, a tile
    does not fit, a size does not divide, a hand-written schedule contradicts the cascade."""


class CapacityError(ScheduleError):
    """A fused group's tensors and tiles do not fit a level that must hold them at once."""
