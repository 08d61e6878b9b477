"""The TensorRT plugin library in one process: build then load, two engines, a reload -- against a fake ``tensorrt``
module (tests/fake_tensorrt.py) whose plugin registry refuses a second registration of a creator, as
IPluginRegistry::loadLibrary documents. These are the sequences that break on a real TensorRT when a library is
loaded twice or loaded and embedded in one process; the real calls stay unverified (no TensorRT here)."""

import json
import sys

import pytest

import fake_tensorrt
from earn_export.tensorrt import tensorrt_builder
from plan_loading import deserialize_plan
from earn_export.engine.manifest import FORMAT_VERSION
from earn_export.ops import libraries

INFO = {"name": "CompactedAttention", "version": "1", "namespace": "earn", "fields": [], "tensorrt_headers": "10.16"}
MODEL = {"n_kv_heads": 2, "head_dim": 64, "num_layers": 2, "split_layer": 1, "n_registers": 2, "id_length": 4}


@pytest.fixture
def trt(monkeypatch):
    fake = fake_tensorrt.make_module()
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(libraries, "trt_plugin_info", lambda path: dict(INFO))
    try:  # a fresh process for each test: forget what earlier tests registered
        from earn_export.tensorrt import plugin_registry
        plugin_registry.reset()
    except (ImportError, OSError):  # code without the record (the tests also run against it: they fail there)
        pass
    return fake


@pytest.fixture
def lib(tmp_path):
    path = tmp_path / "libearn_plugins.so"
    path.write_bytes(b"\x7fELF fake plugin library")
    return path


def plugin_engine(root, name):
    """An engine directory exported with --attention plugin: a plain prefill graph, a decode graph with the op."""
    d = root / name
    d.mkdir()
    (d / "prefill.onnx").write_bytes(b"plain graph")
    (d / "decode.onnx").write_bytes(b"graph with earn::CompactedAttention nodes")
    manifest = {"format_version": FORMAT_VERSION, "sha256": {}, "model": MODEL,
                "attention": {"mode": "plugin", "op": "earn::CompactedAttention", "op_version": "1"}}
    (d / "manifest.json").write_text(json.dumps(manifest))
    return d


def test_fake_registry_refuses_a_second_registration(trt, lib):
    """The fake implements the documented refusal (else the tests below could not fail)."""
    assert trt.REGISTRY.load_library(str(lib)) is not None
    assert trt.REGISTRY.load_library(str(lib)) is None
    plan = json.dumps({"uses": [list(fake_tensorrt.KEY)], "embedded": [str(lib)]}).encode()
    runtime = trt.Runtime(trt.Logger())
    runtime.engine_host_code_allowed = True
    assert runtime.deserialize_cuda_engine(plan) is None and "exists already" in trt.log[-1]


def test_build_then_load_in_one_process(trt, tmp_path, lib):
    d = plugin_engine(tmp_path, "a")
    meta = tensorrt_builder.build_engines(d, plugins=[str(lib)])
    assert meta["plugins"][0]["plugin_name"] == "CompactedAttention"
    assert deserialize_plan(d, "decode") is not None, trt.log
    assert deserialize_plan(d, "prefill") is not None, trt.log


def test_two_engines_in_one_process(trt, tmp_path, lib):
    a, b = plugin_engine(tmp_path, "a"), plugin_engine(tmp_path, "b")
    tensorrt_builder.build_engines(a, plugins=[str(lib)])
    tensorrt_builder.build_engines(b, plugins=[str(lib)])
    engines = [deserialize_plan(a, "decode"), deserialize_plan(b, "decode")]
    assert all(e is not None for e in engines), trt.log
    assert [ok for _, ok in trt.REGISTRY.loads].count(False) == 0  # never asked TensorRT to register twice


def test_reload_in_one_process(trt, tmp_path, lib):
    d = plugin_engine(tmp_path, "a")
    tensorrt_builder.build_engines(d, plugins=[str(lib)])
    for _ in range(3):
        assert deserialize_plan(d, "decode") is not None, trt.log
    assert [ok for _, ok in trt.REGISTRY.loads].count(False) == 0


