"""Python-backend models of ``earn-export triton-repo``: :class:`TritonPythonModel`, the ``earn_recommender`` of
``earn-export serve`` whose beam loop calls the repository's ``prefill`` and ``decode`` models through Business
Logic Scripting, and :class:`OnnxGraphModel`, one ONNX graph on ONNX Runtime inside the Python backend
(``--graphs python-onnxruntime``, for servers without the ONNX Runtime backend; what the tests serve).
"""

from __future__ import annotations

import json
from pathlib import Path

from .python_model import TritonPythonModel as _ServedModel
from .python_model import check_id_map


def bls_runner(pb_utils):
    """``run(graph, feeds, outputs)`` for :class:`~earn_export.runtime.graph_backend.GraphBackend` over BLS calls.
    Outputs are requested in CPU memory: the beam search reorders the per-beam KV in numpy."""
    kwargs = {}
    if hasattr(pb_utils, "PreferredMemory"):
        kwargs["preferred_memory"] = pb_utils.PreferredMemory(pb_utils.TRITONSERVER_MEMORY_CPU, 0)

    def run(graph, feeds, outputs):
        request = pb_utils.InferenceRequest(model_name=graph, requested_output_names=list(outputs),
                                            inputs=[pb_utils.Tensor(n, a) for n, a in feeds.items()], **kwargs)
        response = request.exec()
        if response.has_error():
            raise RuntimeError(f"BLS call to model '{graph}' failed: {response.error().message()}")
        return [pb_utils.get_output_tensor_by_name(response, n).as_numpy() for n in outputs]

    return run


def engine_recommender(engine_dir, run, batch_size: int):
    """A ``Recommender`` over ``GraphBackend(run)`` from an engine directory's small files (manifest, trie,
    tokenizer/prompt files); the graphs themselves live in the repository's prefill/decode models."""
    from ..runtime.recommender import Recommender
    from ..runtime.graph_backend import GraphBackend

    engine_dir = Path(engine_dir)
    manifest = json.loads((engine_dir / "manifest.json").read_text())
    return Recommender.from_engine(engine_dir, manifest, GraphBackend(run, manifest), batch_size=batch_size)


class TritonPythonModel(_ServedModel):
    """The BLS ``earn_recommender``: same inputs, outputs and error handling as the served model."""

    def load(self, args):
        engine = Path(args["model_repository"]) / args["model_version"] / "engine"
        # no test recommendation here: prefill/decode may still be loading (Triton has no BLS load order)
        rec = engine_recommender(engine, bls_runner(self.pb), batch_size=max(self.opts.max_batch, 1))
        check_id_map(rec, self.opts)
        return rec


class OnnxGraphModel:
    """``model.onnx`` of this model version on ONNX Runtime (CPU), one request = one graph call."""

    def initialize(self, args):
        import onnxruntime as ort
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.inputs = [i.name for i in self.session.get_inputs()]

    def execute(self, requests):
        pb = self.pb
        responses = []
        for request in requests:
            feeds = {n: pb.get_input_tensor_by_name(request, n).as_numpy() for n in self.inputs}
            try:
                outs = self.session.run(self.outputs, feeds)
            except Exception as exc:  # noqa: BLE001 - answered as this request's error
                responses.append(pb.InferenceResponse(output_tensors=[], error=pb.TritonError(str(exc))))
                continue
            responses.append(pb.InferenceResponse(output_tensors=[pb.Tensor(n, a) for n, a in zip(self.outputs, outs)]))
        return responses
