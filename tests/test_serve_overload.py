"""Serving under overload: the bounded queue (Triton's queue policy) answers excess requests at once with a
"busy, retry" error that the load test counts as ``busy``, and every request it does accept is answered
correctly. Uses the tiny random-weight engine: the point is the queue, not the model."""

import socket
import time

import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc", reason="the serve extra is not installed (pip install -e '.[serve]')")
pytest.importorskip("pytriton", reason="the serve extra is not installed (pip install -e '.[serve]')")

from earn_export.runtime import Recommender  # noqa: E402
from earn_export.serve import client as sc  # noqa: E402
from earn_export.serve.served_model import ServeOptions, model_config  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_queue_policy_in_config():
    cfg = model_config(ServeOptions(engine_dir="-", max_batch=8, instances=2), warmup=False)
    assert cfg.dynamic_batching.default_queue_policy.max_queue_size == 4 * 8 * 2  # auto: 4 batches per instance
    cfg = model_config(ServeOptions(engine_dir="-", max_queue_size=5, queue_timeout_us=20000), warmup=False)
    q = cfg.dynamic_batching.default_queue_policy
    assert q.max_queue_size == 5 and q.default_timeout_microseconds == 20000
    with pytest.raises(Exception, match="--max-queue-size and --queue-timeout-us must be >= 0"):
        ServeOptions(engine_dir="-", max_queue_size=-1).validate()


def test_overload_gets_busy_error_quickly(tiny_engine):
    from earn_export.serve.server import start_server

    opts = ServeOptions(engine_dir=str(tiny_engine), instances=1, threads=1, max_batch=2, max_queue_delay_us=0,
                        beam=10, default_top_k=5, max_queue_size=2).validate()
    port = free_port()
    server = start_server(opts, http_port=port, grpc_port=free_port(), ready_timeout_s=240)
    assert server is not None
    try:
        hs = sc.sample_histories(str(tiny_engine), 64, seed=5, max_len=5)
        reqs = [sc.LoadRequest("good", np.asarray(hs[i % len(hs)], np.int64), top_k=5) for i in range(600)]
        t0 = time.perf_counter()
        records, wall = sc.run_load(f"http://127.0.0.1:{port}", reqs, concurrency=32, max_seconds=240,
                                    request_timeout_s=60)
        assert len(records) == len(reqs) and time.perf_counter() - t0 < 240
        busy = [r for r in records if r.error is not None and r.error_kind == "busy"]
        other = [r for r in records if r.error is not None and r.error_kind != "busy"]
        ok = [r for r in records if r.error is None]
        assert not other, other[0].error
        assert busy, "32 clients against a queue of 2 never got a busy error"
        assert ok, "nothing was answered"
        busy_ms = np.percentile([r.latency_s for r in busy], 50) * 1e3
        ok_ms = np.percentile([r.latency_s for r in ok], 50) * 1e3
        assert busy_ms < 2000, f"busy answers took {busy_ms:.0f} ms (p50)"
        s = sc.summarize(records, len(reqs), wall)
        assert s.by_kind["good"]["errors"] == {"busy": len(busy)}  # what `loadtest` reports
        # what was accepted is answered right
        rec = Recommender.load(tiny_engine)
        assert sc.verify(records, reqs, rec, beam=10, default_top_k=5) == []
        print(f"overload: {len(ok)} answered (p50 {ok_ms:.1f} ms), {len(busy)} busy (p50 {busy_ms:.1f} ms) "
              f"of {len(records)} at concurrency 32, queue 2, in {wall:.1f} s")
    finally:
        server.stop()
