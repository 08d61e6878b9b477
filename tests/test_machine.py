"""`earn-export inspect --machine`: CPU feature flags (with the fallback where /proc/cpuinfo is missing) and the
per-path peak report's structure (timings are the machine's, not asserted)."""

import json

import pytest

from earn_export.runtime import machine


def test_features_from_flags():
    f = machine.cpu_features({"avx2", "avx512f", "avx512_vnni", "amx_tile", "amx_int8"})
    assert f["avx2"] and f["avx512f"] and f["avx512_vnni"] and f["amx_tile"] and f["amx_int8"]
    assert f["avx512_bf16"] is False and f["amx_bf16"] is False and f["source"] == "/proc/cpuinfo"
    assert machine.int8_note(f) is None
    note = machine.int8_note(machine.cpu_features({"avx2", "avx512f"}))
    assert "no AVX-512 VNNI or AMX-int8" in note and "\n" not in note


def test_features_without_cpuinfo(monkeypatch):
    monkeypatch.setattr(machine, "cpu_flags", lambda: None)
    f = machine.cpu_features()
    assert f["avx512_vnni"] is None and f["amx_int8"] is None  # unknown, not "absent"
    assert "get_cpu_capability" in f["source"] and isinstance(f["avx2"], bool)
    assert "unknown" in machine.int8_note(f)


def test_inspect_machine_json(capsys):
    from earn_export.cli import main

    shapes = {"decode": (8, 64, 128), "prefill": (32, 64, 128)}  # small: structure, not speed
    orig = machine.measure_peaks
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(machine, "measure_peaks", lambda seconds: orig(shapes=shapes, seconds=0.01))
        assert main(["inspect", "--machine", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert set(machine.FEATURES) <= set(rep["features"]) and rep["threads"] == 1
    assert set(rep["peak_gflops"]) == {"decode", "prefill"}
    for row in rep["peak_gflops"].values():
        assert set(row) == set(machine.PATHS) and all(v > 0 for v in row.values())
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(machine, "measure_peaks", lambda seconds: orig(shapes=shapes, seconds=0.01))
        assert main(["inspect", "--machine"]) == 0
    text = capsys.readouterr().out
    assert "features:" in text and "ort_int8_dynamic" in text and "peak GFLOP/s" in text


def test_inspect_needs_engine_or_machine(capsys):
    from earn_export.cli import main

    assert main(["inspect"]) != 0
    assert "--machine" in capsys.readouterr().err
