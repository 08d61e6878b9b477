"""Recommender: ORT = torch reference lists, full-vocab dense = transformers generate, bad input, threads, CLI."""

import json
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from earn_export.cli import main
from earn_export.engine.manifest import EngineDirError
from earn_export.engine.trie_files import load_trie_arrays
from earn_export.export import export_onnx
from earn_export.runtime import Recommender, UnknownItemError
from earn_export.runtime.backends import TorchBackend
from earn_export.search import constrained_beam_search
from helpers import L, dense_model, earn_model, synthetic_trie, trie_allowed

HISTORIES = [[3, 17, 42], [5], [], [8, 9, 10, 11, 12, 13, 14], [59, 0]]  # mixed lengths, an empty one


@pytest.fixture(scope="module")
def trie_paths():
    return synthetic_trie()


@pytest.fixture(scope="module")
def engine(tmp_path_factory, trie_paths):
    m = earn_model("llama", 2)  # max_history 5
    d = tmp_path_factory.mktemp("eng")
    export_onnx(m, d, vocab="items", trie=trie_paths[0], exporter="torchscript")
    return d, m


def test_ort_and_torch_recommend_identical_lists(engine, trie_paths):
    d, m = engine
    ort_rec = Recommender.load(d)
    items = ort_rec.recommend(HISTORIES, top_k=20, beam=20).items
    torch_rec = Recommender(TorchBackend(m, ort_rec.backend.out_token_ids), ort_rec.trie, ort_rec.encoder,
                            ort_rec.known_items, max_history=ort_rec.max_history)
    ref = torch_rec.recommend(HISTORIES, top_k=20, beam=20)
    assert (items == ref.items).all()
    assert (items >= 0).all() and all(len(set(r)) == 20 for r in items.tolist())  # 20 distinct valid items
    # every recommended item is in the catalog and scores are sorted
    assert set(items.ravel().tolist()) <= set(trie_paths[1])
    assert (np.diff(ref.scores, axis=1) <= 1e-6).all()


def test_batching_does_not_change_results(engine):
    d, _ = engine
    full = Recommender.load(d, batch_size=64).recommend(HISTORIES, top_k=10)
    one_by_one = Recommender.load(d, batch_size=1).recommend(HISTORIES, top_k=10)
    assert (full.items == one_by_one.items).all()
    np.testing.assert_allclose(full.scores, one_by_one.scores, atol=1e-5)


def test_history_rules(engine):
    d, _ = engine
    rec = Recommender.load(d)
    with pytest.raises(UnknownItemError, match=r"unknown item ids \[999\].*on_unknown='skip'"):
        rec.recommend([[1, 999]])
    res = rec.recommend([[1, 999, 2], [1, 2]], top_k=5, on_unknown="skip")
    assert res.skipped.tolist() == [1, 0] and (res.items[0] == res.items[1]).all()
    # longer than max_history (5): the oldest items are dropped, i.e. same result as the last 5
    long = list(range(12))
    res = rec.recommend([long, long[-5:]], top_k=5)
    assert res.truncated.tolist() == [7, 0] and (res.items[0] == res.items[1]).all()
    with pytest.raises(ValueError, match="top_k <= beam"):
        rec.recommend([[1]], top_k=30, beam=20)


def test_concurrent_calls_equal_sequential(engine):
    d, _ = engine
    rec = Recommender.load(d)
    want = [rec.recommend([h], top_k=10).items for h in HISTORIES]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda h: rec.recommend([h], top_k=10).items, HISTORIES * 3))
    for i, g in enumerate(got):
        assert (g == want[i % len(HISTORIES)]).all()


def test_fewer_items_than_beam(tmp_path):
    m = earn_model("llama", 2)
    arrays, paths = synthetic_trie(n_items=7)
    export_onnx(m, tmp_path, vocab="items", item_token_ids=list(range(10, 40)), trie=arrays,
                exporter="torchscript")
    res = Recommender.load(tmp_path).recommend([[1, 2], []], top_k=10, beam=10)
    assert (res.items[:, :7] >= 0).all() and (res.items[:, 7:] == -1).all()
    assert np.isneginf(res.scores[:, 7:]).all()


def test_full_vocab_dense_engine_equals_transformers_generate(tmp_path, trie_paths):
    from transformers import AutoModelForCausalLM

    arrays, paths = trie_paths
    m = dense_model()
    m.save_pretrained(tmp_path / "ckpt")
    export_onnx(tmp_path / "ckpt", tmp_path / "eng", vocab="full", trie=arrays, exporter="torchscript")
    rec = Recommender.load(tmp_path / "eng")
    histories = [[3, 17, 42], [5, 6], [20, 21, 22, 23]]
    ids, mask = rec.encoder(histories)
    beam = 20
    res = constrained_beam_search(rec.backend, rec.trie, ids, mask, beam=beam)

    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt", dtype=torch.float32).eval()
    trie = load_trie_arrays(tmp_path / "eng")  # the engine's trie.*.npy
    p_len = ids.shape[1]
    with torch.no_grad():
        out = hf.generate(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), num_beams=beam,
                          num_return_sequences=beam, max_new_tokens=L, min_new_tokens=L, do_sample=False,
                          prefix_allowed_tokens_fn=lambda b, s: trie_allowed(trie, s[p_len:].tolist()),
                          length_penalty=0.0, early_stopping=True, return_dict_in_generate=True,
                          output_scores=True, pad_token_id=0, eos_token_id=None)
    seqs = out.sequences[:, p_len:].reshape(len(ids), beam, L).numpy()
    assert (res.tokens == seqs).all()
    np.testing.assert_allclose(res.scores, out.sequences_scores.reshape(len(ids), beam).numpy(), atol=1e-4)


def test_engine_dir_problems(engine, tmp_path):
    src, _ = engine
    with pytest.raises(EngineDirError, match="does not exist"):
        Recommender.load(tmp_path / "missing")
    d = tmp_path / "partial"
    shutil.copytree(src, d)
    (d / "trie.offsets.npy").unlink()
    with pytest.raises(EngineDirError, match="missing files"):
        Recommender.load(d)


def test_cli_recommend_and_inspect(engine, capsys):
    d, _ = engine
    assert main(["recommend", str(d), "--history", "3 17 42", "--history", "", "--top-k", "5"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [len(x["items"]) for x in lines] == [5, 5] and lines[1]["history"] == []
    assert main(["inspect", str(d), "--prompt-len", "64"]) == 0
    out = capsys.readouterr().out
    assert "split k=2" in out and "reduction vs dense" in out and "past_key_values.0.key" in out
    assert main(["recommend", str(d), "--history", "a b"]) == 2  # one line on stderr (tests/test_cli.py)
    assert "must be integers" in capsys.readouterr().err
