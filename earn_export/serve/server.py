"""``earn-export serve``: the ``earn_recommender`` model on Triton Inference Server, until SIGINT/SIGTERM.

Why stopping unloads the model first (``drain``): Triton's own SIGINT shutdown (2.51) waits for keep-alive HTTP
clients to close their connections and drops the requests in flight at its exit timeout (docs/serve_overload.md);
unloading (explicit model control) refuses new requests at once (404, readiness 400: a load balancer stops
sending) and answers every accepted one before the model is gone.
"""

from __future__ import annotations

import signal
import tempfile
import threading
import time
from pathlib import Path

from ..runtime.cpu_workers import cpu_cores
from . import MODEL_NAME
from .instance_watch import dead, stub_pids
from .served_model import ServeOptions, instances_and_threads, write_model_repository
from .tritonserver import ServeError, TritonServer

EXIT_TIMEOUT_S = 5  # Triton's own wait for idle client connections once the drain has answered everything


def start_server(opts: ServeOptions, host: str = "127.0.0.1", http_port: int = 8000, grpc_port: int = 8001,
                 metrics_port: int | None = None, ready_timeout_s: float = 180.0, log_verbose: int = 0,
                 cancel=None) -> TritonServer | None:
    """A ready server (every instance loaded its Recommender and answered the warm-up request; stop it with
    ``.stop()``); None if ``cancel`` (an Event) was set while it started."""
    workdir = Path(tempfile.mkdtemp(prefix="earn-serve-"))
    server = TritonServer(workdir / "models", host=host, http_port=http_port, grpc_port=grpc_port,
                          metrics_port=metrics_port, log_verbose=log_verbose, workdir=workdir, remove_workdir=True,
                          exit_timeout_s=EXIT_TIMEOUT_S,
                          extra_args=["--model-control-mode=explicit", f"--load-model={MODEL_NAME}"])
    try:  # stop() also removes the workdir, started or not
        write_model_repository(opts, server.model_repository)
        if server.start().wait_ready(ready_timeout_s, cancel=cancel):
            return server
    except BaseException:
        server.stop()
        raise
    server.stop()
    return None


def drain(server: TritonServer, timeout_s: float, hard) -> tuple[float, str]:
    """Unload the model (new requests refused, accepted ones answered) and wait until it is unloaded, at most
    ``timeout_s`` or until ``hard`` (an Event: a second signal) is set -> (seconds, what stopped the wait early:
    "" when every accepted request was answered)."""
    t0 = time.monotonic()
    server.unload(MODEL_NAME)
    while server.model_state(MODEL_NAME) != "UNAVAILABLE":
        if server.process.poll() is not None:
            raise ServeError(f"tritonserver exited with code {server.process.returncode} while draining; its log "
                             f"ends:\n{server.log_tail()}")
        if hard.is_set() or time.monotonic() - t0 >= timeout_s:
            return time.monotonic() - t0, "a second signal" if hard.is_set() else f"--drain-timeout {timeout_s:g} s"
        hard.wait(0.1)
    return time.monotonic() - t0, ""


def options_from_args(args) -> ServeOptions:
    instances, threads = instances_and_threads(cpu_cores(), args.instances, args.threads)
    return ServeOptions.from_args(args, backend=args.backend, instances=instances, threads=threads)


def example_history(opts: ServeOptions) -> str:
    """Three ids of the served catalog, spelled as requests send them (original ids when the model takes them)."""
    from ..data.id_map import load_id_map

    id_map = None if opts.catalog_ids else load_id_map(opts.engine_dir)
    return " ".join(str(x) for x in (id_map.ids[:3] if id_map is not None else (1, 2, 3)))


def run_serve(args) -> int:
    opts = options_from_args(args)
    stop, hard = threading.Event(), threading.Event()
    received = []

    def on_signal(signum, _frame):
        received.append(signal.Signals(signum).name)
        if stop.is_set():
            hard.set()
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    server = None
    try:
        chosen = "" if args.instances and args.threads else f", chosen from {cpu_cores()} CPU core(s)"
        print(f"starting Triton Inference Server for {opts.engine_dir} ({opts.instances} instance(s) x "
              f"{opts.threads} thread(s){chosen}, dynamic batching up to {opts.max_batch} users / "
              f"{opts.max_queue_delay_us} us, {opts.backend}) ...", flush=True)
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
        stubs = stub_pids(server.process.pid)  # one per model instance, all loaded once the server is ready
        while not stop.is_set():
            if server.process.poll() is not None:
                raise ServeError(f"tritonserver exited unexpectedly with code {server.process.returncode}; its log "
                                 f"ends:\n{server.log_tail()}")
            if gone := dead(stubs):  # Triton would keep the dead instance and fail its share of requests forever
                raise ServeError(f"model instance process(es) {sorted(gone)} died and Triton does not restart them; "
                                 "stopping the server (exit 1) so that a supervisor restarts `earn-export serve`")
            stop.wait(0.5)
        print(f"{received[0] if received else 'stop'} received: refusing new requests, answering the ones in "
              f"flight (at most {args.drain_timeout:g} s; a second signal stops at once) ...", flush=True)
        seconds, stopped_by = drain(server, args.drain_timeout, hard)
        if stopped_by:
            pending = server.pending_requests(MODEL_NAME)
            queued = (f"{pending} queued request(s)" if pending is not None
                      else "an unknown number of queued requests (no metrics endpoint to count them)")
            code = server.kill()
            server = None
            print(f"stopped hard after {seconds:.1f} s ({stopped_by}): abandoned {queued} and the batches "
                  f"in execution (at most {opts.instances} x {opts.max_batch} requests); their clients get a "
                  f"connection error (tritonserver exit code {code})", flush=True)
            return 1
        code = server.stop()
        server = None
        print(f"drained in {seconds:.1f} s: every accepted request answered; stopped (tritonserver exit "
              f"code {code})", flush=True)
        return 0
    finally:
        if server is not None:
            server.stop()
        for s, h in previous.items():
            signal.signal(s, h)
