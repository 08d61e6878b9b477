"""``earn-export convert``: pretrained-shaped checkpoints with real BPE tokenizers become EARN checkpoints that
export to engines matching the torch reference exactly (fp32), and whose prompts are what the tokenizer makes."""

import json

import numpy as np
import pytest
import torch
from helpers import CONVERT_DATA, SHAPES, pretrained_checkpoint
from model_configs import tiny_llama

from earn_export.cli import main
from earn_export.convert import ConvertError, add_catalog_tokens, convert, load_source
from earn_export.data.prompts import PromptBuilder
from earn_export.export import export_onnx
from earn_export.export.parity_check import check_engine
from earn_export.model import load_pretrained

@pytest.fixture(scope="module", params=list(SHAPES))
def converted(request, tmp_path_factory):
    src = pretrained_checkpoint(tmp_path_factory.mktemp("hf"), request.param)
    out = convert(src, tmp_path_factory.mktemp("earn"), CONVERT_DATA, split=1)
    return request.param, src, out


def test_prompts_tokens_and_bos_match_the_tokenizer(converted):
    shape, src, ckpt = converted
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(ckpt))
    orig = AutoTokenizer.from_pretrained(str(src))
    prompts = PromptBuilder.load(ckpt)
    earn = json.loads((ckpt / "earn.json").read_text())
    reg_p, reg_s = earn["prefix_token_ids"][0], earn["suffix_token_ids"][0]
    items = prompts.catalog.items()
    for hist in ([], items[:1], items[3:9], items[-20:]):
        row = prompts.row(hist)
        # the cached row equals tokenising the prompt text with the tokenizer's own special-token handling
        assert row == tok(prompts.text(hist), add_special_tokens=True)["input_ids"]
        bos = [tok.bos_token_id] if shape == "llama-3.2-1b" else []
        assert row[: len(bos) + 1] == bos + [reg_p] and row[-1] == reg_s
        assert tok.decode(row, skip_special_tokens=True).count("<reg_") == 0  # registers are special tokens
    # every identifier code is one token now, and was several pieces before
    for code in prompts.catalog.code_tokens()[:50]:
        assert len(tok(code, add_special_tokens=False)["input_ids"]) == 1
        assert len(orig(code, add_special_tokens=False)["input_ids"]) > 1
    # documented init: a new row is the mean of the pretrained rows of the token's original pieces, plus noise of
    # 2% of the rows' std -- which keeps codes whose pieces are permutations (<a_12>, <a_21>) from tying exactly
    before = load_pretrained(src).model.embed_tokens.weight
    after = load_pretrained(ckpt).model.embed_tokens.weight
    std = float(before.std())
    for code in prompts.catalog.code_tokens()[:20]:
        pieces = orig(code, add_special_tokens=False)["input_ids"]
        noise = after[tok.convert_tokens_to_ids(code)] - before[pieces].mean(0)
        assert 0.01 * std < float(noise.std()) < 0.03 * std
    n_old = before.shape[0]
    torch.testing.assert_close(after[:min(n_old, len(orig))], before[:len(orig)])  # old rows untouched
    log = json.loads((ckpt / "train_log.json").read_text())
    assert log["tokens"]["resized_from"] == (None if shape == "qwen2.5-0.5b" else n_old)


def test_pieces_init_breaks_permutation_ties(tmp_path):
    """<a_12> and <a_21> split into the same pieces in another order: a plain mean would make them identical."""
    src = pretrained_checkpoint(tmp_path / "hf", (tiny_llama, "llama3", 0), layers=2)
    model, tok = load_source(src)
    pieces = [tok(c, add_special_tokens=False)["input_ids"] for c in ("<a_12>", "<a_21>")]
    assert sorted(pieces[0]) == sorted(pieces[1]) and pieces[0] != pieces[1]
    add_catalog_tokens(model, tok, ["<a_12>", "<a_21>"], ["<reg_p>", "<reg_s>"])
    a, b = (model.model.embed_tokens.weight[tok.convert_tokens_to_ids(c)] for c in ("<a_12>", "<a_21>"))
    assert float((a - b).abs().max()) > 1e-3
    ha, hb = (model.lm_head.weight[tok.convert_tokens_to_ids(c)] for c in ("<a_12>", "<a_21>"))  # untied head too
    assert float((ha - hb).abs().max()) > 1e-3


def test_converted_engine_matches_reference_fp32(converted, tmp_path):
    shape, _, ckpt = converted
    engine = tmp_path / "engine"
    export_onnx(ckpt, engine, vocab="items", exporter="torchscript")
    n = 20 if shape == "qwen2.5-0.5b" else 10  # the Llama-1B-shaped layers are 4x the FLOPs: CI time
    rep = check_engine(engine, ckpt, n=n, batch_size=n)
    assert rep["users"] == n
    assert rep["topk_identical_fraction"] == 1.0, rep["mismatches"][:2]
    assert rep["prefill_max_abs_diff"] < 1e-4 and rep["decode_max_abs_diff"] < 1e-4


def test_convert_cli_then_train_and_eval_accept_it(tmp_path, capsys):
    src = pretrained_checkpoint(tmp_path / "hf", (tiny_llama, "llama3", 0), layers=4)
    out = tmp_path / "earn"
    assert main(["convert", str(src), "--synthetic-users", "300", "--synthetic-items", "60", "--out", str(out)]) == 0
    assert json.loads((out / "earn.json").read_text())["split_layer"] == 1  # auto: N/4
    tok_before = json.loads((out / "tokenizer.json").read_text())["added_tokens"]
    # train --model on the converted checkpoint: its tokens keep their ids, the run is short
    run = tmp_path / "run"
    assert main(["train", "--model", str(out), "--synthetic-users", "300", "--synthetic-items", "60",
                 "--epochs", "1", "--max-train-examples", "64", "--batch-size", "32", "--quiet",
                 "--out", str(run)]) == 0
    assert json.loads((run / "tokenizer.json").read_text())["added_tokens"] == tok_before
    capsys.readouterr()
    assert main(["eval", str(run), "--users", "12", "--quiet"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["users"] == 12 and 0 <= res["recall@20"] <= 1


def test_convert_errors_name_the_fix(tmp_path):
    with pytest.raises(ConvertError, match="neither a checkpoint directory nor a .gguf"):
        convert(tmp_path / "nope", tmp_path / "out", CONVERT_DATA)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConvertError, match="no config.json"):
        convert(tmp_path / "empty", tmp_path / "out", CONVERT_DATA)
    src = pretrained_checkpoint(tmp_path / "hf", (tiny_llama, "llama3", 0), layers=4)
    with pytest.raises(ConvertError, match="out of range"):
        convert(src, tmp_path / "out", CONVERT_DATA, split=9)
    np.testing.assert_equal(sorted(p.name for p in tmp_path.iterdir()), ["empty", "hf"])
