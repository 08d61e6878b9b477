"""The TensorRT plugin library in ``earn-export build`` and when a plan is loaded (UNVERIFIED calls into TensorRT).

Build: the library is registered before the ONNX parser looks the creator up, and with ``embed_plugins`` put into
the plan; ``engine.json`` records op version, sha256 and embedding. Load: a plan that does not embed its plugin
needs the library again; a missing one or another op version is refused with the fix before TensorRT sees the
plan. All but the two TensorRT calls is plain Python, tested in tests/test_build.py.
"""

from __future__ import annotations

from pathlib import Path

from ..engine.manifest import EngineDirError, attention_mode, sha256_file
from ..ops import libraries
from ..ops.contract import OP_DOMAIN, OP_NAME

FIX_BUILD = ("build it with `make plugins` on a machine with nvcc and the TensorRT headers (plugins/README.md), "
             "or re-export the engine with `--attention onnx`")


def resolve_for_build(manifest: dict, plugins=None) -> list[Path]:
    """The plugin libraries to load for building this engine (``plugins``: paths given on the command line)."""
    if plugins:
        paths = [Path(p) for p in plugins]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise ValueError(f"--plugins {', '.join(missing)}: no such file; {FIX_BUILD}")
        return paths
    if attention_mode(manifest) != "plugin":
        return []
    found = libraries.trt_plugin_library()
    if found is None:
        raise ValueError(f"decode.onnx uses the custom op {OP_DOMAIN}::{OP_NAME} (exported with --attention plugin) "
                         f"and no TensorRT plugin library was given or found in {libraries.build_dir()}: pass "
                         f"--plugins plugins/build/libearn_plugins.so; {FIX_BUILD}")
    return [found]


def embedded_in(manifest: dict, libs) -> set[str]:
    """The plans that get the libraries serialised into them: those whose graph has plugin nodes (decode for an
    ``--attention plugin`` engine); libraries given for a plain engine go into both plans."""
    if not libs:
        return set()
    return {"decode"} if attention_mode(manifest) == "plugin" else {"prefill", "decode"}


def plugin_metadata(path: Path, embedded_plans, info: dict | None = None) -> dict:
    """``engine.json["plugins"]`` entry of one library. ``embedded_plans``: graphs whose plan carries the library.
    ``info``: its ``earnPluginInfo()`` (read from the library when None)."""
    info = info if info is not None else libraries.trt_plugin_info(path)
    return {
        "op": f"{OP_DOMAIN}::{info.get('name', OP_NAME)}", "plugin_name": info.get("name"),
        "plugin_version": info.get("version"), "plugin_namespace": info.get("namespace"),
        "tensorrt_headers": info.get("tensorrt_headers"), "cuda_runtime": info.get("cuda_runtime"),
        "cuda_runtime_linkage": info.get("cuda_runtime_linkage"),  # static: no libcudart.so.N needed where it loads
        "library": Path(path).name, "path": str(Path(path).resolve()),
        "sha256": sha256_file(Path(path)), "serialized_into_plan": bool(embedded_plans),
        "embedded_in": list(embedded_plans),
    }


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


def load_into_registry(registry, paths) -> list:
    """The creators of ``paths`` in ``registry``: ``IPluginRegistry.load_library`` (TensorRT calls ``getCreators`` /
    ``setLoggerFinder``) for those not registered yet, once per process (``plugin_registry.ensure_loaded``)."""
    from .plugin_registry import ensure_loaded

    return [ensure_loaded(registry, p) for p in paths]


def deserialize_plan(engine_dir, graph: str, plugins=None, logger=None):
    """A TensorRT ICudaEngine for ``{graph}.plan``, after the plugin checks. UNVERIFIED: no TensorRT here."""
    import json

    import tensorrt as trt

    engine_dir = Path(engine_dir)
    meta_path = engine_dir / "engine.json"
    if not meta_path.is_file():
        raise EngineDirError(f"{engine_dir}: no engine.json; build the plans with `earn-export build {engine_dir}`")
    meta = json.loads(meta_path.read_text())
    from .plugin_registry import check_embedded_absent, note_embedded

    libs = check_plan_plugins(meta, plugins)
    logger = logger or trt.Logger(trt.Logger.WARNING)
    runtime = trt.Runtime(logger)
    registry = runtime.get_plugin_registry()
    # embed or load, never both: a plan that carries a library registers it itself, and must find it absent
    embedded = check_embedded_absent(registry, meta.get("plugins") or [], graph, engine_dir)
    if embedded:
        runtime.engine_host_code_allowed = True  # the plan carries the plugin library's code
    load_into_registry(registry, libs)
    engine = runtime.deserialize_cuda_engine((engine_dir / f"{graph}.plan").read_bytes())
    if engine is None:
        raise RuntimeError(f"TensorRT could not deserialise {graph}.plan; see the log above")
    note_embedded(embedded, engine_dir / f"{graph}.plan")
    return engine

