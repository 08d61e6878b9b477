"""earn::CompactedAttention: one op from the torch reference to the ONNX node, the ONNX Runtime custom-op library and
the TensorRT creator (host test). The compiled parts come from `make plugins` (run by `make install`); tests that
need one skip with the reason when it was not built.
"""

import json
import os
import shutil
import subprocess

import numpy as np
import onnx
import pytest
import torch

from earn_export.engine.manifest import EngineDirError, load_manifest
from earn_export.export import export_onnx
from earn_export.ops import FIELDS, LOOKUP_ATTRIBUTES, OP_DOMAIN, OP_NAME, OP_VERSION, PLUGIN_NAMESPACE, libraries
from earn_export.ops.compacted_attention import compacted_attention_op, compacted_attention_reference
from earn_export.runtime.backends import OrtBackend, TorchBackend
from helpers import ITEM_TOKENS, compare_backends, cpp_runtime_module, earn_model, synthetic_trie, token_prompts

ORT_LIB = libraries.ort_ops_library()
needs_ort_lib = pytest.mark.skipif(ORT_LIB is None, reason=f"libearn_ort_ops.so not built: {libraries.BUILD_HINT}")
SHARED_TRT = libraries.REPO_BUILD.parents[2] / "shared" / "third_party" / "tensorrt"


@pytest.fixture(scope="module")
def trie_arrays():
    return synthetic_trie()[0]


@pytest.fixture(scope="module")
def plugin_engines(tmp_path_factory, trie_arrays):
    """name -> (plain engine, plugin engine, fp32 torch model); TorchScript exporter (the dynamo one: below)."""
    out = {}
    for name, build, kw in (("llama_k2", lambda: earn_model("llama", 2), {}),  # GQA 4:2
                            ("qwen_k1", lambda: earn_model("qwen2", 1), {}),  # GQA 4:1
                            ("llama_k2_fp16", lambda: earn_model("llama", 2), {"fp16": True})):
        m = build()
        dirs = []
        for attention in ("onnx", "plugin"):
            d = tmp_path_factory.mktemp(f"{name}-{attention}")
            export_onnx(m, d, vocab="items", trie=trie_arrays, exporter="torchscript", attention=attention, **kw)
            dirs.append(d)
        out[name] = (*dirs, m)
    return out


def _built(prefix):
    """What ``make plugins`` built under build keys starting with ``prefix`` (``host_test``, ``trt_plugin``), present
    on disk: {"path", "tensorrt"} per key."""
    return {k: v for k, v in libraries.built().items() if k.startswith(prefix) and libraries._existing(v.get("path"))}


def decode_nodes(engine_dir):
    g = onnx.load(str(engine_dir / "decode.onnx"))
    return [n for n in g.graph.node if n.domain == OP_DOMAIN and n.op_type == OP_NAME]


# ------------------------------------------------------------------------------------- torch op and exporter
def random_inputs(b, nb, hq, hkv, d, s, t, dtype=torch.float32, pads=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g).to(dtype)  # noqa: E731
    bias = torch.zeros(b, s)
    for i, p in enumerate(pads or []):
        bias[i, :p] = torch.finfo(torch.float32).min
    return r(b, nb, hq, d), r(b, hkv, s, d), r(b, hkv, s, d), bias, r(b, nb, hkv, t, d), r(b, nb, hkv, t, d)


