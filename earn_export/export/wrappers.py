"""Flat-tensor ``nn.Module`` wrappers around the model core: what the two ONNX graphs compute.

They hold no math of their own: prefill calls ``EarnForCausalLM.forward(..., kv_sink=...)`` (the split
forward, the same code training and the torch reference run) and decode calls ``decode_tensors`` (the flat
decode step behind ``decode_step``). The only additions are the graph's calling convention: flat KV inputs and
outputs, ``[batch, beam, 1]`` token/position inputs, and a log-softmax in fp32 over the output vocabulary.

``head_token_ids`` (``vocab="items"``): the LM-head rows to keep. The wrapper runs the core through a shallow
view of the model whose ``lm_head`` is a ``Linear`` holding only those rows (sharing every other module and
parameter with the model), so the exported graph bakes a ``[vocab_out, hidden]`` matrix and has no runtime
Gather over the full head.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def kv_names(prefix: str, num_layers: int) -> list[str]:
    """``prefix.{l}.key``, ``prefix.{l}.value`` for every layer, layer-major (the graph I/O order)."""
    return [f"{prefix}.{layer}.{kind}" for layer in range(num_layers) for kind in ("key", "value")]


def sliced_view(model, head_token_ids=None):
    """The model itself, or a shallow view whose LM head keeps only rows ``head_token_ids`` (in that order)."""
    if head_token_ids is None:
        return model
    ids = torch.as_tensor(head_token_ids, dtype=torch.long)
    w = model.lm_head.weight.detach()[ids].clone()
    head = nn.Linear(w.shape[1], w.shape[0], bias=False, device=w.device, dtype=w.dtype)
    head.weight = nn.Parameter(w, requires_grad=False)
    view = copy.copy(model)
    view._modules = dict(model._modules)  # own module table: replacing lm_head leaves `model` untouched
    view._parameters = dict(model._parameters)
    view._buffers = dict(model._buffers)
    view.lm_head = head
    return view


class PrefillGraph(nn.Module):
    """prefill.onnx: ``(input_ids, attention_mask) -> (logits [B, V_out], present.{l}.key, present.{l}.value ...)``.

    ``present.{l}`` is ``[B, Hkv, P, D]`` for l < k (prompt KV) and ``[B, Hkv, R, D]`` for l >= k (registers).
    """

    def __init__(self, model, head_token_ids=None):
        super().__init__()
        self.core = sliced_view(model, head_token_ids)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        sink: list = []
        logits = self.core(input_ids, attention_mask, n_target=0, mode="split", kv_sink=sink)[:, 0]
        logprobs = torch.log_softmax(logits.to(torch.float32), dim=-1)
        return (logprobs, *[t for kv in sink for t in kv])


class DecodeGraph(nn.Module):
    """decode.onnx: one step for all beams over the shared prefix KV and the per-beam generated KV.

    Inputs: ``input_ids [B, beam, 1]``, ``position_ids [B, beam, 1]``, ``attention_mask [B, P]``, then
    ``past_key_values.{l}.key/value`` (2N tensors, layer-major), then ``generated.{l}.key/value`` (2N tensors).
    Outputs: ``logits [B, beam, V_out]`` (fp32 log-softmax), ``generated_present.{l}.key/value`` (t + 1).
    """

    def __init__(self, model, head_token_ids=None):
        super().__init__()
        self.core = sliced_view(model, head_token_ids)

    def forward(self, input_ids, position_ids, attention_mask, *kv):
        n = self.core.num_layers
        if len(kv) != 4 * n:
            raise ValueError(f"decode expects {4 * n} KV tensors (past + generated, key + value per layer)")
        past, gen = kv[: 2 * n], kv[2 * n:]
        logits, new = self.core.decode_tensors(
            input_ids[..., 0], position_ids[..., 0], attention_mask,
            list(past[0::2]), list(past[1::2]), list(gen[0::2]), list(gen[1::2]),
        )
        logprobs = torch.log_softmax(logits.to(torch.float32), dim=-1)
        return (logprobs, *[t for pair in zip(new.keys, new.values) for t in pair])
