"""Decode steps of the torch reference as CUDA graphs: a step is ~750 small kernels, so launches, not math,
bound it on a GPU.

Per key ``(B, beam, P_bucket, step)`` the decoder keeps static buffers: shared KV and mask copied in once per
search (prompt length padded up to ``bucket``: masked zero keys add nothing), tokens/parents/positions per step,
and the generated KV reordered by ``parents`` inside the graph. ``capture=False`` runs the same code eagerly
(tested on the CPU). Static buffers serve one search at a time; a clash is an error, not shared buffers.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class _Slot:
    """Static buffers and graphs of one (B, beam, P_bucket) shape."""

    shared_k: list
    shared_v: list
    mask: torch.Tensor
    last_position: torch.Tensor
    tokens: torch.Tensor
    parents: torch.Tensor
    graphs: dict = field(default_factory=dict)  # step -> captured torch.cuda.CUDAGraph
    outputs: dict = field(default_factory=dict)  # step -> (logprobs, gen_k list, gen_v list)
    owner: int | None = None


@dataclass
class GraphState:
    """What ``TorchBackend.decode`` passes between steps in graph mode."""

    prefix: object  # earn_export.model.PrefixCache
    search_id: int
    slot: _Slot | None = None


class CudaGraphDecoder:
    _ids = itertools.count(1)

    def __init__(self, model, head_token_ids: torch.Tensor | None, capture: bool, bucket: int = 32):
        self.model, self.head, self.capture, self.bucket = model, head_token_ids, capture, bucket
        self.slots: dict = {}
        self.lock = threading.Lock()
        self.pool = torch.cuda.graph_pool_handle() if capture else None

    def new_state(self, prefix) -> GraphState:
        return GraphState(prefix, next(self._ids))

    def _slot(self, prefix, beam: int) -> _Slot:
        b, p = prefix.attention_mask.shape
        pb = -(-p // self.bucket) * self.bucket
        key = (b, beam, pb)
        slot = self.slots.get(key)
        if slot is None:
            k = self.model.split_layer
            dev = prefix.attention_mask.device

            def pad(t, layer):
                return torch.zeros((*t.shape[:2], pb if layer < k else t.shape[2], t.shape[3]), dtype=t.dtype,
                                   device=dev)

            slot = _Slot(shared_k=[pad(t, i) for i, t in enumerate(prefix.keys)],
                         shared_v=[pad(t, i) for i, t in enumerate(prefix.values)],
                         mask=torch.zeros(b, pb, dtype=prefix.attention_mask.dtype, device=dev),
                         last_position=torch.zeros(b, dtype=torch.long, device=dev),
                         tokens=torch.zeros(b, beam, dtype=torch.long, device=dev),
                         parents=torch.zeros(b, beam, dtype=torch.long, device=dev))
            self.slots[key] = slot
        return slot

    def _load_prefix(self, slot: _Slot, prefix) -> None:
        k = self.model.split_layer
        p = prefix.attention_mask.shape[1]
        for i, (sk, sv, pk, pv) in enumerate(zip(slot.shared_k, slot.shared_v, prefix.keys, prefix.values)):
            if i < k:  # prompt KV: right-aligned, zero keys on the left under mask 0
                sk.zero_()
                sv.zero_()
                sk[:, :, -p:].copy_(pk)
                sv[:, :, -p:].copy_(pv)
            else:
                sk.copy_(pk)
                sv.copy_(pv)
        slot.mask.zero_()
        slot.mask[:, -p:].copy_(prefix.attention_mask)
        slot.last_position.copy_(prefix.last_position)

    def _body(self, slot: _Slot, step: int):
        model = self.model

        def run():
            b, nb = slot.tokens.shape
            if step == 1:
                a = model.model.layers[0].self_attn
                z = torch.zeros(b, nb, a.n_kv, 0, a.head_dim, dtype=slot.shared_k[0].dtype, device=slot.mask.device)
                gk = gv = [z] * model.num_layers
            else:
                _, pk, pv = slot.outputs[step - 1]
                idx = slot.parents.reshape(b, nb, 1, 1, 1)
                gk = [torch.take_along_dim(t, idx, dim=1) for t in pk]
                gv = [torch.take_along_dim(t, idx, dim=1) for t in pv]
            pos = (slot.last_position + step)[:, None].expand(b, nb)
            logits, gen = model.decode_tensors(slot.tokens, pos, slot.mask, slot.shared_k, slot.shared_v, gk, gv,
                                               self.head)
            return torch.log_softmax(logits.float(), dim=-1), gen.keys, gen.values

        return run

    def _graph(self, slot: _Slot, step: int) -> torch.cuda.CUDAGraph:
        """The graph of ``step``, captured on first use; its outputs land in ``slot.outputs[step]``."""
        if step not in slot.graphs:
            body = self._body(slot, step)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):  # warm-up (cuBLAS workspaces, autotuning) outside the capture
                    slot.outputs[step] = body()
            torch.cuda.current_stream().wait_stream(side)
            slot.graphs[step] = torch.cuda.CUDAGraph()
            with torch.cuda.graph(slot.graphs[step], pool=self.pool):
                slot.outputs[step] = body()
        return slot.graphs[step]

    @torch.no_grad()
    def decode(self, state: GraphState, tokens: torch.Tensor, parents: torch.Tensor, step: int) -> np.ndarray:
        with self.lock:
            if step == 1:
                slot = self._slot(state.prefix, tokens.shape[1])
                slot.owner = state.search_id  # a search that was interleaved with this one fails at its next step
                self._load_prefix(slot, state.prefix)
                state.slot = slot
            slot = state.slot
            if slot is None or slot.owner != state.search_id:
                raise RuntimeError("CUDA-graph decoding serves one search at a time: another search took these "
                                   "static buffers (or step 1 was skipped); use TorchBackend(cuda_graphs=False) for "
                                   "concurrent searches")
            slot.tokens.copy_(tokens)
            slot.parents.copy_(parents)
            if self.capture:
                self._graph(slot, step).replay()
            else:  # the same step body, run eagerly
                slot.outputs[step] = self._body(slot, step)()
            return slot.outputs[step][0].cpu().numpy()
