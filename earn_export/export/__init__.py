"""Two-graph ONNX export (prefill + decode), engine manifest, and parity checks against the torch reference."""

from .manifest import FORMAT_VERSION, EngineDirError, load_manifest, sha256_file
from .onnx_export import ExportError, export_onnx

__all__ = ["FORMAT_VERSION", "EngineDirError", "ExportError", "check_engine", "export_onnx", "load_manifest",
           "sha256_file"]


def __getattr__(name):  # parity pulls in the runtime; import it lazily
    if name == "check_engine":
        from .parity import check_engine

        return check_engine
    raise AttributeError(name)
