"""--smoothquant (on by default for int8): the folded scales leave the fp32 model's outputs unchanged, and on a model with outlier activation
channels (as LLMs have) they shrink the int8 engine's error against the fp32 model."""

import copy

import numpy as np
import pytest
import torch

from earn_export.engine.trie_files import resolve_trie
from earn_export.export import export_onnx
from earn_export.export.onnx_export import _prompt_pieces
from earn_export.export.smoothquant import calibration_batch, smooth_model
from earn_export.runtime.backends import OrtBackend, TorchBackend
from helpers import ITEM_TOKENS, compare_backends, earn_model, synthetic_trie, token_prompts


def outlier_model(kind="llama"):
    """A tiny model with a few norm channels 100x larger: their activations dominate each per-tensor int8 scale."""
    m = earn_model(kind, 2)
    with torch.no_grad():
        for layer in m.model.layers:
            layer.input_layernorm.weight[[3, 17]] *= 100
            layer.post_attention_layernorm.weight[[5]] *= 100
    return m


@pytest.mark.parametrize("kind", ["llama", "qwen2"])  # GQA 4:2 without biases; 4:1 with q/k/v biases
def test_smoothing_keeps_fp32_outputs(kind):
    trie = resolve_trie(synthetic_trie()[0], None)
    m = outlier_model(kind)
    smoothed = copy.deepcopy(m)
    cal = calibration_batch(_prompt_pieces(None, m, trie), trie.item_paths(), users=8)
    entry = smooth_model(smoothed, *cal, alpha=0.5)
    assert entry["alpha"] == 0.5 and entry["layers"] == m.num_layers
    moved = smoothed.model.layers[0].input_layernorm.weight / m.model.layers[0].input_layernorm.weight
    assert moved[3] < 0.5 * moved.median()  # the outlier channels were divided most
    ids, mask = (torch.from_numpy(a) for a in token_prompts(m, [9, 5, 12]))
    with torch.no_grad():
        ref, got = m(ids, attention_mask=mask), smoothed(ids, attention_mask=mask)
    assert torch.allclose(ref, got, rtol=1e-4, atol=1e-4), float((ref - got).abs().max())
    with pytest.raises(ValueError, match="alpha"):
        smooth_model(copy.deepcopy(m), *cal, alpha=1.0)


def test_smoothquant_int8_closer_to_fp32(tmp_path):
    trie = synthetic_trie()[0]
    m = outlier_model()
    ids, mask = token_prompts(m, [9, 5, 12])
    err = {}
    for name, alpha in (("plain", 0), ("smooth", None)):  # None: the default for int8, alpha 0.5
        d = tmp_path / name
        man = export_onnx(m, d, trie=trie, exporter="torchscript", form="reference", quantize="int8",
                          smoothquant=alpha)
        assert (man["quantization"]["smoothquant"] or {}).get("alpha") == (0.5 if alpha is None else None)
        diffs, _ = compare_backends(OrtBackend(d), TorchBackend(m, ITEM_TOKENS), ids, mask, beam=8)
        err[name] = float(np.mean(diffs))
    assert err["smooth"] < 0.7 * err["plain"], err
