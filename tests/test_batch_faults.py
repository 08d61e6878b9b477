"""Batch scoring that survives faults: parts + manifest, resume, bad-row report; a real 3-node Ray cluster
(head + 2 worker nodes started with ``ray start`` on 127.0.0.1) running ``earn-export batch --address``; a killed
actor process and a killed driver, each checked for exactly-once output equal to the in-process Recommender.

The engine is the tiny random-weight one (``tiny_engine``): scoring 3,000 users takes seconds even on a busy
2-core machine, so the tests measure the fault handling, not the model.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")

from earn_export.runtime import Recommender  # noqa: E402
from helpers import load_benchmark  # noqa: E402

sc = load_benchmark("loadtest")  # benchmarks/loadtest.py: the load test, and the client calls it imports
from earn_export.serve.batch import write_users  # noqa: E402
from earn_export.serve.batch_parts import (BAD_ROWS, MANIFEST, PartsDirError, part_name, read_parts,  # noqa: E402
                                           run_batch_parts)

N_USERS = 3000
PART = 100
TOL = 1e-5
CLI = [sys.executable, "-m", "earn_export.cli"]


@pytest.fixture(scope="module")
def users(tiny_engine, tmp_path_factory):
    """(users Parquet file, user ids, histories): 3,000 random catalog histories, ids not equal to row numbers."""
    hs = sc.sample_histories(str(tiny_engine), N_USERS, seed=11, max_len=5)
    ids = np.arange(N_USERS, dtype=np.int64) * 3 + 17
    path = write_users(tmp_path_factory.mktemp("users") / "users.parquet", hs, ids)
    return path, ids, hs


@pytest.fixture(scope="module")
def reference(tiny_engine, users):
    return Recommender.load(tiny_engine).recommend(users[2], top_k=10, beam=10)


def check_exactly_once(table, ids, ref):
    """Every input user once, in input order, with the in-process items and scores."""
    got = np.asarray(table.column("user"))
    assert len(got) == len(ids) and len(np.unique(got)) == len(ids), "a user is missing or duplicated"
    np.testing.assert_array_equal(got, ids)
    np.testing.assert_array_equal(np.array(table.column("items").to_pylist()), ref.items)
    np.testing.assert_allclose(np.array(table.column("scores").to_pylist(), np.float32), ref.scores, atol=TOL,
                               rtol=0)


def manifest(out: Path) -> dict:
    try:
        return json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


def test_only_lost_work_is_run_again():
    """Ray losing a node/worker/object re-runs the unfinished parts; an error of the scoring itself does not."""
    import ray.exceptions as rx

    from earn_export.serve.batch_parts import _lost_work

    unavailable = rx.ActorUnavailableError("RpcError: failed to connect to all addresses", None)
    assert _lost_work(unavailable) and _lost_work(rx.ActorDiedError()) and _lost_work(rx.WorkerCrashedError())
    wrapped = RuntimeError("map_batches failed")
    wrapped.__cause__ = unavailable
    assert _lost_work(wrapped)
    assert not _lost_work(ValueError("unknown item ids [7]")) and not _lost_work(RuntimeError("part 3: lost row"))


# -- in-process (local Ray) --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_local():
    from earn_export.serve.batch import init_ray

    ray = init_ray(num_cpus=2, object_store_mb=200)
    yield ray
    ray.shutdown()


def test_parts_equal_in_process_and_rerun_skips_every_part(ray_local, tiny_engine, users, reference, tmp_path):
    path, ids, _ = users
    out = tmp_path / "recs"
    kw = dict(actors=2, batch_size=50, top_k=10, beam=10, progress=False)
    stats = run_batch_parts(tiny_engine, path, out, PART, **kw)
    assert stats["parts"] == N_USERS // PART and stats["parts_scored"] == stats["parts"]
    assert stats["parts_skipped"] == 0 and stats["bad_rows"] == {}
    check_exactly_once(read_parts(out), ids, reference)
    check_exactly_once(pq.read_table(out), ids, reference)  # pyarrow skips the _/. bookkeeping files
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("part-*.parquet")}
    again = run_batch_parts(tiny_engine, path, out, PART, **kw)
    assert again["parts_skipped"] == stats["parts"] and again["parts_scored"] == 0 and again["scored_users"] == 0
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("part-*.parquet")} == before
    # a recorded part that vanished is scored again, the others are kept
    (out / part_name(7)).unlink()
    fix = run_batch_parts(tiny_engine, path, out, PART, **kw)
    assert fix["parts_scored"] == 1 and fix["parts_skipped"] == stats["parts"] - 1
    check_exactly_once(read_parts(out), ids, reference)
    # the same directory with other options is refused, naming the difference
    with pytest.raises(PartsDirError, match=r"another job \(options: .*'top_k': 10.*'top_k': 5.*--overwrite"):
        run_batch_parts(tiny_engine, path, out, PART, **{**kw, "top_k": 5})
    with pytest.raises(PartsDirError, match="part_size: was 100, now 50"):
        run_batch_parts(tiny_engine, path, out, 50, **kw)
    over = run_batch_parts(tiny_engine, path, out, 1000, overwrite=True, **kw)
    assert over["parts"] == 3 and over["parts_skipped"] == 0 and len(list(out.glob("part-*.parquet"))) == 3


def test_parts_dir_refuses_foreign_directories(ray_local, tiny_engine, users, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(PartsDirError, match=r"no _parts.json; it is not a batch parts directory"):
        run_batch_parts(tiny_engine, users[0], tmp_path / "mine", PART, progress=False)
    (tmp_path / "f").write_text("x")
    with pytest.raises(PartsDirError, match="is a file"):
        run_batch_parts(tiny_engine, users[0], tmp_path / "f", PART, progress=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "x"


def test_bad_rows_reported_per_row_never_dropped(ray_local, tiny_engine, users, tmp_path):
    from earn_export.data.errors import DataError

    hs = list(users[2][:6])
    hs[1] = [10**12] + hs[1]  # unknown id
    hs[2] = []  # empty history
    hs[4] = [-3, hs[4][0]]  # malformed (negative) id
    ids = [10, 11, 12, 13, 14, 13]  # 13 twice
    src = write_users(tmp_path / "bad.parquet", hs, ids)
    with pytest.raises(DataError, match=r"unknown item ids \[-3, 1000000000000\].*2 users.*--on-unknown skip"):
        run_batch_parts(tiny_engine, src, tmp_path / "err", 4, progress=False)
    assert not list((tmp_path / "err").glob("part-*")) if (tmp_path / "err").exists() else True
    stats = run_batch_parts(tiny_engine, src, tmp_path / "skip", 4, on_unknown="skip", top_k=5, beam=10,
                            progress=False)
    assert stats["bad_rows"] == {"unknown_items": 2, "empty_history": 1, "duplicate_user": 2}
    t = read_parts(tmp_path / "skip")
    assert t.column("user").to_pylist() == ids  # every row scored, none dropped
    assert t.column("skipped").to_pylist() == [0, 1, 0, 0, 1, 0]
    rep = pq.read_table(tmp_path / "skip" / BAD_ROWS).to_pylist()
    assert [(r["row"], r["user"], r["kind"]) for r in rep] == [
        (1, 11, "unknown_items"), (2, 12, "empty_history"), (3, 13, "duplicate_user"), (4, 14, "unknown_items"),
        (5, 13, "duplicate_user")]
    assert "[1000000000000]" in rep[0]["detail"] and "dropped" in rep[0]["action"] and "[-3]" in rep[3]["detail"]


def test_cli_part_size_flags(tiny_engine, users, tmp_path):
    r = subprocess.run([*CLI, "batch", str(tiny_engine), "--histories-file", str(users[0]), "--out", str(tmp_path / "o"),
                        "--part-size", "0"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--part-size" in r.stderr


# -- a real cluster: head + 2 worker nodes -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster():
    from ray_cluster import LocalRayCluster

    c = LocalRayCluster(workers=2, cpus_per_worker=1, head_cpus=0).start()
    yield c
    left = c.stop()
    assert not left, f"Ray processes left after teardown: {left}"


def batch_cmd(engine, users_path, out, address, *extra):
    return [*CLI, "batch", str(engine), "--histories-file", str(users_path), "--out", str(out), "--address", address,
            "--part-size", str(PART), "--batch-size", "50", "--top-k", "10", "--beam", "10", "--actors", "2",
            "--quiet", *extra]


def run_cli(cmd, env, timeout=600):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    return r.stdout


def placement(stdout: str) -> dict:
    return {m[0]: int(m[1]) for m in re.findall(r"node \w+ \((\w+)\): (\d+) users", stdout)}


def test_cluster_batch_equals_in_process(cluster, tiny_engine, users, reference, tmp_path):
    path, ids, _ = users
    out = tmp_path / "recs"
    stdout = run_cli(batch_cmd(tiny_engine, path, out, cluster.address), cluster.env)
    check_exactly_once(read_parts(out), ids, reference)
    where = placement(stdout)
    assert set(where) == {"worker_1", "worker_2"}, stdout  # both worker nodes scored users, the head none
    assert sum(where.values()) == N_USERS and min(where.values()) > 0, stdout
    print(stdout)


def _start_job(cmd, env):
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_parts(out: Path, proc, at_least: int, timeout: float = 300.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = manifest(out)
        if len(m.get("parts", {})) >= at_least:
            return m
        if proc.poll() is not None:
            raise AssertionError(f"job ended early ({proc.returncode}): {proc.communicate()[1][-3000:]}")
        time.sleep(0.05)
    raise TimeoutError(f"fewer than {at_least} parts after {timeout} s")


def _kill_mid_job(cluster, tiny_engine, users, reference, out, victims_of, gone_ok=False):
    """Start the cluster job, kill ``victims_of()`` (SIGKILL) once a part is committed, wait for the job; assert it
    finished with every user exactly once -> (victims, parts done at the kill, seconds from kill to end, stdout,
    stderr). ``gone_ok``: a victim may exit on its own first (a node's children die with its raylet)."""
    path, ids, _ = users
    proc = _start_job(batch_cmd(tiny_engine, path, out, cluster.address), cluster.env)
    try:
        _wait_parts(out, proc, 1)
        victims = victims_of()
        done_at_kill = len(manifest(out)["parts"])
        t_kill = time.monotonic()
        for v in victims:
            try:
                v.kill()
            except psutil.NoSuchProcess:
                if not gone_ok:
                    raise
        stdout, stderr = proc.communicate(timeout=600)
        finished = time.monotonic() - t_kill
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert proc.returncode == 0, stderr[-5000:]
    assert done_at_kill < N_USERS // PART, "the job finished before the kill; nothing was tested"
    check_exactly_once(read_parts(out), ids, reference)
    return victims, done_at_kill, finished, stdout, stderr


def test_kill_worker_actor_process_mid_job(cluster, tiny_engine, users, reference, tmp_path):
    def actors():
        victims = []
        deadline = time.monotonic() + 60
        while not victims and time.monotonic() < deadline:
            victims = cluster.actor_processes("worker_1")
            time.sleep(0.1)
        assert victims, "no actor process found on worker_1"
        return victims

    victims, done_at_kill, finished, stdout, _ = _kill_mid_job(cluster, tiny_engine, users, reference,
                                                               tmp_path / "recs", actors)
    print(f"killed {len(victims)} actor process(es) on worker_1 after {done_at_kill} of {N_USERS // PART} parts; "
          f"job finished {finished:.1f} s later\n{stdout}")


def test_zy_kill_worker_node_mid_job(cluster, tiny_engine, users, reference, tmp_path):
    """A whole worker node dies (its raylet and every process under it, SIGKILL): the job finishes on the other
    node, every user exactly once. Runs after the other cluster tests (``zy``): the cluster keeps one worker node."""
    def node():
        raylet = cluster.raylet("worker_1")
        return [raylet, *raylet.children(recursive=True)]

    node, done_at_kill, finished, stdout, stderr = _kill_mid_job(cluster, tiny_engine, users, reference,
                                                                 tmp_path / "recs", node, gone_ok=True)
    rounds = [line for line in stderr.splitlines() if line.startswith("Ray lost work")]
    print(f"killed worker_1 ({len(node)} processes: raylet and its workers/agents) after {done_at_kill} of "
          f"{N_USERS // PART} parts; job finished {finished:.1f} s later\n{stdout}" + "\n".join(rounds))


def test_kill_driver_mid_job_then_resume(cluster, tiny_engine, users, reference, tmp_path):
    path, ids, _ = users
    out = tmp_path / "recs"
    proc = _start_job(batch_cmd(tiny_engine, path, out, cluster.address), cluster.env)
    try:
        _wait_parts(out, proc, 3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    m = manifest(out)
    done = sorted(int(k) for k in m["parts"])
    assert not m["complete"] and 3 <= len(done) < N_USERS // PART, m.get("parts", {}).keys()
    kept = {i: ((out / part_name(i)).stat().st_ino, (out / part_name(i)).stat().st_mtime_ns) for i in done}
    t0 = time.monotonic()
    stdout = run_cli(batch_cmd(tiny_engine, path, out, cluster.address), cluster.env)
    resumed = time.monotonic() - t0
    assert f"{len(done)} finished part(s) skipped" in stdout, stdout
    assert f"{N_USERS // PART - len(done)} part(s) scored" in stdout, stdout
    assert {i: ((out / part_name(i)).stat().st_ino, (out / part_name(i)).stat().st_mtime_ns) for i in done} == kept
    check_exactly_once(read_parts(out), ids, reference)
    print(f"driver killed after {len(done)} of {N_USERS // PART} parts; re-run scored the other "
          f"{N_USERS // PART - len(done)} in {resumed:.1f} s\n{stdout}")


def test_zz_cluster_teardown_leaves_no_process(cluster):
    pids = {p.pid for p in cluster.processes()}
    assert pids, "the cluster has no processes to stop"
    left = cluster.stop()
    assert not left, f"left running: {left}"
    assert not [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
