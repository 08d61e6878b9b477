"""The catalog's original item ids through the serving interfaces: a CSV log with string ids (``sku-…``, with
titles) or non-contiguous integer ids -> micro model (1 epoch) -> engine, then

- Triton ``serve`` (a real tritonserver on CPU): the model config declares a BYTES history for string ids and
  INT64 for integer ids; ``query --history "sku-24 sku-31"`` and tritonclient requests answer the same original ids
  (and titles) as ``Recommender.recommend``; an unknown id is answered with an error naming it as spelled;
  ``loadtest`` samples its histories in original ids and its answers check against the in-process Recommender;
- Ray ``batch`` (local Ray): Parquet lists of original ids in, original ids (and titles) out, equal to
  ``Recommender.recommend`` row for row; an unknown id fails the run naming it, or under ``--on-unknown skip`` is
  dropped, counted and named per row in ``_bad_rows.parquet``; a finished parts directory is resumed; catalog
  indices stay reachable with ``catalog_ids``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc", reason="the serve extra is not installed (pip install -e '.[serve]')")
pytest.importorskip("pytriton", reason="the serve extra is not installed (pip install -e '.[serve]')")

from earn_export.cli import main  # noqa: E402
from earn_export.data.errors import DataError  # noqa: E402
from earn_export.runtime import Recommender  # noqa: E402
from helpers import load_benchmark  # noqa: E402

sc = load_benchmark("loadtest")  # benchmarks/loadtest.py: the load test, and the client calls it imports
from earn_export.serve.served_model import BadRequest, ServeOptions, model_config, parse_request  # noqa: E402
from helpers import N_ITEMS, free_port, item_spelling, own_id_engine  # noqa: E402

TOP_K, BEAM = 5, 10


@pytest.fixture(scope="module", params=["str", "int"])
def own(request, tmp_path_factory):
    """(kind, engine) for one id kind."""
    kind = request.param
    _, _, _, engine = own_id_engine(tmp_path_factory.mktemp(f"own-serve-{kind}"), kind)
    return kind, engine


@pytest.fixture(scope="module")
def rec(own):
    return Recommender.load(own[1])


def histories_of(kind: str, n: int = 12) -> list:
    """``n`` histories of original ids: windows of the items' ring, 1..6 items long."""
    return [[item_spelling(kind, (7 * u + j) % N_ITEMS) for j in range(1 + u % 6)] for u in range(n)]


def unknown_of(kind: str):
    return "sku-nope" if kind == "str" else 424242


def answer_ids(values, kind: str) -> list:
    """An ``items`` row of the server as the Recommender's original ids (padding -> None)."""
    return [None if x in ("", -1) else x for x in sc.decode_ids(values, kind)]


