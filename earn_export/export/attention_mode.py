"""``export --attention onnx|plugin``: what to check after exporting a plugin graph (only decode gets custom-op
nodes) and what ``manifest.json`` records, so that loaders know which op library to load."""

from __future__ import annotations

from ..ops.contract import OP_DOMAIN, OP_NAME, OP_VERSION, PLUGIN_NAMESPACE
from .errors import ExportError

MODES = ("onnx", "plugin")


def finish_graph(model, spec: dict, num_layers: int, name: str) -> None:
    """After exporting a plugin graph (``onnx_ir.Model``): type its outputs and check it has one custom node per
    layer."""
    from ..ops.onnx_emit import annotate_outputs

    annotate_outputs(model, spec)
    nodes = [node for node in model.graph if node.domain == OP_DOMAIN and node.op_type == OP_NAME]
    if len(nodes) != num_layers:
        raise ExportError(f"{name}: expected {num_layers} {OP_DOMAIN}::{OP_NAME} nodes (one per layer), found "
                          f"{len(nodes)}; the decode attention was not routed through the custom op")
    model.opset_imports.setdefault(OP_DOMAIN, 1)


def manifest_entry(attention: str) -> dict:
    """``manifest["attention"]``: the decode graph's attention and, for plugin graphs, the op it needs."""
    if attention == "onnx":
        return {"mode": "onnx"}
    return {"mode": "plugin", "op": f"{OP_DOMAIN}::{OP_NAME}", "domain": OP_DOMAIN, "op_type": OP_NAME,
            "op_version": OP_VERSION, "plugin_namespace": PLUGIN_NAMESPACE, "graphs": ["decode"]}
