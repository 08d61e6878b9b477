"""The common base of the project's error types, and the wording of fixes for library vs command-line callers.

Every error a user can fix derives from :class:`UserError` (beside its historical base, so ``except ValueError``
keeps working), which the CLI prints as one line. :func:`hint` words the fix for the caller: API names under
Python, flags under ``earn-export`` (:data:`from_cli`). Standard library only.
"""

from __future__ import annotations

import contextlib

#: True while ``earn-export`` runs a command (set by :func:`cli_context`); read by :func:`hint`.
from_cli = False


class UserError(Exception):
    """A problem in the user's input or environment that the user can fix; the message names it and the fix.
    ``exit_code``: 1 the command failed, 2 bad usage."""

    exit_code = 1


class UsageError(UserError, ValueError):
    """Bad command-line arguments or a bad combination of them (e.g. ``--top-k`` above ``--beam``): exit 2."""

    exit_code = 2


class RunWarning(UserWarning):
    """A run that works but is probably not what the user wants (e.g. a dataset of a few examples); the CLI prints
    it as one ``earn-export: warning:`` line."""


def check_choice(name: str, value, choices, error=ValueError) -> None:
    """One wording for a value outside its choices: ``NAME must be 'a', 'b' or 'c', got 'x'``."""
    if value not in choices:
        *head, last = [repr(c) for c in choices]
        raise error(f"{name} must be {', '.join(head) + ' or ' if head else ''}{last}, got {value!r}")


def hint(api: str, cli: str | None = None) -> str:
    """The fix as the caller can apply it: ``cli`` (naming flags; "" when the CLI has no such option) under
    ``earn-export``, else ``api``."""
    return cli if (from_cli and cli is not None) else api


@contextlib.contextmanager
def cli_context():
    """Mark the enclosed code as running under the command line (see :func:`hint`)."""
    global from_cli
    previous, from_cli = from_cli, True
    try:
        yield
    finally:
        from_cli = previous
