"""Flat-tensor ``nn.Module`` wrappers around the model core: what the two ONNX graphs compute.

They hold no math of their own (prefill calls the split forward, decode calls ``decode_tensors``), only the
graphs' calling convention: flat KV inputs/outputs, ``[batch, beam, 1]`` tokens and an fp32 log-softmax.
:func:`export_view` is a shallow view of the model that changes the graph *form*, never the result:
- ``vocab="items"``: an ``lm_head`` holding only the kept rows, so no runtime Gather over the full head;
- projections are MatMuls by transposed *views* of the weights: otherwise the exporters fold a ``Transpose``
  into a second copy of every weight (a 2 GB checkpoint took 8 GB to export);
- ``form="fused"`` (opset 23): packed QKV and the standard ``RotaryEmbedding``, ``Attention`` and
  ``RMSNormalization`` ops (fp32 statistics; ONNX Runtime rejects an fp16 scale on an fp32 input);
  ``form="reference"``: the model's own ops at opset 18, for runtimes without the opset-23 ops.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..errors import check_choice
from ..model.decoder import Attention, RMSNorm


def kv_names(prefix: str, num_layers: int) -> list[str]:
    """``prefix.{l}.key``, ``prefix.{l}.value`` for every layer, layer-major (the graph I/O order)."""
    return [f"{prefix}.{layer}.{kind}" for layer in range(num_layers) for kind in ("key", "value")]


FORMS = ("fused", "reference")


class TransposedLinear(nn.Module):
    """``x @ weight_t (+ bias)``: ``nn.Linear`` with the weight stored as ``[in, out]`` (a view of the original)."""

    def __init__(self, weight_t: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.weight_t = nn.Parameter(weight_t, requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)

    def forward(self, x):
        y = torch.matmul(x, self.weight_t)
        return y if self.bias is None else y + self.bias


def _transposed(linear: nn.Linear) -> TransposedLinear:
    return TransposedLinear(linear.weight.detach().t(), None if linear.bias is None else linear.bias.detach())


def _packed_qkv(attn) -> TransposedLinear:
    """One ``[hidden, (Hq + 2 Hkv) D]`` projection for Q, K and V (a new tensor: the export's only weight copy)."""
    w = torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]).detach().t()
    biases = [attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias]
    b = None if biases[0] is None else torch.cat([x.detach() for x in biases])
    return TransposedLinear(w, b)


