"""Python runtime: ``Recommender`` (histories → top-K items) over ONNX Runtime or the torch reference."""

from .backends import OrtBackend, OrtState, RecordingBackend, TorchBackend, TorchState, choose_providers
from .recommender import RecommendResult, Recommender, UnknownItemError

__all__ = ["OrtBackend", "OrtState", "RecommendResult", "Recommender", "RecordingBackend", "TorchBackend",
           "TorchState", "UnknownItemError", "choose_providers"]
