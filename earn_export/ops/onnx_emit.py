"""The ONNX node ``earn::CompactedAttention`` (domain ``earn``, opset 1) for both exporters.

Attributes: the TensorRT creator's fields plus ``plugin_version`` / ``plugin_namespace``, which the ONNX parser
uses to find the creator. TorchScript gets a registered symbolic, dynamo an onnxscript translation; neither
knows the output type, so :func:`annotate_outputs` writes it from the exporter's I/O spec afterwards.
"""

from __future__ import annotations

from .contract import OP_DOMAIN, OP_NAME, OP_VERSION, PLUGIN_NAMESPACE, TORCH_OP


def exporter_kwargs(exporter: str) -> dict:
    """Extra ``torch.onnx.export`` arguments that make ``exporter`` emit the custom op."""
    import torch

    if exporter == "dynamo":
        from .dynamo_translation import compacted_attention_translation

        return {"custom_translation_table": {torch.ops.earn.compacted_attention.default:
                                             compacted_attention_translation}}
    from torch.onnx import symbolic_helper

    @symbolic_helper.parse_args("v", "v", "v", "v", "v", "v", "i", "i", "i", "f")
    def symbolic(g, query, shared_key, shared_value, key_bias, gen_key, gen_value, num_heads, num_kv_heads,
                 head_dim, scale):
        out = g.op(f"{OP_DOMAIN}::{OP_NAME}", query, shared_key, shared_value, key_bias, gen_key, gen_value,
                   num_heads_i=num_heads, num_kv_heads_i=num_kv_heads, head_dim_i=head_dim, scale_f=scale,
                   plugin_version_s=OP_VERSION, plugin_namespace_s=PLUGIN_NAMESPACE)
        out.setType(query.type())
        return out

    torch.onnx.register_custom_op_symbolic(TORCH_OP, symbolic, 1)  # a custom symbolic replaces an earlier one
    return {"custom_opsets": {OP_DOMAIN: 1}}


def annotate_outputs(model, spec: dict) -> None:
    """Give the graph outputs of a plugin graph (an ``onnx_ir.Model``) the dtypes and (symbolic) shapes of the
    I/O spec, in place."""
    import onnx_ir as ir

    types = {"float32": ir.DataType.FLOAT, "float16": ir.DataType.FLOAT16, "int64": ir.DataType.INT64}
    by_name = {io["name"]: io for io in spec["outputs"]}
    for out in model.graph.outputs:
        if (io := by_name.get(out.name)) is not None:
            out.dtype = types[io["dtype"]]
            out.shape = ir.Shape([s.replace("+", "_plus_") if isinstance(s, str) else s for s in io["shape"]])