# -- no server: the model config, the request checks, the repository ----------------------------------------------
def test_model_config_and_requests_follow_the_id_map(own, rec, tmp_path):
    from tritonclient.grpc import model_config_pb2 as mc

    from earn_export.engine.manifest import load_manifest
    from earn_export.serve.python_model import answer
    from earn_export.serve.triton_repo import write_triton_repo

    kind, engine = own
    man = load_manifest(engine, verify=False)
    opts = ServeOptions(engine_dir=str(engine), beam=BEAM, default_top_k=TOP_K).with_engine_ids(man)
    assert (opts.id_type, opts.titles) == (kind, kind == "str")
    cfg = model_config(opts, warmup=False)
    ids = mc.TYPE_STRING if kind == "str" else mc.TYPE_INT64
    io = {t.name: (t.data_type, list(t.dims)) for t in [*cfg.input, *cfg.output]}
    assert io["history"] == (ids, [-1]) and io["items"] == (ids, [-1]) and io["index"] == (mc.TYPE_INT64, [-1])
    assert ("titles" in io) == (kind == "str") and io.get("titles", (mc.TYPE_STRING,))[0] == mc.TYPE_STRING
    catalog = ServeOptions(engine_dir="-", catalog_ids=True).with_engine_ids(man)
    cat_io = {t.name: t.data_type for t in [*model_config(catalog, warmup=False).input,
                                            *model_config(catalog, warmup=False).output]}
    assert catalog.id_type == "" and cat_io["history"] == cat_io["items"] == mc.TYPE_INT64 and "index" not in cat_io

    hist = histories_of(kind, 3)
    tensor = [sc.history_array(h, kind)[None] for h in hist]
    if kind == "str":  # what the Python backend hands over for a BYTES input
        tensor = [np.vectorize(lambda x: x.encode(), otypes=[object])(t) for t in tensor]
    assert parse_request(tensor[0], None, rec.known_items, opts, id_map=rec.id_map) == (hist[0], TOP_K)
    bad = sc.history_array([hist[0][0], unknown_of(kind)], kind)[None]
    if kind == "str":
        bad = bad.astype(bytes).astype(object)
    with pytest.raises(BadRequest, match=rf"unknown item ids \[{unknown_of(kind)!r}\]"):
        parse_request(bad, None, rec.known_items, opts, id_map=rec.id_map)
    if kind == "str":
        with pytest.raises(BadRequest, match="must be BYTES"):
            parse_request(np.array([[1, 2]], np.int64), None, rec.known_items, opts, id_map=rec.id_map)

    out = answer(rec, opts, [(t, None) for t in tensor])
    ref = rec.recommend(hist, top_k=TOP_K, beam=BEAM)
    assert [answer_ids(o["items"][0], kind) for o in out] == ref.items.tolist()
    np.testing.assert_array_equal(np.concatenate([o["index"] for o in out]), ref.index)
    if kind == "str":
        assert [[t.decode() for t in o["titles"][0]] for o in out] == ref.titles.tolist()

    report = write_triton_repo(engine, tmp_path / "repo", opts, graphs="onnxruntime")  # validated against serve's
    assert report["models"]["earn_recommender"]["ids"] == kind


# -- the real server -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(own):
    from earn_export.serve.server import start_server

    kind, engine = own
    opts = ServeOptions(engine_dir=str(engine), instances=1, threads=1, max_batch=8, beam=BEAM,
                        default_top_k=TOP_K).validate()
    srv = start_server(opts, http_port=free_port(), grpc_port=free_port(), ready_timeout_s=300)
    yield {"http": f"http://{srv.http_url}", "grpc": f"grpc://{srv.grpc_url}"}
    srv.stop()


def test_served_original_ids_equal_recommend(own, rec, server, capsys):
    kind, _ = own
    hist = histories_of(kind)
    ref = rec.recommend(hist, top_k=TOP_K, beam=BEAM)
    assert sc.server_options(server["http"])["id_type"] == kind

    # tritonclient over gRPC: the original ids as a BYTES / INT64 tensor
    reqs = [sc.LoadRequest("good", sc.history_array(h, kind)) for h in hist]
    records, _ = sc.run_load(server["grpc"], reqs, concurrency=2, max_seconds=120)
    assert all(r.error is None for r in records), [r.error for r in records if r.error][:2]
    assert [answer_ids(r.outputs["items"][0], kind) for r in records] == ref.items.tolist()
    np.testing.assert_allclose(np.stack([r.outputs["scores"][0] for r in records]), ref.scores, atol=1e-5, rtol=0)

    # the query CLI: original ids in (as typed), original ids and titles out
    args = ["query", server["http"]]
    for h in hist[:3]:
        args += ["--history", " ".join(map(str, h))]
    assert main(args) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["history"] for r in rows] == hist[:3]
    assert [r["items"] for r in rows] == ref.items[:3].tolist()
    if kind == "str":
        assert [r["titles"] for r in rows] == ref.titles[:3].tolist() and rows[0]["titles"][0].startswith("Product ")
    else:
        assert "titles" not in rows[0]

    # an unknown original id: the error names it as spelled (the others of the same call are still answered)
    bad = unknown_of(kind)
    assert main(["query", server["grpc"], "--history", f"{hist[0][0]} {bad}", "--history",
                 " ".join(map(str, hist[1]))]) == 1
    err, ok = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert f"unknown item ids [{bad!r}]" in err["error"] and ok["items"] == ref.items[1].tolist()
    if kind == "int":
        assert main(["query", server["http"], "--history", "sku-24"]) != 0  # not an integer: refused by name
        assert "original item ids are integers" in capsys.readouterr().err


