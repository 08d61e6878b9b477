"""The dense forward equals transformers' own forward on real model shapes (random weights)."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from earn_export.model import EarnForCausalLM, load_pretrained
from model_configs import llama32_1b, llama_rope_parameters, qwen25_05b


def _hf_and_ours(cfg, tmp_path, seed=0):
    torch.manual_seed(seed)
    cfg._attn_implementation = "eager"
    hf = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
    with torch.no_grad():  # non-trivial norm weights and biases, so a missed term shows up
        for name, p in hf.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    hf.save_pretrained(tmp_path)
    ours = load_pretrained(tmp_path).eval()
    return hf, ours


def _batch(vocab, lens, seed=1):
    g = torch.Generator().manual_seed(seed)
    s = max(lens)
    ids = torch.randint(0, vocab, (len(lens), s), generator=g)
    mask = torch.zeros(len(lens), s, dtype=torch.long)
    for i, n in enumerate(lens):
        mask[i, s - n:] = 1
    return ids, mask


@pytest.mark.parametrize("make_cfg", [qwen25_05b, llama32_1b, llama_rope_parameters],
                         ids=["qwen2.5-0.5b", "llama-3.2-1b", "rope_parameters"])
def test_dense_forward_matches_transformers(make_cfg, tmp_path):
    cfg = make_cfg()
    hf, ours = _hf_and_ours(cfg, tmp_path)
    ids, mask = _batch(cfg.vocab_size, [17, 11, 5])
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
