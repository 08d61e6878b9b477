"""TensorRT engines from the exported graphs (unverified here: TensorRT is not installable in CI)."""

from .tensorrt_builder import ShapeRange, TensorRTUnavailable, build_engines, precision_plan, profiles, tensorrt_available

__all__ = ["ShapeRange", "TensorRTUnavailable", "build_engines", "precision_plan", "profiles", "tensorrt_available"]
