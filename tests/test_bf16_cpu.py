"""bf16 inference on the CPU: the torch reference and `eval --dtype bfloat16` run in bf16 and rank close to fp32;
ONNX Runtime's CPU provider has no bf16 MatMul here (so there are no bf16 CPU engines) and the probe says so."""

import json

import numpy as np
import pytest
import torch

from earn_export.runtime.backends import TorchBackend
from helpers import recommender_from_checkpoint


@pytest.fixture(scope="module")
def synthetic_ckpt(tmp_path_factory):
    """A micro EARN checkpoint briefly trained on the embedded synthetic data (has data.json: `eval` runs on it)."""
    from earn_export.data.data_spec import DataSpec
    from earn_export.train.train_checkpoint import train

    return train(tmp_path_factory.mktemp("bf16-ckpt"), DataSpec(), split="auto", preset="micro", epochs=1,
                 batch_size=64, lr=3e-3, progress=False, max_train_examples=600, valid_users=50)


def test_torch_reference_bf16_close_to_fp32(synthetic_ckpt):
    from earn_export.data.sequences import eval_examples
    from earn_export.model import load_pretrained
    from earn_export.data.data_spec import DataSpec

    beauty_ckpt = synthetic_ckpt
    hist = [list(map(int, h)) for h in eval_examples(DataSpec().load(), "test", max_history=20).histories[:48]]
    lists = {}
    for dtype in (torch.float32, torch.bfloat16):
        rec = recommender_from_checkpoint(beauty_ckpt, vocab="full", dtype=dtype, batch_size=16)
        assert next(rec.backend.model.parameters()).dtype == dtype
        with torch.no_grad():
            lists[dtype] = rec.recommend(hist, top_k=20, beam=20).items
    a, b = lists[torch.bfloat16], lists[torch.float32]
    overlap = np.mean([len(set(x) & set(y)) / len(set(y)) for x, y in zip(a, b)])
    assert overlap >= 0.7, overlap  # bf16 has 8 mantissa bits: lists move, the sets mostly stay
    # log-probs are fp32 numpy from bf16 logits
    m = load_pretrained(beauty_ckpt, dtype=torch.bfloat16)
    ids, mask = recommender_from_checkpoint(beauty_ckpt, vocab="full").encoder(hist[:2])
    lp, _ = TorchBackend(m).prefill(ids, mask)
    assert lp.dtype == np.float32 and np.isfinite(lp).any()


def test_eval_bf16_cli(synthetic_ckpt, capsys):
    from earn_export.cli import main

    assert main(["eval", str(synthetic_ckpt), "--dtype", "bfloat16", "--users", "32", "--quiet"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["backend"] == "torch" and 0.0 <= res["recall@20"] <= 1.0


def test_probe_reports_ort_bf16_matmul():
    from earn_export.runtime.machine import ort_bf16_matmul

    reason = ort_bf16_matmul()
    assert reason is None or "MatMul" in reason  # x86 builds: NOT_IMPLEMENTED for MatMul
