"""Named model sizes for training from scratch on a CPU (``--model-config tiny|small|base``).

Shapes follow the Llama family (GQA, SwiGLU, RoPE, tied embeddings); ``split`` is the default EARN k,
one quarter of the layers as the paper recommends (EARN paper, arXiv 2507.00715; docs/design.md §2).
"""

from __future__ import annotations

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


def preset_config(name: str, vocab_size: int, max_position_embeddings: int = 1024, **overrides):
    """(transformers LlamaConfig, default split layer) for a preset name."""
    from transformers import LlamaConfig

    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)} or pass --model PATH")
    spec = dict(PRESETS[name])
    split = spec.pop("split")
    spec.update(overrides)
    cfg = LlamaConfig(vocab_size=vocab_size, max_position_embeddings=max_position_embeddings,
                      tie_word_embeddings=True, rms_norm_eps=1e-6, rope_theta=10000.0, **spec)
    return cfg, split
