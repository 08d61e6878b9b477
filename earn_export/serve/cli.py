"""CLI of the serving package: ``serve``, ``query``, ``triton-repo``, ``batch``.

Only argparse at import time (``earn-export --help`` stays fast and works without the ``serve`` extra); each
command imports its module when it runs.
"""

from __future__ import annotations

import importlib

from .. import cli_args as ca
from ..cli_args import existing_dir, nonneg_int, positive_float, positive_int


def _lazy(module: str, func: str, needs: tuple):
    """The command's function, imported when it runs; its optional packages (extra ``serve``) are checked first,
    so a plain install answers with one line naming the extra instead of a traceback."""
    def run(args):
        command = func.removeprefix("run_").removesuffix("_cli").replace("_", "-")
        ca.require_extras(*needs, what=f"earn-export {command}")
        if getattr(args, "backend", None) == "torch":
            from ..errors import UsageError

            raise UsageError(f"{command} --backend torch: the torch reference is for `recommend` and `check` — "
                             "serve the graphs with --backend onnxruntime or cpp")
        return getattr(importlib.import_module(f"earn_export.serve.{module}"), func)(args)

    return run


def register(sub) -> None:
    for add in (_register_serve, _register_query, _register_repo, _register_batch):
        add(sub)


def _model_options(p) -> None:
    """Options of the earn_recommender model, shared by `serve` and the BLS model of `triton-repo`."""
    p.add_argument("--instances", type=positive_int, default=None,
                   help="earn_recommender instances, each a process holding one Recommender (default: serve one per "
                        "CPU core, at most 8; triton-repo 1)")
    p.add_argument("--max-batch", type=positive_int, default=32, help="largest dynamic batch, in users (default 32)")
    p.add_argument("--max-queue-delay-us", type=nonneg_int, default=2000,
                   help="how long the dynamic batcher waits to fill a batch, in microseconds (default 2000)")
    p.add_argument("--max-queue-size", type=nonneg_int, default=0,
                   help="requests the queue holds; more are refused at once with 'Exceeds maximum queue size' "
                        "(busy, retry) (default 0 = 4 x --max-batch x --instances)")
    p.add_argument("--queue-timeout-us", type=nonneg_int, default=0,
                   help="refuse a request that waited this long in the queue, in microseconds (default 0: no limit)")
    ca.add_search(p, top_k=10, top_k_note="when a request does not send one; requests may ask for 1..--beam")
    ca.add_on_unknown(p, note="served: an error answer, or 'skipped' in the answer")
    ca.add_catalog_ids(p, note="served: input 'history' and output 'items' INT64 catalog indices; default: the "
                              "engine's original ids when it has an id map (BYTES for string ids, INT64 for "
                              "integer ids)")
    p.add_argument("--max-request-items", type=positive_int, default=1000,
                   help="refuse histories longer than this (default 1000; the model reads the last max_history)")
    p.add_argument("--allow-empty-history", action="store_true",
                   help="answer empty histories (registers-only prompt) instead of refusing them")


def _register_serve(sub) -> None:
    p = sub.add_parser("serve", help="serve an engine on Triton Inference Server (model earn_recommender, HTTP + "
                                     "gRPC, dynamic batching) until SIGINT/SIGTERM",
                       description="Serve ENGINE_DIR as the Triton model 'earn_recommender': input 'history' [1, n] "
                                   "(one user per request, any n) of item ids, optional 'top_k' INT64 [1, 1]; "
                                   "outputs 'items', 'scores' FP32, 'skipped' and 'truncated' INT64. Item ids are "
                                   "the catalog's original ids when the engine has an id map (BYTES for string ids, "
                                   "INT64 for integer ids; outputs also 'index' INT64 catalog indices and 'titles' "
                                   "BYTES when the map has titles), else (or with --catalog-ids) INT64 catalog "
                                   "indices. Requests are dynamically batched; a bad request gets a Triton error "
                                   "naming the problem.")
    p.add_argument("engine_dir", type=existing_dir, help="exported engine directory (earn-export export ... --out DIR)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind HTTP/gRPC/metrics to (default 127.0.0.1)")
    p.add_argument("--http-port", type=positive_int, default=8000, help="HTTP port (default 8000)")
    p.add_argument("--grpc-port", type=positive_int, default=8001, help="gRPC port (default 8001)")
    p.add_argument("--metrics-port", type=nonneg_int, default=8002,
                   help="Prometheus metrics port (default 8002; 0 disables metrics)")
    _model_options(p)
    ca.add_threads(p, note="per server instance (default: CPU cores / instances, at least 1)")
    p.add_argument("--drain-timeout", type=positive_float, default=30.0,
                   help="on SIGTERM/SIGINT, seconds to wait for requests in flight to be answered while new ones are "
                        "refused; then, or at a second signal, stop hard (default 30)")
    ca.add_backend(p, note="serve: onnxruntime or cpp")
    p.add_argument("--ready-timeout", type=positive_float, default=180.0,
                   help="seconds to wait for the server to load and warm up (default 180)")
    p.add_argument("--log-verbose", type=nonneg_int, default=0, help="Triton's --log-verbose level (default 0)")
    p.set_defaults(func=_lazy("server", "run_serve", ("pytriton", "tritonclient")))


