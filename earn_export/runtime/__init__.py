"""Python runtime: ``Recommender`` (histories → top-K items) over ONNX Runtime or the torch reference.

Names load on first use (PEP 562), so ``earn-export recommend --help`` and the other command-line paths import
neither numpy nor onnxruntime until they run; the ONNX Runtime path never imports torch or transformers.
"""

_LAZY = {
    "OrtBackend": "backends", "OrtState": "backends", "RecordingBackend": "backends", "TorchBackend": "backends",
    "TorchState": "backends", "choose_providers": "backends",
    "RecommendResult": "recommender", "Recommender": "recommender", "UnknownItemError": "recommender",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(name)