class FusedAttention(Attention):
    """Export form of ``Attention`` (``form="fused"``): packed QKV, opset-23 ``RotaryEmbedding`` and (prefill)
    ``Attention``. Same results as the base class to rounding; the base class stays the reference path."""

    def qkv(self, x, cos, sin):
        *lead, t, _ = x.shape
        hq, hkv, d = self.n_heads, self.n_kv, self.head_dim
        q, k, v = self.qkv_proj(x).split([hq * d, hkv * d, hkv * d], dim=-1)
        if self.qk_norm:  # per head over D: RMSNormalization on [..., T, H, D] (axis -1), then packed again
            q = self.q_norm(q.reshape(*lead, t, hq, d)).reshape(*lead, t, hq * d)
            k = self.k_norm(k.reshape(*lead, t, hkv, d)).reshape(*lead, t, hkv * d)

        def rows(z):  # [..., T, C] -> [N, T, C]: RotaryEmbedding's 3-D form (heads packed in C)
            return z.reshape(-1, t, z.shape[-1])

        half_cos, half_sin = rows(cos[..., : d // 2]), rows(sin[..., : d // 2])
        q = torch.onnx.ops.rotary_embedding(rows(q), half_cos, half_sin, num_heads=hq)
        k = torch.onnx.ops.rotary_embedding(rows(k), half_cos, half_sin, num_heads=hkv)

        def heads(z, h):
            return z.reshape(*lead, t, h, d).transpose(-2, -3)

        return heads(q, hq), heads(k, hkv), heads(v, hkv)

    def attend(self, q, k, v, bias):
        f32 = torch.float32
        out = torch.onnx.ops.attention(q.to(f32), k.to(f32), v.to(f32), attn_mask=bias, scale=self.scaling)[0]
        return out.to(q.dtype)


class FusedRMSNorm(RMSNorm):
    """Export form of ``RMSNorm``: one opset-23 ``RMSNormalization`` (eager runs keep the reference math)."""

    def forward(self, x, out_dtype=None):
        if not torch.onnx.is_in_onnx_export():
            return super().forward(x, out_dtype)
        f32 = torch.float32
        y = torch.onnx.ops.symbolic("RMSNormalization", (x.to(f32), self.weight.to(f32)),
                                    {"axis": -1, "epsilon": float(self.variance_epsilon), "stash_type": 1},
                                    dtype=f32, shape=x.shape, version=23)
        return y.to(out_dtype or self.weight.dtype)


def _own_tree(module: nn.Module) -> nn.Module:
    """Shallow copy of a module tree: every module copied with its own child/parameter tables, tensors shared."""
    view = copy.copy(module)
    view._parameters = dict(module._parameters)
    view._buffers = dict(module._buffers)
    view._modules = {name: (None if child is None else _own_tree(child)) for name, child in module._modules.items()}
    return view


def export_view(model, head_token_ids=None, form: str = "reference"):
    """The module tree the exporter traces: the LM head sliced to ``head_token_ids`` (in that order; None: all rows),
    transposed projections (+ the fused form). The model itself is not modified; the view shares its parameters
    (``form="fused"`` adds the packed QKV)."""
    check_choice("form", form, FORMS)
    view = _own_tree(model)  # own module tables: replacing modules leaves `model` untouched
    if head_token_ids is not None:
        w = model.lm_head.weight.detach()[torch.as_tensor(head_token_ids, dtype=torch.long)].clone()
        view.lm_head = nn.Linear(w.shape[1], w.shape[0], bias=False, device=w.device, dtype=w.dtype)
        view.lm_head.weight = nn.Parameter(w, requires_grad=False)
    fused = form == "fused"
    if fused:
        view.model.norm.__class__ = FusedRMSNorm
    for layer in view.model.layers:
        attn, mlp = layer.self_attn, layer.mlp
        if fused:
            norms = [layer.input_layernorm, layer.post_attention_layernorm]
            for norm in norms + ([attn.q_norm, attn.k_norm] if attn.qk_norm else []):  # QK-norm: RMSNormalization too
                norm.__class__ = FusedRMSNorm
            attn.__class__ = FusedAttention
            attn.qkv_proj = _packed_qkv(attn)
            del attn.q_proj, attn.k_proj, attn.v_proj
        for module, names in ((attn, ("o_proj",) if fused else ("q_proj", "k_proj", "v_proj", "o_proj")),
                              (mlp, ("gate_proj", "up_proj", "down_proj"))):
            for name in names:
                setattr(module, name, _transposed(getattr(module, name)))
    return view


class _Graph(nn.Module):
    def __init__(self, view):  # export_view(model, ...)
        super().__init__()
        self.core = view


class PrefillGraph(_Graph):
    """prefill.onnx: ``(input_ids, attention_mask) -> (logits [B, V_out], present.{l}.key/value ...)``, present
    ``[B, Hkv, P, D]`` for l < k and ``[B, Hkv, R, D]`` for l >= k."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        sink: list = []
        logits = self.core(input_ids, attention_mask, n_target=0, mode="split", kv_sink=sink)[:, 0]
        logprobs = torch.log_softmax(logits.to(torch.float32), dim=-1)
        return (logprobs, *[t for kv in sink for t in kv])


class DecodeGraph(_Graph):
    """decode.onnx: one step for all beams over the shared prefix KV and the per-beam generated KV
    (inputs and outputs: docs/design.md §4)."""

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