def test_creator_registered_by_someone_else_is_used_and_kept(trt, tmp_path, lib):
    """A creator already in the registry (loaded by the application) is not loaded again, and a build does not
    deregister what it did not load."""
    trt.REGISTRY.load_library(str(lib))
    d = plugin_engine(tmp_path, "a")
    tensorrt_builder.build_engines(d, plugins=[str(lib)])
    assert trt.REGISTRY.get_creator(*fake_tensorrt.KEY) is not None
    assert deserialize_plan(d, "decode") is not None, trt.log
    assert [ok for _, ok in trt.REGISTRY.loads] == [True]


def test_build_deregisters_what_it_loaded(trt, tmp_path, lib):
    d = plugin_engine(tmp_path, "a")
    tensorrt_builder.build_engines(d, plugins=[str(lib)])
    assert trt.REGISTRY.get_creator(*fake_tensorrt.KEY) is None and trt.REGISTRY.libraries == {}


def test_embedded_plan_builds_then_loads_and_a_second_is_refused_clearly(trt, tmp_path, lib):
    """embed_plugins=True: the plan carries the library and the loader loads nothing; TensorRT registers the
    embedded copy, so a second embedded plan in the same process is refused before TensorRT sees it, with the fix."""
    from earn_export.engine.manifest import EngineDirError

    a, b = plugin_engine(tmp_path, "a"), plugin_engine(tmp_path, "b")
    meta = tensorrt_builder.build_engines(a, plugins=[str(lib)], embed_plugins=True)
    assert meta["plugins"][0]["embedded_in"] == ["decode"]
    tensorrt_builder.build_engines(b, plugins=[str(lib)], embed_plugins=True)
    assert deserialize_plan(a, "decode") is not None, trt.log
    with pytest.raises(EngineDirError, match=r"embeds .*CompactedAttention.*already registered in this process.*"
                                             r"earn-export build .* without --embed-plugins"):
        deserialize_plan(b, "decode")
    assert [ok for _, ok in trt.REGISTRY.loads].count(False) == 0


def test_external_plan_after_an_embedded_one_uses_the_registered_creator(trt, tmp_path, lib):
    a, b = plugin_engine(tmp_path, "a"), plugin_engine(tmp_path, "b")
    tensorrt_builder.build_engines(a, plugins=[str(lib)], embed_plugins=True)
    tensorrt_builder.build_engines(b, plugins=[str(lib)])
    assert deserialize_plan(a, "decode") is not None and deserialize_plan(b, "decode") is not None, trt.log
    assert [ok for _, ok in trt.REGISTRY.loads].count(False) == 0


def test_build_after_a_load_keeps_the_loaded_library(trt, tmp_path, lib):
    """A server that loaded an engine, then builds another in the same process: the build uses the loaded creator
    and leaves it registered (the first engine still needs it)."""
    a, b = plugin_engine(tmp_path, "a"), plugin_engine(tmp_path, "b")
    tensorrt_builder.build_engines(a, plugins=[str(lib)])
    assert deserialize_plan(a, "decode") is not None
    tensorrt_builder.build_engines(b, plugins=[str(lib)])
    assert trt.REGISTRY.get_creator(*fake_tensorrt.KEY) is not None
    assert deserialize_plan(a, "decode") is not None and deserialize_plan(b, "decode") is not None, trt.log
    assert [ok for _, ok in trt.REGISTRY.loads].count(False) == 0


def test_unloadable_library_is_reported_with_the_cause(trt, tmp_path, lib):
    """The creator was absent and TensorRT still refused the library: not a double registration, say so."""
    trt.REGISTRY.load_library = lambda path: None
    with pytest.raises(RuntimeError, match=r"could not load the plugin library .*was absent.*CUDA/TensorRT version"):
        tensorrt_builder.build_engines(plugin_engine(tmp_path, "a"), plugins=[str(lib)])
