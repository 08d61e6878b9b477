"""Loading a built TensorRT plan in this process, with the plugin checks (a test/verification helper, not package
API: the product hands plans to Triton, which loads them itself). UNVERIFIED against TensorRT: run against the fake
``tensorrt`` of tests/fake_tensorrt.py (tests/test_plugin_registration.py, tests/test_plugin_build.py).

A plan that does not embed its plugin needs the library again; a missing one or another op version is refused with
the fix before TensorRT sees the plan. A plan that embeds it needs its creator absent from the registry (TensorRT
refuses a second registration); the process-wide record is ``earn_export.tensorrt.plugin_registry``.
"""

from __future__ import annotations

import json
from pathlib import Path

from earn_export.engine.manifest import EngineDirError
from earn_export.ops import libraries
from earn_export.tensorrt import plugin_registry


def check_plan_plugins(engine_meta: dict, plugins=None, info_reader=None) -> list[Path]:
    """Libraries to load before deserialising plans described by ``engine_meta``, or EngineDirError: none for an
    embedded plugin, else ``plugins``, the one recorded at build, or ``plugins/build``'s, at the plan's op version.
    ``info_reader(path) -> earnPluginInfo dict`` (tests substitute it)."""
    read = info_reader or libraries.trt_plugin_info
    entries = engine_meta.get("plugins") or []
    needed = [e for e in entries if not e.get("serialized_into_plan")]
    if not needed:
        return []
    given = [Path(p) for p in plugins] if plugins else []
    out = []
    for entry in needed:
        what = (f"the plans were built with the TensorRT plugin {entry.get('plugin_name')} "
                f"v{entry.get('plugin_version')} ({entry.get('library')}, not embedded in the plan)")
        candidates = given or [p for p in (Path(entry["path"]) if entry.get("path") else None,
                                           libraries.trt_plugin_library()) if p is not None]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise EngineDirError(f"{what}, but that library is missing (looked at {[str(c) for c in candidates]}): "
                                 f"pass it (--plugins / plugins=[...]) or rebuild the plans with `earn-export build`")
        info = read(path)
        if (info.get("name"), info.get("version"), info.get("namespace")) != (
                entry.get("plugin_name"), entry.get("plugin_version"), entry.get("plugin_namespace")):
            raise EngineDirError(f"{what}, but {path} implements {info.get('name')} v{info.get('version')} "
                                 f"(namespace {info.get('namespace')!r}): use the library the plans were built with, "
                                 f"or rebuild the plans with this one (`earn-export build --plugins {path}`)")
        out.append(path)
    return out


def check_embedded_absent(registry, entries: list[dict], graph: str, engine_dir) -> list[tuple[str, str, str]]:
    """Before deserialising ``graph``'s plan whose engine.json ``entries`` say it embeds a library: its creator must
    not be registered (TensorRT refuses to register it twice). Returns the keys the plan will register."""
    keys = []
    for e in entries:
        if graph not in (e.get("embedded_in") or []):
            continue
        key = (str(e.get("plugin_name")), str(e.get("plugin_version")), str(e.get("plugin_namespace") or ""))
        if plugin_registry.registered(registry, key):
            how = plugin_registry.record().get(key)
            by = {"loaded": f"loaded from {how.path}", "embedded": f"carried by a plan from {how.path}",
                  "found": "registered by the application"}.get(how.how if how else "found")
            raise EngineDirError(
                f"{engine_dir}/{graph}.plan embeds the TensorRT plugin {key[0]} v{key[1]}, which is already "
                f"registered in this process ({by}); TensorRT refuses to register it twice: rebuild the engine with "
                f"`earn-export build {engine_dir}` without --embed-plugins (the library is then loaded once per "
                f"process), or deserialise it in a process of its own")
        keys.append(key)
    return keys


def deserialize_plan(engine_dir, graph: str, plugins=None, logger=None):
    """A TensorRT ICudaEngine for ``{graph}.plan``, after the plugin checks."""
    import tensorrt as trt

    engine_dir = Path(engine_dir)
    meta_path = engine_dir / "engine.json"
    if not meta_path.is_file():
        raise EngineDirError(f"{engine_dir}: no engine.json; build the plans with `earn-export build {engine_dir}`")
    meta = json.loads(meta_path.read_text())
    libs = check_plan_plugins(meta, plugins)
    logger = logger or trt.Logger(trt.Logger.WARNING)
    runtime = trt.Runtime(logger)
    registry = runtime.get_plugin_registry()
    # embed or load, never both: a plan that carries a library registers it itself, and must find it absent
    embedded = check_embedded_absent(registry, meta.get("plugins") or [], graph, engine_dir)
    if embedded:
        runtime.engine_host_code_allowed = True  # the plan carries the plugin library's code
    for path in libs:  # loaded once per process: left as it is when the registry has its creator
        plugin_registry.ensure(registry, path)
    engine = runtime.deserialize_cuda_engine((engine_dir / f"{graph}.plan").read_bytes())
    if engine is None:
        raise RuntimeError(f"TensorRT could not deserialise {graph}.plan; see the log above")
    plugin_registry.note_embedded(embedded, engine_dir / f"{graph}.plan")
    return engine
