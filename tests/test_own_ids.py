"""A user's own item ids end to end: CSV log with string ids (``sku-528``) or integer ids that are not 0..n-1 ->
train (micro, 1 epoch) -> export -> recommend in Python, the CLI and the C++ runtime (through its Python wrapper),
each answering in the same original ids; the id map round-trips every id; unknown ids are named as spelled;
a corrupt, partial or missing map is refused by name; data.json/train_log.json record the data actually kept."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from earn_export.cli import main
from earn_export.data import load_interactions
from earn_export.data.id_map import ID_MAP_FILE, IdMapError, ItemIdMap, load_id_map
from earn_export.engine.manifest import EngineDirError
from earn_export.runtime import Recommender
from earn_export.runtime.recommender import UnknownItemError
from helpers import (N_ITEMS, N_USERS, cpp_runtime_module, histories_of, item_spelling, own_id_engine,
                     recommender_from_checkpoint)

BIN = Path(sys.executable).parent  # earn-recommend and the C++ tests are installed beside the interpreter


@pytest.fixture(scope="module", params=["str", "int"])
def own(request, tmp_path_factory):
    """(kind, csv, checkpoint, engine) for one id kind."""
    return own_id_engine(tmp_path_factory.mktemp(f"own-{request.param}"), request.param)


def test_map_round_trips_every_id_and_metadata_is_the_data_kept(own):
    kind, csv, ckpt, engine = own
    data = load_interactions(csv)
    id_map = load_id_map(engine)
    assert id_map.id_type == kind
    assert [str(x) for x in id_map.ids] == data.item_names  # catalog index n <-> its original id
    assert len(id_map) == data.num_items == N_ITEMS
    for n, original in enumerate(id_map.ids):
        assert isinstance(original, int if kind == "int" else str)
        assert id_map.lookup(original) == n and id_map.lookup(str(original)) == n
    if kind == "str":
        assert id_map.title(id_map.lookup("sku-24")) == "Product 3 shade 3"
    assert id_map.lookup("sku-rare") is None and id_map.lookup(999999) is None
    man = json.loads((engine / "manifest.json").read_text())
    assert man["id_map"] == {"file": ID_MAP_FILE, "n_items": N_ITEMS, "id_type": kind, "titles": kind == "str"}
    assert ID_MAP_FILE in man["sha256"]
    spec = json.loads((ckpt / "data.json").read_text())
    st = data.stats()
    assert (spec["n_users"], spec["n_items"]) == (st["users"], N_ITEMS) == (N_USERS, N_ITEMS)
    kept = st["train_interactions"] + st["valid_interactions"] + st["test_interactions"]
    assert spec["stats"]["interactions_kept"] == kept
    assert spec["stats"]["skipped"]["kcore_items"] == 1
    log = json.loads((ckpt / "train_log.json").read_text())
    assert log["data_stats"] == spec["stats"] and log["data"]["n_items"] == N_ITEMS


def test_python_cli_and_cpp_answer_in_the_same_original_ids(own, capsys):
    kind, _, ckpt, engine = own
    rec = Recommender.load(engine)
    hist = histories_of(kind)
    res = rec.recommend(hist, top_k=5, beam=10)
    want_type = int if kind == "int" else str
    assert all(isinstance(x, want_type) for row in res.items for x in row)
    # the same search in catalog indices, mapped back by hand
    cat = rec.recommend([[rec.id_map.lookup(x) for x in h] for h in hist], top_k=5, beam=10, ids="catalog")
    assert cat.items.dtype == np.int64
    np.testing.assert_array_equal(res.index, cat.items)
    assert res.items.tolist() == [[rec.id_map.original(n) for n in row] for row in cat.items]
    np.testing.assert_array_equal(res.scores, cat.scores)
    # the torch reference straight from the checkpoint speaks the same ids
    ref = recommender_from_checkpoint(ckpt, vocab="items").recommend(hist, top_k=5, beam=10)
    assert ref.items.tolist() == res.items.tolist()

    args = ["recommend", str(engine), "--top-k", "5", "--beam", "10"]
    for h in hist:
        args += ["--history", " ".join(map(str, h))]
    assert main(args) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["items"] for r in rows] == res.items.tolist()
    assert [r["history"] for r in rows] == hist
    if kind == "str":
        assert [r["titles"] for r in rows] == res.titles.tolist() and rows[0]["titles"][0].startswith("Product ")
    else:
        assert "titles" not in rows[0]
    assert main(args[:-6] + ["--catalog-ids", "--history", "3 4 5"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["items"] == rec.recommend([[3, 4, 5]], top_k=5, beam=10, ids="catalog").items[0].tolist()

    cpp_runtime_module()  # skips only without the ONNX Runtime C++ headers
    cc = Recommender.load(engine, backend="cpp").recommend(hist, top_k=5, beam=10)
    assert cc.items.tolist() == res.items.tolist()
    # earn-recommend (C++ CLI) reads item_ids.json itself: the same JSON lines as `earn-export recommend`
    bad = "sku-nope" if kind == "str" else "424242"
    common = [str(engine), "--top-k", "5", "--beam", "10"]
    original = [x for h in hist + [[hist[0][0], bad]] for x in ("--history", " ".join(map(str, h)))]
    for cli in (common + original, common + ["--catalog-ids", "--history", "3 4 5", "--history", "7"]):
        assert main(["recommend", *cli, "--on-unknown", "skip"]) == 0
        want = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        out = subprocess.run([str(BIN / "earn-recommend"), *cli, "--on-unknown", "skip", "--threads", "2"],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert [json.loads(line) for line in out.stdout.splitlines()] == want
    out = subprocess.run([str(BIN / "earn-recommend"), *common, *original, "--on-unknown", "skip"],
                         capture_output=True, text=True, timeout=120)
    assert len(want) == 2 and f"1 unknown skipped ({bad})" in json.loads(out.stdout.splitlines()[3])["note"]
    out = subprocess.run([str(BIN / "earn-recommend"), str(engine), "--history", f"{hist[0][0]} {bad}"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and f"unknown item ids ['{bad}']" in out.stderr and "--on-unknown skip" in out.stderr


@pytest.mark.parametrize("own", ["str"], indirect=True)  # the flag parsing does not depend on the id kind
def test_cpp_cli_on_unknown_spelling(own):
    """earn-recommend spells the policy as the Python CLI (--on-unknown error|skip); --skip-unknown is the
    deprecated alias of --on-unknown skip (one line on stderr, same answer)."""
    kind, _, _, engine = own
    cpp_runtime_module()  # skips only without the ONNX Runtime C++ headers
    args = [str(BIN / "earn-recommend"), str(engine), "--history", f"{item_spelling(kind, 3)} sku-nope"]
    new = subprocess.run([*args, "--on-unknown", "skip"], capture_output=True, text=True, timeout=120)
    old = subprocess.run([*args, "--skip-unknown"], capture_output=True, text=True, timeout=120)
    assert new.returncode == old.returncode == 0 and new.stdout == old.stdout and new.stderr == ""
    assert old.stderr == "earn-recommend: --skip-unknown is deprecated; use --on-unknown skip\n"
    err = subprocess.run([*args, "--on-unknown", "error"], capture_output=True, text=True, timeout=120)
    assert err.returncode == 1 and "unknown item ids ['sku-nope']" in err.stderr
    bad = subprocess.run([*args, "--on-unknown", "drop"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--on-unknown: invalid choice 'drop' (choose from 'error', 'skip')" in bad.stderr


def test_cpp_id_map_unit(tmp_path):
    """earn::IdMap's own checks (cpp/tests/id_map_tests.cpp): lookups, titles, JSON, every refusal by name."""
    cpp_runtime_module()  # skips only without the ONNX Runtime C++ headers
    exe = BIN / "earn_id_map_tests"
    assert exe.is_file(), f"{exe} is missing: the C++ build (make install) did not install it"
    out = subprocess.run([str(exe), str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "id map checks passed" in out.stdout, out.stdout + out.stderr


def test_unknown_original_ids_are_named_as_spelled(own, capsys):
    kind, _, _, engine = own
    rec = Recommender.load(engine)
    good = item_spelling(kind, 3)
    bad = "sku-nope" if kind == "str" else 424242
    with pytest.raises(UnknownItemError, match=str(bad)):
        rec.recommend([[good, bad]])
    res = rec.recommend([[good, bad], [good]], top_k=3, beam=5, on_unknown="skip")
    assert res.skipped.tolist() == [1, 0] and res.unknown == {0: [bad]}
    assert res.items[0].tolist() == res.items[1].tolist()
    assert main(["recommend", str(engine), "--history", f"{good} {bad}"]) == 1
    assert str(bad) in capsys.readouterr().err
    assert main(["recommend", str(engine), "--history", f"{good} {bad}", "--on-unknown", "skip"]) == 0
    assert f"1 unknown skipped ({bad})" in json.loads(capsys.readouterr().out)["note"]


@pytest.mark.parametrize("own", ["str"], indirect=True)  # the file checks do not depend on the id kind
def test_corrupt_partial_or_missing_map_is_refused_by_name(own, tmp_path):
    _, _, _, engine = own
    eng = tmp_path / "engine"
    shutil.copytree(engine, eng)
    path = eng / ID_MAP_FILE
    doc = json.loads(path.read_text())
    doc["ids"] = doc["ids"][:-1]  # partial
    path.write_text(json.dumps(doc))
    with pytest.raises(EngineDirError, match=ID_MAP_FILE):  # the manifest's sha256
        Recommender.load(eng)
    with pytest.raises(IdMapError, match=rf"{ID_MAP_FILE}: partial map, {N_ITEMS - 1} ids for n_items={N_ITEMS}"):
        Recommender.load(eng, verify="off")
    from earn_export.runtime import cpp_runtime

    if cpp_runtime.available():  # libearn's Recommender::load checks the map itself: the same error, by name
        with pytest.raises(IdMapError, match=rf"{ID_MAP_FILE}: partial map, {N_ITEMS - 1} ids for n_items={N_ITEMS}"):
            Recommender.load(eng, verify="off", backend="cpp")
    path.write_text("{not json")
    with pytest.raises(IdMapError, match=f"{ID_MAP_FILE}: not valid JSON"):
        Recommender.load(eng, verify="off")
    doc = json.loads((engine / ID_MAP_FILE).read_text())
    doc["ids"][1] = doc["ids"][0]
    path.write_text(json.dumps(doc))
    with pytest.raises(IdMapError, match="appear more than once"):
        Recommender.load(eng, verify="off")
    path.unlink()
    for verify in ("fast", "off"):  # presence is checked even without hashing
        with pytest.raises(EngineDirError, match=rf"missing files \['{ID_MAP_FILE}'\]"):
            Recommender.load(eng, verify=verify)
    with pytest.raises(IdMapError, match=f"{ID_MAP_FILE}: missing"):  # named by the manifest's id_map alone
        load_id_map(eng, required=True)


def test_engines_without_a_map_keep_catalog_indices(tiny_checkpoint, tmp_path):
    from earn_export.errors import UsageError
    from earn_export.export import export_onnx

    export_onnx(tiny_checkpoint, tmp_path / "e", vocab="items", exporter="torchscript")
    rec = Recommender.load(tmp_path / "e")
    assert rec.id_map is None and json.loads((tmp_path / "e" / "manifest.json").read_text())["id_map"] is None
    res = rec.recommend([[1, 2]], top_k=3, beam=5)
    assert res.items.dtype == np.int64 and res.titles is None
    with pytest.raises(UsageError, match="needs an engine with an item id map"):
        rec.recommend([[1, 2]], ids="original")


def test_id_map_rules():
    m = ItemIdMap(["7", "1000", "3"])
    assert m.id_type == "int" and m.ids == [7, 1000, 3] and m.lookup(1000) == 1 and m.lookup("1000") == 1
    assert ItemIdMap(["007", "8"]).id_type == "str"  # "007" keeps its spelling
    assert m.lookup(True) is None and m.lookup("x") is None
    with pytest.raises(IdMapError, match=r"\['a'\] appear more than once"):
        ItemIdMap(["a", "b", "a"])
