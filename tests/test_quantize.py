"""--quantize int8-nbits|int4: MatMulNBits projections, LM head kept fp32, weights shared, ORT runs them close to fp32,
and `check` judges quantized engines on top-K overlap."""

import numpy as np
import onnx
import pytest
import torch

from earn_export.engine.manifest import load_manifest
from earn_export.export import ExportError, export_onnx
from earn_export.export.parity_check import check_engine
from earn_export.runtime.backends import OrtBackend, TorchBackend
from helpers import ITEM_TOKENS, compare_backends, earn_model, synthetic_trie, token_prompts


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    trie = synthetic_trie()[0]
    m = earn_model("llama", 2)
    out = {}
    for mode in ("int8-nbits", "int4"):
        d = tmp_path_factory.mktemp(f"q_{mode}")
        export_onnx(m, d, trie=trie, exporter="torchscript", quantize=mode)
        out[mode] = d
    return out, m


@pytest.mark.parametrize("mode,tol", [("int8-nbits", 0.05), ("int4", 0.5)])
def test_quantized_graphs(quantized, mode, tol):
    engines, m = quantized
    d = engines[mode]
    man = load_manifest(d)
    q = man["quantization"]
    assert q["mode"] == mode and q["bits"] == {"int8-nbits": 8, "int4": 4}[mode] and q["op"] == "com.microsoft.MatMulNBits"
    n = m.num_layers
    for graph in ("prefill", "decode"):
        proto = onnx.load(str(d / f"{graph}.onnx"), load_external_data=False)
        ops = [node.op_type for node in proto.graph.node]
        assert ops.count("MatMulNBits") == 7 * n  # q, k, v, o, gate, up, down in every layer
        # the LM head stays a float MatMul into the log-softmax
        assert q["kept_float"]["lm_head" if graph == "prefill" else "decode_lm_head"]
        assert "MatMul" in ops
    # quantized weights of both graphs stored once
    assert man["weights"]["shared_by"] == ["prefill", "decode"]
    fp32_bytes = sum(p.numel() for p in m.parameters()) * 4
    assert man["weights"]["bytes"] < fp32_bytes
    ids, mask = token_prompts(m, [9, 5, 12])
    diffs, _ = compare_backends(OrtBackend(d), TorchBackend(m, ITEM_TOKENS), ids, mask, beam=8)
    assert 0 < max(diffs) <= tol, diffs  # quantized: not bit-equal, but close


def test_check_uses_overlap_for_quantized_engines(quantized):
    engines, m = quantized
    rep = check_engine(engines["int8-nbits"], reference_model=m, n=24, beam=10, top_k=10)
    assert rep["quantization"] == "int8-nbits"
    assert 0.0 <= rep["topk_overlap_mean"] <= 1.0 and rep["topk_overlap_mean"] >= rep["topk_identical_fraction"]


def test_quantize_refuses_fp16(tmp_path):
    with pytest.raises(ExportError, match="drop --fp16"):
        export_onnx(earn_model("llama", 2), tmp_path, trie=synthetic_trie()[0], fp16=True, quantize="int4")
    with pytest.raises(ValueError, match="quantize must be .int8., .int8-nbits. or .int4."):
        export_onnx(earn_model("llama", 2), tmp_path, trie=synthetic_trie()[0], quantize="int2")


def test_overlap_rule_in_cli(quantized, capsys):
    """`earn-export check` on a quantized engine reports the overlap criterion (and its default threshold)."""
    import json

    from earn_export.export.cli import QUANT_MIN_OVERLAP, run_check

    from earn_export.model.checkpoint import save_pretrained

    engines, m = quantized
    ckpt = engines["int4"].parent / "int4-ref-ckpt"
    save_pretrained(m, ckpt)

    class Args:
        engine_dir, reference, users, beam, top_k, batch_size = str(engines["int4"]), str(ckpt), 16, 10, 10, 8
        polygraphy, min_identical, out, reference_dtype = False, None, None, None

    rc = run_check(Args)
    summary = json.loads(capsys.readouterr().out)
    assert summary["pass_criterion"] == "topk_overlap_mean"
    assert summary["min_identical"] == QUANT_MIN_OVERLAP["int4"]
    assert rc == (0 if summary["passed"] else 1)
    assert np.isfinite(summary["topk_overlap_mean"])


def _dynamo_like_graph():
    """Two projections and an LM head into LogSoftmax, named the way the dynamo exporter names them: the nodes
    ``node_matmul_N``, the weights after their module path."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = {name: numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), name)
               for name in ("layers.0.mlp.up_proj.weight_t", "layers.0.mlp.down_proj.weight_t", "lm_head.weight_t")}
    nodes = [helper.make_node("MatMul", ["x", "layers.0.mlp.up_proj.weight_t"], ["h"], name="node_matmul"),
             helper.make_node("MatMul", ["h", "layers.0.mlp.down_proj.weight_t"], ["y"], name="node_matmul_1"),
             helper.make_node("MatMul", ["y", "lm_head.weight_t"], ["logits"], name="node_matmul_2"),
             helper.make_node("LogSoftmax", ["logits"], ["logp"], axis=-1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                              [helper.make_tensor_value_info("logp", TensorProto.FLOAT, [2, 8])],
                              initializer=list(weights.values()))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_keep_float_matches_weight_names_and_refuses_unknown_fragments():
    """keep_float finds a projection by its weight's name when the node has only a generic name, and a fragment
    that matches nothing stops the export instead of quantizing everything silently."""
    from earn_export.export.quantize import quantize_graph

    out, info = quantize_graph(_dynamo_like_graph(), "int8", keep_float=("down_proj",))
    kept = [n.input[1] for n in out.graph.node if n.op_type == "MatMul"]
    assert sorted(kept) == ["layers.0.mlp.down_proj.weight_t", "lm_head.weight_t"]
    assert info["quantized_matmuls"] == 1 and info["kept_float"]["matmuls"]["count"] == 1
    with pytest.raises(ExportError, match="no MatMul node or weight name contains 'down_prj'"):
        quantize_graph(_dynamo_like_graph(), "int8", keep_float=("down_prj",))


def test_int8_error_emulation_matches_onnxruntime(benchmark_script):
    """benchmarks/int8_error.py assigns int8's accuracy loss to weights or activations by emulating the engine's
    arithmetic in torch: its per-tensor setting must compute what the int8 graph computes, far closer than fp32."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from earn_export.export.quantize import quantize_graph

    rng = np.random.default_rng(1)
    w = rng.standard_normal((64, 48)).astype(np.float32)  # [in, out], as the exporter writes weights
    x = rng.standard_normal((2, 5, 64)).astype(np.float32)
    x[:, :, 7] *= 20  # an outlier channel, so the activation scale matters
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="node_matmul")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5, 48])],
                              initializer=[numpy_helper.from_array(w, "w")])
    q, _ = quantize_graph(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), "int8")
    y_ort = ort.InferenceSession(q.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    linear = torch.nn.Linear(64, 48, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(w.T))
    fake = benchmark_script("int8_error").FakeInt8Linear(linear, "tensor")
    with torch.no_grad():
        y_emu, y_fp32 = fake(torch.from_numpy(x)).numpy(), linear(torch.from_numpy(x)).numpy()
    assert np.abs(y_emu - y_ort).max() < 0.01 * np.abs(y_fp32 - y_ort).max()
