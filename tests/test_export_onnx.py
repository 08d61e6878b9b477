"""Exporter: ORT graphs equal the torch model core (fp32/fp16, EARN/dense, dynamo/TorchScript), manifest checks."""

import json
import os
import shutil

import numpy as np
import onnx
import pytest

from earn_export.engine.manifest import EngineDirError, load_manifest
from earn_export.export import export_onnx
from earn_export.runtime.backends import OrtBackend, TorchBackend
from helpers import ITEM_TOKENS, compare_backends, dense_model, earn_model, synthetic_trie, token_prompts

@pytest.fixture(scope="module")
def trie_arrays():
    return synthetic_trie()[0]


@pytest.fixture(scope="module")
def engines(tmp_path_factory, trie_arrays):
    """name -> (engine_dir, fp32 torch model). TorchScript exporter (fast); dynamo is tested separately."""
    out = {}
    specs = {
        "llama_k2": (lambda: earn_model("llama", 2), {}),
        "qwen_k1": (lambda: earn_model("qwen2", 1), {}),
        "dense": (dense_model, {}),
        "llama_k2_fp16": (lambda: earn_model("llama", 2), {"fp16": True}),
    }
    for name, (build, kw) in specs.items():
        m = build()
        d = tmp_path_factory.mktemp(name)
        export_onnx(m, d, vocab="items", trie=trie_arrays, exporter="torchscript", **kw)
        out[name] = (d, m)
    return out


@pytest.mark.parametrize("name", ["llama_k2", "qwen_k1", "dense"])
def test_fp32_graphs_match_torch(engines, name):
    d, m = engines[name]
    ort_b, torch_b = OrtBackend(d), TorchBackend(m, head_token_ids=ITEM_TOKENS)
    assert np.array_equal(ort_b.out_token_ids, ITEM_TOKENS)
    ids, mask = token_prompts(m, [9, 5, 12, 7])
    diffs, outs = compare_backends(ort_b, torch_b, ids, mask, beam=20)
    assert max(diffs) <= 1e-4, diffs
    # log-probs over the item slice: rows sum to 1
    assert np.allclose(np.exp(outs[0][0]).sum(-1), 1, atol=1e-5)
    man = load_manifest(d)
    assert man["model"]["split_layer"] == m.split_layer and man["logits"] == "log_softmax"
    # compacted cache: late layers hold only the R registers, early layers the prompt
    shapes = {o["name"]: o["shape"] for o in man["graphs"]["prefill"]["outputs"]}
    assert shapes["present.0.key"][2] == "prompt_len"
    if m.split_layer < m.num_layers:
        assert shapes[f"present.{m.num_layers - 1}.key"][2] == 2


@pytest.mark.parametrize("beam", [1, 40])
def test_beam_widths(engines, beam):
    d, m = engines["llama_k2"]
    ids, mask = token_prompts(m, [6, 10])
    diffs, _ = compare_backends(OrtBackend(d), TorchBackend(m, ITEM_TOKENS), ids, mask, beam=beam)
    assert max(diffs) <= 1e-4, diffs


def test_fp16_graph_close_and_finite(engines):
    d, m = engines["llama_k2_fp16"]
    ob = OrtBackend(d)
    man = load_manifest(d)
    assert man["dtype"] == "float16" and man["logits_dtype"] == "float32"
    ids, mask = token_prompts(m, [12, 4, 8])  # heavy left padding on rows 1-2
    lp, st = ob.prefill(ids, mask)
    assert lp.dtype == np.float32 and st.past[0].numpy().dtype == np.float16
    diffs, outs = compare_backends(ob, TorchBackend(m, ITEM_TOKENS), ids, mask, beam=20)
    for a, b in outs:
        assert np.isfinite(a).all()
        rel = np.abs(a - b).max() / np.abs(b).max()
        assert rel <= 2e-2, rel
    assert all(np.isfinite(t.numpy()).all() for t in st.past)  # padded rows' KV: no NaN/inf


