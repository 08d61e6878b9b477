"""Quantization of an exported engine for ONNX Runtime (``export --quantize``; when to use which: docs/quantization.md).

- ``int8``: ``quantize_dynamic``'s graph (u8 activations per tensor, s8 weights per channel, ``MatMulInteger``):
  the fast int8 GEMM on CPUs with VNNI or AMX;
- ``int8-nbits`` / ``int4``: weight-only ``MatMulNBits`` (block 32, activations int8 per block inside the op).
The LM head, the embeddings, norms, RoPE, attention and the KV cache stay in full precision: the ranking
depends on them most. Both graphs are quantized alike, so the shared weights file still holds each tensor once.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import check_choice
from ..ops.ort_quantizers import matmul_integer_s8, matmul_nbits
from .errors import ExportError

QUANT_MODES = ("int8", "int8-nbits", "int4")
BITS = {"int8": 8, "int8-nbits": 8, "int4": 4}
# the op that carries each mode's weights
QUANT_OPS = {"int8": "MatMulInteger", "int8-nbits": "com.microsoft.MatMulNBits", "int4": "com.microsoft.MatMulNBits"}
BLOCK_SIZE = 32
ACCURACY_LEVEL = 4


def _head_matmuls(graph) -> list[str]:
    """Names of the MatMul nodes whose output reaches LogSoftmax through casts only (the LM head)."""
    producer = {out: node for node in graph.node for out in node.output}
    heads = []
    for node in graph.node:
        if node.op_type != "LogSoftmax":
            continue
        src = producer.get(node.input[0])
        while src is not None and src.op_type in ("Cast", "Reshape", "Squeeze", "Identity", "Gather", "Slice"):
            src = producer.get(src.input[0])
        if src is not None and src.op_type == "MatMul":
            heads.append(src.name)
    return heads


def quantize_graph(model_proto, mode: str, accuracy_level: int = ACCURACY_LEVEL, block_size: int = BLOCK_SIZE,
                   keep_float: tuple[str, ...] = ()):
    """Quantized copy of an ONNX ModelProto (weights loaded); returns (ModelProto, info). ``keep_float``: name
    fragments of further MatMuls to leave in fp32 (e.g. ``"down_proj"``), matched against the node's name and
    its weight's name (dynamo-exported nodes are named ``node_matmul_N``; their weights keep the module path).
    A fragment that matches no MatMul is an error rather than a silently quantized layer."""
    check_choice("quantize", mode, QUANT_MODES)
    for node in model_proto.graph.node:  # the quantizers match nodes by name: give every node one
        if not node.name:
            node.name = f"{node.op_type}_{id(node)}"
    excluded = _head_matmuls(model_proto.graph)
    matmuls = [n for n in model_proto.graph.node if n.op_type == "MatMul"]
    hits = {f: {n.name for n in matmuls if f in n.name or f in n.input[1]} for f in keep_float}
    unmatched = [f for f, names in hits.items() if not names]
    if unmatched:
        example = f"weights are named like {matmuls[0].input[1]!r}" if matmuls else "the graph has no MatMul"
        raise ExportError(f"keep_float: no MatMul node or weight name contains {', '.join(map(repr, unmatched))}; "
                          f"{example}")
    extra = [n.name for n in matmuls if any(n.name in names for names in hits.values()) and n.name not in excluded]
    excluded = excluded + extra
    if mode == "int8":
        out = matmul_integer_s8(model_proto, excluded)
        n_q = sum(1 for node in out.graph.node if node.op_type == "MatMulInteger")
        info = {"mode": mode, "bits": 8, "op": QUANT_OPS[mode], "weights": "s8, symmetric, one scale per output "
                "channel", "activations": "u8, one scale per tensor, computed at run time (DynamicQuantizeLinear)",
                "quantized_matmuls": n_q}
    else:
        out = matmul_nbits(model_proto, BITS[mode], excluded, accuracy_level, block_size)
        n_q = sum(1 for node in out.graph.node if node.op_type == "MatMulNBits")
        info = {"mode": mode, "bits": BITS[mode], "block_size": block_size, "symmetric": True,
                "accuracy_level": accuracy_level, "op": QUANT_OPS[mode], "quantized_matmuls": n_q}
    info["kept_float"] = {"lm_head": [n for n in excluded if n not in extra],
                          "embeddings": "Gather (token and register embeddings)"}
    if keep_float:
        info["kept_float"]["matmuls"] = {"fragments": list(keep_float), "count": len(extra)}
    if n_q == 0:
        raise ExportError("quantization found no MatMul with a weight initializer to quantize")
    return out, info


def quantize_ir(model, mode: str, tmp_dir, name: str):
    """Quantize one ``onnx_ir.Model`` graph: serialised with its weights (the quantizer works on ModelProto),
    quantized, saved to ``tmp_dir`` and loaded back lazily. Returns (``onnx_ir.Model``, info)."""
    import onnx
    import onnx_ir as ir

    proto = ir.serde.serialize_model(model)
    qproto, info = quantize_graph(proto, mode)
    del proto
    path = Path(tmp_dir) / f"{name}.quant.onnx"
    onnx.save_model(qproto, str(path), save_as_external_data=True, location=f"{name}.quant.data",
                    size_threshold=1024)
    return ir.load(str(path)), info


def manifest_entry(infos: dict) -> dict:
    """The manifest's ``quantization`` entry from the per-graph infos of :func:`quantize_ir`."""
    import onnxruntime

    entry = {k: v for k, v in infos["prefill"].items() if k not in ("quantized_matmuls", "kept_float")}
    entry["quantized_matmuls"] = {g: info["quantized_matmuls"] for g, info in infos.items()}
    entry["kept_float"] = infos["prefill"]["kept_float"] | {"decode_lm_head": infos["decode"]["kept_float"]["lm_head"]}
    tool = "quantize_dynamic" if entry["mode"] == "int8" else "matmul_nbits_quantizer"
    entry["tool"] = f"onnxruntime.quantization.{tool} (onnxruntime {onnxruntime.__version__})"
    entry["runtime"] = ("ONNX Runtime CPU (MatMulInteger + DynamicQuantizeLinear; fast with AVX-512 VNNI or AMX-int8)"
                        if entry["mode"] == "int8" else
                        "ONNX Runtime CPU (MatMulNBits is a com.microsoft contrib op; not for TensorRT)")
    return entry


def quantized_engine_reference(path):
    """The fp32 checkpoint a quantized engine was exported from (``eval`` reports the accuracy cost against it),
    or None when ``path`` is not a quantized engine or its source checkpoint is not available."""
    import json

    man = Path(path) / "manifest.json"
    manifest = json.loads(man.read_text()) if man.is_file() else {}
    src = manifest.get("source_checkpoint")
    return src if manifest.get("quantization") and src and Path(src).is_dir() else None


def accuracy_cost(engine: dict, reference: dict) -> dict:
    """Relative change of every recall/ndcg metric of a quantized engine against its fp32 reference."""
    return {key: {"engine": engine[key], "fp32": ref, "relative_change": (engine[key] - ref) / ref if ref else 0.0}
            for key, ref in reference.items() if key.startswith(("recall", "ndcg")) and isinstance(ref, (int, float))
            and isinstance(engine.get(key), (int, float))}
