"""Search backends (the ``SearchBackend`` protocol of docs/CONTRACTS.md) over ONNX Runtime and the torch model.
Per-user prompt KV is kept once for all beams; all per-call state lives in the returned ``state``, so one
backend serves concurrent searches."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .graph_backend import GraphBackend

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def choose_providers(providers=None) -> list:
    """``providers`` as given, else TensorRT/CUDA when this onnxruntime build has them, then CPU."""
    import onnxruntime as ort

    if providers:
        return list(providers)
    return [p for p in GPU_PROVIDERS if p in ort.get_available_providers()] + ["CPUExecutionProvider"]


class OrtBackend(GraphBackend):
    """prefill.onnx / decode.onnx in ONNX Runtime sessions (thread-safe ``run``; no per-call state on self)."""

    def __init__(self, engine_dir, providers=None, manifest: dict | None = None, session_options=None,
                 verify="fast"):
        import onnxruntime as ort

        from ..engine.manifest import EngineDirError, load_manifest
        from ..ops.libraries import prepare_session_options
        from .machine import note_int8_kernel

        self.engine_dir = Path(engine_dir)
        self.manifest = manifest if manifest is not None else load_manifest(self.engine_dir, verify=verify)
        self.providers = choose_providers(providers)
        note_int8_kernel(self.manifest, self.providers)  # one line where --quantize int8 has no VNNI/AMX here
        opts = session_options or ort.SessionOptions()
        prepare_session_options(opts, self.manifest, self.engine_dir)  # custom-op library of --attention plugin
        g = self.manifest["graphs"]
        files = {name: g[name]["file"] for name in ("prefill", "decode")}
        pre = {name: g[name].get("ort_optimized") for name in files}
        # ONNX Runtime's saved offline optimisation (export --ort-optimize): only for the CPU EP and the exact
        # onnxruntime version that wrote it, and only with default session options (it is already optimised)
        if (session_options is None and self.providers == ["CPUExecutionProvider"]
                and all(e and e.get("onnxruntime") == ort.__version__ for e in pre.values())):
            files = {name: e["file"] for name, e in pre.items()}
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        self.graph_files = files
        self.prefill_session, self.decode_session = (
            ort.InferenceSession(str(self.engine_dir / files[g]), opts, providers=self.providers)
            for g in ("prefill", "decode"))
        super().__init__(self._run_session, self.manifest, to_numpy=lambda value: value.numpy())
        self._ortvalue = ort.OrtValue
        names = {i.name for i in self.decode_session.get_inputs()}
        if names != {"input_ids", "position_ids", "attention_mask", *self.past_names, *self.gen_names}:
            raise EngineDirError(f"{self.engine_dir}: the inputs of {files['decode']} differ from the manifest's "
                                 "decode inputs; re-export")

    @property
    def device_providers(self) -> list:
        return self.prefill_session.get_providers()

    def _run_session(self, graph: str, feeds: dict, outputs: list) -> list:
        """The sessions as ``GraphBackend``'s runner: numpy feeds become OrtValues, the prompt KV already is one."""
        session = self.prefill_session if graph == "prefill" else self.decode_session
        value = self._ortvalue
        feeds = {k: v if isinstance(v, value) else value.ortvalue_from_numpy(v) for k, v in feeds.items()}
        return session.run_with_ort_values(outputs, feeds)


@dataclass
class TorchState:
    prefix: object  # earn_export.model.PrefixCache (shared by all beams)
    generated: object | None  # earn_export.model.GeneratedCache (per beam) or None before the first decode


class TorchBackend:
    """The torch reference over the model core, usable straight from a model object. ``head_token_ids``: the
    vocabulary columns a ``vocab="items"`` engine outputs (None: all). ``cuda_graphs``: decode steps replayed as
    CUDA graphs (``runtime/cuda_graphs.py``); one search at a time per backend then."""

    def __init__(self, model, head_token_ids=None, device=None, cuda_graphs: bool = False):
        import torch

        self.model = model.eval()
        self.device = device or next(model.parameters()).device
        full = head_token_ids is None
        self.out_token_ids = None if full else np.asarray(head_token_ids, dtype=np.int64).reshape(-1)
        self._head = None if full else torch.as_tensor(self.out_token_ids, device=self.device)
        self._graphs = None
        if cuda_graphs:
            from .cuda_graphs import CudaGraphDecoder

            self._graphs = CudaGraphDecoder(self.model, self._head, capture=torch.device(self.device).type == "cuda")

    def _tensor(self, x):
        import torch

        t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x, dtype=np.int64))
        return t.to(self.device, torch.long)

    def prefill(self, input_ids, attention_mask):
        import torch

        with torch.no_grad():
            logits, cache = self.model.prefill(self._tensor(input_ids), self._tensor(attention_mask),
                                               head_token_ids=self._head)
            logprobs = torch.log_softmax(logits.float(), dim=-1)
        generated = self._graphs.new_state(cache) if self._graphs is not None else None
        return logprobs.cpu().numpy(), TorchState(prefix=cache, generated=generated)

    def decode(self, state: TorchState, tokens, parents, step: int):
        import torch

        if self._graphs is not None:
            return self._graphs.decode(state.generated, self._tensor(tokens), self._tensor(parents), step), state
        with torch.no_grad():
            gen = None if state.generated is None else state.generated.reorder(self._tensor(parents))
            logits, gen = self.model.decode_step(self._tensor(tokens), state.prefix, gen,
                                                 head_token_ids=self._head)
            logprobs = torch.log_softmax(logits.float(), dim=-1)
        return logprobs.cpu().numpy(), TorchState(prefix=state.prefix, generated=gen)


class RecordingBackend:
    """Wraps a backend and records every call (inputs and log-probs): replay the same beam path elsewhere."""

    def __init__(self, inner):
        self.inner = inner
        self.out_token_ids = inner.out_token_ids
        self.calls: list[dict] = []

    def prefill(self, input_ids, attention_mask):
        logprobs, state = self.inner.prefill(input_ids, attention_mask)
        self.calls.append({"kind": "prefill", "input_ids": np.asarray(input_ids), "attention_mask":
                           np.asarray(attention_mask), "logprobs": logprobs})
        return logprobs, state

    def decode(self, state, tokens, parents, step):
        logprobs, state = self.inner.decode(state, tokens, parents, step)
        self.calls.append({"kind": "decode", "tokens": np.asarray(tokens).copy(), "parents":
                           np.asarray(parents).copy(), "step": step, "logprobs": logprobs})
        return logprobs, state
