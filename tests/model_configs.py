"""Real model shapes with fewer layers and a small vocabulary (random weights), shared by tests; the shapes
themselves are in earn_export.model.shapes."""

from earn_export.model.shapes import hf_config
from transformers import MistralConfig, Qwen3Config


def qwen25_05b(layers=2, vocab=512):
    return hf_config("qwen2.5-0.5b", num_hidden_layers=layers, vocab_size=vocab)


def llama32_1b(layers=2, vocab=512):
    return hf_config("llama3.2-1b", num_hidden_layers=layers, vocab_size=vocab)


def llama_rope_parameters(layers=3, vocab=256):
    return hf_config("llama-rope-parameters", num_hidden_layers=layers, vocab_size=vocab)


def tiny_llama(layers=4, vocab=96, **kw):
    return hf_config("tiny-llama", num_hidden_layers=layers, vocab_size=vocab, **kw)


def tiny_qwen(layers=4, vocab=96, **kw):
    return hf_config("tiny-qwen", num_hidden_layers=layers, vocab_size=vocab, **kw)


def qwen3_06b(layers=2, vocab=512, tie=True):
    # Qwen3-0.6B: hidden 1024, 16 heads : 8 kv heads, head_dim 128 (not 1024 / 16), QK-norm, no qkv bias, tied
    # (Qwen3-8B and up are untied: tie=False)
    return Qwen3Config(vocab_size=vocab, hidden_size=1024, intermediate_size=3072, num_hidden_layers=layers,
                       num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
                       rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=tie, use_sliding_window=False)


def mistral_7b(layers=1, vocab=512, **kw):
    # Mistral-7B-v0.3: hidden 4096, 32 heads : 8 kv heads, head_dim 128, no biases, untied, no sliding window
    base = dict(vocab_size=vocab, hidden_size=4096, intermediate_size=14336, num_hidden_layers=layers,
                num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=32768,
                rope_theta=1000000.0, rms_norm_eps=1e-5, tie_word_embeddings=False, sliding_window=None)
    base.update(kw)
    return MistralConfig(**base)


def tiny_qwen3(layers=4, vocab=96, **kw):
    # head_dim 32 with hidden 64 / 4 heads: decoupled as in Qwen3
    base = dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=512,
                tie_word_embeddings=False, use_sliding_window=False)
    base.update(kw)
    return Qwen3Config(**base)


def tiny_mistral(layers=4, vocab=96, **kw):
    base = dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                tie_word_embeddings=False, sliding_window=None)
    base.update(kw)
    return MistralConfig(**base)
