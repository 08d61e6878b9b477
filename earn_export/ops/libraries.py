"""Where the compiled implementations of ``earn::CompactedAttention`` are, what they implement, and loading them.

``make plugins`` lists what it built in ``plugins/build/earn_plugins.json``. Both libraries export a C function
returning JSON about themselves, read here with ctypes, so loaders can compare op versions before a session or
plan sees them. Overrides: ``EARN_ORT_OPS_LIBRARY``, ``EARN_TRT_PLUGIN_LIBRARY``, ``EARN_PLUGINS_BUILD``.
"""

from __future__ import annotations

import ctypes
import json
import os
from pathlib import Path

from ..engine.manifest import EngineDirError, attention_mode
from .contract import OP_DOMAIN, OP_NAME, OP_VERSION

REPO_BUILD = Path(__file__).resolve().parents[2] / "plugins" / "build"
BUILD_HINT = ("build it with `make plugins` (needs cmake >= 3.18, a C++17 compiler and the ONNX Runtime headers; "
              "plugins/README.md)")


def build_dir() -> Path:
    return Path(os.environ.get("EARN_PLUGINS_BUILD") or REPO_BUILD)


def built() -> dict:
    """``earn_plugins.json`` of the build folder (what CMake configured), or {} when nothing was built."""
    try:
        return json.loads((build_dir() / "earn_plugins.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _existing(path) -> Path | None:
    return Path(path) if path and Path(path).is_file() else None


def ort_ops_library() -> Path | None:
    """The ONNX Runtime custom-op library, or None."""
    env = os.environ.get("EARN_ORT_OPS_LIBRARY")
    if env:
        return _existing(env)
    return _existing(built().get("ort_ops")) or _existing(build_dir() / "libearn_ort_ops.so")


def trt_plugin_library() -> Path | None:
    """The TensorRT plugin library built against the primary TensorRT headers, or None."""
    env = os.environ.get("EARN_TRT_PLUGIN_LIBRARY")
    if env:
        return _existing(env)
    entry = built().get("trt_plugin") or {}
    return _existing(entry.get("path")) or _existing(build_dir() / "libearn_plugins.so")


def _info(path: Path, symbol: str) -> dict:
    lib = ctypes.CDLL(str(path))
    fn = getattr(lib, symbol)
    fn.restype = ctypes.c_char_p
    return json.loads(fn().decode())


def ort_ops_info(path) -> dict:
    """What an ONNX Runtime custom-op library implements: {"op", "domain", "op_version", "types", "kernel"}."""
    return _info(Path(path), "EarnOrtOpsInfo")


def trt_plugin_info(path) -> dict:
    """The TensorRT plugin library's creator: {"name", "version", "namespace", "fields", "tensorrt_headers"}.
    Loading it needs the CUDA runtime library (libcudart) it was linked with, not TensorRT."""
    return _info(Path(path), "earnPluginInfo")


def require_ort_ops(manifest: dict, engine_dir) -> Path:
    """The library that runs this plugin engine's decode graph on ONNX Runtime, or an EngineDirError with the fix."""
    entry = manifest.get("attention") or {}
    want = entry.get("op_version", OP_VERSION)
    what = f"{engine_dir}: decode.onnx uses the custom op {OP_DOMAIN}::{OP_NAME} v{want} (exported with --attention plugin)"
    alternative = f"or re-export without it (`earn-export export CKPT --out {engine_dir} --attention onnx`)"
    path = ort_ops_library()
    if path is None:
        where = os.environ.get("EARN_ORT_OPS_LIBRARY") or str(build_dir() / "libearn_ort_ops.so")
        raise EngineDirError(f"{what}, but its ONNX Runtime library was not found at {where}: {BUILD_HINT}, or set "
                             f"EARN_ORT_OPS_LIBRARY=/path/to/libearn_ort_ops.so, {alternative}")
    info = ort_ops_info(path)
    if info.get("op_version") != want or info.get("domain") != entry.get("domain", OP_DOMAIN):
        raise EngineDirError(f"{what}, but {path} implements {info.get('domain')}::{info.get('op')} "
                             f"v{info.get('op_version')}: rebuild the library from this earn-export (`make plugins`) "
                             f"{alternative}")
    return path


def prepare_session_options(options, manifest: dict, engine_dir) -> None:
    """Register the custom-op library on ``options`` when the engine's decode graph needs it (else nothing)."""
    if attention_mode(manifest) != "plugin":
        return
    options.register_custom_ops_library(str(require_ort_ops(manifest, engine_dir)))
