"""bf16 CPU training (autocast, fp32 weights), the ``auto`` precision rule, and resumable runs: a run killed
mid-way and started again with the same arguments ends with the weights of an uninterrupted run."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from earn_export.train import trainer
from earn_export.data.data_spec import DataSpec
from earn_export.train.train_checkpoint import train
from earn_export.train.trainer import autocast_context, resolve_precision

DATA = DataSpec(n_users=300, n_items=60)


def test_auto_precision_follows_the_cpu_and_the_model_size(monkeypatch):
    monkeypatch.setattr(trainer, "cpu_bf16_units", lambda: ["avx512_bf16"])
    assert resolve_precision("auto", "cpu", 135_000_000)[0] == "bf16"
    assert resolve_precision("auto", "cpu", 900_000)[0] == "fp32"  # small models: not worth it
    assert resolve_precision("auto", "cuda", 135_000_000)[0] == "fp32"
    monkeypatch.setattr(trainer, "cpu_bf16_units", lambda: [])
    prec, why = resolve_precision("auto", "cpu", 135_000_000)
    assert prec == "fp32" and "no native bf16" in why
    assert resolve_precision("bf16", "cpu", 10)[0] == "bf16"  # explicit choice is kept (emulated where no units)
    with pytest.raises(ValueError, match="choose auto"):
        resolve_precision("int8", "cpu", 10)


def test_cpu_autocast_runs_matmuls_in_bf16_and_refuses_fp16():
    a, b = torch.randn(8, 16), torch.randn(16, 4)
    with autocast_context("cpu", "bf16"):
        assert (a @ b).dtype == torch.bfloat16
    with autocast_context("cpu", "fp32"):
        assert (a @ b).dtype == torch.float32
    with pytest.raises(ValueError, match="fp16 needs --device cuda"):
        autocast_context("cpu", "fp16")


def _run(out, resume_dir, precision="fp32", **kw):
    return train(out, DATA, preset="micro", epochs=1, batch_size=16, lr=3e-3, max_train_examples=160,
                 valid_users=32, progress=False, precision=precision, resume_dir=resume_dir, save_steps=3, **kw)


def test_bf16_training_loss_tracks_fp32(tmp_path):
    logs = {}
    for p in ("fp32", "bf16"):
        ck = _run(tmp_path / p, None, precision=p)
        logs[p] = json.loads((ck / "train_log.json").read_text())
    assert logs["bf16"]["precision"] == "bf16"
    assert logs["bf16"]["best_eval_loss"] == pytest.approx(logs["fp32"]["best_eval_loss"], rel=0.03)
    assert logs["bf16"]["train_loss"] == pytest.approx(logs["fp32"]["train_loss"], rel=0.03)


def test_killed_run_continues_to_the_weights_of_an_uninterrupted_one(tmp_path, monkeypatch):
    full = _run(tmp_path / "full", tmp_path / "full.trainer")
    from transformers import Trainer

    step = Trainer.training_step
    calls = {"n": 0}

    def dies_at_step_5(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt("killed")
        return step(self, *a, **kw)

    monkeypatch.setattr(Trainer, "training_step", dies_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "cut", tmp_path / "cut.trainer")
    assert not (tmp_path / "cut").exists()  # nothing half-written
    assert [p.name for p in (tmp_path / "cut.trainer").iterdir()] == ["checkpoint-3"]
    monkeypatch.setattr(Trainer, "training_step", step)
    resumed = _run(tmp_path / "cut", tmp_path / "cut.trainer")
    log = json.loads((resumed / "train_log.json").read_text())
    assert log["resumed_from_step"] == 3 and log["complete"] and log["steps"] == 10
    a, b = load_file(str(full / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k].numpy(), b[k].numpy(), atol=1e-6, err_msg=k)


@pytest.mark.parametrize("mode", ["split", "dense", "masked"])
def test_training_attention_kernel_equals_the_exported_form(mode, monkeypatch):
    """Under autocast in train mode, attention runs as one fused SDPA kernel; export and inference run the
    explicit fp32 form. Both must give the same logits, or training would optimise another model. (Autocast to
    fp32 does not exist on CPU, so the fused path is switched on in fp32 here to compare to float rounding.)"""
    from earn_export.model import decoder
    from model_configs import tiny_llama

    from earn_export.model import EarnConfig, EarnForCausalLM

    model = EarnForCausalLM(tiny_llama(layers=4, vocab=96), init=False)
    model.init_weights(seed=0)
    model.set_earn(EarnConfig(split_layer=2, prefix_token_ids=[1], suffix_token_ids=[2], id_length=2))
    ids = torch.randint(3, 96, (3, 12))
    ids[:, 2], ids[:, 9] = 1, 2  # prefix and suffix registers
    mask = torch.ones_like(ids)
    mask[0, :2] = 0  # left padding
    ids[0, :2] = 0
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(decoder.torch, "is_autocast_enabled", lambda *a: True)
    monkeypatch.setattr(decoder.F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or sdpa(*a, **k))
    model.train()
    got = model(ids, mask, n_target=2, mode=mode)
    assert calls  # the fused kernel ran
    model.eval()
    with torch.no_grad():
        want = model(ids, mask, n_target=2, mode=mode)
    torch.testing.assert_close(got.detach(), want, atol=1e-5, rtol=1e-5)
