"""Python runtime: ``Recommender`` (histories → top-K items) over ONNX Runtime or the torch reference.
Names load on first use, so the CLI's light paths import neither numpy nor onnxruntime, and the ONNX Runtime
path never imports torch or transformers."""

from ..lazy_import import lazy_attributes

_LAZY = {
    "OrtBackend": ".backends", "RecordingBackend": ".backends", "TorchBackend": ".backends",
    "TorchState": ".backends", "choose_providers": ".backends", "GraphBackend": ".graph_backend",
    "GraphState": ".graph_backend", "RecommendResult": ".results", "Recommender": ".recommender",
    "UnknownItemError": ".recommender",
}
__all__ = sorted(_LAZY)
__getattr__ = lazy_attributes(__name__, _LAZY)
