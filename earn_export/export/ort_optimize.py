"""ONNX Runtime's offline graph optimisation saved beside the portable graphs (``export --ort-optimize``), so a
session start can skip it. The ``*.ort.onnx`` files are specific to the ONNX Runtime version and provider that
wrote them (recorded in the manifest; ``OrtBackend`` falls back to the portable graphs on a mismatch)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .weights import WEIGHTS_FILE, SharedWeights

LEVEL = "extended"  # ORT_ENABLE_EXTENDED: the level ONNX Runtime recommends for offline CPU optimisation
GRAPHS = ("prefill", "decode")


def optimize_engine(out_dir, progress=None) -> tuple[dict, dict]:
    """Write ``{graph}.ort.onnx`` for each graph and repack ``weights.data`` for all graphs.

    Returns (per-graph manifest entries, the new weights entry)."""
    import onnx
    import onnx_ir as ir
    import onnxruntime as ort

    out_dir = Path(out_dir)
    entries = {}
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        for g in GRAPHS:
            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            so.optimized_model_filepath = str(Path(tmp) / f"{g}.ort.onnx")
            so.add_session_config_entry("session.optimized_model_external_initializers_file_name", f"{g}.ort.data")
            so.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
            ort.InferenceSession(str(out_dir / f"{g}.onnx"), so, providers=["CPUExecutionProvider"])
        models = {f"{g}.onnx": ir.load(str(out_dir / f"{g}.onnx")) for g in GRAPHS}
        models.update({f"{g}.ort.onnx": ir.load(str(Path(tmp) / f"{g}.ort.onnx")) for g in GRAPHS})
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
            saved = Path(tmp) / f"resave-{name}"
            ir.save(model, str(saved))
            os.replace(saved, out_dir / name)
            if ".ort." not in name:  # ORT's graphs hold its contrib ops, unknown to the onnx checker
                onnx.checker.check_model(str(out_dir / name))
        for g in GRAPHS:
            proto = onnx.load(str(out_dir / f"{g}.ort.onnx"), load_external_data=False)
            entries[g] = {"file": f"{g}.ort.onnx", "onnxruntime": ort.__version__, "level": LEVEL,
                          "providers": ["CPUExecutionProvider"], "nodes": len(proto.graph.node)}
    return entries, entry
