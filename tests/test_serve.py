"""Serving: the real Triton server (CLI subprocess) over HTTP and gRPC = in-process Recommender, dynamic batching,
bad requests answered one by one, a bounded load test, SIGTERM shutdown; the production repository (configs
validated, BLS beam loop served on Triton with Python-backend graphs); Ray batch scoring = in-process, row for row.

The engine is the Beauty fixture engine (trained on real data) when ../shared/data is present, else a micro model
trained on the embedded synthetic default.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc", reason="the serve extra is not installed (pip install -e '.[serve]')")
pytest.importorskip("pytriton", reason="the serve extra is not installed (pip install -e '.[serve]')")

from earn_export.runtime import Recommender  # noqa: E402
from helpers import load_benchmark  # noqa: E402

sc = load_benchmark("loadtest")  # benchmarks/loadtest.py: the load test, and the client calls it imports
from earn_export.serve.served_model import BadRequest, ServeOptions, parse_request  # noqa: E402
from helpers import free_port  # noqa: E402

N_USERS = 240  # >= 200 users per protocol
TOL = 1e-5  # scores: float noise from the batch's padding; items must be identical


def port_free(port: int) -> bool:
    """Nothing listens on the port (SO_REUSEADDR: closed connections in TIME_WAIT do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen(1)
            return True
        except OSError:
            return False


@pytest.fixture(scope="module")
def case(request, tmp_path_factory):
    """(engine dir, test histories): Beauty when available, else the synthetic default."""
    try:
        return request.getfixturevalue("beauty_engine"), list(request.getfixturevalue("beauty_test_histories"))
    except pytest.skip.Exception:
        pass
    from earn_export.data.sequences import eval_examples
    from earn_export.export import export_onnx
    from earn_export.data.data_spec import DataSpec
    from earn_export.train.train_checkpoint import train

    out = tmp_path_factory.mktemp("syn")
    spec = DataSpec()
    ckpt = train(out / "ckpt", spec, split="auto", preset="micro", epochs=1, batch_size=128, lr=3e-3, progress=False)
    export_onnx(ckpt, out / "engine", vocab="items", exporter="torchscript")
    return out / "engine", list(eval_examples(spec.load(), "test", max_history=20).histories)


@pytest.fixture(scope="module")
def engine(case):
    return case[0]


@pytest.fixture(scope="module")
def histories(case):
    assert len(case[1]) >= 200
    return case[1]


@pytest.fixture(scope="module")
def rec(engine):
    return Recommender.load(engine)


@pytest.fixture(scope="module")
def server(engine):
    """`earn-export serve` as a subprocess on free ports (2 instances); the last test stops it with SIGTERM."""
    ports = {"http": free_port(), "grpc": free_port(), "metrics": free_port()}
    cmd = [sys.executable, "-m", "earn_export.cli", "serve", str(engine), "--http-port", str(ports["http"]),
           "--grpc-port", str(ports["grpc"]), "--metrics-port", str(ports["metrics"]), "--instances", "2",
           "--threads", "1", "--max-batch", "32", "--max-queue-delay-us", "5000", "--beam", "20", "--top-k", "10",
           "--max-request-items", "64"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        lines.append(line)
        if line.startswith("ready:"):
            break
    if not lines or not lines[-1].startswith("ready:"):
        proc.kill()
        pytest.fail("server did not become ready:\n" + "".join(lines))
    info = {"proc": proc, "ports": ports, "http": f"http://127.0.0.1:{ports['http']}",
            "grpc": f"grpc://127.0.0.1:{ports['grpc']}", "lines": lines}
    yield info
    if proc.poll() is None:
        proc.kill()
        proc.wait(30)


# -- request checks without a server -----------------------------------------------------------------------------
def test_parse_request_names_each_problem():
    opts = ServeOptions(engine_dir="-", beam=20, default_top_k=10, max_request_items=5)
    known = {1, 2, 3}
    assert parse_request(np.array([[1, 2]]), None, known, opts) == ([1, 2], 10)
    assert parse_request(np.array([[3]]), np.array([[20]]), known, opts) == ([3], 20)
    cases = [
        (np.array([[1, 99]]), None, "unknown_item", r"unknown item ids \[99\].*--on-unknown skip"),
        (np.zeros((1, 0), np.int64), None, "empty_history", "is empty.*--allow-empty-history"),
        (np.ones((1, 6), np.int64), None, "oversized_history", "6 items.*\\(5, --max-request-items\\)"),
        (np.ones((1, 2), np.float32), None, "bad_dtype", "must be INT64"),
        (np.ones((2, 2), np.int64), None, "bad_shape", r"shape \[1, n\].*got \[2, 2\]"),
        (np.array([[1]]), np.array([[0]]), "top_k_out_of_range", r"top_k=0 is out of range: .* 1\.\.20"),
        (np.array([[1]]), np.array([[21]]), "top_k_out_of_range", "top_k=21"),
        (np.array([[1]]), np.array([[1, 2]]), "bad_shape", "'top_k' must have shape"),
    ]
    for hist, k, kind, pattern in cases:
        with pytest.raises(BadRequest, match=pattern) as exc:
            parse_request(hist, k, known, opts)
        assert exc.value.kind == kind
    skip = ServeOptions(engine_dir="-", on_unknown="skip")
    assert parse_request(np.array([[1, 99]]), None, known, skip)[0] == [1, 99]  # the Recommender drops + counts


def test_answer_keeps_good_requests_of_a_batch_with_bad_ones(rec, histories):
    from earn_export.serve.python_model import answer

    opts = ServeOptions(engine_dir="-", beam=20, default_top_k=10)
    reqs = [(np.array([histories[0]], np.int64), None), (np.array([[10**12]], np.int64), None),
            (np.array([histories[1]], np.int64), np.array([[3]], np.int64))]
    out = answer(rec, opts, reqs)
    assert isinstance(out[1], BadRequest) and out[1].kind == "unknown_item"
    ref = rec.recommend([histories[0], histories[1]], top_k=20, beam=20)
    assert out[0]["items"].shape == (1, 10) and out[2]["items"].shape == (1, 3)
    assert np.array_equal(out[0]["items"][0], ref.items[0, :10]) and np.array_equal(out[2]["items"][0], ref.items[1, :3])


def test_server_env_fixes_the_stub_libpython():
    from earn_export.serve.tritonserver import interpreter_libdir, pytriton_dist, server_env

    dist = pytriton_dist()
    env = server_env(dist, base={"PATH": "/usr/bin", "LD_LIBRARY_PATH": "/opt/x"})
    parts = env["LD_LIBRARY_PATH"].split(os.pathsep)
    if interpreter_libdir() is not None:
        assert parts[0] == str(interpreter_libdir())  # before any system libpython of the same version
    assert str(dist["libs"]) in parts and parts[-1] == "/opt/x"
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.exec_prefix) / "bin")


