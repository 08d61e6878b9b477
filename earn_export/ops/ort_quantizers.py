"""ONNX Runtime's own quantizers, called in one place so that the exporter and the machine probe build the same
kernels from the same options."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path


def matmul_nbits(model_proto, bits: int, excluded: list, accuracy_level: int = 4, block_size: int = 32):
    """Weight-only ``com.microsoft.MatMulNBits`` (symmetric, per block of ``block_size``) on every MatMul with a
    weight initializer except ``excluded``; returns the quantized ModelProto."""
    from onnxruntime.quantization import matmul_nbits_quantizer as mnq

    cfg = mnq.DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=True,
                                           accuracy_level=accuracy_level, op_types_to_quantize=("MatMul",),
                                           bits=bits)
    logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)
    q = mnq.MatMulNBitsQuantizer(model_proto, bits=bits, block_size=block_size, is_symmetric=True,
                                 accuracy_level=accuracy_level, nodes_to_exclude=excluded, algo_config=cfg)
    q.process()
    return q.model.model


def matmul_integer_s8(model_proto, excluded: list):
    """``quantize_dynamic`` on MatMuls with a constant weight: s8 per-channel weights, u8 dynamic activations.
    It reads and writes files (weights as external data, so models over 2 GB work); the result is loaded back."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its "consider pre-processing" warning is about conv nets' shape inference
    try:
        with tempfile.TemporaryDirectory(prefix="earn-quant-") as tmp:
            path = Path(tmp) / "model.int8.onnx"
            quantize_dynamic(model_proto, path, op_types_to_quantize=["MatMul"], per_channel=True,
                             reduce_range=False, weight_type=QuantType.QInt8, nodes_to_exclude=excluded,
                             use_external_data_format=True, extra_options={"MatMulConstBOnly": True})
            return onnx.load(str(path))
    finally:
        root.setLevel(level)
