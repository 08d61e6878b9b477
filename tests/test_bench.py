"""Benchmark harness smoke test: a tiny config end to end (no timing assertions), plus its helpers."""

import json

import numpy as np
import pytest

from earn_export.bench import report
from earn_export.bench.harness import BenchConfig, flop_model, run_bench
from earn_export.bench.synthetic import TrieWalker, VocabLayout, build_setup, synthetic_item_paths
from earn_export.data.catalog import Trie


def _tiny_config(out, **kw):
    return BenchConfig(preset="micro", split_layer=1, prompt_lens=(16, 32), batch_sizes=(2,), beams=(4,), warmup=0,
                       repeats=1, torch_warmup=0, hf_batch=1, n_items=200, vocab_size=512, codes=16, out=str(out),
                       exporter="torchscript", form="reference", **kw)  # fast to export; fused form: test_graph_forms


@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    return run_bench(_tiny_config(out), progress=False, log=None), out


def test_json_fields_and_files(tiny_result):
    result, out = tiny_result
    assert (out / "bench.json").is_file() and (out / "bench.md").is_file() and (out / "speedup.png").is_file()
    assert (out / "speedup.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "bench.json").read_text())
    for key in ("machine", "model", "config", "settings", "timings", "catalog"):
        assert key in data
    for key in ("cpu_count", "torch_threads", "onnxruntime", "torch", "transformers", "loadavg_start"):
        assert key in data["machine"]
    assert data["model"]["num_layers"] == 4 and data["model"]["split_layer"] == 1
    assert [s["prompt_len"] for s in data["settings"]] == [16, 32]
    for s in data["settings"]:
        assert set(s["runs"]) >= {"ort_earn", "ort_dense", "torch_earn", "torch_dense", "hf_dense",
                                  "ort_earn@hf", "ort_dense@hf"}
        for r in s["runs"].values():
            assert r["median_s"] > 0 and r["users_per_s"] > 0 and r["generated_tokens_per_s"] > 0
            assert {"prefill_s", "decode_s", "search_bookkeeping_s"} <= set(r["split"])
        ort = s["runs"]["ort_earn"]["split"]
        assert {"prefill_graph_s", "decode_graph_s", "backend_overhead_s"} <= set(ort)
        assert s["runs"]["ort_earn"]["decode_calls"] == 3  # L - 1 decode calls for 4-token identifiers
        assert s["bound_N_over_k"] == 4
        assert {"ort", "torch", "ort_earn_vs_hf", "ort_dense_vs_hf"} <= set(s["speedup"])
        assert s["fraction_of_bound"]["ort"] == pytest.approx(s["speedup"]["ort"] / 4)
        assert s["flop_model"]["speedup_dense_over_earn"] > 1


def test_op_profile_splits_kernel_time(tiny_result, benchmark_script):
    _, out = tiny_result  # benchmarks/op_profile.py on the bench's own engines
    profiles = benchmark_script("op_profile").run_profiles(_tiny_config(out, reuse_engines=True), progress=False)
    prof = profiles["earn_P16"]
    assert prof["prefill"]["runs"] == 1 and prof["decode"]["runs"] == 3
    assert sum(prof["share_by_group"].values()) == pytest.approx(1.0)
    assert "MLP (gate/up/down + SiLU)" in (out / "profile.md").read_text()


def test_measured_kv_equals_formula(tiny_result):
    result, _ = tiny_result
    for s in result["settings"]:
        kv = s["kv"]
        meas, f = kv["measured"], kv["formula"]
        assert meas["ort_earn"]["total_bytes"] == f["earn_bytes"]
        assert meas["torch_earn"]["total_bytes"] == f["earn_bytes"]
        assert meas["ort_dense"]["total_bytes"] == f["dense_bytes"]
        assert meas["torch_dense"]["total_bytes"] == f["dense_bytes"]
        assert meas["hf_dense"]["total_bytes"] == kv["hf_formula_at_hf_batch"]
        assert all(kv["measured_equals_formula"].values())
        assert f["earn_bytes"] < f["dense_bytes"] < f["hf_beam_bytes"]


def test_dense_ort_items_equal_dense_torch(tiny_result):
    result, _ = tiny_result
    for s in result["settings"]:
        assert s["checks"]["dense_ort_items_equal_torch"], s["checks"]
        assert s["checks"]["hf_valid_item_fraction"] == 1.0
        assert s["checks"]["ort_earn_valid_item_fraction"] == 1.0


def test_markdown_table(tiny_result):
    result, out = tiny_result
    md = (out / "bench.md").read_text()
    assert "EARN/dense ORT" in md and "EARN ORT vs HF" in md and "KV cache bytes" in md
    rows = [ln for ln in md.splitlines() if ln.startswith("| 16 |") or ln.startswith("| 32 |")]
    assert len(rows) >= 2 * 4  # speed, HF, 2 split rows, KV per prompt length


def test_flop_model_dense_equals_earn_at_k_equals_n():
    shape = dict(hidden_size=512, intermediate_size=1408, num_attention_heads=8, n_kv_heads=2, head_dim=64,
                 num_layers=16, split_layer=16, n_registers=2)
    fm = flop_model(shape, 512, 20, 4, 1024, 4096)
    assert fm["speedup_dense_over_earn"] == pytest.approx(1.0)
    shape["split_layer"] = 4
    fm = flop_model(shape, 1024, 20, 4, 1024, 4096)
    assert 2.0 < fm["speedup_dense_over_earn"] < 4.0  # below N/k: decode and the late-layer rows still cost
    assert fm["speedup_hf_over_earn"] > 20  # HF copies the prompt per beam


def test_trie_walker_and_synthetic_catalog():
    layout = VocabLayout(512, 4, 16)
    paths = synthetic_item_paths(100, layout, seed=1)
    assert len({tuple(p) for p in paths.values()}) == 100
    trie = Trie.build(paths)
    walker = TrieWalker(trie, prompt_len=3)
    for item, path in list(paths.items())[:10]:
        assert walker.item_of(path) == item
        sent = np.array([7, 7, 7] + path[:2])
        assert path[2] in walker(0, sent)
    tok, nodes = trie.padded_children()
    assert tok.shape == nodes.shape and (tok[0] >= 0).sum() == len(np.unique([p[0] for p in paths.values()]))


def test_setup_shares_weights_between_earn_and_dense():
    s = build_setup("micro", 1, vocab_size=512, codes=16, n_items=50, max_prompt_len=64)
    assert s.earn_model.split_layer == 1 and s.dense_model.split_layer == s.dense_model.num_layers
    assert s.earn_model.lm_head.weight is s.dense_model.lm_head.weight
    ids, mask = s.prompts(10, 3)
    assert ids.shape == (3, 10) and (ids[:, 0] == s.layout.reg_p).all() and (ids[:, -1] == s.layout.reg_s).all()


def test_cli_registers_bench():
    from earn_export.cli import build_parser

    args = build_parser("bench").parse_args(["bench", "--prompt-lens", "16,32", "--backends", "ort", "--shape",
                                             "hidden_size=96,vocab_size=512", "--split-layer", "2", "--threads", "2"])
    assert args.prompt_lens == (16, 32) and callable(args.func)
    from earn_export.bench.cli import config_from_args

    cfg = config_from_args(args)
    assert cfg.backends == ("ort",) and cfg.prompt_lens == (16, 32) and cfg.split_layer == 2
    assert cfg.overrides == {"hidden_size": 96} and cfg.vocab_size == 512
    assert cfg.ort_threads == 2 and cfg.torch_threads == 2
