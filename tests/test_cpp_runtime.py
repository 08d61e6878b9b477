"""The C++ runtime (cpp/, ``backend="cpp"``): the C++ test executable, recorded Python searches replayed in C++,
identical results to the Python runtime (trained Beauty engine, synthetic default with full and items heads,
beams 1/20/40, mixed/empty histories, unknown items), thread safety, every refusal, and the earn-recommend CLI.

The C++ parts are built by ``make install`` (scikit-build-core). Where the ONNX Runtime headers exist (CI:
../shared/third_party), a missing build is a failure, not a skip."""

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from earn_export.engine.manifest import EngineDirError, sha256_file
from earn_export.export import export_onnx
from earn_export.runtime import Recommender, UnknownItemError
from earn_export.runtime.backends import RecordingBackend
from earn_export.search import constrained_beam_search
from helpers import assert_same, cpp_runtime_module, earn_model, synthetic_trie

BIN = Path(sys.executable).parent
HISTORIES = [[3, 17, 42], [5], [], [8, 9, 10, 11, 12, 13, 14], [59, 0], list(range(30))]


@pytest.fixture(scope="module")
def cpp():
    return cpp_runtime_module()


@pytest.fixture(scope="module")
def small_engine(tmp_path_factory, cpp):
    """Random-weight EARN model (k=2 of 4 layers, max_history 5) over a 60-item synthetic trie, items head."""
    d = tmp_path_factory.mktemp("cpp-eng")
    export_onnx(earn_model("llama", 2), d, vocab="items", trie=synthetic_trie()[0], exporter="torchscript")
    return d


@pytest.fixture(scope="module")
def synthetic_engines(tmp_path_factory, cpp):
    """The embedded synthetic default: a checkpoint briefly trained on it (its real catalog, tokenizer and
    prompt template), exported with the items head and with the full vocabulary."""
    from earn_export.data.data_spec import DataSpec
    from earn_export.train.train_checkpoint import train

    root = tmp_path_factory.mktemp("cpp-synth")
    ckpt = train(root / "ckpt", DataSpec(), split="auto", preset="micro", epochs=1, batch_size=64, lr=3e-3,
                 progress=False, max_train_examples=600, valid_users=50)
    out = {}
    for vocab in ("items", "full"):
        export_onnx(ckpt, root / vocab, vocab=vocab, exporter="torchscript")
        out[vocab] = root / vocab
    return out


