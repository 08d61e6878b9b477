"""`earn-export` command line: one sub-command per product step.

Each sub-command lives in the module that owns the work and exposes ``register(subparsers)``, which adds
its parser and sets ``func``. Modules are imported lazily so ``earn-export --help`` stays fast and a broken
optional dependency only breaks its own command.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command name -> module that defines register(subparsers) for it
COMMANDS = {
    "train": "earn_export.train.cli",
    "eval": "earn_export.train.cli",
    "convert": "earn_export.convert.cli",
    "export": "earn_export.export.cli",
    "check": "earn_export.export.cli",
    "inspect": "earn_export.runtime.cli",
    "recommend": "earn_export.runtime.cli",
    "demo": "earn_export.runtime.cli",
    "bench": "earn_export.bench.cli",
    "build": "earn_export.build.cli",
    "serve": "earn_export.serve.cli",
    "query": "earn_export.serve.cli",
    "loadtest": "earn_export.serve.cli",
    "triton-repo": "earn_export.serve.cli",
    "batch": "earn_export.serve.cli",
    "bench-serve": "earn_export.bench.serving",
    "analyze": "earn_export.analysis.cli",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="earn-export", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    registered = set()
    for name, module in COMMANDS.items():
        if only is not None and name != only:
            continue
        if module in registered:
            continue
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:  # module not written yet or optional dep missing
            if only is not None:
                raise SystemExit(f"earn-export {name}: unavailable ({exc})") from exc
            continue
        mod.register(sub)
        registered.add(module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    only = argv[0] if argv and argv[0] in COMMANDS else None
    parser = build_parser(only)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