# -- the real server ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_served_results_equal_in_process(server, rec, histories, protocol):
    users = histories[:N_USERS]
    reqs = [sc.LoadRequest("good", np.asarray(h, np.int64), top_k=20) for h in users]
    records, _ = sc.run_load(server[protocol], reqs, concurrency=8, max_seconds=240)
    assert len(records) == len(users) and all(r.error is None for r in records), \
        [r.error for r in records if r.error][:3]
    ref = rec.recommend(users, top_k=20, beam=20)
    got_items = np.stack([r.outputs["items"][0] for r in records])
    got_scores = np.stack([r.outputs["scores"][0] for r in records])
    assert got_items.dtype == np.int64 and got_scores.dtype == np.float32
    np.testing.assert_array_equal(got_items, ref.items)
    np.testing.assert_allclose(got_scores, ref.scores, atol=TOL, rtol=0)
    assert all(r.outputs["skipped"][0, 0] == 0 for r in records)
    trunc = np.array([r.outputs["truncated"][0, 0] for r in records])
    np.testing.assert_array_equal(trunc, ref.truncated)


def test_dynamic_batching_batched(server):
    stats = sc.batch_stats(server["http"])
    assert stats, "no batch statistics"
    batched = {b: n for b, n in stats.items() if b > 1}
    assert batched, f"every execution had batch size 1: {stats}"
    assert sc.batch_stats(server["grpc"]) == stats  # same statistics over both protocols


