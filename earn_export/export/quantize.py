"""Weight-only quantization of an exported engine for CPU (``earn-export export --quantize int8|int4``).

ONNX Runtime's own tool does the work: ``MatMulNBitsQuantizer`` turns every ``MatMul`` by a weight initializer
into the ``com.microsoft.MatMulNBits`` contrib op with 8- or 4-bit blockwise weights (symmetric, block 32) and
fp32 activations. What stays in full precision, because the ranking depends on it most:
- the LM head (the ``MatMul`` feeding the log-softmax): the scores the beam search compares;
- the token embeddings, register tokens included (a ``Gather``, never quantized);
- norms, RoPE, attention and the KV cache (activations).
``accuracy_level`` 4 lets the CPU kernel quantize activations to int8 per block inside the op (the fast path
onnxruntime-genai uses for int4 on CPU); ``accuracy_level=1`` keeps fp32 compute.

Both graphs are quantized identically, so the shared weights file still holds each quantized tensor once.
Quantized engines are ONNX Runtime engines (MatMulNBits is a contrib op: no TensorRT); the manifest records the
method and ``check`` applies the quantized-engine tolerance rule (see :mod:`.parity` / docs/export.md).
"""

from __future__ import annotations

from pathlib import Path

QUANT_MODES = ("int8", "int4")
BITS = {"int8": 8, "int4": 4}
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


def quantize_graph(model_proto, mode: str, accuracy_level: int = ACCURACY_LEVEL, block_size: int = BLOCK_SIZE):
    """Quantized copy of an ONNX ModelProto (weights loaded); returns (ModelProto, info)."""
    import logging

    from onnxruntime.quantization import matmul_nbits_quantizer as mnq

    if mode not in QUANT_MODES:
        raise ValueError(f"quantize must be one of {QUANT_MODES}, got {mode!r}")
    for node in model_proto.graph.node:  # the quantizer matches nodes by name: give every node one
        if not node.name:
            node.name = f"{node.op_type}_{id(node)}"
    excluded = _head_matmuls(model_proto.graph)
    cfg = mnq.DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=True,
                                           accuracy_level=accuracy_level, op_types_to_quantize=("MatMul",),
                                           bits=BITS[mode])
    logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)
    q = mnq.MatMulNBitsQuantizer(model_proto, bits=BITS[mode], block_size=block_size, is_symmetric=True,
                                 accuracy_level=accuracy_level, nodes_to_exclude=excluded, algo_config=cfg)
    q.process()
    out = q.model.model
    n_q = sum(1 for node in out.graph.node if node.op_type == "MatMulNBits")
    info = {"mode": mode, "bits": BITS[mode], "block_size": block_size, "symmetric": True,
            "accuracy_level": accuracy_level, "op": "com.microsoft.MatMulNBits", "quantized_matmuls": n_q,
            "kept_float": {"lm_head": excluded, "embeddings": "Gather (token and register embeddings)"}}
    if n_q == 0:
        from .onnx_export import ExportError

        raise ExportError("quantization found no MatMul with a weight initializer to quantize")
    return out, info


def quantize_ir(model, mode: str, tmp_dir, name: str, accuracy_level: int = ACCURACY_LEVEL):
    """Quantize one ``onnx_ir.Model`` graph: serialised with its weights (the quantizer works on ModelProto),
    quantized, saved to ``tmp_dir`` and loaded back lazily. Returns (``onnx_ir.Model``, info)."""
    import onnx
    import onnx_ir as ir

    proto = ir.serde.serialize_model(model)
    qproto, info = quantize_graph(proto, mode, accuracy_level=accuracy_level)
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
    entry["tool"] = f"onnxruntime.quantization.matmul_nbits_quantizer (onnxruntime {onnxruntime.__version__})"
    entry["runtime"] = "ONNX Runtime CPU (MatMulNBits is a com.microsoft contrib op; not for TensorRT)"
    return entry


def quantized_engine_reference(path):
    """The fp32 checkpoint a quantized engine was exported from (``eval`` reports the accuracy cost against it),
    or None when ``path`` is not a quantized engine or its source checkpoint is not available."""
    import json

    man = Path(path) / "manifest.json"
    if not man.is_file():
        return None
    manifest = json.loads(man.read_text())
    src = manifest.get("source_checkpoint")
    if not manifest.get("quantization") or not src or not Path(src).is_dir():
        return None
    return src


def accuracy_cost(engine: dict, reference: dict) -> dict:
    """Relative change of every recall/ndcg metric of a quantized engine against its fp32 reference."""
    out = {}
    for key, ref in reference.items():
        if (key.startswith(("recall", "ndcg")) and isinstance(ref, (int, float)) and key in engine
                and isinstance(engine[key], (int, float))):
            out[key] = {"engine": engine[key], "fp32": ref,
                        "relative_change": (engine[key] - ref) / ref if ref else 0.0}
    return out
