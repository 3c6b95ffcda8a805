"""Errors of the golden models."""

from __future__ import annotations

from einsum.errors import EinforgeError

__all__ = ["EvaluationError"]


class EvaluationError(EinforgeError, ValueError):
    """The arrays given to a golden model do not fit the cascade, or a read falls outside a tensor."""