def test_each_bad_request_gets_its_error(server, histories, rec):
    from tritonclient.utils import InferenceServerException

    opts = sc.server_options(server["http"])
    assert opts["max_request_items"] == 64 and opts["beam"] == 20
    for protocol in ("http", "grpc"):
        proto, tc, client = sc.connect(server[protocol])
        try:
            for r in sc.make_load([histories[0]], 12, 1.0, opts, seed=1):
                with pytest.raises(InferenceServerException) as exc:
                    sc.infer(tc, client, proto, r.history, r.top_k, r.dtype)
                assert sc.classify_error(str(exc.value)) == r.kind, (r.kind, str(exc.value))
            # the server still answers, correctly
            out = sc.infer(tc, client, proto, np.asarray(histories[2], np.int64), 5)
            np.testing.assert_array_equal(out["items"][0], rec.recommend([histories[2]], top_k=5).items[0])
        finally:
            client.close()


def test_cli_query(server, histories, rec, capsys):
    from earn_export.cli import main

    h = " ".join(map(str, histories[3]))
    assert main(["query", server["grpc"], "--history", h, "--top-k", "4"]) == 0
    row = json.loads(capsys.readouterr().out.strip())
    assert row["items"] == rec.recommend([histories[3]], top_k=4).items[0].tolist()
    assert main(["query", server["http"], "--history", "1 2 999999999"]) == 1
    assert "unknown item ids [999999999]" in capsys.readouterr().out


def test_loadtest_16_clients_2000_requests_20pct_bad(server, rec, histories):
    opts = sc.server_options(server["http"])
    reqs = sc.make_load(histories[:500], 2000, 0.2, opts, seed=0)
    t0 = time.monotonic()
    records, wall = sc.run_load(server["http"], reqs, concurrency=16, max_seconds=400, request_timeout_s=60)
    summary = sc.summarize(records, len(reqs), wall)
    summary.mismatches = len(sc.verify(records, reqs, rec, beam=20, default_top_k=10, atol=TOL))
    d = summary.to_dict()
    assert summary.sent == 2000 and summary.good_ok == 1600 and summary.good_failed == 0, d
    assert summary.bad_answered == 400 and summary.bad_wrong == 0, d["by_kind"]
    assert summary.mismatches == 0 and summary.clean
    assert set(summary.by_kind) == {"good", *sc.BAD_KINDS}
    assert time.monotonic() - t0 < 450  # no hang: bounded by max_seconds + request timeouts
    assert server["proc"].poll() is None  # no crash


def test_loadtest_refuses_remote_hosts():
    with pytest.raises(sc.ClientError, match="only targets a server on this machine"):
        sc.run_load("http://10.0.0.1:8000", [], concurrency=1)


@pytest.mark.parametrize("argv, want", [("--concurrency 0", "--concurrency: must be >= 1"),
                                        ("--bad-fraction 2", "--bad-fraction: must be <= 1"),
                                        ("--histories-file {missing}.txt", "{missing}.txt does not exist")])
