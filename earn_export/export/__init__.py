"""Two-graph ONNX export of a checkpoint into an engine directory, and the engine's parity check.

Names load on first use: the exporter imports torch, transformers and onnx."""

from ..lazy_import import lazy_attributes

_LAZY = {"ExportError": ".errors", "export_onnx": ".onnx_export", "check_engine": ".parity_check"}
__all__ = sorted(_LAZY)
__getattr__ = lazy_attributes(__name__, _LAZY)
