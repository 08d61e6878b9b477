"""One process-wide record of the TensorRT plugin libraries this process put into TensorRT's plugin registry:
``loadLibrary``, and deserialising a plan that embeds a library, fail when its creator is already registered
(rules: docs/tensorrt.md, "Plugin registration"). UNVERIFIED against TensorRT: tested with a fake registry
(tests/test_plugin_registration.py)."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass

from ..ops import libraries

_LOCK = threading.RLock()


@dataclass
class Entry:
    """How a creator got into the registry: ``loaded`` (load_library here, ``handle`` kept), ``embedded`` (a plan
    deserialised here carried it) or ``found`` (already there: the application or another library put it there)."""

    key: tuple[str, str, str]
    path: str
    how: str
    handle: object = None


_RECORD: dict[tuple[str, str, str], Entry] = {}


def reset() -> None:
    """Forget everything (tests: a fresh registry stands for a fresh process)."""
    with _LOCK:
        _RECORD.clear()


def record() -> dict[tuple[str, str, str], Entry]:
    """A copy of the record: creator key (name, version, namespace) -> Entry."""
    with _LOCK:
        return dict(_RECORD)


def registered(registry, key) -> bool:
    """Whether ``registry`` holds a creator of this (name, version, namespace): TensorRT 10+ ``get_creator``,
    older ``get_plugin_creator``."""
    get = getattr(registry, "get_creator", None) or getattr(registry, "get_plugin_creator")
    return get(*key) is not None


def ensure(registry, path, info: dict | None = None) -> tuple[Entry, bool]:
    """The creator of the library at ``path`` in ``registry``, loaded now if absent, else left as it is: (entry,
    whether this call loaded the library)."""
    info = info if info is not None else libraries.trt_plugin_info(path)
    key = (str(info.get("name")), str(info.get("version")), str(info.get("namespace") or ""))
    with _LOCK:
        if registered(registry, key):
            entry = _RECORD.get(key)
            if entry is None:
                entry = _RECORD[key] = Entry(key, str(path), "found")
            return entry, False
        _RECORD.pop(key, None)  # stale: the registry no longer has it
        handle = registry.load_library(str(path))
        if handle is None:
            raise RuntimeError(f"TensorRT could not load the plugin library {path} (creator {key[0]} v{key[1]} in "
                               f"namespace {key[2]!r} was absent, so: a CUDA/TensorRT version mismatch or a missing "
                               f"dependency of the library; see the TensorRT log above)")
        entry = _RECORD[key] = Entry(key, str(path), "loaded", handle)
        return entry, True


@contextmanager
def loaded_for_build(registry, paths, infos=None):
    """Creators of ``paths`` registered for the parser and the builder; what this call loaded is deregistered at the
    end (also on failure), what was there before stays."""
    entries, mine = [], []
    try:
        for i, p in enumerate(paths):
            entry, loaded_now = ensure(registry, p, infos[i] if infos else None)
            entries.append(entry)
            if loaded_now:
                mine.append(entry)
        yield entries
    finally:
        with _LOCK:
            for entry in reversed(mine):
                if _RECORD.get(entry.key) is entry:  # still the one this call loaded
                    registry.deregister_library(entry.handle)
                    del _RECORD[entry.key]


def note_embedded(keys, plan_path) -> None:
    """After a plan that embeds libraries was deserialised: TensorRT registered their creators."""
    with _LOCK:
        for key in keys:
            _RECORD[key] = Entry(key, str(plan_path), "embedded")