def test_loadtest_bad_invocation_is_one_line(argv, want, tmp_path, capsys):
    """benchmarks/loadtest.py refuses bad options before any request, in one line, exit 2."""
    from earn_export.cli import run_script

    missing = tmp_path / "missing"
    assert run_script(sc.main, ["http://127.0.0.1:9", *argv.format(missing=missing).split()]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("earn-export: error: "), err
    assert want.format(missing=missing) in err, err


def test_zz_sigterm_stops_server_and_frees_ports(server):
    proc = server["proc"]
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, out
    assert "SIGTERM received" in out and "stopped" in out
    assert all(port_free(p) for p in server["ports"].values())
    # no tritonserver left behind (pgrep exits 1 when nothing matches)
    assert subprocess.run(["pgrep", "-f", "--", f"--http-port={server['ports']['http']}"]).returncode == 1


# -- C++ backend (enabled when the runtime is importable) --------------------------------------------------------
def test_cpp_backend_served_equals_in_process(engine, histories):
    try:
        cpp = Recommender.load(engine, backend="cpp")
    except (ValueError, ImportError, ModuleNotFoundError) as exc:
        pytest.skip(f"the C++ runtime backend is not available on this branch/build ({exc})")
    from earn_export.serve.server import start_server

    opts = ServeOptions(engine_dir=str(engine), backend="cpp", beam=20, default_top_k=20)
    srv = start_server(opts, http_port=free_port(), grpc_port=free_port())
    try:
        reqs = [sc.LoadRequest("good", np.asarray(h, np.int64), top_k=20) for h in histories[:200]]
        records, _ = sc.run_load(f"http://{srv.http_url}", reqs, concurrency=8)
        ref = cpp.recommend(histories[:200], top_k=20, beam=20)
        np.testing.assert_array_equal(np.stack([r.outputs["items"][0] for r in records]), ref.items)
    finally:
        srv.stop()


# -- production repository ---------------------------------------------------------------------------------------
def test_triton_repo_configs_match_graphs(engine, tmp_path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    from earn_export.serve.triton_repo import TritonRepoError, validate_repository, write_triton_repo

    repo = tmp_path / "repo"
    report = write_triton_repo(engine, repo, ServeOptions(engine_dir=str(engine)), graphs="onnxruntime")
    assert report["models"]["prefill"]["backend"] == "onnxruntime" and report["models"]["decode"]["inputs"] > 4
    assert report["models"]["earn_recommender"]["dynamic_batching"]
    cfg = mc.ModelConfig()
    text_format.Parse((repo / "decode" / "config.pbtxt").read_text(), cfg)
    man = json.loads((Path(engine) / "manifest.json").read_text())
    assert [i.name for i in cfg.input] == [i["name"] for i in man["graphs"]["decode"]["inputs"]]
    assert (repo / "prefill" / "1" / "model.onnx").is_file()
    # a changed dim, or a config that is not valid text format, is caught
    text = (repo / "prefill" / "config.pbtxt").read_text()
    (repo / "prefill" / "config.pbtxt").write_text(text.replace("dims: -1", "dims: 7", 1))
    with pytest.raises(TritonRepoError, match="inputs differ from prefill.onnx"):
        validate_repository(repo, engine)
    (repo / "prefill" / "config.pbtxt").write_text(text + "\nbogus_field: 1\n")
    with pytest.raises(TritonRepoError, match="not a valid Triton model config"):
        validate_repository(repo, engine)
    with pytest.raises(TritonRepoError, match="earn-export build"):
        write_triton_repo(engine, tmp_path / "trt", ServeOptions(engine_dir=str(engine)), graphs="tensorrt")


def test_graph_backend_beam_loop_equals_recommender(engine, histories, rec):
    """The BLS model's beam loop (GraphBackend over plain numpy runner calls, here ONNX Runtime sessions)."""
    import onnxruntime as ort

    from earn_export.serve.bls_model import engine_recommender

    man = json.loads((Path(engine) / "manifest.json").read_text())
    sessions = {g: ort.InferenceSession(f"{engine}/{spec['file']}", providers=["CPUExecutionProvider"])
                for g, spec in man["graphs"].items()}
    bls = engine_recommender(engine, lambda graph, feeds, outputs: sessions[graph].run(outputs, feeds), batch_size=32)
    got = bls.recommend(histories[:200], top_k=20, beam=20)
    ref = rec.recommend(histories[:200], top_k=20, beam=20)
    np.testing.assert_array_equal(got.items, ref.items)
    np.testing.assert_allclose(got.scores, ref.scores, atol=TOL, rtol=0)


def test_bls_repository_served_on_triton(engine, histories, rec, tmp_path):
    """The BLS model's pb_utils glue on the real server; prefill/decode run as Python-backend ONNX Runtime models
    (PyTriton's server has no ONNX Runtime backend)."""
    from earn_export.serve.triton_repo import write_triton_repo
    from earn_export.serve.tritonserver import TritonServer

    repo = tmp_path / "repo"
    write_triton_repo(engine, repo, ServeOptions(engine_dir=str(engine), max_batch=16), graphs="python-onnxruntime")
    srv = TritonServer(repo, http_port=free_port(), grpc_port=free_port()).start()
    try:
        srv.wait_ready(240)
        users = histories[:64]
        reqs = [sc.LoadRequest("good", np.asarray(h, np.int64), top_k=20) for h in users]
        reqs.append(sc.LoadRequest("unknown_item", np.array([10**12], np.int64)))
        records, _ = sc.run_load(f"grpc://{srv.grpc_url}", reqs, concurrency=4, max_seconds=240)
        assert all(r.error is None for r in records[:-1]), [r.error for r in records if r.error][:2]
        assert records[-1].error_kind == "unknown_item"
        ref = rec.recommend(users, top_k=20, beam=20)
        np.testing.assert_array_equal(np.stack([r.outputs["items"][0] for r in records[:-1]]), ref.items)
        np.testing.assert_allclose(np.stack([r.outputs["scores"][0] for r in records[:-1]]), ref.scores, atol=TOL)
    finally:
        srv.stop()


# -- Ray batch scoring -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_local():
    from earn_export.serve.batch import init_ray

    ray = init_ray(num_cpus=2, object_store_mb=200)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def users_3000(histories, engine, tmp_path_factory):
    hs = list(histories)
    if len(hs) < 3000:  # synthetic default: top up with random catalog histories
        hs += sc.sample_histories(str(engine), 3000 - len(hs), seed=3)
    return hs[:3000]


def test_ray_batch_equals_in_process_row_for_row(ray_local, engine, rec, users_3000, tmp_path):
    import pyarrow.parquet as pq

    from earn_export.serve.batch import run_batch, write_users

    n = len(users_3000)
    assert n >= 3000
    ids = np.arange(n, dtype=np.int64) * 7 + 100  # user ids are carried, not renumbered
    src = write_users(tmp_path / "users.parquet", users_3000, ids)
    out = tmp_path / "recs.parquet"
    stats = run_batch(engine, src, out, actors=2, batch_size=64, top_k=20, beam=20, progress=False)
    assert stats["users"] == n and out.is_file()
    assert not list(tmp_path.glob(".recs.parquet.partial-*"))
    t = pq.read_table(out)
    assert t.column_names == ["user", "items", "scores", "skipped", "truncated"]
    ref = rec.recommend(users_3000, top_k=20, beam=20)
    np.testing.assert_array_equal(np.asarray(t.column("user")), ids)
    np.testing.assert_array_equal(np.array(t.column("items").to_pylist()), ref.items)
    np.testing.assert_allclose(np.array(t.column("scores").to_pylist(), np.float32), ref.scores, atol=TOL, rtol=0)
    np.testing.assert_array_equal(np.asarray(t.column("truncated")), ref.truncated)


def test_ray_batch_all_or_nothing(ray_local, engine, histories, tmp_path):
    from earn_export.data.errors import DataError
    from earn_export.serve.batch import run_batch, write_users

    out = tmp_path / "recs.parquet"
    bad = write_users(tmp_path / "bad.parquet", [histories[0], [10**12, 1]], [5, 6])
    with pytest.raises(DataError, match=r"unknown item ids \[1000000000000\].*users \(e.g. \[6\]\).*--on-unknown skip"):
        run_batch(engine, bad, out, progress=False)
    assert not out.exists()
    # a failure inside the actors (a backend that cannot load) leaves neither the output nor a partial file
    good = write_users(tmp_path / "good.parquet", histories[:50])
    with pytest.raises(Exception, match="backend must be"):
        run_batch(engine, good, out, actors=1, backend="no-such-backend", progress=False)
    assert not out.exists() and not list(tmp_path.glob(".recs.parquet.partial-*"))
    # skip mode drops and counts the unknown id
    stats = run_batch(engine, bad, out, on_unknown="skip", top_k=5, progress=False)
    import pyarrow.parquet as pq

    t = pq.read_table(out)
    assert stats["users"] == 2 and t.column("skipped").to_pylist() == [0, 1] and t.column("user").to_pylist() == [5, 6]