def test_items_head_is_baked_not_gathered(engines):
    d, m = engines["llama_k2"]
    g = onnx.load(str(d / "prefill.onnx"))
    shapes = [tuple(t.dims) for t in g.graph.initializer]
    v, h = m.config.vocab_size, m.config.hidden_size
    assert (len(ITEM_TOKENS), h) in shapes or (h, len(ITEM_TOKENS)) in shapes
    assert shapes.count((v, h)) == 1  # the embedding only; the full LM head is not in the graph


def test_full_vocab_and_dynamo_exporter(tmp_path, trie_arrays):
    m = earn_model("qwen2", 2, seed=1)
    man = export_onnx(m, tmp_path, vocab="full", trie=trie_arrays, exporter="dynamo")
    assert man["exporter"] == {"prefill": "dynamo", "decode": "dynamo"}
    assert man["vocab"]["vocab_out_token_ids"] is None and man["vocab"]["vocab_out"] == m.config.vocab_size
    ob = OrtBackend(tmp_path)
    ids, mask = token_prompts(m, [7, 11, 5])
    diffs, _ = compare_backends(ob, TorchBackend(m), ids, mask, beam=4)
    assert max(diffs) <= 1e-4, diffs


def test_graphs_share_one_weights_file(engines, tmp_path):
    """Both graphs reference one weights.data (no per-graph copy), ORT runs them from it, the manifest records it
    and a changed or missing weights file is refused."""
    d, m = engines["llama_k2"]
    man = load_manifest(d)
    assert man["weights"]["file"] == "weights.data" and man["weights"]["shared_by"] == ["prefill", "decode"]
    assert {g["external_data"] for g in man["graphs"].values()} == {"weights.data"}
    assert not list(d.glob("*.onnx.data"))
    locs = {}
    for g in ("prefill", "decode"):
        proto = onnx.load(str(d / f"{g}.onnx"), load_external_data=False)
        ext = {t.name: {e.key: e.value for e in t.external_data} for t in proto.graph.initializer
               if t.data_location == onnx.TensorProto.EXTERNAL}
        assert {e["location"] for e in ext.values()} == {"weights.data"}
        locs[g] = {(e["offset"], e["length"]) for e in ext.values()}
    # every decode weight (layers, norms, head slice, embedding) is a region prefill already uses: stored once
    assert locs["decode"] <= locs["prefill"]
    n_params = sum(p.numel() for p in m.parameters()) * 4
    assert man["weights"]["bytes"] < 1.3 * n_params  # one copy (+ the items head slice), not two
    ids, mask = token_prompts(m, [8, 6])
    diffs, _ = compare_backends(OrtBackend(d), TorchBackend(m, ITEM_TOKENS), ids, mask, beam=3)
    assert max(diffs) <= 1e-4
    bad = tmp_path / "bad"
    shutil.copytree(d, bad)
    with open(bad / "weights.data", "r+b") as f:
        f.seek(100)
        f.write(b"\x01\x02")
    with pytest.raises(EngineDirError, match=r"sha256 mismatch for \['weights.data'\]"):
        load_manifest(bad, verify="full")
    (bad / "weights.data").unlink()
    with pytest.raises(EngineDirError, match=r"missing files \['weights.data'\]"):
        OrtBackend(bad)


def test_export_from_checkpoint_dir_copies_files(tmp_path, trie_arrays):
    m = earn_model("llama", 2)
    ckpt = tmp_path / "ckpt"
    m.save_pretrained(ckpt)
    np.savez(ckpt / "trie.npz", **trie_arrays)
    (ckpt / "items.json").write_text(json.dumps({"0": ["<a_1>"]}))
    man = export_onnx(ckpt, tmp_path / "eng", exporter="torchscript")
    files = set(man["sha256"])
    assert {"prefill.onnx", "decode.onnx", "trie.offsets.npy", "trie.depth.npy", "prompt_pieces.json",
            "prompt_items.tokens.npy", "items.json", "earn.json", "config.json"} <= files
    assert man["trie"] == {"format": "npy", "prefix": "trie", "depth": 3}
    assert man["prompt"] == {"format": "pieces", "file": "prompt_pieces.json"}
    assert man["vocab"]["vocab_out_token_ids"] == sorted(set(trie_arrays["tokens"].tolist()))
    assert man["earn_config"]["split_layer"] == 2


