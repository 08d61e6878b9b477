"""Custom ops of the exported graphs: ``earn::CompactedAttention`` (torch reference + custom op, its ONNX node for
both exporters, the ONNX Runtime custom-op library locator) and the TensorRT plugin library's metadata."""

from .compacted_attention import (OP_DOMAIN, OP_NAME, OP_VERSION, PLUGIN_NAMESPACE, compacted_attention,
                                  compacted_attention_reference, emit_op)

__all__ = ["OP_DOMAIN", "OP_NAME", "OP_VERSION", "PLUGIN_NAMESPACE", "compacted_attention",
           "compacted_attention_reference", "emit_op"]
