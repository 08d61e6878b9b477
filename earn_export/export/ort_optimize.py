"""ONNX Runtime's offline graph optimisation saved beside the portable graphs (``export --ort-optimize``), so a
session start can skip it. The ``*.ort.onnx`` files are specific to the ONNX Runtime version and provider that
wrote them (recorded in the manifest; ``OrtBackend`` falls back to the portable graphs on a mismatch)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .weights import WEIGHTS_FILE, SharedWeights

LEVEL = "extended"  # ORT_ENABLE_EXTENDED: the level ONNX Runtime recommends for offline CPU optimisation


def ort_file(graph: str) -> str:
    return f"{graph}.ort.onnx"


def optimize_engine(out_dir, graphs=("prefill", "decode"), progress=None) -> tuple[dict, dict]:
    """Write ``{graph}.ort.onnx`` for each graph and repack ``weights.data`` for all graphs.

    Returns (per-graph manifest entries, the new weights entry)."""
    import onnx
    import onnx_ir as ir
    import onnxruntime as ort

    out_dir = Path(out_dir)
    entries = {}
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        for g in graphs:
            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            so.optimized_model_filepath = str(Path(tmp) / ort_file(g))
            so.add_session_config_entry("session.optimized_model_external_initializers_file_name", f"{g}.ort.data")
            so.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
            ort.InferenceSession(str(out_dir / f"{g}.onnx"), so, providers=["CPUExecutionProvider"])
        models = {g: ir.load(str(out_dir / f"{g}.onnx")) for g in graphs}
        models.update({ort_file(g): ir.load(str(Path(tmp) / ort_file(g))) for g in graphs})
        tmp_weights = Path(tmp) / WEIGHTS_FILE
        weights = SharedWeights(out_dir, file_path=tmp_weights, progress=progress)
        try:
            for name, model in models.items():
                weights.add_graph(model, name.removesuffix(".onnx"))
            entry = weights.close()
        except BaseException:
            weights.abort()
            raise
        os.replace(tmp_weights, out_dir / WEIGHTS_FILE)  # the loaded models map the old file until saved below
        for name, model in models.items():
            dst = out_dir / (name if name.endswith(".onnx") else f"{name}.onnx")
            saved = Path(tmp) / f"resave-{dst.name}"
            ir.save(model, str(saved))
            os.replace(saved, dst)
            if ".ort." not in dst.name:  # ORT's graphs hold its contrib ops, unknown to the onnx checker
                onnx.checker.check_model(str(dst))
        for g in graphs:
            proto = onnx.load(str(out_dir / ort_file(g)), load_external_data=False)
            entries[g] = {"file": ort_file(g), "onnxruntime": ort.__version__, "level": LEVEL,
                          "providers": ["CPUExecutionProvider"], "nodes": len(proto.graph.node)}
    return entries, entry
