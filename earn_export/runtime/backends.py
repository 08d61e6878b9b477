"""Search backends (the ``SearchBackend`` protocol of docs/CONTRACTS.md) over ONNX Runtime and the torch model.

Both keep the per-user prompt/register KV once, shared by every beam, and only the generated tokens' KV per
beam; between decode calls the per-beam KV is reordered by the beam ``parents``. A backend keeps no per-call
state on ``self`` (everything lives in the returned ``state``), so one backend serves concurrent searches.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def choose_providers(providers=None) -> list:
    """``providers`` as given, else TensorRT/CUDA when this onnxruntime build has them, then CPU."""
    import onnxruntime as ort

    if providers:
        return list(providers)
    available = ort.get_available_providers()
    chosen = [p for p in GPU_PROVIDERS if p in available]
    return chosen + ["CPUExecutionProvider"]


def decode_step_inputs(state, tokens: np.ndarray, parents, step: int, n_gen: int, n_kv_heads: int, head_dim: int,
                       kv_dtype) -> tuple[list, np.ndarray]:
    """What every backend feeding ``decode.onnx`` computes per step: the per-beam ``generated.*`` KV reordered by
    the beam parents (zero-length before the first generated token) and ``position_ids`` [B, beam, 1]. The prompt
    KV is not touched: it is fed as it is at every step."""
    b, nb = tokens.shape
    if state.generated is None:
        gen = [np.zeros((b, nb, n_kv_heads, 0, head_dim), kv_dtype)] * n_gen
    else:
        idx = np.asarray(parents, dtype=np.int64).reshape(b, nb, 1, 1, 1)
        gen = [np.take_along_axis(g, idx, axis=1) for g in state.generated]
    pos = np.broadcast_to((state.last_position + step)[:, None, None], (b, nb, 1)).astype(np.int64)
    return gen, np.ascontiguousarray(pos)


@dataclass
class OrtState:
    """Per-search state of :class:`OrtBackend`. ``past``: OrtValues (stay where the EP put them)."""

    past: list  # prefill's present.* in graph order (layer-major key, value)
    attention_mask: np.ndarray  # [B, P] int64
    last_position: np.ndarray  # [B] int64: position id of the last prompt row
    generated: list | None  # numpy [B, beam, Hkv, t, D] per layer key/value, or None before the first decode


class OrtBackend:
    """prefill.onnx / decode.onnx in ONNX Runtime sessions (thread-safe ``run``; no per-call state on self)."""

    def __init__(self, engine_dir, providers=None, manifest: dict | None = None, session_options=None,
                 verify="fast", provider_options=None):
        import onnxruntime as ort

        from ..export.manifest import load_manifest

        self.engine_dir = Path(engine_dir)
        self.manifest = manifest if manifest is not None else load_manifest(self.engine_dir, verify=verify)
        m = self.manifest["model"]
        self.num_layers, self.n_kv_heads, self.head_dim = m["num_layers"], m["n_kv_heads"], m["head_dim"]
        ids = self.manifest["vocab"]["vocab_out_token_ids"]
        self.out_token_ids = None if ids is None else np.asarray(ids, dtype=np.int64)
        self.kv_dtype = np.float16 if self.manifest["dtype"] == "float16" else np.float32
        self.providers = choose_providers(providers)
        from .machine import note_int8_kernel

        note_int8_kernel(self.manifest, self.providers)  # one line where --quantize int8 has no VNNI/AMX here
        opts = session_options or ort.SessionOptions()
        from ..ops.libraries import prepare_session_options

        prepare_session_options(opts, self.manifest, self.engine_dir)  # custom-op library of --attention plugin
        kw = {"provider_options": provider_options} if provider_options is not None else {}
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
        self.prefill_session = ort.InferenceSession(str(self.engine_dir / files["prefill"]), opts,
                                                    providers=self.providers, **kw)
        self.decode_session = ort.InferenceSession(str(self.engine_dir / files["decode"]), opts,
                                                   providers=self.providers, **kw)
        self.prefill_outputs = [o.name for o in self.prefill_session.get_outputs()]
        self.decode_outputs = [o.name for o in self.decode_session.get_outputs()]
        self.past_names = [i.name for i in self.decode_session.get_inputs() if i.name.startswith("past_key_values.")]
        self.gen_names = [i.name for i in self.decode_session.get_inputs() if i.name.startswith("generated.")]
        expected = 2 * self.num_layers
        if len(self.past_names) != expected or len(self.gen_names) != expected:
            from ..export.manifest import EngineDirError

            raise EngineDirError(f"{self.engine_dir}: decode.onnx has {len(self.past_names)} past / "
                                 f"{len(self.gen_names)} generated inputs, manifest says {expected} each; re-export")

    @property
    def device_providers(self) -> list:
        return self.prefill_session.get_providers()

    def prefill(self, input_ids, attention_mask):
        import onnxruntime as ort

        ids = np.ascontiguousarray(input_ids, dtype=np.int64)
        mask = np.ascontiguousarray(attention_mask, dtype=np.int64)
        feeds = {"input_ids": ort.OrtValue.ortvalue_from_numpy(ids),
                 "attention_mask": ort.OrtValue.ortvalue_from_numpy(mask)}
        outs = self.prefill_session.run_with_ort_values(self.prefill_outputs, feeds)
        logprobs = outs[0].numpy()
        last = np.maximum(mask.sum(-1) - 1, 0).astype(np.int64)
        return logprobs, OrtState(past=list(outs[1:]), attention_mask=mask, last_position=last, generated=None)

    def decode(self, state: OrtState, tokens, parents, step: int):
        import onnxruntime as ort

        tokens = np.ascontiguousarray(tokens, dtype=np.int64)
        gen, pos = decode_step_inputs(state, tokens, parents, step, len(self.gen_names), self.n_kv_heads,
                                      self.head_dim, self.kv_dtype)
        feeds = {"input_ids": ort.OrtValue.ortvalue_from_numpy(tokens[..., None]),
                 "position_ids": ort.OrtValue.ortvalue_from_numpy(pos),
                 "attention_mask": ort.OrtValue.ortvalue_from_numpy(state.attention_mask)}
        feeds.update(zip(self.past_names, state.past))  # shared prompt KV: fed as is, never copied per beam
        feeds.update((n, ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(g))) for n, g in zip(self.gen_names, gen))
        outs = self.decode_session.run_with_ort_values(self.decode_outputs, feeds)
        new_state = OrtState(state.past, state.attention_mask, state.last_position, [o.numpy() for o in outs[1:]])
        return outs[0].numpy(), new_state


@dataclass
class TorchState:
    prefix: object  # earn_export.model.PrefixCache (shared by all beams)
    generated: object | None  # earn_export.model.GeneratedCache (per beam) or None before the first decode


class TorchBackend:
    """The torch reference over the model core: ``model.prefill`` / ``model.decode_step`` /
    ``GeneratedCache.reorder``. Usable straight from a model object (training/evaluation).

    ``head_token_ids``: restrict log-probs to these vocabulary columns (what a ``vocab="items"`` engine
    outputs); None = full vocabulary. Inputs may be numpy arrays or torch tensors; outputs are float32 numpy.
    ``cuda_graphs``: decode steps replayed as CUDA graphs on a GPU (``runtime/cuda_graphs.py``; the same static-
    buffer code runs eagerly on the CPU). One search at a time per backend in that mode.
    """

    def __init__(self, model, head_token_ids=None, device=None, cuda_graphs: bool = False):
        import torch

        self.model = model.eval()
        self.device = device or next(model.parameters()).device
        if head_token_ids is None:
            self.out_token_ids = None
            self._head = None
        else:
            self.out_token_ids = np.asarray(head_token_ids, dtype=np.int64).reshape(-1)
            self._head = torch.as_tensor(self.out_token_ids, device=self.device)
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
        if self._graphs is not None:
            return logprobs.cpu().numpy(), TorchState(prefix=cache, generated=self._graphs.new_state(cache))
        return logprobs.cpu().numpy(), TorchState(prefix=cache, generated=None)

    def decode(self, state: TorchState, tokens, parents, step: int):
        import torch

        if self._graphs is not None:
            lp = self._graphs.decode(state.generated, self._tensor(tokens), self._tensor(parents), step)
            return lp, state
        with torch.no_grad():
            gen = state.generated
            if gen is not None:
                gen = gen.reorder(self._tensor(parents))
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
