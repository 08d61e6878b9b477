"""The one graph runner: a ``SearchBackend`` over ``prefill`` / ``decode``, whoever executes them.

It needs one callable ``run(graph, feeds, outputs) -> list``: ONNX Runtime sessions (``OrtBackend``) or the
Triton BLS model's requests. Prompt KV is fed unchanged at every step, only ``generated.*`` is reordered by the
beam parents; no per-call state lives on ``self``, so one backend serves concurrent searches.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass
class GraphState:
    """Per-search state. ``past``: prefill's present.* in graph order, as the runner returned them."""

    past: list
    attention_mask: np.ndarray  # [B, P] int64
    last_position: np.ndarray  # [B] int64: position id of the last prompt row
    generated: list | None  # numpy [B, beam, Hkv, t, D] per layer key/value, or None before the first decode


class GraphBackend:
    def __init__(self, run, manifest: dict, to_numpy=np.asarray):
        self.run, self.to_numpy = run, to_numpy
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
        return self.to_numpy(outs[0]), GraphState(list(outs[1:]), mask, last, None)

    def decode(self, state: GraphState, tokens, parents, step: int):
        tokens = np.ascontiguousarray(tokens, dtype=np.int64)
        b, nb = tokens.shape
        if state.generated is None:  # zero-length per-beam KV before the first generated token
            gen = [np.zeros((b, nb, self.n_kv_heads, 0, self.head_dim), self.kv_dtype)] * len(self.gen_names)
        else:
            idx = np.asarray(parents, dtype=np.int64).reshape(b, nb, 1, 1, 1)
            gen = [np.take_along_axis(g, idx, axis=1) for g in state.generated]
        pos = np.broadcast_to((state.last_position + step)[:, None, None], (b, nb, 1)).astype(np.int64)
        feeds = {"input_ids": tokens[..., None], "position_ids": np.ascontiguousarray(pos),
                 "attention_mask": state.attention_mask}
        feeds.update(zip(self.past_names, state.past))  # shared prompt KV: fed as is, never copied per beam
        feeds.update((n, np.ascontiguousarray(g)) for n, g in zip(self.gen_names, gen))
        outs = self.run("decode", feeds, self.decode_outputs)
        return self.to_numpy(outs[0]), replace(state, generated=[self.to_numpy(o) for o in outs[1:]])