def test_loadtest_sends_original_ids(own, server, tmp_path):
    out = tmp_path / "load.json"
    assert sc.main([server["http"], "--requests", "36", "--bad-fraction", "0.34", "--concurrency", "2",
                 "--top-k", "3", "--check-answers", "--out", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["sent"] == 36 and d["good_ok"] == 24 and d["mismatches"] == 0 and d["bad_answered"] == 12, d
    assert set(d["by_kind"]) == {"good", *sc.BAD_KINDS}


# -- Ray batch -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_local():
    from earn_export.serve.batch import init_ray

    ray = init_ray(num_cpus=2, object_store_mb=200)
    yield ray
    ray.shutdown()


def test_batch_original_ids_equal_recommend(own, rec, ray_local, tmp_path):
    import pyarrow.parquet as pq

    from earn_export.serve.batch import run_batch, write_users
    from earn_export.serve.batch_parts import BAD_ROWS, read_parts, run_batch_parts

    kind, engine = own
    hist = histories_of(kind, 10)
    bad = unknown_of(kind)
    hist[3] = hist[3] + [bad]
    users = np.arange(len(hist)) * 3 + 7
    src = write_users(tmp_path / "users.parquet", hist, users)
    assert str(pq.read_table(src).schema.field("history").type) == ("list<element: string>" if kind == "str" else
                                                                     "list<element: int64>")
    with pytest.raises(DataError, match=rf"unknown item ids \[{bad!r}\] in the histories of 1 users \(e.g. \[16\]\)"):
        run_batch(engine, src, tmp_path / "err.parquet", progress=False)

    ref = rec.recommend(hist, top_k=TOP_K, beam=BEAM, on_unknown="skip")
    out = tmp_path / "parts"
    stats = run_batch_parts(engine, src, out, 4, actors=1, top_k=TOP_K, beam=BEAM, on_unknown="skip",
                            progress=False)
    assert stats["parts_scored"] == 3 and stats["bad_rows"] == {"unknown_items": 1}
    t = read_parts(out)
    assert t.column("user").to_pylist() == users.tolist()
    assert t.column("items").to_pylist() == ref.items.tolist()  # original ids, nulls where fewer items
    assert t.column("skipped").to_pylist() == ref.skipped.tolist() and ref.skipped[3] == 1
    np.testing.assert_allclose(np.array(t.column("scores").to_pylist(), np.float32), ref.scores, atol=1e-5, rtol=0)
    assert ("titles" in t.column_names) == (kind == "str")
    if kind == "str":
        assert t.column("titles").to_pylist() == ref.titles.tolist()
    rep = pq.read_table(out / BAD_ROWS).to_pylist()
    assert [(r["row"], r["user"], r["kind"]) for r in rep] == [(3, 16, "unknown_items")]
    assert repr(bad) in rep[0]["detail"] and "dropped" in rep[0]["action"]
    again = run_batch_parts(engine, src, out, 4, actors=1, top_k=TOP_K, beam=BEAM, on_unknown="skip",
                            progress=False)  # resumable: the finished parts are kept
    assert again["parts_skipped"] == 3 and again["parts_scored"] == 0

    # catalog indices on request; a file of the wrong id type is refused naming the fix
    index_hist = [[rec.id_map.lookup(x) for x in h if rec.id_map.lookup(x) is not None] for h in hist]
    idx = write_users(tmp_path / "index.parquet", index_hist, users)
    run_batch(engine, idx, tmp_path / "index-out.parquet", actors=1, top_k=TOP_K, beam=BEAM, catalog_ids=True,
              progress=False)
    t = pq.read_table(tmp_path / "index-out.parquet")
    assert "titles" not in t.column_names
    assert t.column("items").to_pylist() == rec.recommend(index_hist, top_k=TOP_K, beam=BEAM,
                                                          ids="catalog").items.tolist()
    if kind == "str":
        with pytest.raises(DataError, match="must be a list of strings.*--catalog-ids"):
            run_batch(engine, idx, tmp_path / "wrong.parquet", progress=False)
