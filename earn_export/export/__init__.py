"""Two-graph ONNX export (prefill + decode), engine manifest, and parity checks against the torch reference.

Only the manifest (json/hashlib) is imported eagerly: the runtime reads manifests without torch, so the exporter
(torch, transformers, onnx) and the parity check (the runtime and the torch reference) load on first use.
"""

from .manifest import FORMAT_VERSION, EngineDirError, load_manifest, sha256_file

__all__ = ["FORMAT_VERSION", "EngineDirError", "ExportError", "check_engine", "export_onnx", "load_manifest",
           "sha256_file"]

_LAZY = {"ExportError": "onnx_export", "export_onnx": "onnx_export", "check_engine": "parity"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(name)
