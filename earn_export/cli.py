"""`earn-export` command line: one sub-command per product step.

Each command module exposes ``register(subparsers)`` and is imported lazily, so ``--help`` stays fast and a
broken optional dependency breaks only its own command. A user error (:class:`earn_export.errors.UserError`,
``OSError``, ``ValueError``) prints as one line ``earn-export: error: <what> — <fix>``, exit 2 for bad usage
(a missing extra included) and 1 for a failed command; ``--debug`` adds the traceback. Other exceptions are bugs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import traceback
import warnings

from .errors import RunWarning, UsageError, UserError, cli_context

PROG = "earn-export"
DEBUG_ENV = "EARN_EXPORT_DEBUG"
DEBUG_HELP = f"show the Python traceback of errors (also: {DEBUG_ENV}=1)"

# command name -> module that defines register(subparsers) for it
COMMANDS = {
    "train": "earn_export.train.cli",
    "eval": "earn_export.train.cli",
    "convert": "earn_export.convert.cli",
    "export": "earn_export.export.cli",
    "check": "earn_export.export.cli",
    "inspect": "earn_export.runtime.cli",
    "recommend": "earn_export.runtime.cli",
    "demo": "earn_export.workflow",
    "bench": "earn_export.bench.cli",
    "build": "earn_export.tensorrt.cli",
    "serve": "earn_export.serve.cli",
    "query": "earn_export.serve.cli",
    "triton-repo": "earn_export.serve.cli",
    "batch": "earn_export.serve.cli",
    "analyze": "earn_export.analysis.cli",
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows every option's default (except None/False, which mean "off", and help that already states it), keeps
    descriptions as written."""

    def _get_help_string(self, action):
        text, default = action.help or "", action.default
        if "default" in text or not action.option_strings or default is None or default is False \
                or default is argparse.SUPPRESS or default == []:
            return text
        return text + " (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """argparse with the project's help format and one-line usage errors (raised, so ``main`` prints them)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        where = self.prog.removeprefix(PROG).strip()  # "earn-export recommend" -> "recommend"
        raise UsageError(f"{where + ': ' if where else ''}{message} — see `{self.prog} --help`")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    registered = set()
    for name, module in COMMANDS.items():
        if (only is not None and name != only) or module in registered:
            continue
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:  # module not written yet or optional dep missing
            if only is not None:
                raise UserError(f"{PROG} {name}: unavailable ({exc}) — reinstall with `make install`") from exc
            continue
        mod.register(sub)
        registered.add(module)
    for p in sub.choices.values():  # `earn-export CMD ... --debug` as well as `earn-export --debug CMD ...`
        if "--debug" not in p._option_string_actions:
            p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    return parser


def one_line(exc: BaseException) -> str:
    """``earn-export: error: <message>`` on one line (multi-line messages are joined with ' | ')."""
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"  # "[Errno 2] No such file..." -> "path: No such file..."
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"{PROG}: error: " + " | ".join(lines)


def _show_warning(message, category, filename, lineno, file=None, line=None, _default=warnings.showwarning):
    """:class:`RunWarning` (e.g. a degenerate run) as one stderr line; other warnings as Python shows them."""
    if issubclass(category, RunWarning):
        print(f"{PROG}: warning: {message}", file=sys.stderr)
    else:
        _default(message, category, filename, lineno, file, line)


def _terminate(signum, frame):
    # SIGTERM unwinds like Ctrl-C, so atomic outputs delete their temporary directories
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    only = first if first in COMMANDS else None
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    previous_handler = None
    try:
        parser = build_parser(only)
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help
            return int(exc.code or 0)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        debug = debug or getattr(args, "debug", False)
        if sys.stdout is sys.__stdout__:  # a real process, not a test calling main()
            previous_handler = signal.signal(signal.SIGTERM, _terminate)
        with cli_context(), warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return int(args.func(args) or 0)
    except (UserError, OSError, ValueError) as exc:
        if debug:
            traceback.print_exc()
        print(one_line(exc), file=sys.stderr)
        return getattr(exc, "exit_code", 1)
    except ImportError as exc:  # an optional extra missing where no command checked for it first
        from .cli_args import EXTRAS, missing_extra_message

        if (exc.name or "").split(".")[0] not in EXTRAS:
            raise
        if debug:
            traceback.print_exc()
        print(f"{PROG}: error: {missing_extra_message(exc.name, f'{PROG} {only or first}')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)


def run_script(func, argv=None) -> int:
    """Run a ``benchmarks/`` script's ``main(argv)`` with the command line's error handling: a user error is one
    ``earn-export: error:`` line and exit 2 (usage) or 1, not a traceback."""
    try:
        return int(func(argv) or 0)
    except (UserError, OSError, ValueError) as exc:
        print(one_line(exc), file=sys.stderr)
        return getattr(exc, "exit_code", 1)


if __name__ == "__main__":
    raise SystemExit(main())