def test_manifest_errors_are_clear(engines, tmp_path):
    src, _ = engines["llama_k2"]
    with pytest.raises(EngineDirError, match="does not exist"):
        load_manifest(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EngineDirError, match="no manifest.json"):
        load_manifest(empty)
    d = tmp_path / "copy"
    shutil.copytree(src, d)
    (d / "decode.onnx").unlink()
    with pytest.raises(EngineDirError, match=r"missing files \['decode.onnx'\].*partial"):
        OrtBackend(d)
    shutil.rmtree(d)
    shutil.copytree(src, d)
    with open(d / "trie.tokens.npy", "ab") as f:
        f.write(b"x")
    with pytest.raises(EngineDirError, match=r"sha256 mismatch for \['trie.tokens.npy'\]"):
        load_manifest(d)
    man = json.loads((d / "manifest.json").read_text())
    man["format_version"] = 99
    (d / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(EngineDirError, match="format_version 99 is not supported.*re-export"):
        load_manifest(d)


def test_verify_fast_remembers_and_rechecks_changed_files(engines, tmp_path):
    """fast: files hashed once are remembered (by size, mtime, ctime, inode); a changed file is hashed again even
    when its size and mtime were put back; full always hashes; off only checks presence."""
    from earn_export.engine.manifest import STAMP, verify_files

    src, _ = engines["llama_k2"]
    d = tmp_path / "eng"
    shutil.copytree(src, d)
    hashes = json.loads((d / "manifest.json").read_text())["sha256"]
    first = verify_files(d, hashes, "fast")
    assert set(first.values()) == {"hashed"} and (d / STAMP).is_file()
    assert set(verify_files(d, hashes, "fast").values()) == {"remembered"}
    assert set(verify_files(d, hashes, "full").values()) == {"hashed"}
    w = d / "weights.data"
    st = w.stat()
    with open(w, "r+b") as f:  # same size, same mtime: only ctime tells
        f.seek(200)
        byte = f.read(1)
        f.seek(200)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.utime(w, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert w.stat().st_size == st.st_size and w.stat().st_mtime_ns == st.st_mtime_ns
    with pytest.raises(EngineDirError, match=r"sha256 mismatch for \['weights.data'\]"):
        load_manifest(d)  # default: fast
    with pytest.warns(UserWarning, match="not verified"):
        load_manifest(d, verify="off")
    with pytest.raises(ValueError, match="verify must be one of"):
        load_manifest(d, verify="quick")


def test_ort_optimized_graphs_saved_shared_and_used(tmp_path, trie_arrays):
    """--ort-optimize: ORT's offline-optimised CPU graphs are saved, share weights.data with the portable graphs,
    are used by OrtBackend for the same onnxruntime version, and skipped (portable graphs) for another."""
    m = earn_model("llama", 2)
    man = export_onnx(m, tmp_path, trie=trie_arrays, exporter="torchscript", ort_optimize=True)
    for g in ("prefill", "decode"):
        entry = man["graphs"][g]["ort_optimized"]
        assert entry["file"] == f"{g}.ort.onnx" and entry["nodes"] < man["graphs"][g]["nodes"]
        assert entry["file"] in man["sha256"]
    assert man["weights"]["shared_by"] == ["prefill", "decode", "prefill.ort", "decode.ort"]
    assert not list(tmp_path.glob("*.ort.data"))
    ob = OrtBackend(tmp_path)
    assert ob.graph_files == {"prefill": "prefill.ort.onnx", "decode": "decode.ort.onnx"}
    ids, mask = token_prompts(m, [8, 6, 11])
    diffs, _ = compare_backends(ob, TorchBackend(m, ITEM_TOKENS), ids, mask, beam=5)
    assert max(diffs) <= 1e-4
    other = json.loads((tmp_path / "manifest.json").read_text())
    for g in ("prefill", "decode"):
        other["graphs"][g]["ort_optimized"]["onnxruntime"] = "0.0.1"
    assert OrtBackend(tmp_path, manifest=other).graph_files == {"prefill": "prefill.onnx", "decode": "decode.onnx"}
