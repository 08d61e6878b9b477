"""The one decoder definition: Llama-family layers, EARN split forward, compacted-cache inference.

Names mirror transformers' ``*ForCausalLM`` (plain ``load_state_dict``); family differences come from
:mod:`.architectures`. Three forwards over the same weights must agree: ``dense`` (what transformers computes),
``split`` (layers >= k on the registers and target rows only, original position ids: the fast path) and
``masked`` (prompt keys masked in layers >= k: the test oracle). ``prefill`` / ``decode_step`` keep the prompt
KV once per user, shared by all beams (docs/design.md §3); the export wrappers call the same layer code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import check_choice
from ..ops.compacted_attention import compacted_attention
from .architectures import architecture, rope_type
from .config import EarnConfig, ModelConfigError, head_dim, load_hf_config

MODES = ("split", "masked", "dense")
NEG = torch.finfo(torch.float32).min  # additive mask value: finite, so fully masked rows give no NaN


class RMSNorm(nn.Module):
    """RMSNorm with fp32 statistics (as transformers'), output in the weight's dtype unless ``out_dtype``: safe for
    fp16 activations."""

    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, x: torch.Tensor, out_dtype: torch.dtype | None = None) -> torch.Tensor:
        h = x.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        dtype = out_dtype or self.weight.dtype
        return self.weight.to(dtype) * h.to(dtype)


class RotaryEmbedding(nn.Module):
    """cos/sin tables from transformers' rope init functions; ``dynamic`` scaling is evaluated once, which equals
    transformers up to ``max_position_embeddings`` (recommendation prompts are short)."""

    def __init__(self, cfg):
        super().__init__()
        kind = rope_type(cfg)
        if kind == "default":
            base = (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta", getattr(cfg, "rope_theta", 10000.0))
            dim = head_dim(cfg)
            inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
            scale = 1.0
        else:
            from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

            if kind not in ROPE_INIT_FUNCTIONS:
                raise ModelConfigError(f"rope_type {kind!r} is not known to this transformers version")
            inv_freq, scale = ROPE_INIT_FUNCTIONS[kind](cfg, None)
        self.register_buffer("inv_freq", inv_freq.float(), persistent=False)
        self.attention_scaling = float(scale)

    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype):
        freqs = position_ids[..., None].to(torch.float32) * self.inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return (emb.cos() * self.attention_scaling).to(dtype), (emb.sin() * self.attention_scaling).to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)  # transformers' rotate_half: first/second halves
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class Attention(nn.Module):
    # Set per instance by ``earn_export.analysis.probes.capture_attention`` only: a callable that receives this
    # layer's attention probabilities [B, Hq, T, S] (fp32) from ``attend`` and reduces them at once. None (the
    # default) leaves the forward untouched.
    probs_hook = None

    def __init__(self, cfg):
        super().__init__()
        self.n_heads = cfg.num_attention_heads
        self.n_kv = cfg.num_key_value_heads or cfg.num_attention_heads
        if self.n_heads % self.n_kv:
            raise ModelConfigError(
                f"num_attention_heads={self.n_heads} is not a multiple of num_key_value_heads={self.n_kv}"
            )
        self.group = self.n_heads // self.n_kv
        self.head_dim = head_dim(cfg)
        self.scaling = self.head_dim**-0.5
        arch = architecture(cfg)
        qkv_bias, o_bias = arch.flag(arch.qkv_bias, cfg), arch.flag(arch.o_bias, cfg)
        h = cfg.hidden_size
        self.q_proj = nn.Linear(h, self.n_heads * self.head_dim, bias=qkv_bias)
        self.k_proj = nn.Linear(h, self.n_kv * self.head_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(h, self.n_kv * self.head_dim, bias=qkv_bias)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, h, bias=o_bias)
        self.qk_norm = arch.qk_norm
        if self.qk_norm:  # Qwen3: RMSNorm over each head's D channels of Q and K, before RoPE
            self.q_norm = RMSNorm(self.head_dim, cfg.rms_norm_eps)
            self.k_norm = RMSNorm(self.head_dim, cfg.rms_norm_eps)

    def qkv(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """x [..., T, H] -> q [..., Hq, T, D], k/v [..., Hkv, T, D] with RoPE (after the QK-norm) on q and k."""
        *lead, t, _ = x.shape
        q = self.q_proj(x).view(*lead, t, self.n_heads, self.head_dim)
        k = self.k_proj(x).view(*lead, t, self.n_kv, self.head_dim)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = q.transpose(-2, -3), k.transpose(-2, -3)
        v = self.v_proj(x).view(*lead, t, self.n_kv, self.head_dim).transpose(-2, -3)
        cos, sin = cos.unsqueeze(-3), sin.unsqueeze(-3)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def attend(self, q, k, v, bias):
        """Full-sequence attention, GQA by broadcasting grouped queries (no K/V copies); scores, softmax and P·V in
        fp32. q [B, Hq, T, D], k/v [B, Hkv, S, D], bias [B, 1, T, S] or None."""
        b, _, t, d = q.shape
        if self.training and torch.is_autocast_enabled(q.device.type) and self.probs_hook is None:
            # mixed-precision training: one fused kernel (flash attention on CPU and CUDA) in the autocast dtype,
            # instead of casting every score tensor to fp32 and back (a third of a bf16 CPU step). The explicit
            # fp32 form below is what export, inference and fp32 training run; the two agree to float rounding.
            mask = None if bias is None else bias.to(q.dtype)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scaling, enable_gqa=True)
        f32 = torch.float32
        qg = q.reshape(b, self.n_kv, self.group, t, d).to(f32)
        scores = torch.matmul(qg, k.unsqueeze(2).transpose(-1, -2).to(f32)) * self.scaling  # [B,Hkv,G,T,S]
        probs = torch.softmax(scores if bias is None else scores + bias.unsqueeze(1), dim=-1)  # bias: finite NEG
        if self.probs_hook is not None:  # head h = kv * G + g, transformers' repeat_kv order
            self.probs_hook(probs.reshape(b, self.n_heads, t, probs.shape[-1]))
        out = torch.matmul(probs, v.unsqueeze(2).to(f32))  # [B,Hkv,G,T,D]
        return out.reshape(b, self.n_heads, t, d).to(q.dtype)

    def forward(self, x, cos, sin, bias, kv_sink: list | None = None):
        q, k, v = self.qkv(x, cos, sin)
        if kv_sink is not None:
            kv_sink.append((k, v))
        out = self.attend(q, k, v, bias)
        b, _, t, _ = out.shape
        return self.o_proj(out.transpose(1, 2).reshape(b, t, -1))

    def decode(self, x, cos, sin, shared_k, shared_v, shared_bias, gen_k, gen_v):
        """One decode step for all beams (the op ``earn::CompactedAttention``), reading the shared KV once.

        x [B, beam, H]; shared_k/v [B, Hkv, S, D]; shared_bias [B, S] or None; gen_k/v [B, beam, Hkv, t, D].
        Returns (out [B, beam, H], all_k, all_v): the per-beam KV including this step, the next ``gen_k/v``.
        """
        q, k, v = self.qkv(x.unsqueeze(2), cos.unsqueeze(2), sin.unsqueeze(2))  # [B,beam,H*,1,D]
        all_k = torch.cat([gen_k, k], dim=3)  # [B,beam,Hkv,t+1,D]
        all_v = torch.cat([gen_v, v], dim=3)
        out = compacted_attention(q, shared_k, shared_v, shared_bias, all_k, all_v, self.n_heads, self.n_kv,
                                  self.head_dim, self.scaling)
        return self.o_proj(out), all_k, all_v


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        arch = architecture(cfg)  # its check_config refused any activation but silu
        bias = arch.flag(arch.mlp_bias, cfg)
        h, i = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = nn.Linear(h, i, bias=bias)
        self.up_proj = nn.Linear(h, i, bias=bias)
        self.down_proj = nn.Linear(i, h, bias=bias)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.self_attn = Attention(cfg)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x, cos, sin, bias, kv_sink=None):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, bias, kv_sink)
        return x + self.mlp(self.post_attention_layernorm(x))

    def decode(self, x, cos, sin, shared_k, shared_v, shared_bias, gen_k, gen_v):
        h = self.input_layernorm(x)
        a, k, v = self.self_attn.decode(h, cos, sin, shared_k, shared_v, shared_bias, gen_k, gen_v)
        x = x + a
        return x + self.mlp(self.post_attention_layernorm(x)), k, v


class DecoderBody(nn.Module):
    """``model.*`` of the HF layout: embeddings, layers, final norm."""

    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=None)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(cfg)


@dataclass
class PrefixCache:
    """Per-user KV: prompt KV for layers < k, register KV for layers >= k. Shared by all beams."""

    keys: list  # per layer [B, Hkv, P or R, D]
    values: list
    attention_mask: torch.Tensor  # [B, P] int64 (mask of the prompt rows, used by layers < k)
    last_position: torch.Tensor  # [B] int64: position id of the last prompt row (the suffix register)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))


@dataclass
class GeneratedCache:
    """Per-beam KV of the generated tokens: per layer [B, beam, Hkv, t, D]."""

    keys: list
    values: list

    def reorder(self, parents: torch.Tensor) -> "GeneratedCache":
        """Beam b of the next step continues beam parents[:, b] of this step. parents [B, beam] int64."""
        idx = parents.to(self.keys[0].device)
        shape = idx.shape + (1, 1, 1)

        def take(t):
            return torch.take_along_dim(t, idx.reshape(shape), dim=1) if t.shape[3] else t[:, : idx.shape[1]]

        return GeneratedCache([take(k) for k in self.keys], [take(v) for v in self.values])

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Left-padded batches: positions count real tokens only; pads get 0 (their values never matter)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp_min(0)


class EarnForCausalLM(nn.Module):
    """Decoder of any family in the architecture table, with EARN register tokens. ``earn`` None: a plain model."""

    def __init__(self, config, earn: EarnConfig | None = None, init: bool = True):
        super().__init__()
        self.config = load_hf_config(config)
        self.model = DecoderBody(self.config)
        self.lm_head = nn.Linear(self.config.hidden_size, self.config.vocab_size, bias=False)
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.set_earn(earn)
        if init:  # False when a checkpoint's weights replace them anyway (load_pretrained)
            self.init_weights()

    @torch.no_grad()
    def init_weights(self, seed: int | None = None) -> None:
        """transformers' init for training from scratch: N(0, initializer_range) weights, zero biases."""
        gen = None if seed is None else torch.Generator().manual_seed(seed)
        std = getattr(self.config, "initializer_range", 0.02)
        for mod in self.modules():
            if isinstance(mod, (nn.Linear, nn.Embedding)):
                if mod is self.lm_head and self.config.tie_word_embeddings:
                    continue
                mod.weight.normal_(0.0, std, generator=gen)
                if getattr(mod, "bias", None) is not None:
                    mod.bias.zero_()

    # -- basic properties -------------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return len(self.model.layers)

    @property
    def split_layer(self) -> int:
        return self.num_layers if self.earn is None else self.earn.split_layer

    @property
    def n_kv_heads(self) -> int:
        return self.model.layers[0].self_attn.n_kv

    @property
    def head_dim(self) -> int:
        return self.model.layers[0].self_attn.head_dim

    def set_earn(self, earn: EarnConfig | None) -> None:
        if earn is not None:
            earn.validate(self.num_layers, self.config.vocab_size)
        self.earn = earn

    def _register_mask(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
        """[B, P] bool: which prompt rows are registers. Every row must hold exactly R registers."""
        if self.earn is None or self.earn.n_registers == 0:
            return torch.zeros_like(prompt_ids, dtype=torch.bool)
        reg_ids = torch.tensor(self.earn.register_token_ids, device=prompt_ids.device)
        # == + any instead of torch.isin: isin has no ONNX translation in either torch.onnx exporter
        is_reg = (prompt_ids[..., None] == reg_ids).any(-1) & prompt_mask.bool()
        counts = is_reg.sum(-1)
        r = self.earn.n_registers
        if not torch.jit.is_tracing() and not torch.compiler.is_compiling() and bool((counts != r).any()):
            raise ValueError(f"every prompt must contain exactly {r} register tokens {self.earn.register_token_ids}; "
                             f"got counts {counts.tolist()}. Build prompts with earn_export.data.prompts (registers "
                             "around the prompt).")
        return is_reg

    @property
    def compute_dtype(self) -> torch.dtype:
        """dtype of weights, projections and KV (the residual stream and the LM head are always fp32)."""
        return self.model.embed_tokens.weight.dtype

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings as the fp32 residual stream: in an fp16 model the sums of 2N sub-layer outputs
        would otherwise be rounded to fp16 at every layer (the main source of fp16 ranking flips)."""
        return self.model.embed_tokens(input_ids).to(torch.float32)

    def logits_from_hidden(self, h: torch.Tensor, token_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Final norm + LM head in fp32 (fp16 logits of magnitude 8-16 would be rounded to 1/128); ``token_ids``
        restricts the head to those vocabulary rows."""
        h = self.model.norm(h, out_dtype=torch.float32)
        w = self.lm_head.weight if token_ids is None else self.lm_head.weight[token_ids]
        return F.linear(h, w.to(torch.float32))

    # -- full-sequence forwards ------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, n_target: int = 0,
                mode: str = "split", kv_sink: list | None = None, head_token_ids: torch.Tensor | None = None):
        """Logits for the last prompt row and the ``n_target`` rows after it: ``[B, 1 + n_target, V]``; row i
        predicts target token i. ``kv_sink`` (a list) receives per-layer (k, v) of the rows each layer processed."""
        check_choice("mode", mode, MODES)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        b, s = input_ids.shape
        p = s - n_target
        if p < 1:
            raise ValueError(f"n_target={n_target} leaves no prompt in a sequence of length {s}")
        k = self.num_layers if mode == "dense" else self.split_layer
        pos = position_ids_from_mask(attention_mask)
        x = self.embed(input_ids)
        cos, sin = self.model.rotary_emb(pos, self.compute_dtype)

        causal = torch.ones(s, s, dtype=torch.bool, device=input_ids.device).tril()
        key_ok = attention_mask.bool()[:, None, :] & causal[None]  # [B, S, S]
        bias_full = torch.where(key_ok, 0.0, NEG).to(torch.float32)[:, None]  # [B,1,S,S]

        late_bias = None
        if mode == "masked" and k < self.num_layers:  # keys of layers >= k: the registers and every row after them
            is_reg = self._register_mask(input_ids[:, :p], attention_mask[:, :p])
            kept = torch.cat([is_reg, torch.ones(b, n_target, dtype=torch.bool, device=is_reg.device)], dim=1)
            late_bias = torch.where(key_ok & kept[:, None, :], 0.0, NEG).to(torch.float32)[:, None]

        for i, layer in enumerate(self.model.layers):
            if i == k and mode == "split":
                x, cos, sin = self._gather(input_ids[:, :p], attention_mask[:, :p], n_target, x, cos, sin)
                g = x.shape[1]
                bias_full = None if g == 1 else torch.where(
                    torch.ones(g, g, dtype=torch.bool, device=x.device).tril(), 0.0, NEG
                ).to(torch.float32)[None, None]
            bias = late_bias if (late_bias is not None and i >= k) else bias_full
            x = layer(x, cos, sin, bias, kv_sink)
        rows = x[:, -(n_target + 1):]
        return self.logits_from_hidden(rows, head_token_ids)

    def _gather(self, prompt_ids, prompt_mask, n_target: int, x, cos, sin):
        """Keep the register rows and the ``n_target`` rows after the prompt with their RoPE angles; registers are
        found by ArgMax over the running register count, so the gather has a static size and exports as is."""
        b, p = prompt_ids.shape
        is_reg = self._register_mask(prompt_ids, prompt_mask)
        running = is_reg.to(torch.int64).cumsum(-1)
        cols = [torch.argmax(((running == j + 1) & is_reg).to(torch.int32), dim=1, keepdim=True)
                for j in range(self.earn.n_registers)]
        tail = torch.arange(p, p + n_target, device=prompt_ids.device).expand(b, n_target)
        idx = torch.cat([*cols, tail], dim=1)
        idx = idx.reshape(b, idx.shape[1], 1)
        # gather with an explicit expand (not take_along_dim): exports with TorchScript, and keeps batch/prompt
        # dims symbolic under torch.export (take_along_dim's broadcast specialises them)
        return tuple(torch.gather(t, 1, idx.expand(-1, -1, t.shape[-1])) for t in (x, cos, sin))

    # -- incremental inference ---------------------------------------------------------------------------
    @torch.no_grad()
    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, head_token_ids=None):
        """Run the prompt once: (logits of the first identifier token [B, V] -- or [B, len(head_token_ids)]
        when the head is restricted to those vocabulary rows -- and the PrefixCache)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        sink: list = []
        logits = self.forward(input_ids, attention_mask, n_target=0, mode="split", kv_sink=sink,
                              head_token_ids=head_token_ids)
        cache = PrefixCache(keys=[kv[0] for kv in sink], values=[kv[1] for kv in sink], attention_mask=attention_mask,
                            last_position=position_ids_from_mask(attention_mask)[:, -1])
        return logits[:, 0], cache

    @torch.no_grad()
    def decode_step(self, tokens: torch.Tensor, cache: PrefixCache, generated: GeneratedCache | None = None,
                    head_token_ids: torch.Tensor | None = None):
        """Feed one token per beam: tokens [B, beam] -> (logits [B, beam, V], GeneratedCache with t+1)."""
        b, nb = tokens.shape
        if generated is None:  # zero-length per-beam KV before the first generated token
            w = self.model.embed_tokens.weight
            z = torch.zeros(b, nb, self.n_kv_heads, 0, self.head_dim, device=w.device, dtype=w.dtype)
            generated = GeneratedCache([z] * self.num_layers, [z] * self.num_layers)
        position_ids = (cache.last_position + 1 + generated.keys[0].shape[3])[:, None].expand(b, nb)
        return self.decode_tensors(tokens, position_ids, cache.attention_mask, cache.keys, cache.values,
                                   generated.keys, generated.values, head_token_ids)

    def decode_tensors(self, tokens, position_ids, attention_mask, shared_k, shared_v, gen_k, gen_v,
                       head_token_ids=None):
        """Flat-tensor decode step (what the ONNX decode graph computes)."""
        x = self.embed(tokens)
        cos, sin = self.model.rotary_emb(position_ids, self.compute_dtype)
        prompt_bias = torch.where(attention_mask.bool(), 0.0, NEG).to(torch.float32)
        k = self.split_layer
        new_k, new_v = [], []
        for i, layer in enumerate(self.model.layers):
            bias = prompt_bias if i < k else None
            x, nk, nv = layer.decode(x, cos, sin, shared_k[i], shared_v[i], bias, gen_k[i], gen_v[i])
            new_k.append(nk)
            new_v.append(nv)
        return self.logits_from_hidden(x, head_token_ids), GeneratedCache(new_k, new_v)

    # -- vocabulary --------------------------------------------------------------------------------------
    def resize_token_embeddings(self, new_size: int) -> None:
        """Grow the vocabulary; new rows = mean of old rows (+ small noise) so new tokens start neutral."""
        old = self.model.embed_tokens.weight.data
        n_old, h = old.shape
        if new_size < n_old:
            raise ValueError(f"cannot shrink vocabulary from {n_old} to {new_size}")
        if new_size == n_old:
            return
        gen = torch.Generator().manual_seed(0)
        std = float(old.float().std()) if n_old > 1 else 0.02

        def grow(w):
            extra = torch.randn(new_size - n_old, w.shape[1], generator=gen) * (0.02 * std)
            return torch.cat([w, (extra + w.float().mean(0, keepdim=True)).to(w.dtype)], 0)

        self.model.embed_tokens = nn.Embedding(new_size, h, _weight=grow(old))
        head = self.lm_head.weight.data
        self.lm_head = nn.Linear(h, new_size, bias=False)
        tied = self.config.tie_word_embeddings
        self.lm_head.weight = self.model.embed_tokens.weight if tied else nn.Parameter(grow(head))
        self.config.vocab_size = new_size
