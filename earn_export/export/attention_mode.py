"""``export --attention onnx|plugin``: which graph gets custom-op nodes (decode only), how to trace it, what to
check afterwards and what ``manifest.json`` records, so that loaders know which op library to load."""

from __future__ import annotations

import contextlib

from ..errors import check_choice
from ..ops.contract import OP_DOMAIN, OP_NAME, OP_VERSION, PLUGIN_NAMESPACE
from .errors import ExportError

MODES = ("onnx", "plugin")


def check_mode(attention: str) -> None:
    check_choice("attention", attention, MODES)


def uses_plugin(attention: str, graph: str) -> bool:
    return attention == "plugin" and graph == "decode"


def tracing(plugin: bool):
    """Context for tracing one graph: the custom op stays opaque (one node per layer) when ``plugin``."""
    if not plugin:
        return contextlib.nullcontext()
    from ..ops.compacted_attention import emit_op

    return emit_op()


def finish_graph(model, spec: dict, num_layers: int, name: str) -> None:
    """After exporting a plugin graph (``onnx_ir.Model``): type its outputs and check it has one custom node per
    layer."""
    from ..ops.onnx_emit import annotate_outputs, plugin_nodes_ir

    annotate_outputs(model, spec)
    nodes = plugin_nodes_ir(model)
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
