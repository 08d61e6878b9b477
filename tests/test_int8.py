"""--quantize int8: s8 per-channel weights and dynamic u8 activations (DynamicQuantizeLinear + MatMulInteger) in
both graph forms, the LM head kept fp32, the C++ runtime running the same graphs, the one-line note on CPUs without
VNNI/AMX, and accuracy against fp32 on a model trained on real Beauty data."""

import json

import onnx
import pytest

from earn_export.engine.manifest import load_manifest
from earn_export.export import export_onnx
from earn_export.runtime import Recommender, machine
from earn_export.runtime.backends import OrtBackend, TorchBackend
from helpers import ITEM_TOKENS, compare_backends, earn_model, synthetic_trie, token_prompts

HISTORIES = [[3, 17, 42], [5], [], [8, 9, 10, 11, 12, 13, 14], [59, 0], list(range(30))]


@pytest.fixture(scope="module")
def int8_engines(tmp_path_factory):
    trie = synthetic_trie()[0]
    m = earn_model("llama", 2)
    out = {}
    for form, exporter in (("reference", "torchscript"), ("fused", "dynamo")):
        d = tmp_path_factory.mktemp(f"int8_{form}")
        export_onnx(m, d, trie=trie, exporter=exporter, form=form, quantize="int8")
        out[form] = d
    return out, m


def _float_weight_matmuls(proto) -> list[str]:
    inits = {t.name for t in proto.graph.initializer}
    return [n.name for n in proto.graph.node if n.op_type == "MatMul" and n.input[1] in inits]


@pytest.mark.parametrize("form", ["reference", "fused"])
def test_int8_graphs(int8_engines, form):
    engines, m = int8_engines
    d = engines[form]
    man = load_manifest(d)
    q = man["quantization"]
    assert q["mode"] == "int8" and q["op"] == "MatMulInteger" and "quantize_dynamic" in q["tool"]
    for graph in ("prefill", "decode"):
        proto = onnx.load(str(d / f"{graph}.onnx"))
        ops = [node.op_type for node in proto.graph.node]
        n_int = ops.count("MatMulInteger")
        assert n_int == q["quantized_matmuls"][graph] >= 5 * m.num_layers  # qkv (maybe packed), o, gate, up, down
        assert ops.count("DynamicQuantizeLinear") >= 1 and "MatMulNBits" not in ops
        # every float MatMul left with a weight initializer is the LM head
        head = q["kept_float"]["lm_head" if graph == "prefill" else "decode_lm_head"]
        assert head and _float_weight_matmuls(proto) == head
        inits = {t.name: t for t in proto.graph.initializer}
        for node in proto.graph.node:
            if node.op_type == "MatMulInteger":  # s8 weights, one zero point (0) per output channel
                w, zp = inits[node.input[1]], inits[node.input[3]]
                assert w.data_type == onnx.TensorProto.INT8 and zp.data_type == onnx.TensorProto.INT8
                assert list(zp.dims) == [w.dims[-1]] and not onnx.numpy_helper.to_array(zp).any()
    assert man["weights"]["shared_by"] == ["prefill", "decode"]
    assert man["weights"]["bytes"] < sum(p.numel() for p in m.parameters()) * 4
    ids, mask = token_prompts(m, [9, 5, 12])
    diffs, _ = compare_backends(OrtBackend(d), TorchBackend(m, ITEM_TOKENS), ids, mask, beam=8)
    assert 0 < max(diffs) <= 0.1, diffs  # quantized: not bit-equal, but close


def test_int8_note_without_vnni(int8_engines, monkeypatch, capsys):
    """A CPU without VNNI/AMX-int8: one line says so, and the engine still runs (ONNX Runtime's exact kernel)."""
    engines, _ = int8_engines
    d = engines["reference"]
    monkeypatch.setattr(machine, "cpu_flags", lambda: {"avx2", "avx512f"})
    monkeypatch.setattr(machine, "_NOTED", set())
    res = Recommender.load(d).recommend(HISTORIES, top_k=10)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("int8:")]
    assert len(lines) == 1 and "no AVX-512 VNNI or AMX-int8" in lines[0]
    assert (res.items >= 0).all()
    Recommender.load(d)  # once per process
    assert "int8:" not in capsys.readouterr().err
    monkeypatch.setattr(machine, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_vnni"})
    monkeypatch.setattr(machine, "_NOTED", set())
    Recommender.load(d)
    assert "int8:" not in capsys.readouterr().err


def test_cpp_runtime_runs_int8_engine(int8_engines):
    from helpers import HEADERS, assert_same

    if not any((h / "onnxruntime_cxx_api.h").is_file() for h in HEADERS):
        pytest.skip("no ONNX Runtime C++ headers here: the C++ runtime is not built")
    engines, _ = int8_engines
    for d in engines.values():
        py, cc = Recommender.load(d), Recommender.load(d, backend="cpp")
        assert_same(cc.recommend(HISTORIES, top_k=20, beam=20), py.recommend(HISTORIES, top_k=20, beam=20))


@pytest.fixture(scope="module")
def beauty_int8(beauty_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("beauty-int8")
    export_onnx(beauty_ckpt, out, vocab="items", exporter="torchscript", quantize="int8")
    return out


def test_beauty_int8_check_passes(beauty_int8, beauty_ckpt, capsys):
    """`earn-export check` on the int8 engine of the trained Beauty model: the overlap criterion, and it holds."""
    from earn_export.cli import main
    from earn_export.export.cli import QUANT_MIN_OVERLAP

    rc = main(["check", str(beauty_int8), "--users", "300", "--reference", str(beauty_ckpt)])
    summary = json.loads(capsys.readouterr().out)
    assert summary["quantization"] == "int8" and summary["pass_criterion"] == "topk_overlap_mean"
    assert summary["min_identical"] == QUANT_MIN_OVERLAP["int8"]
    assert rc == 0 and summary["passed"]
    assert summary["topk_overlap_mean"] >= 0.95, summary  # 0.995 on all 3,553 users (docs/results/precision.md)
