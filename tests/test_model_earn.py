"""EARN split forward, masked oracle, compacted-cache inference, checkpoint round-trip, errors."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from earn_export.model import (CheckpointError, EarnConfig, EarnForCausalLM, KVShape,
                               ModelConfigError, UnsupportedArchitectureError, kv_bytes,
                               load_hf_config, load_pretrained, save_pretrained)
from model_configs import tiny_llama, tiny_mistral, tiny_qwen, tiny_qwen3
from helpers import P_ID, S_ID, make_model

def prompts(lens, vocab=80, seed=3):
    """Left-padded prompts [reg_p, body..., reg_s] of the given total lengths."""
    g = torch.Generator().manual_seed(seed)
    s = max(lens)
    ids = torch.zeros(len(lens), s, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lens):
        body = torch.randint(0, vocab, (n - 2,), generator=g)
        ids[i, s - n:] = torch.cat([torch.tensor([P_ID]), body, torch.tensor([S_ID])])
        mask[i, s - n:] = 1
    return ids, mask


@pytest.mark.parametrize("cfg_fn", [tiny_llama, tiny_qwen, tiny_qwen3, tiny_mistral],
                         ids=["llama", "qwen2", "qwen3", "mistral"])
@pytest.mark.parametrize("k", [1, 2, 4])
def test_split_equals_masked_oracle(cfg_fn, k):
    m = make_model(cfg_fn, k=k)
    ids, mask = prompts([12, 7, 3, 9])
    targets = torch.randint(0, 80, (4, 4), generator=torch.Generator().manual_seed(5))
    full = torch.cat([ids, targets], 1)
    fmask = torch.cat([mask, torch.ones_like(targets)], 1)
    with torch.no_grad():
        split = m(full, fmask, n_target=4, mode="split")
        masked = m(full, fmask, n_target=4, mode="masked")
        dense = m(full, fmask, n_target=4, mode="dense")
    assert (split - masked).abs().max() <= 1e-5
    if k == m.num_layers:
        assert torch.equal(split, dense)  # k = N is the dense model, bit for bit
    else:
        assert (split - dense).abs().max() > 1e-3  # pruning really changes the function


def test_split_ignores_pruned_prompt_in_late_layers():
    """Changing only prompt tokens' late-layer inputs cannot matter: k=1 split depends on prompt through layer 0."""
    m = make_model(k=4)
    m0 = make_model(k=1)
    ids, mask = prompts([10, 10])
    ids2 = ids.clone()
    ids2[:, 3] = (ids2[:, 3] + 1) % 80  # change one history token
    with torch.no_grad():
        a, b = m0(ids, mask), m0(ids2, mask)
        c, d = m(ids, mask), m(ids2, mask)
    assert (a - b).abs().max() > 0  # still flows through layer 0 into the registers
    assert (c - d).abs().max() > 0


@pytest.mark.parametrize("cfg_fn,k", [(tiny_llama, 2), (tiny_qwen, 1), (tiny_llama, 4), (tiny_qwen3, 2),
                                      (tiny_mistral, 1)])
def test_prefill_decode_equals_full_forward(cfg_fn, k):
    """3 decode steps with beams and reordering == split forward over prompt + that beam's tokens."""
    m = make_model(cfg_fn, k=k)
    ids, mask = prompts([11, 6, 8])
    b, beam, steps = 3, 5, 3
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        first, cache = m.prefill(ids, mask)
        assert torch.allclose(first, m(ids, mask)[:, 0], atol=1e-6)
        seqs = torch.zeros(b, beam, 0, dtype=torch.long)
        gen = None
        for t in range(steps):
            parents = torch.randint(0, beam, (b, beam), generator=g) if t else torch.zeros(b, beam, dtype=torch.long)
            tokens = torch.randint(0, 80, (b, beam), generator=g)
            seqs = torch.cat([torch.take_along_dim(seqs, parents[..., None], 1), tokens[..., None]], 2)
            if gen is not None:
                gen = gen.reorder(parents)
            logits, gen = m.decode_step(tokens, cache, gen)
            for j in range(beam):
                full = torch.cat([ids, seqs[:, j]], 1)
                fmask = torch.cat([mask, torch.ones_like(seqs[:, j])], 1)
                ref = m(full, fmask, n_target=t + 1, mode="masked")[:, -1]
                assert (logits[:, j] - ref).abs().max() <= 1e-4, (t, j)
    # the cache really is compacted: late layers hold R rows, early layers P rows
    assert cache.keys[0].shape[2] == ids.shape[1]
    assert all(kk.shape[2] == 2 for kk in cache.keys[k:])
    measured = cache.nbytes() + gen.nbytes()
    expected = kv_bytes(KVShape.of(m), batch=b, beam=beam, prompt_len=ids.shape[1], steps=steps,
                        split_layer=k, n_registers=2)
    assert measured == expected


