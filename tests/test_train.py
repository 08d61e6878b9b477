"""Training pipeline: a short EARN fine-tune learns, the checkpoint is complete, and CLI train → eval → export →
check → recommend works end to end on the embedded synthetic data; baselines evaluate through the same path."""

import json

import numpy as np
import pytest
import torch

from earn_export.cli import main
from earn_export.data.data_spec import DataSpec, make_catalog
from earn_export.data.sequences import eval_examples
from earn_export.model import load_pretrained
from earn_export.train.evaluate import evaluate_checkpoint
from earn_export.train.train_checkpoint import build_model, train
from earn_export.train.trainer import LeftPadCollator, NextItemLoss

SMALL = DataSpec(n_users=600, n_items=120)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("earn")
    # 5 epochs: the model clearly beats popularity (1.37x R@10 here; 3 epochs gave only 1.11x, too close to test)
    train(out, SMALL, split="auto", preset="micro", epochs=5, batch_size=64, lr=3e-3, progress=False)
    return out


def test_checkpoint_is_complete_and_loads(ckpt):
    names = {p.name for p in ckpt.iterdir()}
    assert {"config.json", "model.safetensors", "earn.json", "items.json", "trie.npz", "prompt.json",
            "tokenizer.json", "data.json", "train_log.json"} <= names
    assert not (ckpt / "trainer").exists()
    model = load_pretrained(ckpt)
    assert model.split_layer == 1 and model.num_layers == 4
    log = json.loads((ckpt / "train_log.json").read_text())
    # training reduced the loss well below the uniform-guess loss over the identifier tokens
    assert log["best_eval_loss"] < 0.6 * np.log(model.config.vocab_size)


def test_trained_model_beats_popularity(ckpt):
    m = evaluate_checkpoint(ckpt, progress=False)
    pop = evaluate_checkpoint(ckpt, baseline="popularity", progress=False)
    assert m["users"] == pop["users"] > 20
    # popularity is strong on the small synthetic catalog (120 items, Zipf 0.8): about 0.35 R@10 / 0.50 R@20
    assert m["recall@10"] > 1.15 * pop["recall@10"] and m["recall@20"] > pop["recall@20"], (m, pop)


def test_split_forward_is_what_training_optimises():
    """The loss wrapper uses the split forward: its gradient reaches no prompt row of the late layers."""
    data = SMALL.load()
    catalog = make_catalog(data)
    model, tok, prompts = build_model(catalog, "lcrec", 2, preset="micro")
    ex = eval_examples(data, "valid")
    rows = [prompts.row(h) for h in ex.histories[:4]]
    targets = [tok.convert_tokens_to_ids(catalog[min(t)]) for t in ex.targets[:4]]
    batch = LeftPadCollator(tok.pad_token_id)([{"input_ids": np.array(r), "labels": np.array(t)}
                                                for r, t in zip(rows, targets)])
    loss = NextItemLoss(model)(**batch)["loss"]
    split_logits = model(batch["input_ids"], batch["attention_mask"], n_target=4, mode="split")
    masked_logits = model(batch["input_ids"], batch["attention_mask"], n_target=4, mode="masked")
    torch.testing.assert_close(split_logits, masked_logits, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(loss) and loss.item() > 0


def test_baselines_run_through_the_same_path(tmp_path):
    dense = tmp_path / "dense"
    train(dense, SMALL, split="dense", preset="micro", epochs=1, batch_size=64, lr=3e-3, progress=False,
          max_train_examples=500)
    s = evaluate_checkpoint(dense, baseline="streaming", users=40, progress=False, window=4, n_sink=2)
    t = evaluate_checkpoint(dense, baseline="truncate", users=40, progress=False, keep=2)
    assert s["users"] == t["users"] == 40 and s["window"] == 4 and t["keep_items"] == 2


def test_streaming_baseline_refuses_an_earn_checkpoint(ckpt):
    with pytest.raises(ValueError, match="dense checkpoint"):  # UsageError: one line under the CLI
        evaluate_checkpoint(ckpt, baseline="streaming", users=5, progress=False)


def test_cli_end_to_end(ckpt, tmp_path, capsys):
    eng = tmp_path / "eng"
    assert main(["export", str(ckpt), "--out", str(eng), "--exporter", "torchscript"]) == 0
    out_json = tmp_path / "check.json"
    assert main(["check", str(eng), "--users", "60", "--out", str(out_json)]) == 0
    rep = json.loads(out_json.read_text())
    assert rep["users"] == 60 and rep["topk_identical_fraction"] >= 0.999 and rep["prefill_max_abs_diff"] < 1e-4
    assert main(["eval", str(ckpt), "--users", "30", "--quiet", "--out", str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["users"] == 30
    capsys.readouterr()
    assert main(["recommend", str(eng), "--history", "1 2 3", "--top-k", "3"]) == 0
    assert len(json.loads(capsys.readouterr().out)["items"]) == 3


def test_beauty_subset_smoke_training(beauty_ckpt):
    """About a minute on 2 cores (the shared ``beauty_ckpt`` fixture): EARN on 3,000 real Beauty training examples
    learns, and its checkpoint evaluates on real test users through the same constrained beam search as the full
    runs."""
    log = json.loads((beauty_ckpt / "train_log.json").read_text())
    model = load_pretrained(beauty_ckpt)
    assert log["examples"] == 3000 and model.split_layer == 1 and model.num_layers == 4
    # an untrained model scores about ln(V) ≈ 6.8 per target token (V = 901); one epoch gets only to ~6.2
    assert log["best_eval_loss"] < 0.8 * np.log(model.config.vocab_size), log["best_eval_loss"]
    m = evaluate_checkpoint(beauty_ckpt, users=50, progress=False)
    assert m["users"] == 50 and 0.0 <= m["recall@20"] <= 1.0 and m["ndcg@20"] <= m["recall@20"]
