"""Real model shapes with fewer layers and a small vocabulary (random weights), shared by tests; the shapes
themselves are in earn_export.model.shapes."""

from earn_export.model.shapes import hf_config


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
