"""Custom ops of the exported graphs: ``earn::CompactedAttention`` (torch reference + custom op in
``compacted_attention``, its ONNX node for both exporters in ``onnx_emit``, the locator/loader of the compiled
ONNX Runtime and TensorRT libraries in ``libraries``).

The torch parts load lazily so the ONNX Runtime runtime path does not import torch.
"""

from ..lazy_import import lazy_attributes
from .contract import FIELDS, LOOKUP_ATTRIBUTES, OP_DOMAIN, OP_NAME, OP_VERSION, PLUGIN_NAMESPACE, TORCH_OP

__all__ = ["FIELDS", "LOOKUP_ATTRIBUTES", "OP_DOMAIN", "OP_NAME", "OP_VERSION", "PLUGIN_NAMESPACE", "TORCH_OP",
           "compacted_attention_reference", "emit_op"]
__getattr__ = lazy_attributes(__name__, {"compacted_attention_reference": ".compacted_attention",
                                         "emit_op": ".compacted_attention"})
