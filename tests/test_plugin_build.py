"""`earn-export build --plugins`: which plugin library a build loads, what engine.json records about it, and the
refusal of plans whose plugin is missing or of another version. The TensorRT calls themselves are unverified
(no TensorRT here); everything around them is tested."""

import pytest

from earn_export.cli import main
from earn_export.engine.manifest import EngineDirError
from earn_export.engine.manifest import sha256_file
from earn_export.ops import libraries
from earn_export.tensorrt.plugin_library import embedded_in, plugin_metadata, resolve_for_build
from plan_loading import check_plan_plugins

PLAIN = {"attention": {"mode": "onnx"}}
PLUGIN = {"attention": {"mode": "plugin", "op": "earn::CompactedAttention", "op_version": "1"}}
INFO = {"name": "CompactedAttention", "version": "1", "namespace": "earn", "fields": [], "tensorrt_headers": "10.16"}


def test_build_resolves_the_plugin_library(tmp_path, monkeypatch):
    assert resolve_for_build(PLAIN) == [] and resolve_for_build({}) == []  # manifests before --attention: plain
    lib = tmp_path / "libearn_plugins.so"
    lib.write_bytes(b"\x7fELF fake")
    assert resolve_for_build(PLUGIN, [str(lib)]) == [lib]
    with pytest.raises(ValueError, match="--plugins .*nope.so: no such file.*make plugins"):
        resolve_for_build(PLUGIN, [str(tmp_path / "nope.so")])
    monkeypatch.setenv("EARN_TRT_PLUGIN_LIBRARY", str(tmp_path / "missing.so"))
    with pytest.raises(ValueError, match=r"earn::CompactedAttention.*--attention plugin.*--plugins "
                                         r"plugins/build/libearn_plugins.so.*--attention onnx"):
        resolve_for_build(PLUGIN)
    monkeypatch.setenv("EARN_TRT_PLUGIN_LIBRARY", str(lib))
    assert resolve_for_build(PLUGIN) == [lib]
    assert embedded_in(PLUGIN, [lib]) == {"decode"} and embedded_in(PLAIN, [lib]) == {"prefill", "decode"}
    assert embedded_in(PLUGIN, []) == set()


def test_engine_metadata_records_version_and_sha256(tmp_path):
    lib = tmp_path / "libearn_plugins.so"
    lib.write_bytes(b"some bytes")
    entry = plugin_metadata(lib, ["decode"], info=INFO)
    assert entry["sha256"] == sha256_file(lib) and entry["plugin_version"] == "1"
    assert entry["op"] == "earn::CompactedAttention" and entry["plugin_namespace"] == "earn"
    assert entry["serialized_into_plan"] and entry["embedded_in"] == ["decode"]


def test_plan_loader_refuses_missing_or_other_version(tmp_path):
    lib = tmp_path / "libearn_plugins.so"
    lib.write_bytes(b"v1")
    embedded = {"plugins": [plugin_metadata(lib, ["decode"], info=INFO)]}
    lib.unlink()
    assert check_plan_plugins(embedded) == []  # the plan carries its own copy
    external = {"plugins": [dict(embedded["plugins"][0], serialized_into_plan=False, embedded_in=[])]}
    with pytest.raises(EngineDirError, match="CompactedAttention v1 .*not embedded.*missing.*--plugins"):
        check_plan_plugins(external, [tmp_path / "gone.so"])
    lib.write_bytes(b"v2")
    with pytest.raises(EngineDirError, match="implements CompactedAttention v2.*rebuild the plans"):
        check_plan_plugins(external, [lib], info_reader=lambda p: dict(INFO, version="2"))
    assert check_plan_plugins(external, [lib], info_reader=lambda p: INFO) == [lib]


def test_real_plugin_library_metadata():
    lib = libraries.trt_plugin_library()
    if lib is None:
        pytest.skip(f"libearn_plugins.so not built (needs nvcc + TensorRT headers): {libraries.BUILD_HINT}")
    try:
        entry = plugin_metadata(lib, [])
    except OSError as exc:
        pytest.skip(f"cannot load {lib} without the CUDA runtime library ({exc})")
    assert (entry["plugin_name"], entry["plugin_version"], entry["plugin_namespace"]) == ("CompactedAttention", "1",
                                                                                           "earn")
    assert check_plan_plugins({"plugins": [entry]}, [lib]) == [lib]


def test_build_cli_takes_plugins(tmp_path, capsys):
    from earn_export.tensorrt import tensorrt_available

    if tensorrt_available()[0]:
        pytest.skip("TensorRT present: this test covers the missing-TensorRT path")
    assert main(["build", str(tmp_path), "--fp16", "--plugins", str(tmp_path / "lib.so")]) == 2  # a missing extra: exit 2 with the pip line (docs/flags.md)
    assert "TensorRT, which is not installed" in capsys.readouterr().err
