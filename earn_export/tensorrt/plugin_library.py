"""The TensorRT plugin libraries of ``earn-export build``: which to load, which plans embed them, and their
``engine.json`` entry (op version, sha256, embedding), which a plan loader checks (tests/plan_loading.py; Triton
loads the plans in production). Plain Python, tested in tests/test_plugin_build.py."""

from __future__ import annotations

from pathlib import Path

from ..engine.manifest import attention_mode, sha256_file
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
