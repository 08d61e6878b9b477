"""benchmarks/llm_beauty.py end to end at toy scale (a 2-layer random Llama with a BPE tokenizer on the embedded
synthetic data), so the experiment command cannot rot: every stage runs, a budget stop exits 3 and the same
command continues, and the results page has both models, popularity and the paired intervals. The engines are
exported with TorchScript (the dynamo path is tested in test_export_onnx / test_graph_forms; here it only cost time)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from bpe_tokenizers import bpe_tokenizer
from model_configs import tiny_llama

from earn_export.model import EarnForCausalLM

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "llm_beauty.py"


@pytest.mark.slow
def test_llm_experiment_runs_every_stage_and_resumes(tmp_path):
    src = tmp_path / "hf"
    tok = bpe_tokenizer("llama3")
    model = EarnForCausalLM(tiny_llama(layers=2, vocab=len(tok)), init=False)
    model.init_weights(seed=0)
    model.save_pretrained(src)
    tok.save_pretrained(str(src))
    out = tmp_path / "run"
    cmd = [sys.executable, str(SCRIPT), "--source", str(src), "--data", "synthetic", "--out", str(out),
           "--train-examples", "96", "--sweep-examples", "32", "--lrs", "3e-3", "--batch-size", "16",
           "--valid-users", "16", "--eval-users", "24", "--analyze-users", "8", "--check-users", "8",
           "--speed-users", "8", "--exporter", "torchscript", "--docs", str(tmp_path / "page.md"), "--tiny-pair", str(tmp_path / "none.json")]
    # first invocation: only the conversion and the sweep (a stage subset), as a budget-limited slice would
    first = subprocess.run(cmd + ["--stages", "convert,sweep"], capture_output=True, text=True)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    state = json.loads((out / "state.json").read_text())
    assert {"convert", "sweep"} <= set(state["stages"]) and "train:earn" not in state["stages"]
    # a budget too small for training: exit 3, "run again"
    cut = subprocess.run(cmd + ["--max-minutes", "0.01"], capture_output=True, text=True)
    assert cut.returncode == 3 and "run the same command again" in cut.stdout, cut.stdout[-2000:]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    state = json.loads((out / "state.json").read_text())
    for key in ("train:earn", "train:dense", "eval:earn", "eval:dense", "analyze", "check:earn-int8", "speed"):
        assert key in state["stages"], key
    assert state["stages"]["check:earn-fp32"]["identical"] == state["stages"]["check:dense-fp32"]["identical"] == 1.0
    assert 0 < state["stages"]["check:dense-int8"]["overlap"] <= 1
    assert state["stages"]["train:earn"]["examples"] == state["stages"]["train:dense"]["examples"] == 96
    page = (tmp_path / "page.md").read_text()
    for needle in ("| EARN |", "| dense (k = N) |", "| popularity |", "paired bootstrap", "| recall@10 |",
                   "EARN (paper, Llama-7B)", "users/s", "| earn | int8 | onnxruntime |", "KV cache per user"):
        assert needle in page, needle
    res = json.loads((out / "results.json").read_text())
    assert res["bootstrap"]["recall@10"]["users"] == 24
