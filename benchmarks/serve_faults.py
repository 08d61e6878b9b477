"""What Triton (via ``earn-export serve``'s model repository) does when a model instance dies or the server is
signalled under load: requests sent, answered, failed (by error text), readiness, exit code, Triton's log tail.

    .venv/bin/python benchmarks/serve_faults.py ENGINE_DIR crash    # SIGKILL one of 2 stubs under load
    .venv/bin/python benchmarks/serve_faults.py ENGINE_DIR sigterm  # SIGINT to tritonserver at concurrency 16

Figures: docs/results/serve_faults.md. Runs the server through ``start_server`` (not the ``serve`` CLI) so the
behaviour seen is Triton's own, without serve's instance watch.
"""

import collections
import signal
import socket
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

from earn_export.serve.instance_watch import stub_pids
from earn_export.serve.served_model import ServeOptions
from earn_export.serve.server import start_server

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadtest as sc  # noqa: E402 - benchmarks/loadtest.py


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def errors(records):
    return dict(collections.Counter((r.error or "")[:100] for r in records if r.error).most_common(8))


def load_in_thread(url, reqs, concurrency, max_seconds):
    box = {}
    th = threading.Thread(target=lambda: box.setdefault("r", sc.run_load(url, reqs, concurrency=concurrency,
                                                                         max_seconds=max_seconds,
                                                                         request_timeout_s=20)))
    th.start()
    return th, box


def main(argv=None):
    from earn_export.cli import Parser

    p = Parser(prog="python benchmarks/serve_faults.py", description=__doc__.splitlines()[0])
    p.add_argument("engine_dir", help="exported engine directory")
    p.add_argument("mode", choices=["crash", "sigterm"], help="crash: SIGKILL one of 2 stubs under load; sigterm: "
                                                               "SIGINT to tritonserver at concurrency 16")
    args = p.parse_args(argv)
    run(args.engine_dir, args.mode)


def run(engine, mode):
    crash = mode == "crash"
    opts = ServeOptions(engine_dir=engine, instances=2 if crash else 1, threads=1, max_batch=8 if crash else 4,
                        max_queue_delay_us=2000 if crash else 0, beam=10, default_top_k=5).validate()
    port = free_port()
    srv = start_server(opts, http_port=port, grpc_port=free_port(), ready_timeout_s=240)
    url = f"http://127.0.0.1:{port}"
    hs = sc.sample_histories(engine, 64, seed=5, max_len=5)
    try:
        n = 3000 if crash else 200000
        reqs = [sc.LoadRequest("good", np.asarray(hs[i % 64], np.int64), top_k=5) for i in range(n)]
        th, box = load_in_thread(url, reqs, 8 if crash else 16, 120 if crash else 40)
        time.sleep(2.0 if not crash else 3.0)
        t0 = time.perf_counter()
        if crash:
            victim = max(stub_pids(srv.process.pid))
            import os
            os.kill(victim, signal.SIGKILL)
            print(f"killed stub {victim} of {sorted(stub_pids(srv.process.pid) | {victim})}")
        else:
            srv.process.send_signal(signal.SIGINT)
            code = srv.process.wait(60)
            print(f"tritonserver exit code {code}, {time.perf_counter() - t0:.1f} s after SIGINT")
        th.join(180)
        records, wall = box["r"]
        print(f"load: sent {len(records)}, ok {sum(1 for r in records if not r.error)} in {wall:.1f} s; errors: "
              f"{errors(records)}")
        if crash:
            for path in ("/v2/health/ready", "/v2/models/earn_recommender/ready"):
                try:
                    print(path, urllib.request.urlopen(url + path, timeout=5).status)
                except Exception as exc:  # noqa: BLE001
                    print(path, exc)
            later, w2 = sc.run_load(url, reqs[:400], concurrency=8, max_seconds=60, request_timeout_s=20)
            print(f"later load: sent {len(later)}, ok {sum(1 for r in later if not r.error)}; errors: "
                  f"{errors(later)}")
        else:
            print(srv.log_tail(16))
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
