"""Names and versions of ``earn::CompactedAttention`` (no torch import: the ONNX Runtime loaders read them too);
kept in sync with plugins/include/earn/compacted_attention.h (tests/test_plugins.py)."""

OP_NAME = "CompactedAttention"  # ONNX op type = TensorRT plugin name
OP_DOMAIN = "earn"  # ONNX domain (ONNX Runtime registers the op in it)
OP_VERSION = "1"  # plugin_version: bump on any change of inputs, outputs or attributes
PLUGIN_NAMESPACE = "earn"  # plugin_namespace: TensorRT registry namespace of the creator
TORCH_OP = "earn::compacted_attention"
FIELDS = ("num_heads", "num_kv_heads", "head_dim", "scale")  # the TensorRT creator's fields = node attributes
LOOKUP_ATTRIBUTES = ("plugin_version", "plugin_namespace")  # consumed by the TensorRT ONNX parser's lookup
