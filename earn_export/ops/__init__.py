"""Custom ops of the exported graphs: ``earn::CompactedAttention`` (torch reference, ONNX node, locator of the
compiled libraries). The torch parts load lazily so the ONNX Runtime path does not import torch."""

from ..lazy_import import lazy_attributes
from .contract import FIELDS, LOOKUP_ATTRIBUTES, OP_DOMAIN, OP_NAME, OP_VERSION, PLUGIN_NAMESPACE, TORCH_OP

__all__ = ["FIELDS", "LOOKUP_ATTRIBUTES", "OP_DOMAIN", "OP_NAME", "OP_VERSION", "PLUGIN_NAMESPACE", "TORCH_OP",
           "compacted_attention_reference", "emit_op"]
__getattr__ = lazy_attributes(__name__, {"compacted_attention_reference": ".compacted_attention",
                                         "emit_op": ".compacted_attention"})
