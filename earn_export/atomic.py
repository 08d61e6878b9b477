"""Atomic outputs: ``train``, ``export`` and ``build`` either complete their output or leave the previous one.

A command writes into a hidden sibling (``.NAME.tmp-PID-XXXX``) swapped in by one ``renameat2(RENAME_EXCHANGE)``
(two renames off Linux); failures and Ctrl-C/SIGTERM delete it, the next run deletes a killed run's leftovers.
:func:`staged_files` does the same for files added to an existing directory (``build``), the index file last. Only
an empty directory or one of the same ``kind`` is replaced, so ``--out .`` never deletes a user's folder.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import inspect
import os
import shutil
import tempfile
from pathlib import Path

from .errors import UsageError

# files that mark a directory as a previous output of this kind (any one is enough)
MARKERS = {
    "engine": ("manifest.json", "prefill.onnx", "decode.onnx"),
    "checkpoint": ("earn.json", "config.json", "train_log.json", "model.safetensors"),
}


class OutputDirError(UsageError):
    """The output path cannot be (re)written safely; the message says why and what to pass instead."""


def check_replaceable(path, kind: str, flag: str = "--out") -> None:
    """Refuse, before any work, an output path that exists and is not an empty dir or an output of ``kind``."""
    path = Path(path)
    if not path.exists():
        return
    if not path.is_dir():
        raise OutputDirError(f"{path} exists and is a file — pass a directory path to {flag}")
    names = {p.name for p in path.iterdir()}
    if names and not names & set(MARKERS[kind]):
        raise OutputDirError(f"{path} exists and does not look like an {kind} directory (none of "
                             f"{', '.join(MARKERS[kind])}); refusing to replace its {len(names)} entries — pass a "
                             f"new or empty directory to {flag}, or remove it first")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(final: Path) -> None:
    """Delete temporary siblings of ``final`` left by killed runs (their process no longer exists)."""
    for p in final.parent.glob(f".{final.name}.tmp-*"):
        try:
            pid = int(p.name[len(f".{final.name}.tmp-"):].split("-")[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(p, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where that is not available."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


@contextlib.contextmanager
def atomic_output_dir(path, kind: str):
    """Yield a temporary sibling of ``path`` to write into; on success it becomes ``path`` (see the module doc)."""
    final = Path(path)
    check_replaceable(final, kind)
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=final.parent))
    os.chmod(tmp, final.stat().st_mode & 0o7777 if final.exists() else 0o777 & ~_umask())  # mkdtemp makes 0700
    try:
        yield tmp
        if not final.exists():
            os.rename(tmp, final)
        elif _exchange(tmp, final):
            shutil.rmtree(tmp)  # now holds the previous output
        else:
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=final.parent))
            os.rename(final, old / "old")
            os.rename(tmp, final)
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _bound_decorator(run):
    """A decorator that calls ``run(fn, bound)``; ``bound`` is the call's ``inspect.BoundArguments`` (``run`` may
    edit it before calling ``fn``)."""

    def decorate(fn):
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            return run(fn, sig.bind(*args, **kwargs))

        return wrapper

    return decorate


def atomic_output(arg: str, kind: str, protect: tuple[str, ...] = ()):
    """Decorator: the function's ``arg`` (an output directory) is written atomically with
    :func:`atomic_output_dir`; a returned path equal to the temporary directory is returned as the final one.
    ``protect``: arguments naming input directories that the output must not replace (nor lie inside)."""

    def run(fn, bound):
        final = Path(bound.arguments[arg])
        for name in protect:
            src = bound.arguments.get(name)
            if isinstance(src, (str, os.PathLike)) and final.resolve().is_relative_to(Path(src).resolve()):
                raise OutputDirError(f"the output {final} is the input {src} or inside it, and writing it "
                                     "would replace the input — choose another output directory")
        with atomic_output_dir(final, kind) as tmp:
            bound.arguments[arg] = tmp
            result = fn(*bound.args, **bound.kwargs)
        return final if isinstance(result, (str, os.PathLike)) and Path(result) == tmp else result

    return _bound_decorator(run)


def staged_output(arg: str, last: tuple[str, ...] = ()):
    """Decorator: the function receives ``staging=`` (see :func:`staged_files` over its ``arg`` directory) and
    writes its new files there; they are moved into ``arg`` when it returns."""

    def run(fn, bound):
        if not Path(bound.arguments[arg]).is_dir():  # the function reports the missing directory
            return fn(*bound.args, **bound.kwargs)
        with staged_files(bound.arguments[arg], last=last) as stage:
            bound.arguments["staging"] = stage
            return fn(*bound.args, **bound.kwargs)

    return _bound_decorator(run)


@contextlib.contextmanager
def staged_files(directory, last: tuple[str, ...] = ()):
    """Yield a hidden staging folder inside ``directory``; on success every file in it is moved into
    ``directory`` (replacing files of the same name), the names in ``last`` after all others and only after their
    old versions were deleted first, so an interrupted move never pairs an old index with new files."""
    directory = Path(directory)
    _remove_stale(directory / "staged")
    stage = Path(tempfile.mkdtemp(prefix=f".staged.tmp-{os.getpid()}-", dir=directory))
    try:
        yield stage
        for name in last:
            (directory / name).unlink(missing_ok=True)
        names = sorted(p.name for p in stage.iterdir())
        for name in [n for n in names if n not in last] + [n for n in last if n in names]:
            os.replace(stage / name, directory / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
