"""onnxscript translation of ``torch.ops.earn.compacted_attention`` for the dynamo exporter.

A module of its own because onnxscript parses the function against this module's globals (so no
``from __future__ import annotations``). The literals must equal ``OP_VERSION`` / ``PLUGIN_NAMESPACE`` (checked
at import).
"""

import onnxscript
from onnxscript import script

from .compacted_attention import OP_DOMAIN, OP_VERSION, PLUGIN_NAMESPACE

earn = onnxscript.values.Opset(OP_DOMAIN, 1)


@script()
def compacted_attention_translation(query: onnxscript.FLOAT, shared_key: onnxscript.FLOAT,
                                    shared_value: onnxscript.FLOAT, key_bias: onnxscript.FLOAT,
                                    gen_key: onnxscript.FLOAT, gen_value: onnxscript.FLOAT, num_heads: int,
                                    num_kv_heads: int, head_dim: int, scale: float) -> onnxscript.FLOAT:
    return earn.CompactedAttention(query, shared_key, shared_value, key_bias, gen_key, gen_value,
                                   num_heads=num_heads, num_kv_heads=num_kv_heads, head_dim=head_dim, scale=scale,
                                   plugin_version="1", plugin_namespace="earn")


if (OP_VERSION, PLUGIN_NAMESPACE) != ("1", "earn"):
    raise ImportError("earn_export.ops.dynamo_translation: update the plugin_version/plugin_namespace literals")
