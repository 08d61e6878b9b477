"""The model package's error types, in a leaf module so that the config reader and the architecture table can
both raise them without importing each other."""

from __future__ import annotations

from ..errors import UserError


class ModelConfigError(ValueError, UserError):
    """A checkpoint or configuration that earn-export cannot use, with the reason and the fix."""


class UnsupportedArchitectureError(ModelConfigError):
    pass
