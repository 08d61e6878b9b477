"""Atomic outputs: an export killed mid-way, a checkpoint save that fails, a TensorRT build that stops half-way all
leave the previous output as it was, and nothing half-written that loaders accept."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from earn_export.atomic import OutputDirError, _remove_stale, atomic_output_dir, staged_files, staged_output
from earn_export.engine.manifest import EngineDirError, load_manifest
from earn_export.runtime import Recommender


def _tree(d: Path) -> dict:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _temporaries(final: Path) -> list:
    return sorted(final.parent.glob(f".{final.name}.tmp-*"))


@pytest.mark.slow
def test_export_killed_mid_way_leaves_the_previous_engine(tiny_engine, tiny_checkpoint, tmp_path):
    """SIGKILL a real `earn-export export` while it writes graphs over an existing engine."""
    eng = tmp_path / "eng"
    shutil.copytree(tiny_engine, eng)
    before = _tree(eng)
    proc = subprocess.Popen([str(Path(sys.executable).with_name("earn-export")), "export", str(tiny_checkpoint),
                             "--out", str(eng), "--exporter", "torchscript", "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    partial = None
    while partial is None and proc.poll() is None and time.monotonic() < deadline:
        partial = next((t for t in _temporaries(eng) if any(t.iterdir())), None)  # files being written
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert partial is not None, f"the export ended before it was seen writing (rc {proc.returncode}): " \
                                f"{proc.stderr.read().decode()[-2000:]}"
    assert proc.returncode == -signal.SIGKILL
    assert _tree(eng) == before  # byte for byte
    load_manifest(eng, verify=True)
    assert Recommender.load(eng).recommend([[1, 2]], top_k=3).items.shape == (1, 3)
    # the half-written temporary directory is hidden, and refused if a user points a loader at it
    assert partial.exists() and partial.name.startswith(".") and not (partial / "manifest.json").exists()
    with pytest.raises(EngineDirError, match="no manifest.json"):
        Recommender.load(partial)
    _remove_stale(eng)  # what the next export to this path does first: the killed process is gone
    assert _temporaries(eng) == []


def test_failed_export_keeps_the_previous_engine(tiny_engine, tiny_checkpoint, tmp_path, monkeypatch):
    from earn_export.export import onnx_export

    eng = tmp_path / "eng"
    shutil.copytree(tiny_engine, eng)
    before = _tree(eng)

    def interrupted(*a, **k):
        raise KeyboardInterrupt  # Ctrl-C after both graphs were written, before the manifest

    monkeypatch.setattr(onnx_export, "write_manifest", interrupted)
    with pytest.raises(KeyboardInterrupt):
        onnx_export.export_onnx(tiny_checkpoint, eng, exporter="torchscript")
    assert _tree(eng) == before and _temporaries(eng) == []


def test_export_refuses_to_replace_its_input_or_user_files(tiny_checkpoint, tmp_path):
    from earn_export.export import export_onnx

    with pytest.raises(OutputDirError, match="would replace the input"):
        export_onnx(tiny_checkpoint, tiny_checkpoint)
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    with pytest.raises(OutputDirError, match="refusing to replace"):
        export_onnx(tiny_checkpoint, user)
    assert (user / "notes.txt").read_text() == "keep me"


def test_checkpoint_save_interrupted_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """save_checkpoint over an existing checkpoint, interrupted after the weights are written."""
    from earn_export.data.synthetic import make_synthetic
    from earn_export.data.data_spec import DataSpec, make_catalog
    from earn_export.model.checkpoint_dir import save_checkpoint
    from earn_export.train.train_checkpoint import build_model

    catalog = make_catalog(make_synthetic(n_users=60, n_items=30, seed=0))
    model, tok, prompts = build_model(catalog, "lcrec", "auto", preset="micro")
    out = tmp_path / "ckpt"
    assert save_checkpoint(out, model, tok, catalog, prompts, DataSpec(), {"run": 1}) == out
    before = _tree(out)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)  # a different model, so a partial overwrite would show

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(type(catalog), "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(out, model, tok, catalog, prompts, DataSpec(), {"run": 2})
    assert _tree(out) == before and _temporaries(out) == []
    monkeypatch.undo()
    save_checkpoint(out, model, tok, catalog, prompts, DataSpec(), {"run": 2})
    assert json.loads((out / "train_log.json").read_text()) == {"run": 2}
    assert (out / "model.safetensors").read_bytes() != before["model.safetensors"]


def test_atomic_dir_replaces_only_when_complete(tmp_path):
    final = tmp_path / "out"
    final.mkdir(mode=0o750)
    os.chmod(final, 0o750)
    (final / "manifest.json").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_output_dir(final, "engine") as tmp:
            (tmp / "manifest.json").write_text("new, half")
            raise RuntimeError("failed mid-way")
    assert (final / "manifest.json").read_text() == "old" and _temporaries(final) == []
    with atomic_output_dir(final, "engine") as tmp:
        (tmp / "manifest.json").write_text("new")
    assert (final / "manifest.json").read_text() == "new" and _temporaries(final) == []
    assert final.stat().st_mode & 0o777 == 0o750  # the directory keeps its permissions
    # a stale temporary of a dead process is removed; one of a live process is not
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / f".out.tmp-{dead.pid}-x").mkdir()
    (tmp_path / f".out.tmp-{os.getppid()}-y").mkdir()
    with atomic_output_dir(final, "engine"):
        pass
    assert [p.name for p in _temporaries(final)] == [f".out.tmp-{os.getppid()}-y"]


def test_staged_build_output_moves_index_last(tmp_path):
    """`build`'s staging: a failure leaves the old plans and engine.json; success replaces them all."""
    d = tmp_path / "eng"
    d.mkdir()
    (d / "prefill.plan").write_text("old")
    (d / "engine.json").write_text("old")

    @staged_output("engine_dir", last=("engine.json",))
    def build(engine_dir, fail=False, staging=None):
        (staging / "prefill.plan").write_text("new")
        if fail:
            raise RuntimeError("TensorRT failed to build decode")
        (staging / "engine.json").write_text("new")

    with pytest.raises(RuntimeError):
        build(d, fail=True)
    assert (d / "prefill.plan").read_text() == "old" and (d / "engine.json").read_text() == "old"
    build(d)
    assert (d / "prefill.plan").read_text() == "new" and (d / "engine.json").read_text() == "new"
    assert sorted(p.name for p in d.iterdir()) == ["engine.json", "prefill.plan"]
    with staged_files(d) as stage:
        (stage / "x").write_text("y")
    assert (d / "x").read_text() == "y"
