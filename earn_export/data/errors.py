"""One exception type for every data problem; messages name the file, the line and the fix, because the usual
cause is a user's own data file."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError


class DataError(ValueError, UserError):
    """Bad or inconsistent input data (files, identifiers, histories, prompts)."""


def read_json(path, fix: str):
    """Parse a JSON file; a syntax error becomes a DataError naming ``path:line`` and ``fix``."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg}); {fix}") from None
