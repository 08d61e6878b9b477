"""A ``SearchBackend`` (docs/CONTRACTS.md) over the two graphs run by someone else: Triton BLS calls.

``GraphBackend(run, manifest)`` needs one callable, ``run(graph, feeds, outputs) -> list of numpy arrays``, that
executes ``prefill`` or ``decode`` with numpy feeds. In the BLS model ``run`` sends ``pb_utils.InferenceRequest``
to the repository's ``prefill`` / ``decode`` models; tests pass ONNX Runtime sessions, so the same beam loop is
checked against ``Recommender`` on CPU. State and step inputs are ``runtime.backends.OrtBackend``'s
(``OrtState``, ``decode_step_inputs``): the prompt KV (``past_key_values.*``) is fed unchanged at every step, only the
per-beam ``generated.*`` KV is reordered by the beam parents.
"""

from __future__ import annotations

import numpy as np

from ..runtime.backends import OrtState, decode_step_inputs  # OrtState.past holds numpy arrays here


class GraphBackend:
    def __init__(self, run, manifest: dict):
        self.run = run
        m = manifest["model"]
        self.n_kv_heads, self.head_dim = m["n_kv_heads"], m["head_dim"]
        ids = manifest["vocab"]["vocab_out_token_ids"]
        self.out_token_ids = None if ids is None else np.asarray(ids, dtype=np.int64)
        self.kv_dtype = np.float16 if manifest["dtype"] == "float16" else np.float32
        g = manifest["graphs"]
        self.prefill_outputs = [o["name"] for o in g["prefill"]["outputs"]]
        self.decode_outputs = [o["name"] for o in g["decode"]["outputs"]]
        dec_in = [i["name"] for i in g["decode"]["inputs"]]
        self.past_names = [n for n in dec_in if n.startswith("past_key_values.")]
        self.gen_names = [n for n in dec_in if n.startswith("generated.")]

    def prefill(self, input_ids, attention_mask):
        ids = np.ascontiguousarray(input_ids, dtype=np.int64)
        mask = np.ascontiguousarray(attention_mask, dtype=np.int64)
        outs = self.run("prefill", {"input_ids": ids, "attention_mask": mask}, self.prefill_outputs)
        last = np.maximum(mask.sum(-1) - 1, 0).astype(np.int64)
        return outs[0], OrtState(past=list(outs[1:]), attention_mask=mask, last_position=last, generated=None)

    def decode(self, state: OrtState, tokens, parents, step: int):
        tokens = np.ascontiguousarray(tokens, dtype=np.int64)
        gen, pos = decode_step_inputs(state, tokens, parents, step, len(self.gen_names), self.n_kv_heads,
                                      self.head_dim, self.kv_dtype)
        feeds = {"input_ids": tokens[..., None], "position_ids": pos,
                 "attention_mask": state.attention_mask}
        feeds.update(zip(self.past_names, state.past))
        feeds.update((n, np.ascontiguousarray(g)) for n, g in zip(self.gen_names, gen))
        outs = self.run("decode", feeds, self.decode_outputs)
        return outs[0], OrtState(state.past, state.attention_mask, state.last_position, list(outs[1:]))


def ort_runner(engine_dir, manifest: dict, session_options=None):
    """``run`` over ONNX Runtime CPU sessions of the engine's graphs (tests and the python-onnxruntime graphs)."""
    import onnxruntime as ort

    sessions = {g: ort.InferenceSession(f"{engine_dir}/{spec['file']}", session_options,
                                        providers=["CPUExecutionProvider"])
                for g, spec in manifest["graphs"].items()}

    def run(graph, feeds, outputs):
        return sessions[graph].run(outputs, feeds)

    return run
