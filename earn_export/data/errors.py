"""One exception type for every data problem, so callers (CLI, training) can report it in one place.

Messages name the file, the line and the fix, because the usual cause is a user's own data file.
"""

from __future__ import annotations


class DataError(ValueError):
    """Bad or inconsistent input data (files, identifiers, histories, prompts)."""


def where(path, line: int | None = None) -> str:
    """``path:line`` for error messages."""
    return f"{path}:{line}" if line is not None else str(path)
