"""``train --max-minutes`` bounds the whole command: a tiny budget stops training *and* the validation pass, and
the log says at which step/epoch and with which validation loss (issue 13, item 2)."""

import json
import re

import torch

from earn_export.cli import main
from earn_export.train.train_checkpoint import default_eval_users


def test_tiny_budget_stops_training_and_validation_and_says_where(tmp_path, capsys):
    out = tmp_path / "run"
    # unbudgeted, this is 50 epochs over ~5,000 examples (minutes); the budget leaves ~1 s after the save reserve
    assert main(["train", "--synthetic-users", "600", "--synthetic-items", "120", "--model-config", "micro",
                 "--epochs", "50", "--batch-size", "16", "--eval-users", "2000", "--max-minutes", "0.1",
                 "--quiet", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    printed = captured.err  # --quiet: stdout is the JSON summary, the budget message goes to stderr
    log = json.loads((out / "train_log.json").read_text())
    tb = log["time_budget"]
    assert log["stopped_by_time_budget"] and 1 <= tb["step"] < tb["max_steps"] and log["steps"] == tb["step"]
    v = tb["validation"]
    # the validation pass after the cut ran at least one batch; it is cut at the deadline when the machine is too
    # slow for the estimate (loaded), and complete when the estimate held (quiet): the log says which
    assert 16 <= v["examples"] <= v["of"] and v["eval_loss"] > 0 and v["cut_by_budget"] == (v["examples"] < v["of"])
    m = re.search(r"time budget reached: training stopped at step (\d+) of (\d+) \(epoch ([\d.]+)\); "
                  r"validation loss ([\d.]+) on (\d+)/(\d+) examples( \(validation cut by the budget\))?", printed)
    assert m, printed
    assert int(m.group(1)) == tb["step"] and float(m.group(4)) == round(v["eval_loss"], 4)
    assert bool(m.group(7)) == v["cut_by_budget"]
    assert log["best_eval_loss"] == v["eval_loss"]  # the only validation: its weights are the ones kept
    assert (out / "model.safetensors").is_file()  # saving is inside the budget, not skipped
    # (no wall-clock assertion: at load average 30 this run took 100 s, almost all of it loading and one step)


def test_validation_pass_stops_at_the_deadline():
    """The pass after a budget cut stops at the deadline after one batch (a deadline already passed)."""
    import time

    import numpy as np

    from earn_export.train.trainer import EncodedExamples, LeftPadCollator, validation_loss

    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, input_ids, attention_mask, labels):
            return {"loss": self.w * 0 + 2.5}

    valid = EncodedExamples([[1, 2, 3]] * 40, np.ones((40, 4), dtype=np.int64))
    res = validation_loss(Wrapper(), valid, LeftPadCollator(0), 8, time.perf_counter() - 1, progress=False)
    assert res == {**res, "eval_loss": 2.5, "examples": 8, "of": 40, "cut_by_budget": True}
    res = validation_loss(Wrapper(), valid, LeftPadCollator(0), 8, None, progress=False)
    assert res["examples"] == 40 and not res["cut_by_budget"]


def test_default_eval_users_caps_large_models():
    assert default_eval_users(900_000) == 1000
    assert default_eval_users(135_000_000) == 200
