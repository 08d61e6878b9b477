"""The dense forward equals transformers' own forward on real model shapes (random weights)."""

import pytest
import torch

from earn_export.model import EarnForCausalLM
from helpers import hf_and_ours, hf_batch
from model_configs import llama32_1b, llama_rope_parameters, qwen25_05b


@pytest.mark.parametrize("make_cfg", [qwen25_05b, llama32_1b, llama_rope_parameters],
                         ids=["qwen2.5-0.5b", "llama-3.2-1b", "rope_parameters"])
def test_dense_forward_matches_transformers(make_cfg, tmp_path):
    cfg = make_cfg()
    hf, ours = hf_and_ours(cfg, tmp_path)
    ids, mask = hf_batch(cfg.vocab_size, [17, 11, 5])
    pos = (mask.cumsum(-1) - 1).clamp_min(0)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        got = ours(ids, mask, n_target=ids.shape[1] - 1, mode="dense")
    valid = mask.bool()
    diff = (ref - got)[valid].abs().max().item()
    assert diff <= 1e-4, f"max |logit diff| {diff}"
    # the comparison is meaningful: logits are far from constant
    assert ref[valid].std() > 0.1


def test_rope_inv_freq_from_transformers_init(tmp_path):
    """llama3 scaling changes the low frequencies; our table must equal transformers' own."""
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    cfg = llama32_1b(layers=1, vocab=64)
    ours = EarnForCausalLM(cfg)
    ref = LlamaRotaryEmbedding(cfg)
    assert torch.equal(ours.model.rotary_emb.inv_freq, ref.inv_freq.float())
    default = EarnForCausalLM(llama32_1b(layers=1, vocab=64).__class__(**{**cfg.to_dict(), "rope_scaling": None,
                                                                            "rope_parameters": None}))
    assert not torch.equal(default.model.rotary_emb.inv_freq, ours.model.rotary_emb.inv_freq)