# ------------------------------------------------------------------------------------------- C++ executable
def test_cpp_unit_executable(cpp):
    out = subprocess.run([str(BIN / "earn_cpp_tests"), "unit"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().endswith("0 failed")


class _TieBackend:
    """Log-probs rounded to one decimal (many exact ties at the beam cut) with some -inf (dead candidates)."""

    def __init__(self, out_token_ids, vocab_out, seed):
        self.out_token_ids = out_token_ids
        self.vocab_out = vocab_out
        self.rng = np.random.default_rng(seed)

    def _lp(self, shape):
        lp = np.round(self.rng.normal(-3, 1, shape), 1).astype(np.float32)
        lp[self.rng.random(shape) < 0.1] = -np.inf
        return lp

    def prefill(self, ids, mask):
        return self._lp((len(ids), self.vocab_out)), None

    def decode(self, state, tokens, parents, step):
        return self._lp(tokens.shape + (self.vocab_out,)), None


def _record_case(path: Path, trie_arrays, beam, users, full_vocab, seed):
    from earn_export.data.catalog import Trie
    from earn_export.engine.trie_files import save_trie_arrays
    from earn_export.search.beam import token_columns

    trie = Trie(**{k: np.asarray(v) for k, v in trie_arrays.items() if k != "depth"},
                depth=int(trie_arrays["depth"]))
    out_ids = None if full_vocab else np.arange(10, 40, dtype=np.int64)
    vocab_out = 40 if full_vocab else 30
    rec = RecordingBackend(_TieBackend(out_ids, vocab_out, seed))
    res = constrained_beam_search(rec, trie, np.zeros((users, 3), np.int64), np.ones((users, 3), np.int64), beam)
    path.mkdir()
    save_trie_arrays(trie, path)
    np.save(path / "params.npy", np.array([beam, vocab_out], np.int64))
    np.save(path / "columns.npy", token_columns(trie, out_ids))
    np.save(path / "first.npy", rec.calls[0]["logprobs"].astype(np.float32))
    for call in rec.calls[1:]:
        s = call["step"]
        np.save(path / f"decode_{s}.npy", call["logprobs"].astype(np.float32))
        np.save(path / f"tokens_{s}.npy", call["tokens"].astype(np.int64))
        np.save(path / f"parents_{s}.npy", call["parents"].astype(np.int64))
    np.save(path / "items.npy", res.items.astype(np.int64))
    np.save(path / "scores.npy", res.scores.astype(np.float32))
    np.save(path / "path.npy", res.tokens.astype(np.int64))
    return res


def test_cpp_search_replays_python_searches(cpp, tmp_path):
    """The C++ search, fed the log-probs a Python search saw, passes the same tokens and parents to every
    decode call and returns the same items, scores (bitwise) and paths: ties at the beam cut, dead beams,
    fewer items than beams, beams 1/20/40, items and full-vocabulary columns."""
    cases, dead, ties = [], 0, 0
    for i, (n_items, beam, users, full) in enumerate([(60, 20, 4, False), (60, 40, 3, True), (60, 1, 5, False),
                                                      (7, 20, 2, False), (60, 5, 6, True), (7, 40, 1, True)]):
        arrays, _ = synthetic_trie(n_items=n_items, seed=i)
        res = _record_case(tmp_path / f"case{i}", arrays, beam, users, full, seed=i)
        dead += int((res.items < 0).sum())
        ties += int(sum(len(r) - len(set(r)) for r in res.scores.tolist()))
        cases.append(str(tmp_path / f"case{i}"))
    assert dead > 0 and ties > 0  # the cases exercise dead beams and tied scores
    out = subprocess.run([str(BIN / "earn_cpp_tests"), "replay", *cases], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().endswith("0 failed")


# ------------------------------------------------------------------------------------------- parity with Python
def test_beauty_1000_users_equal_python(cpp, beauty_engine, beauty_test_histories):
    histories = [list(h) for h in beauty_test_histories[:1000]]
    py = Recommender.load(beauty_engine).recommend(histories, top_k=20, beam=20)
    cc = Recommender.load(beauty_engine, backend="cpp").recommend(histories, top_k=20, beam=20)
    assert_same(cc, py)
    assert (cc.items >= 0).mean() > 0.99


@pytest.mark.parametrize("vocab", ["items", "full"])
def test_synthetic_default_equal_python(cpp, synthetic_engines, vocab):
    from earn_export.data.sequences import eval_examples
    from earn_export.data.data_spec import DataSpec

    d = synthetic_engines[vocab]
    py_rec, cc_rec = Recommender.load(d), Recommender.load(d, backend="cpp")
    ex = eval_examples(DataSpec().load(), "test", max_history=20)
    rng = np.random.default_rng(0)
    histories = [list(h)[: int(rng.integers(0, 25))] for h in ex.histories[:40]]  # mixed lengths, some empty
    histories += [[], list(ex.histories[0]) * 2]  # empty; longer than max_history (truncated)
    assert any(not h for h in histories)
    for beam, top_k in ((1, 1), (20, 20), (40, 25)):
        assert_same(cc_rec.recommend(histories, top_k=top_k, beam=beam), py_rec.recommend(histories, top_k=top_k,
                                                                                          beam=beam))
    # unknown items: skipped with counts, or an error naming them
    bad = [[1, 99999, 2], [-3], [5]]
    assert_same(cc_rec.recommend(bad, top_k=10, on_unknown="skip"), py_rec.recommend(bad, top_k=10,
                                                                                      on_unknown="skip"))
    with pytest.raises(UnknownItemError) as cc_err:
        cc_rec.recommend(bad)
    with pytest.raises(UnknownItemError) as py_err:
        py_rec.recommend(bad)
    assert str(cc_err.value) == str(py_err.value) and cc_err.value.unknown == py_err.value.unknown


def test_small_engine_rules_and_batching(cpp, small_engine):
    py, cc = Recommender.load(small_engine), Recommender.load(small_engine, backend="cpp", batch_size=2)
    for beam in (1, 20, 40):
        assert_same(cc.recommend(HISTORIES, top_k=beam, beam=beam), py.recommend(HISTORIES, top_k=beam, beam=beam))
    res = cc.recommend(HISTORIES, top_k=5)
    assert res.truncated.tolist() == [0, 0, 0, 2, 0, 25]  # max_history 5
    assert cc.max_history == 5


def test_fp16_engine_equal_python(cpp, tmp_path):
    """fp16 KV (2-byte buffers, FLOAT16 tensors) through the same C++ path."""
    export_onnx(earn_model("llama", 2), tmp_path, vocab="items", fp16=True, trie=synthetic_trie()[0],
                exporter="torchscript")
    py, cc = Recommender.load(tmp_path), Recommender.load(tmp_path, backend="cpp")
    assert_same(cc.recommend(HISTORIES, top_k=20, beam=20), py.recommend(HISTORIES, top_k=20, beam=20))


def test_threads_equal_serial(cpp, small_engine):
    rec = Recommender.load(small_engine, backend="cpp")
    calls = [[HISTORIES[i % len(HISTORIES)], HISTORIES[(i + 1) % len(HISTORIES)]] for i in range(50)]
    want = [rec.recommend(c, top_k=10, beam=20) for c in calls]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda i: (i % 50, rec.recommend(calls[i % 50], top_k=10, beam=20)), range(8 * 50)))
    assert len(got) == 400
    for i, res in got:
        assert (res.items == want[i].items).all() and (res.scores == want[i].scores).all()


# ------------------------------------------------------------------------------------------- refusals
def _copy(src, dst) -> Path:
    shutil.copytree(src, dst)
    return Path(dst)


def _rehash(d: Path, manifest: dict | None = None):
    man = manifest or json.loads((d / "manifest.json").read_text())
    man["sha256"] = {name: sha256_file(d / name) for name in man["sha256"]}
    (d / "manifest.json").write_text(json.dumps(man))


def test_refusals(cpp, small_engine, tmp_path):
    load = lambda d, **kw: Recommender.load(d, backend="cpp", **kw)  # noqa: E731
    with pytest.raises(EngineDirError, match="does not exist"):
        load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EngineDirError, match="no manifest.json"):
        load(tmp_path / "empty")
    d = _copy(small_engine, tmp_path / "partial")
    (d / "trie.offsets.npy").unlink()
    with pytest.raises(EngineDirError, match=r"missing files \['trie.offsets.npy'\].*partial copy"):
        load(d)
    d = _copy(small_engine, tmp_path / "changed")
    tok = np.load(d / "prompt_items.tokens.npy")
    np.save(d / "prompt_items.tokens.npy", tok[::-1].copy())
    with pytest.raises(EngineDirError, match=r"sha256 mismatch for \['prompt_items.tokens.npy'\]"):
        load(d)
    load(d, verify=False)  # verify=False skips the re-hash, as in Python
    d = _copy(small_engine, tmp_path / "version")
    man = json.loads((d / "manifest.json").read_text())
    (d / "manifest.json").write_text(json.dumps({**man, "format_version": 1}))
    with pytest.raises(EngineDirError, match="format_version 1 is not supported.*expects 2"):
        load(d)
    d = _copy(small_engine, tmp_path / "tokenizer")
    (d / "manifest.json").write_text(json.dumps({**man, "prompt": {"format": "tokenizer", "file": "prompt.json"}}))
    with pytest.raises(EngineDirError, match="builds prompts with its tokenizer.*backend='onnxruntime'"):
        load(d)
    d = _copy(small_engine, tmp_path / "notrie")
    (d / "manifest.json").write_text(json.dumps({**man, "trie": None}))
    with pytest.raises(EngineDirError, match="has no trie"):
        load(d)
    d = _copy(small_engine, tmp_path / "badnpy")
    np.save(d / "trie.tokens.npy", np.load(d / "trie.tokens.npy").astype(np.int32))
    _rehash(d)
    with pytest.raises(EngineDirError, match=r"trie.tokens.npy: dtype <i4 is not int64"):
        load(d)

    rec = load(small_engine)
    with pytest.raises(ValueError, match="top_k <= beam"):
        rec.recommend([[1]], top_k=30, beam=20)
    with pytest.raises(ValueError, match="on_unknown must be 'error' or 'skip'"):
        rec.recommend([[1]], on_unknown="drop")
    with pytest.raises(UnknownItemError, match=r"unknown item ids \[999\].*on_unknown='skip'") as err:
        rec.recommend([[1, 999], [2]])
    assert err.value.unknown == {0: [999]}
    with pytest.raises(ValueError, match="execution provider 'NoSuchExecutionProvider' is not in this ONNX Runtime"):
        load(small_engine, providers=["NoSuchExecutionProvider"])


