"""Graph forms: the fused opset-23 form (packed QKV, RMSNormalization, RotaryEmbedding, Attention) equals the torch
reference like the reference form does; the manifest records the form; the fused Beauty engine keeps 100%
identical top-20 lists."""

import numpy as np
import onnx
import pytest

from earn_export.engine.manifest import load_manifest
from earn_export.export import ExportError, export_onnx
from earn_export.runtime.backends import OrtBackend, TorchBackend
from helpers import ITEM_TOKENS, compare_backends, earn_model, token_prompts


@pytest.fixture(scope="module")
def fused_engines(tmp_path_factory, trie_arrays):
    """Dynamo exports (the fused form needs them): fp32 Llama k=2 and fp16 Qwen2 k=1."""
    out = {}
    for name, build, kw in (("llama_k2", lambda: earn_model("llama", 2), {}),
                            ("qwen_k1_fp16", lambda: earn_model("qwen2", 1), {"fp16": True})):
        m = build()
        d = tmp_path_factory.mktemp(f"fused_{name}")
        export_onnx(m, d, vocab="items", trie=trie_arrays, **kw)
        out[name] = (d, m)
    return out


@pytest.fixture(scope="module")
def trie_arrays():
    from helpers import synthetic_trie

    return synthetic_trie()[0]


def test_fused_graph_uses_standard_ops(fused_engines):
    d, m = fused_engines["llama_k2"]
    man = load_manifest(d)
    n = m.num_layers
    assert man["form"]["name"] == "fused" and man["opset"] == 23 and man["exporter"] == {"prefill": "dynamo",
                                                                                            "decode": "dynamo"}
    for graph in ("prefill", "decode"):
        proto = onnx.load(str(d / f"{graph}.onnx"), load_external_data=False)
        ops = [node.op_type for node in proto.graph.node]
        assert ops.count("RMSNormalization") == 2 * n + 1 and ops.count("RotaryEmbedding") == 2 * n
        assert "Constant" not in ops and "Pow" not in ops and "Neg" not in ops
        assert man["graphs"][graph]["nodes"] == len(ops)
        assert {o.domain for o in proto.opset_import if o.domain in ("", "ai.onnx")} and \
            max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == 23
    prefill_ops = [node.op_type for node in onnx.load(str(d / "prefill.onnx"), load_external_data=False).graph.node]
    assert prefill_ops.count("Attention") == n
    # packed QKV: q, k, v in one MatMul; o, gate, up, down; the items head
    assert prefill_ops.count("MatMul") == 5 * n + 1


@pytest.mark.parametrize("beam", [1, 20])
def test_fused_fp32_matches_torch(fused_engines, beam):
    d, m = fused_engines["llama_k2"]
    ids, mask = token_prompts(m, [9, 5, 12, 7])
    diffs, outs = compare_backends(OrtBackend(d), TorchBackend(m, ITEM_TOKENS), ids, mask, beam=beam)
    assert max(diffs) <= 1e-4, diffs


def test_fused_fp16_close_and_finite(fused_engines):
    d, m = fused_engines["qwen_k1_fp16"]
    assert load_manifest(d)["dtype"] == "float16"
    ids, mask = token_prompts(m, [12, 4, 8])  # heavy left padding
    _, outs = compare_backends(OrtBackend(d), TorchBackend(m.half(), ITEM_TOKENS), ids, mask, beam=20)
    m.float()
    for a, b in outs:
        assert np.isfinite(a).all()
        assert np.abs(a - b).max() / np.abs(b).max() <= 2e-2


def test_form_choices_are_checked(tmp_path, trie_arrays):
    m = earn_model("llama", 2)
    with pytest.raises(ExportError, match="needs the dynamo exporter.*--form reference"):
        export_onnx(m, tmp_path / "a", trie=trie_arrays, exporter="torchscript", form="fused")
    with pytest.raises(ExportError, match="needs opset >= 23"):
        export_onnx(m, tmp_path / "b", trie=trie_arrays, form="fused", opset=18)
    with pytest.raises(ValueError, match="form must be .fused. or .reference."):
        export_onnx(m, tmp_path / "c", trie=trie_arrays, form="fast")


@pytest.mark.beauty
def test_fused_beauty_engine_identical_top20(beauty_ckpt, beauty_test_histories, tmp_path):
    """The issue's parity bar for the fused form: 100% identical top-20 lists on 500 real Beauty test users."""
    from earn_export.export.parity_check import check_engine

    eng = tmp_path / "fused"
    man = export_onnx(beauty_ckpt, eng)
    assert man["form"]["name"] == "fused"
    rep = check_engine(eng, beauty_ckpt, users=beauty_test_histories[:500], n=500)
    assert rep["users"] == 500
    assert rep["topk_identical_fraction"] == 1.0, {k: v for k, v in rep.items() if k != "mismatches"}
    assert rep["prefill_max_abs_diff"] <= 1e-4 and rep["decode_max_abs_diff"] <= 1e-4
