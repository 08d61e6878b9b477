"""The exporter's error type, in a module of its own so every exporter module (and the attention option) can
raise it without importing the exporter."""

from ..errors import UserError


class ExportError(RuntimeError, UserError):
    """A checkpoint or an option combination the exporter cannot turn into an engine; the message says why."""
