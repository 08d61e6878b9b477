"""The TensorRT builder's pure parts: capability check, profiles, precision policy per major version."""

import pytest

from earn_export.cli import main
from earn_export.tensorrt import ShapeRange, precision_plan, profiles, tensorrt_available

MANIFEST = {"model": {"n_kv_heads": 2, "head_dim": 16, "num_layers": 4, "split_layer": 1, "n_registers": 2}}


def test_profiles_follow_per_layer_kv_lengths():
    prof = profiles(MANIFEST, ShapeRange(batch=(1, 4, 8), prompt_len=(2, 64, 256), beam=(1, 20, 40)))
    pre, dec = prof["prefill"], prof["decode"]
    assert pre["input_ids"] == ((1, 2), (4, 64), (8, 256))
    # layer 0 (< k) holds the prompt, layers >= k hold only the R registers
    assert dec["past_key_values.0.key"] == ((1, 2, 2, 16), (4, 2, 64, 16), (8, 2, 256, 16))
    assert dec["past_key_values.3.value"] == ((1, 2, 2, 16), (4, 2, 2, 16), (8, 2, 2, 16))
    assert dec["generated.2.key"][2] == (8, 40, 2, 3, 16)
    assert dec["input_ids"][1] == (4, 20, 1)
    assert len(dec) == 3 + 4 * 4
    # the generated-KV range follows the identifier length L: decode step s holds s tokens, s < L
    six = {"model": {**MANIFEST["model"], "id_length": 6}}
    assert profiles(six, ShapeRange())["decode"]["generated.0.key"][2][3] == 5


def test_precision_policy_by_major_version():
    assert precision_plan("10.13.0", True, "float32") == {"builder_flags": ["FP16"], "strongly_typed": False}
    assert precision_plan("11.4.0", True, "float16") == {"builder_flags": [], "strongly_typed": True}
    with pytest.raises(ValueError, match="TensorRT 11 removed BuilderFlag.FP16.*--fp16"):
        precision_plan("11.0.1", True, "float32")


def test_build_reports_missing_tensorrt(tmp_path, capsys):
    ok, reason = tensorrt_available()
    if ok:
        pytest.skip("TensorRT present: this test covers the missing-TensorRT path")
    assert "TensorRT, which is not installed" in reason
    assert main(["build", str(tmp_path), "--fp16"]) == 2
    assert "pip install 'earn-export[tensorrt]'" in capsys.readouterr().err