def test_kv_bytes_layouts():
    s = KVShape(num_layers=32, n_kv_heads=32, head_dim=128, dtype_bytes=2)
    earn = kv_bytes(s, batch=1, beam=20, prompt_len=100, steps=3, split_layer=4, n_registers=2)
    dense = kv_bytes(s, batch=1, beam=20, prompt_len=100, steps=3)
    hf = kv_bytes(s, batch=1, beam=20, prompt_len=100, steps=3, layout="hf")
    per = 2 * 32 * 128 * 2
    assert earn == per * (4 * 100 + 28 * 2 + 20 * 32 * 3)
    assert dense == per * (32 * 100 + 20 * 32 * 3)
    assert hf == per * 32 * 20 * 103
    with pytest.raises(ValueError):
        kv_bytes(s, batch=1, beam=1, prompt_len=1, steps=1, split_layer=0)


def test_roundtrip_transformers_checkpoint_bit_exact(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_qwen(layers=2)
    hf = AutoModelForCausalLM.from_config(cfg)
    hf.save_pretrained(tmp_path / "hf")
    m = load_pretrained(tmp_path / "hf")
    save_pretrained(m, tmp_path / "ours")
    a, b = load_file(str(tmp_path / "hf" / "model.safetensors")), load_file(str(tmp_path / "ours" / "model.safetensors"))
    assert set(a) == set(b)
    assert all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
    # and transformers reads our output back
    hf2 = AutoModelForCausalLM.from_pretrained(tmp_path / "ours")
    assert all(torch.equal(p, q) for p, q in zip(hf.state_dict().values(), hf2.state_dict().values()))


def test_roundtrip_bf16_and_earn_json(tmp_path):
    m = make_model(tiny_llama, k=2).to(torch.bfloat16)
    save_pretrained(m, tmp_path)
    m2 = load_pretrained(tmp_path)
    assert m2.earn == m.earn
    assert next(m2.parameters()).dtype == torch.bfloat16
    assert all(torch.equal(p, q) for p, q in zip(m.state_dict().values(), m2.state_dict().values()))


def test_resize_token_embeddings_for_registers():
    torch.manual_seed(0)
    m = EarnForCausalLM(tiny_qwen(layers=2, vocab=50))
    emb_before = m.model.embed_tokens.weight.detach().clone()
    m.resize_token_embeddings(52)  # room for two registers
    m.set_earn(EarnConfig(split_layer=1, prefix_token_ids=[50], suffix_token_ids=[51]))
    assert m.config.vocab_size == 52 and m.lm_head.weight.shape[0] == 52
    assert m.lm_head.weight.data_ptr() == m.model.embed_tokens.weight.data_ptr()  # still tied
    assert torch.equal(m.model.embed_tokens.weight[:50], emb_before)
    new = m.model.embed_tokens.weight[50:]
    assert torch.allclose(new, emb_before.mean(0).expand_as(new), atol=0.1 * emb_before.std())


def test_errors_are_clear(tmp_path):
    from transformers import GPT2Config

    with pytest.raises(UnsupportedArchitectureError, match="gpt2.*not supported"):
        load_hf_config(GPT2Config().to_dict())
    with pytest.raises(ModelConfigError, match="split_layer k=5 is out of range"):
        make_model(k=5)
    with pytest.raises(ModelConfigError, match="split_layer k=0"):
        make_model(k=0)
    with pytest.raises(ModelConfigError, match="do not fit the vocabulary"):
        EarnForCausalLM(tiny_llama(layers=2), EarnConfig(split_layer=1, prefix_token_ids=[5], suffix_token_ids=[500]))
    m = make_model(k=2)
    save_pretrained(m, tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    del state["model.layers.1.mlp.up_proj.weight"]
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="missing 1 tensors.*layers.1.mlp.up_proj"):
        load_pretrained(tmp_path)
    with pytest.raises(ModelConfigError, match="no config.json"):
        load_pretrained(tmp_path / "nope")
    ids, mask = prompts([6])
    ids[0, -1] = 3  # suffix register missing
    with pytest.raises(ValueError, match="exactly 2 register tokens"):
        m(ids, mask)
    bad = json.loads((tmp_path / "earn.json").read_text())
    bad["split_layer"] = 9
    (tmp_path / "earn.json").write_text(json.dumps(bad))
    save_file(load_file(str(tmp_path / "model.safetensors")) | {"model.layers.1.mlp.up_proj.weight":
              torch.zeros(128, 64)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ModelConfigError, match="split_layer k=9 is out of range"):
        load_pretrained(tmp_path)