def test_custom_op_is_the_reference_and_matches_per_beam_attention():
    """The op = the reference; both = plain softmax attention over [shared keys ; own generated keys] per beam."""
    b, nb, hq, hkv, d, s, t = 2, 3, 6, 2, 8, 7, 2
    q, sk, sv, bias, gk, gv = random_inputs(b, nb, hq, hkv, d, s, t, pads=[0, 3])
    out = torch.ops.earn.compacted_attention(q, sk, sv, bias, gk, gv, hq, hkv, d, d ** -0.5)
    ref = compacted_attention_reference(q, sk, sv, bias, gk, gv, hq, hkv, d, d ** -0.5).reshape(b, nb, hq, d)
    assert torch.equal(out, ref) and compacted_attention_op is not None
    g = hq // hkv
    for bi in range(b):
        keep = bias[bi] == 0
        for j in range(nb):
            for h in range(hq):
                keys = torch.cat([sk[bi, h // g][keep], gk[bi, j, h // g]])
                vals = torch.cat([sv[bi, h // g][keep], gv[bi, j, h // g]])
                p = torch.softmax(keys @ q[bi, j, h] * d ** -0.5, dim=0)
                assert torch.allclose(out[bi, j, h], p @ vals, atol=1e-6)


def test_plain_export_has_no_custom_op_and_plugin_export_one_node_per_layer(plugin_engines):
    plain, plugin, m = plugin_engines["llama_k2"]
    assert decode_nodes(plain) == [] and load_manifest(plain)["attention"] == {"mode": "onnx"}
    nodes = decode_nodes(plugin)
    assert len(nodes) == m.num_layers
    man = load_manifest(plugin)["attention"]
    assert man["mode"] == "plugin" and man["op"] == f"{OP_DOMAIN}::{OP_NAME}" and man["op_version"] == OP_VERSION
    a = m.model.layers[0].self_attn
    for node in nodes:
        attrs = {x.name: onnx.helper.get_attribute_value(x) for x in node.attribute}
        assert attrs == {"num_heads": a.n_heads, "num_kv_heads": a.n_kv, "head_dim": a.head_dim,
                         "scale": pytest.approx(a.scaling), "plugin_version": OP_VERSION.encode(),
                         "plugin_namespace": PLUGIN_NAMESPACE.encode()}
    g = onnx.load(str(plugin / "decode.onnx"))
    assert {(o.domain, o.version) for o in g.opset_import} >= {(OP_DOMAIN, 1)}
    # prefill is plain causal attention: unchanged by --attention
    p0 = onnx.load(str(plain / "prefill.onnx"))
    p1 = onnx.load(str(plugin / "prefill.onnx"))
    assert [n.op_type for n in p0.graph.node] == [n.op_type for n in p1.graph.node]


def test_loader_refuses_plugin_engine_without_library(plugin_engines, monkeypatch, tmp_path):
    _, plugin, _ = plugin_engines["llama_k2"]
    monkeypatch.setenv("EARN_ORT_OPS_LIBRARY", str(tmp_path / "nope" / "libearn_ort_ops.so"))
    with pytest.raises(EngineDirError, match=r"CompactedAttention v1 .*--attention plugin.*not found.*make plugins"
                                             r".*EARN_ORT_OPS_LIBRARY.*--attention onnx"):
        OrtBackend(plugin)


@needs_ort_lib
def test_loader_refuses_another_op_version(plugin_engines, tmp_path):
    _, plugin, _ = plugin_engines["llama_k2"]
    d = tmp_path / "v2"
    shutil.copytree(plugin, d)
    man = json.loads((d / "manifest.json").read_text())
    man["attention"]["op_version"] = "2"
    (d / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(EngineDirError, match=r"v2 .*implements earn::CompactedAttention v1.*make plugins"):
        OrtBackend(d)


# ---------------------------------------------------------------------------------- ONNX Runtime custom op
def run_node(q, sk, sv, bias, gk, gv, hq, hkv, d, scale):
    import onnxruntime as ort
    from onnx import TensorProto, helper

    tp = TensorProto.FLOAT16 if q.dtype == np.float16 else TensorProto.FLOAT
    node = helper.make_node(OP_NAME, ["q", "sk", "sv", "kb", "gk", "gv"], ["o"], domain=OP_DOMAIN, num_heads=hq,
                            num_kv_heads=hkv, head_dim=d, scale=scale, plugin_version=OP_VERSION,
                            plugin_namespace=PLUGIN_NAMESPACE)
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT if n == "kb" else tp, None)
           for n in ("q", "sk", "sv", "kb", "gk", "gv")]
    graph = helper.make_graph([node], "one_op", ins, [helper.make_tensor_value_info("o", tp, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(OP_DOMAIN, 1)])
    opts = ort.SessionOptions()
    opts.register_custom_ops_library(str(ORT_LIB))
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {"q": q, "sk": sk, "sv": sv, "kb": bias, "gk": gk, "gv": gv})[0]


SHAPES = [  # b, beam, Hq, Hkv, D, S, T, left pads
    (2, 5, 4, 2, 16, 9, 3, [0, 4]),
    (3, 20, 14, 2, 64, 130, 1, [0, 70, 129]),  # Qwen2.5-0.5B heads, mixed prompt lengths
    (2, 40, 8, 8, 128, 65, 2, None),  # MHA, beam 40
    (1, 1, 32, 8, 64, 200, 3, None),  # Llama-3.2-1B heads, beam 1
    (2, 3, 6, 2, 24, 70, 4, [10, 0]),  # a head_dim without a specialised kernel
]


@needs_ort_lib
@pytest.mark.parametrize("kernel", ["avx512", "avx2", "generic"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s[:7])))
def test_ort_op_equals_reference(shape, kernel, monkeypatch):
    monkeypatch.setenv("EARN_ORT_OPS_KERNEL", kernel)  # capped at what this CPU runs
    b, nb, hq, hkv, d, s, t, pads = shape
    for dtype, tol in ((torch.float32, 2e-6), (torch.float16, 2e-2)):
        ins = random_inputs(b, nb, hq, hkv, d, s, t, dtype=dtype, pads=pads, seed=d)
        ref = compacted_attention_reference(*ins, hq, hkv, d, d ** -0.5).reshape(b, nb, hq, d).float()
        out = run_node(*[x.numpy() for x in ins], hq, hkv, d, d ** -0.5)
        assert out.dtype == ins[0].numpy().dtype
        err = np.abs(out.astype(np.float32) - ref.numpy()).max() / max(1.0, float(ref.abs().max()))
        assert err <= tol, (dtype, err)


@needs_ort_lib
def test_ort_op_rejects_bad_shapes_clearly():
    q, sk, sv, bias, gk, gv = (x.numpy() for x in random_inputs(2, 3, 4, 2, 16, 5, 1))
    with pytest.raises(Exception, match="key_bias must be \\[B, S\\] = \\[2, 5\\], got \\[2, 4\\]"):
        run_node(q, sk, sv, bias[:, :4], gk, gv, 4, 2, 16, 0.25)
    with pytest.raises(Exception, match="num_heads \\(4\\) must be a multiple of num_kv_heads \\(3\\)"):
        run_node(q, sk, sv, bias, gk, gv, 4, 3, 16, 0.25)
    with pytest.raises(Exception, match="at least the current token"):
        run_node(q, sk, sv, bias, gk[:, :, :, :0], gv[:, :, :, :0], 4, 2, 16, 0.25)


@needs_ort_lib
@pytest.mark.parametrize("name", ["llama_k2", "qwen_k1"])
@pytest.mark.parametrize("beam", [1, 20, 40])
def test_plugin_decode_graph_equals_plain_graph(plugin_engines, name, beam):
    """Mixed prompt lengths, GQA 4:2 and 4:1, beams 1/20/40: max abs log-prob diff <= 1e-5 (fp32)."""
    plain, plugin, m = plugin_engines[name]
    ids, mask = token_prompts(m, [9, 4, 12, 6])
    diffs, _ = compare_backends(OrtBackend(plugin), OrtBackend(plain), ids, mask, beam=beam)
    assert max(diffs) <= 1e-5, diffs
    ref_diffs, _ = compare_backends(OrtBackend(plugin), TorchBackend(m, ITEM_TOKENS), ids, mask, beam=beam)
    assert max(ref_diffs) <= 1e-4, ref_diffs


@needs_ort_lib
def test_plugin_fp16_graph_within_fp16_tolerance(plugin_engines):
    plain, plugin, m = plugin_engines["llama_k2_fp16"]
    ids, mask = token_prompts(m, [12, 4, 8])
    _, outs = compare_backends(OrtBackend(plugin), OrtBackend(plain), ids, mask, beam=20)
    _, outs_ref = compare_backends(OrtBackend(plugin), TorchBackend(m, ITEM_TOKENS), ids, mask, beam=20)
    for a, b in outs + outs_ref:
        assert np.isfinite(a).all()
        assert np.abs(a - b).max() / np.abs(b).max() <= 2e-2


@needs_ort_lib
def test_dynamo_plugin_export_equals_torchscript(tmp_path, trie_arrays, plugin_engines):
    _, ts_plugin, m = plugin_engines["qwen_k1"]
    man = export_onnx(m, tmp_path, vocab="items", trie=trie_arrays, exporter="dynamo", attention="plugin")
    assert man["exporter"]["decode"] == "dynamo" and len(decode_nodes(tmp_path)) == m.num_layers
    ids, mask = token_prompts(m, [7, 11, 5])
    diffs, _ = compare_backends(OrtBackend(tmp_path), OrtBackend(ts_plugin), ids, mask, beam=6)
    assert max(diffs) <= 1e-5, diffs


@needs_ort_lib
@pytest.mark.beauty
def test_check_on_beauty_plugin_engine(beauty_ckpt, beauty_test_histories, tmp_path):
    """`earn-export check` on the Beauty-trained checkpoint exported with --attention plugin: 100% identical top-20
    lists for 500 Beauty test users."""
    from earn_export.export.parity_check import check_engine

    export_onnx(beauty_ckpt, tmp_path, vocab="items", exporter="torchscript", attention="plugin")
    assert len(decode_nodes(tmp_path)) > 0
    report = check_engine(tmp_path, beauty_ckpt, users=beauty_test_histories[:500], n=500, beam=20, top_k=20,
                          batch_size=125)
    assert report["users"] >= 500
    assert report["topk_identical_fraction"] == 1.0, report["mismatches"][:3]


# ----------------------------------------------------------------------------------- TensorRT creator (host)
def expected_header_sets() -> list[str]:
    """TensorRT versions whose headers are available to this checkout (CI: both copies in ../shared)."""
    return sorted(p.name.lstrip("v") for p in SHARED_TRT.glob("v*") if (p / "include" / "NvInferRuntime.h").is_file())


def test_plugin_compiles_against_every_header_set_with_werror():
    if shutil.which("cmake") is None:
        pytest.skip("cmake not installed: `make plugins` cannot build the plugins here")
    built = libraries.built()
    if not built:
        pytest.skip(f"plugins not built: {libraries.BUILD_HINT}")
    cache = (libraries.build_dir() / "CMakeCache.txt").read_text()
    assert "EARN_PLUGINS_WERROR:BOOL=ON" in cache
    have = sorted(v["tensorrt"] for v in _built("host_test").values())
    for version in expected_header_sets():
        assert version in have, f"host test not built against TensorRT {version} headers ({have})"
    if shutil.which("nvcc") or os.path.exists("/usr/local/cuda/bin/nvcc"):
        libs = sorted(v["tensorrt"] for v in _built("trt_plugin").values())
        assert libs == have, f"plugin libraries {libs} != header sets {have}"


def host_test_params():
    tests = _built("host_test")
    if not tests:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"host test not built: {libraries.BUILD_HINT} "
                                                                  "(+ TensorRT and CUDA headers)"))]
    return [pytest.param(v, id=f"trt{v['tensorrt']}") for v in tests.values()]


@pytest.mark.parametrize("host_test", host_test_params())
def test_host_test_of_creator_and_plugin(host_test):
    """fields -> plugin -> getFieldsToSerialize -> plugin, output shapes via an IExprBuilder, format combinations,
    clear failures on wrong fields and shapes (plugins/tests/plugin_host_test.cpp)."""
    res = subprocess.run([host_test["path"]], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"0 failed (TensorRT headers {host_test['tensorrt']})" in res.stdout
    assert res.stdout.count("PASS ") >= 40


@pytest.mark.parametrize("host_test", host_test_params())
def test_node_attributes_are_exactly_the_creator_fields(plugin_engines, host_test):
    """Read from the exported ONNX and from the compiled creator, not from two hand-kept lists."""
    res = subprocess.run([host_test["path"], "--fields-json"], capture_output=True, text=True, timeout=60)
    creator = json.loads(res.stdout)
    _, plugin, _ = plugin_engines["llama_k2"]
    onnx_type = {onnx.AttributeProto.INT: "kINT32", onnx.AttributeProto.FLOAT: "kFLOAT32"}
    for node in decode_nodes(plugin):
        assert node.op_type == creator["name"]
        attrs = {a.name: a for a in node.attribute}
        assert attrs["plugin_version"].s.decode() == creator["version"]
        assert attrs["plugin_namespace"].s.decode() == creator["namespace"]
        fields = {a: onnx_type.get(x.type, "other") for a, x in attrs.items() if a not in LOOKUP_ATTRIBUTES}
        assert fields == {f["name"]: f["type"] for f in creator["fields"]}  # both directions, with types
    assert set(FIELDS) == {f["name"] for f in creator["fields"]}
    lib = _built("trt_plugin")
    same_headers = [v for v in lib.values() if v["tensorrt"] == host_test["tensorrt"]]
    if same_headers:  # the real library (needs libcudart to load, not TensorRT) declares the same creator
        try:
            info = libraries.trt_plugin_info(same_headers[0]["path"])
        except OSError as exc:
            pytest.skip(f"cannot load {same_headers[0]['path']} here ({exc})")
        # + the CUDA runtime the library carries (linked statically: it loads next to any CUDA major's TensorRT)
        assert {k: v for k, v in info.items() if not k.startswith("cuda_runtime")} == creator
        assert info.get("cuda_runtime_linkage") in ("static", None) and info.get("cuda_runtime", "13").split(".")[0]


def test_cuda_kernels_under_cpu_emulation():
    """The CUDA kernels (fp32 CUDA cores, fp16 CUDA cores and tensor cores) run on the CPU under an emulation of the
    CUDA execution model and equal a double-precision reference: GQA groups 1/2/3/4/7/8, head_dim 32/64/128, beams
    1/3/20/40, left padding and mixed prompts with heavy padding (padded K/V rows NaN: a kernel reading them fails),
    register-only S = 2; each with the launcher's plan, one forced split (no workspace, one kernel) and many; plus
    the launcher's guards (shared-memory fallback, cached device attributes, alignment, peeked errors, workspace
    bound, softmax bank conflicts). plugins/tests/cuda_emulation; not a GPU run."""
    path = libraries.built().get("cuda_emulation_test")
    if not path or not os.path.isfile(path):
        pytest.skip(f"earn_cuda_emulation_test not built: {libraries.BUILD_HINT}")
    res = subprocess.run([path], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("PASS ") == 103 and "0 failed" in res.stdout
    one_split = [line for line in res.stdout.splitlines() if "one-split" in line]
    assert len(one_split) == 30 and all("kernels=1" in line for line in one_split)  # no merge kernel


def test_byte_model_ratio_at_most_1_1():
    """The launch plans move at most 1.1x the essential bytes for the SmolLM2-135M / Qwen2.5-0.5B / Llama-3.2-1B
    decode shapes at prompt 128 and 1024, beam 20 (plugins/tools/byte_model.cpp; a model, not a GPU measurement)."""
    path = libraries.built().get("byte_model")
    if not path or not os.path.isfile(path):
        pytest.skip(f"earn_byte_model not built: {libraries.BUILD_HINT}")
    res = subprocess.run([path, "--check"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    after = [float(cell.strip(" *")) for line in res.stdout.splitlines() if line.startswith("| ") and "**" in line
             for cell in [line.split("|")[6].split(",")[-1]]]
    assert len(after) == 13 and max(after[:12]) <= 1.1, res.stdout


def enqueue_test_params():
    tests = {k: v for k, v in libraries.built().items() if k.startswith("enqueue_test") and os.path.isfile(v["path"])}
    if not tests:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"enqueue test not built: {libraries.BUILD_HINT} "
                                                                  "(+ TensorRT headers)"))]
    return [pytest.param(v, id=f"trt{v['tensorrt']}") for v in tests.values()]


@pytest.mark.parametrize("enqueue_test", enqueue_test_params())
def test_plugin_enqueue_under_cpu_emulation(enqueue_test):
    """The TensorRT plugin driven as TensorRT drives it (fields -> plugin, configurePlugin / getWorkspaceSize at the
    profile's max shapes, onShapeChange + enqueue at runtime shapes, fp32 and fp16, and through a plugin rebuilt
    from getFieldsToSerialize) with the CUDA kernels under the CPU emulation = the double-precision reference."""
    res = subprocess.run([enqueue_test["path"]], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("PASS enqueue") == 14 and "0 failed" in res.stdout


@needs_ort_lib
def test_ort_library_declares_the_exported_op():
    info = libraries.ort_ops_info(ORT_LIB)
    assert (info["domain"], info["op"], info["op_version"]) == (OP_DOMAIN, OP_NAME, OP_VERSION)
    assert info["types"] == ["float32", "float16"]


def test_gpu_check_reports_missing_gpu():
    """plugins/gpu_check.py is the one-command GPU check; without a GPU it must say so (exit 2), not crash."""
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: run plugins/gpu_check.py itself")
    script = libraries.REPO_BUILD.parent / "gpu_check.py"
    res = subprocess.run([os.sys.executable, str(script), "--quick"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "no CUDA device" in res.stderr, res.stderr


@needs_ort_lib
def test_bench_attention_plugin_runs_and_agrees(tmp_path, benchmark_script):
    """`python benchmarks/attention_op.py` on a micro model: both engines return the same items; figures and
    files are written (timings themselves are not asserted: they are measured by the command, not by tests)."""
    from earn_export.bench.harness import BenchConfig
    run_attention_bench = benchmark_script("attention_op").run_attention_bench

    cfg = BenchConfig(preset="micro", prompt_lens=(16, 40), batch_sizes=(2,), beams=(5,), warmup=0, repeats=1,
                      vocab_size=512, codes=16, n_items=200, out=str(tmp_path))
    res = run_attention_bench(cfg, progress=False, log=None)
    assert [r["prompt_len"] for r in res["rows"]] == [16, 40] and all(r["same_items"] for r in res["rows"])
    assert all(r["decode_graph_s"]["plugin"] > 0 for r in res["rows"])
    assert all(r["max_abs_diff"] <= 1e-5 for r in res["op_rows"])
    assert all(r["max_abs_logprob_diff"] <= 1e-5 and r["cpu_s"]["plugin"] > 0 for r in res["decode_rows"])
    assert (tmp_path / "attention.json").is_file() and "plain / plugin" in (tmp_path / "attention.md").read_text()


@needs_ort_lib
def test_cpp_runtime_runs_plugin_engine_like_python(plugin_engines):
    """backend="cpp" on an --attention plugin engine registers the same op library and returns the Python runtime's
    lists (the library is found like the Python backend finds it)."""
    from earn_export.runtime import Recommender

    cpp_runtime_module()  # skips only without the ONNX Runtime C++ headers
    _, plugin, _ = plugin_engines["llama_k2"]
    py = Recommender.load(plugin)
    items = sorted(py.known_items)
    rng = np.random.default_rng(0)
    histories = [list(rng.choice(items, size=n)) for n in (1, 3, 7, 12)]
    want = py.recommend(histories, top_k=10, beam=10)
    got = Recommender.load(plugin, backend="cpp").recommend(histories, top_k=10, beam=10)
    np.testing.assert_array_equal(got.items, want.items)
    np.testing.assert_allclose(got.scores, want.scores, rtol=0, atol=1e-5)