def _plugin_decode(path: Path):
    """A decode graph with a node of the custom domain `earn` (what --attention plugin exports)."""
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("CompactedAttention", ["x"], ["y"], domain="earn")
    graph = helper.make_graph([node], "plugin", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("earn", 1)])
    onnx.save(model, str(path))


def test_plugin_graph_needs_op_library(cpp, small_engine, tmp_path):
    from earn_export.runtime.cpp_runtime import CppRecommender

    d = _copy(small_engine, tmp_path / "plugin")
    _plugin_decode(d / "decode.onnx")
    _rehash(d)
    out = subprocess.run([str(BIN / "earn_cpp_tests"), "domains", str(d / "decode.onnx")], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.split() == ["earn"]
    with pytest.raises(EngineDirError, match="custom ops of ONNX domain 'earn'.*custom_op_libraries=.*--op-library"):
        Recommender.load(d, backend="cpp")
    with pytest.raises(ValueError, match="custom-op library .*nope.so does not exist"):
        CppRecommender.load(d, custom_op_libraries=[tmp_path / "nope.so"])
    # the unmodified engine has no custom domain
    out = subprocess.run([str(BIN / "earn_cpp_tests"), "domains", str(small_engine / "decode.onnx")],
                         capture_output=True, text=True, timeout=60)
    assert "earn" not in out.stdout.split()


# ------------------------------------------------------------------------------------------- CLI
def test_cli_equals_python_cli(cpp, small_engine, tmp_path, capsys):
    from earn_export.cli import main

    args = [str(small_engine), "--history", "3 17 42", "--history", "", "--history", "8,9,10,11,12,13,14",
            "--top-k", "5"]
    assert main(["recommend", *args]) == 0
    want = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    for threads in ("1", "2"):
        out = subprocess.run([str(BIN / "earn-recommend"), *args, "--threads", threads], capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert [json.loads(x) for x in out.stdout.splitlines()] == want
    out = subprocess.run([str(BIN / "earn-recommend"), str(small_engine), "--history", "1 999"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 1 and "unknown item ids [999]" in out.stderr
    out = subprocess.run([str(BIN / "earn-recommend"), str(small_engine), "--history", "a b"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and "item ids must be integers" in out.stderr
    hist = tmp_path / "h.txt"
    hist.write_text("\n".join(" ".join(map(str, h)) for h in HISTORIES * 4) + "\n")
    out = subprocess.run([str(BIN / "earn-recommend"), str(small_engine), "--histories-file", str(hist), "--bench",
                          "--repeat", "1", "--threads", "2", "--intra-op-threads", "1"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout.splitlines()[-1])
    assert figures["users_per_s"] > 0 and figures["batches"] == 6 and figures["threads"] == 2
