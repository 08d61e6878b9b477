"""``earn::CompactedAttention``: decode-time attention over the compacted, beam-shared KV cache (one op).

Contract: docs/CONTRACTS.md. :func:`compacted_attention_reference` is the one PyTorch implementation (the
two-MatMul math of the plain decode graph): the body of ``torch.ops.earn.compacted_attention`` that the eager
decode calls, inlined when tracing ``--attention onnx``, kept opaque and emitted as one node for
``--attention plugin``, and the oracle of the ONNX Runtime op and the CUDA kernel.
"""

from __future__ import annotations

import contextlib
import contextvars

import torch

from .contract import OP_DOMAIN, OP_NAME, OP_VERSION, PLUGIN_NAMESPACE, TORCH_OP  # noqa: F401 - re-exported

_EMIT_OP = contextvars.ContextVar("earn_emit_compacted_attention", default=False)


def compacted_attention_reference(query, shared_key, shared_value, key_bias, gen_key, gen_value, num_heads: int,
                                  num_kv_heads: int, head_dim: int, scale: float) -> torch.Tensor:
    """The oracle. query [B, beam, Hq, (1,) D] (after RoPE); shared_key/value [B, Hkv, S, D]; key_bias [B, S]
    fp32 additive or None (no padding); gen_key/value [B, beam, Hkv, T, D] including the current token.
    Returns [B, beam, Hq * D] in the query's dtype; scores, softmax and P.V in fp32."""
    b, nb = query.shape[0], query.shape[1]
    d, hkv = head_dim, num_kv_heads
    g = num_heads // num_kv_heads
    f32 = torch.float32
    # shared part: [B,Hkv,beam*G,D] @ [B,Hkv,D,S] -- one matmul, K broadcast over beams
    q_sh = query.reshape(b, nb, hkv, g, d).permute(0, 2, 1, 3, 4).reshape(b, hkv, nb * g, d).to(f32)
    s_sh = torch.matmul(q_sh, shared_key.transpose(-1, -2).to(f32)).reshape(b, hkv, nb, g, -1)
    # own part: [B,beam,Hkv,G,D] @ [B,beam,Hkv,D,T]
    q_own = query.reshape(b, nb, hkv, g, d).to(f32)
    s_own = torch.matmul(q_own, gen_key.transpose(-1, -2).to(f32)).permute(0, 2, 1, 3, 4)  # [B,Hkv,beam,G,T]
    scores = torch.cat([s_sh, s_own], dim=-1) * scale
    # fp32 softmax with an additive finite mask (as the model's Attention.attend, inlined: no import cycle)
    if key_bias is not None:
        pad = torch.zeros(b, gen_key.shape[3], dtype=key_bias.dtype, device=key_bias.device)
        scores = scores + torch.cat([key_bias, pad], dim=-1)[:, None, None, None, :]
    probs = torch.softmax(scores, dim=-1)
    n_sh = shared_key.shape[2]
    p_sh = probs[..., :n_sh].reshape(b, hkv, nb * g, n_sh)
    o_sh = torch.matmul(p_sh, shared_value.to(f32)).reshape(b, hkv, nb, g, d).permute(0, 2, 1, 3, 4)
    p_own = probs[..., n_sh:].permute(0, 2, 1, 3, 4)  # [B,beam,Hkv,G,T]
    o_own = torch.matmul(p_own, gen_value.to(f32))  # [B,beam,Hkv,G,D]
    return (o_sh + o_own).reshape(b, nb, hkv * g * d).to(query.dtype)


@torch.library.custom_op(TORCH_OP, mutates_args=())
def compacted_attention_op(query: torch.Tensor, shared_key: torch.Tensor, shared_value: torch.Tensor,
                           key_bias: torch.Tensor, gen_key: torch.Tensor, gen_value: torch.Tensor, num_heads: int,
                           num_kv_heads: int, head_dim: int, scale: float) -> torch.Tensor:
    """query [B, beam, Hq, D] -> [B, beam, Hq, D] (the ONNX node's / plugin's exact I/O)."""
    out = compacted_attention_reference(query, shared_key, shared_value, key_bias, gen_key, gen_value, num_heads,
                                        num_kv_heads, head_dim, scale)
    return out.reshape(query.shape)


@compacted_attention_op.register_fake
def _(query, shared_key, shared_value, key_bias, gen_key, gen_value, num_heads, num_kv_heads, head_dim, scale):
    return query.new_empty(query.shape)


@contextlib.contextmanager
def emit_op():
    """While active, traced decodes call the custom op (one ONNX node per layer) instead of inlining the math."""
    token = _EMIT_OP.set(True)
    try:
        yield
    finally:
        _EMIT_OP.reset(token)


def compacted_attention(query, shared_key, shared_value, key_bias, gen_key, gen_value, num_heads: int,
                        num_kv_heads: int, head_dim: int, scale: float) -> torch.Tensor:
    """What ``Attention.decode`` calls: [B, beam, Hq * D]. Eager: the custom op; plain-graph tracing: the reference
    inlined (the graph of ``--attention onnx``); under :func:`emit_op`: the custom op (one ONNX node)."""
    tracing = torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()
    if tracing and not _EMIT_OP.get():  # a plain ONNX export (or torch.compile) sees the reference's standard ops
        return compacted_attention_reference(query, shared_key, shared_value, key_bias, gen_key, gen_value,
                                             num_heads, num_kv_heads, head_dim, scale)
    b, nb = query.shape[0], query.shape[1]
    if key_bias is None:  # layers >= k: every register row is attended
        key_bias = torch.zeros(b, shared_key.shape[2], dtype=torch.float32, device=shared_key.device)
    out = torch.ops.earn.compacted_attention(query.reshape(b, nb, num_heads, head_dim), shared_key, shared_value,
                                             key_bias.to(torch.float32), gen_key, gen_value, num_heads,
                                             num_kv_heads, head_dim, float(scale))
    return out.reshape(b, nb, num_heads * head_dim)
