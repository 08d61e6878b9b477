"""``earn-export serve``: the ``earn_recommender`` model on Triton Inference Server, until SIGINT/SIGTERM.

``start_server`` (also used by tests and the serving benchmark) writes the model repository into a temporary
directory, starts ``tritonserver`` and returns once the server is ready, which Triton reports only after every
instance has loaded its Recommender and answered the warm-up request.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import threading
from pathlib import Path

from .served_model import ServeOptions, write_model_repository
from .tritonserver import ServeError, TritonServer


def start_server(opts: ServeOptions, host: str = "127.0.0.1", http_port: int = 8000, grpc_port: int = 8001,
                 metrics_port: int | None = None, ready_timeout_s: float = 180.0, log_verbose: int = 0,
                 cancel=None) -> TritonServer | None:
    """A ready server (stop it with ``.stop()``, or use it as a context manager); None if ``cancel`` (an Event)
    was set while it started."""
    workdir = Path(tempfile.mkdtemp(prefix="earn-serve-"))
    try:
        repo = write_model_repository(opts, workdir / "models")
        server = TritonServer(repo, host=host, http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port,
                              log_verbose=log_verbose, workdir=workdir, remove_workdir=True)
        server.start()
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    try:
        ready = server.wait_ready(ready_timeout_s, cancel=cancel)
    except BaseException:
        server.stop()
        raise
    if not ready:
        server.stop()
        return None
    return server


def options_from_args(args) -> ServeOptions:
    return ServeOptions(engine_dir=args.engine_dir, backend=args.backend, instances=args.instances,
                        threads=args.threads, max_batch=args.max_batch, max_queue_delay_us=args.max_queue_delay_us,
                        beam=args.beam, default_top_k=args.top_k, on_unknown=args.on_unknown,
                        max_request_items=args.max_request_items,
                        allow_empty_history=args.allow_empty_history, max_queue_size=args.max_queue_size,
                        queue_timeout_us=args.queue_timeout_us, catalog_ids=args.catalog_ids).validate()


def example_history(opts: ServeOptions) -> str:
    """Three ids of the served catalog, spelled as requests send them (original ids when the model takes them)."""
    from ..data.id_map import load_id_map

    id_map = None if opts.catalog_ids else load_id_map(opts.engine_dir)
    return " ".join(str(x) for x in (id_map.ids[:3] if id_map is not None else (1, 2, 3)))


def run_serve(args) -> int:
    opts = options_from_args(args)
    stop = threading.Event()
    received = []

    def on_signal(signum, _frame):
        received.append(signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    server = None
    try:
        print(f"starting Triton Inference Server for {opts.engine_dir} ({opts.instances} instance(s), "
              f"{opts.backend}) ...", flush=True)
        server = start_server(opts, host=args.host, http_port=args.http_port, grpc_port=args.grpc_port,
                              metrics_port=args.metrics_port or None, ready_timeout_s=args.ready_timeout,
                              log_verbose=args.log_verbose, cancel=stop)
        if server is None:
            print(f"{received[0]} received while starting: stopped", flush=True)
            return 0
        print(f"ready: model earn_recommender at http://{server.http_url} and grpc://{server.grpc_url}"
              + (f", metrics http://{args.host}:{args.metrics_port}/metrics" if args.metrics_port else ""), flush=True)
        print(f"try: earn-export query http://{server.http_url} --history '{example_history(opts)}'   (Ctrl-C or "
              "SIGTERM stops)", flush=True)
        from .instance_watch import dead, stub_pids

        stubs = stub_pids(server.process.pid)  # one per model instance, all loaded once the server is ready
        while not stop.is_set():
            if server.process.poll() is not None:
                raise ServeError(f"tritonserver exited unexpectedly with code {server.process.returncode}; its log "
                                 f"ends:\n{server.log_tail()}")
            if gone := dead(stubs):  # Triton would keep the dead instance and fail its share of requests forever
                raise ServeError(f"model instance process(es) {sorted(gone)} died and Triton does not restart them; "
                                 "stopping the server (exit 1) so that a supervisor restarts `earn-export serve`")
            stop.wait(0.5)
        print(f"{received[0] if received else 'stop'} received: stopping the server ...", flush=True)
        code = server.stop()
        server = None
        print(f"stopped (tritonserver exit code {code})", flush=True)
        return 0
    finally:
        if server is not None:
            server.stop()
        for s, h in previous.items():
            signal.signal(s, h)
