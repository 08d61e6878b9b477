"""Every model shape the project names, in one place: from-scratch presets, real released models, test shapes.

One registry because the same numbers were copied into trainer, benchmarks and tests, and a typo measured
another model; plain dicts, so the CLI can check ``--split-layer`` while parsing. ``split`` is N/4 everywhere.
"""

from __future__ import annotations

_LLAMA = dict(model_type="llama", tie_word_embeddings=True, rms_norm_eps=1e-6, rope_theta=10000.0)

PRESETS = {
    # ~0.3M non-embedding parameters: unit tests and the embedded demo
    "micro": dict(hidden_size=64, intermediate_size=192, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, split=1),
    # ~0.8M non-embedding: Beauty in ~25 min on 2 cores (dense), about half that for EARN
    "tiny": dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, split=1),
    # ~1.6M non-embedding, 8 layers
    "small": dict(hidden_size=128, intermediate_size=384, num_hidden_layers=8, num_attention_heads=4,
                  num_key_value_heads=2, split=2),
    # benchmark shape of realistic proportions (hidden 512, 16 layers)
    "base": dict(hidden_size=512, intermediate_size=1408, num_hidden_layers=16, num_attention_heads=8,
                 num_key_value_heads=2, split=4),
}
BENCH_VOCAB = 4096  # the synthetic vocabulary of `earn-export bench` (4 identifier levels x 256 codes + words)

REAL_MODELS = {
    # Qwen2.5-0.5B: 14 heads : 2 KV heads, head_dim 64, qkv bias, tied embeddings
    "qwen2.5-0.5b": dict(model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True,
                         rope_theta=1000000.0, rms_norm_eps=1e-6, use_sliding_window=False,
                         max_position_embeddings=32768, split=6),
    # Llama-3.2-1B: 32 heads : 8 KV heads, head_dim 64, llama3 RoPE scaling, tied embeddings
    "llama3.2-1b": dict(model_type="llama", hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                        num_attention_heads=32, num_key_value_heads=8, head_dim=64, vocab_size=128256,
                        tie_word_embeddings=True, rope_theta=500000.0, rms_norm_eps=1e-5,
                        max_position_embeddings=131072, split=4,
                        rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
}

TEST_SHAPES = {
    "tiny-llama": dict(model_type="llama", vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                       tie_word_embeddings=False),
    "tiny-qwen": dict(model_type="qwen2", vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=512,
                      tie_word_embeddings=True, use_sliding_window=False),
    # transformers-5 style: RoPE given as rope_parameters (linear scaling), untied head
    "llama-rope-parameters": dict(model_type="llama", vocab_size=256, hidden_size=128, intermediate_size=256,
                                  num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                                  max_position_embeddings=4096, tie_word_embeddings=False,
                                  rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}),
}


def shape(name: str) -> dict:
    """The registry entry ``name`` (``bench`` is the ``base`` preset at the bench vocabulary), as a new dict."""
    if name == "bench":
        return {**_LLAMA, **PRESETS["base"], "vocab_size": BENCH_VOCAB}
    for table, extra in ((PRESETS, _LLAMA), (REAL_MODELS, {}), (TEST_SHAPES, {})):
        if name in table:
            return {**extra, **table[name]}
    names = ", ".join(["bench", *PRESETS, *REAL_MODELS, *TEST_SHAPES])
    raise ValueError(f"unknown model shape {name!r}; choose one of {names}")


def depth(name: str) -> int | None:
    """Decoder layers of a named shape, or None for an unknown name."""
    try:
        return shape(name)["num_hidden_layers"]
    except ValueError:
        return None


def hf_config(name: str, **overrides):
    """A ``transformers`` config (LlamaConfig or Qwen2Config) of shape ``name`` with ``overrides`` applied
    (e.g. ``num_hidden_layers=2, vocab_size=512``); the EARN split is not a config field and is dropped."""
    from transformers import LlamaConfig, Qwen2Config

    spec = {**shape(name), **overrides}
    spec.pop("split", None)
    cls = Qwen2Config if spec.pop("model_type") == "qwen2" else LlamaConfig
    return cls(**spec)


def preset_config(name: str, vocab_size: int, max_position_embeddings: int = 1024, **overrides):
    """(transformers config, default split layer) of a from-scratch preset."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)} or pass --model PATH")
    cfg = hf_config(name, vocab_size=vocab_size, max_position_embeddings=max_position_embeddings, **overrides)
    return cfg, PRESETS[name]["split"]