def _register_query(sub) -> None:
    q = sub.add_parser("query", help="ask a running `earn-export serve` for top-K items (tritonclient)")
    q.add_argument("url", help="server URL: http://HOST:PORT (default scheme) or grpc://HOST:PORT")
    ca.add_history(q, required=True, original_ids=True)
    q.add_argument("--top-k", type=positive_int, default=None,
                   help="items per user; at most --beam (default: the server's --top-k)")
    q.add_argument("--timeout", type=positive_float, default=30.0, help="seconds per request (default 30)")
    q.set_defaults(func=_lazy("client", "run_query", ("tritonclient",)))


def _register_repo(sub) -> None:
    r = sub.add_parser("triton-repo", help="write a Triton model repository (prefill/decode ONNX or TensorRT models "
                                           "+ a BLS earn_recommender) for GPU servers",
                       description="Write a Triton model repository: prefill and decode models with the graphs' real "
                                   "I/O, and a Python-backend BLS model 'earn_recommender' (the interface of "
                                   "`earn-export serve`) running this package's beam search over them. Every "
                                   "config.pbtxt is parsed with tritonclient's model_config_pb2 and checked against "
                                   "the ONNX graphs. --graphs onnxruntime/tensorrt are unverified here (no such "
                                   "backend in PyTriton's server); python-onnxruntime is served in the tests.")
    r.add_argument("engine_dir", type=existing_dir, help="exported engine directory")
    ca.add_out(r, "repository directory to write", required=True)
    r.add_argument("--graphs", default="onnxruntime", choices=["onnxruntime", "tensorrt", "python-onnxruntime"],
                   help="backend of prefill/decode (default onnxruntime; tensorrt needs `earn-export build` plans; "
                        "python-onnxruntime runs ONNX Runtime inside the Python backend)")
    r.add_argument("--instance-kind", default="gpu", choices=["gpu", "cpu"],
                   help="instance kind of prefill/decode (default gpu; python-onnxruntime is always cpu)")
    r.add_argument("--graph-instances", type=positive_int, default=1,
                   help="instances of prefill and decode (default 1)")
    _model_options(r)
    r.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    r.set_defaults(func=_lazy("triton_repo", "run_triton_repo", ("tritonclient",)))


def _register_batch(sub) -> None:
    b = sub.add_parser("batch", help="score every user of a Parquet file on Ray Data (local Ray, or a cluster with "
                                     "--address) into a Parquet file",
                       description="Offline top-K for every user: --histories-file is a Parquet file with a 'history' "
                                   "column (list of item ids, oldest first: the catalog's original ids when the "
                                   "engine has an id map, else or with --catalog-ids catalog indices) and optionally "
                                   "'user'; --out gets user, items (the same kind of ids), scores, [titles,] skipped, "
                                   "truncated in input order, written all-or-nothing.")
    b.add_argument("engine_dir", type=existing_dir,
                   help="exported engine directory (at the same path on every Ray node)")
    ca.add_histories_file(b, required=True, file_format="a Parquet file, columns history [, user]")
    ca.add_out(b, "output Parquet file", required=True)
    b.add_argument("--address", default=None, help="Ray cluster address (ray://HOST:10001 or auto); default: a "
                                                   "local Ray started for this run")
    b.add_argument("--actors", type=positive_int, default=None, help="Recommender actors (default: CPUs / --threads)")
    ca.add_threads(b, default=1, note="per Ray actor (its CPUs)")
    b.add_argument("--batch-size", type=positive_int, default=64, help="users per map_batches call (default 64)")
    ca.add_search(b, top_k=20)
    ca.add_on_unknown(b, note="batch: error fails before any work")
    ca.add_catalog_ids(b, note="batch: 'history' and 'items' list<int64> catalog indices; default: the engine's "
                              "original ids when it has an id map (list<string> or list<int64>, as the map says)")
    ca.add_backend(b, note="batch: onnxruntime or cpp")
    b.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    ca.add_quiet(b)
    b.add_argument("--part-size", type=positive_int, default=None,
                   help="write --out as a directory of parts of this many users, each committed on its own with a "
                        "manifest; re-running the same command skips finished parts (see docs/batch_faults.md)")
    b.add_argument("--max-restarts", type=nonneg_int, default=3,
                   help="restarts of a crashed Recommender actor, and with --part-size re-runs of the unfinished "
                        "parts after Ray lost a node or a worker, before the run fails (default 3)")
    b.add_argument("--task-retries", type=nonneg_int, default=3,
                   help="retries of a batch whose actor died, on the restarted actor (default 3)")
    b.set_defaults(func=_lazy("batch_parts", "run_batch_cli", ("ray", "pyarrow")))
