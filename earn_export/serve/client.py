"""Clients of ``earn_recommender`` over ``tritonclient``: ``earn-export query`` and ``earn-export loadtest``.

URLs are ``http://HOST:PORT`` or ``grpc://HOST:PORT`` (no scheme = HTTP). The load test is bounded in request
count and wall time, stops by itself, and only targets this machine (loopback addresses).

Every client reads the served model's options first (:func:`server_options`): when the server speaks the
catalog's original item ids (an engine with an id map, docs/own-ids.md), ``query --history "sku-528 sku-115"``
sends them as a BYTES tensor (INT64 for integer ids) and prints the answer in original ids (and titles), and the
load test samples its histories in original ids.

A load test mixes good requests (histories of catalog items) with bad ones of six kinds. A bad request counts as
answered correctly when the server returns an error whose text names its problem (:data:`ERROR_SIGNS`); a good
one when it returns items and scores (and, with ``verify``, the in-process ``Recommender``'s items and scores).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from ..errors import UserError
from . import MODEL_NAME
from .served_model import OPTIONS_PARAMETER

BAD_KINDS = ("unknown_item", "empty_history", "oversized_history", "bad_dtype", "bad_shape", "top_k_out_of_range")
# how each kind's error reads: the model's own messages (served_model.parse_request) and Triton's input checks
ERROR_SIGNS = {
    "unknown_item": ("unknown item ids",),
    "empty_history": ("'history' is empty",),
    "oversized_history": ("more than this server accepts",),
    "bad_dtype": ("data-type", "datatype", "must be INT64"),
    "bad_shape": ("shape",),
    "top_k_out_of_range": ("out of range",),
    "busy": ("Exceeds maximum queue size", "Request timeout expired"),  # Triton's queue policy: retry later
}


class ClientError(ValueError, UserError):
    """A bad URL or client-side argument; the message names the fix."""


def parse_url(url: str) -> tuple[str, str]:
    """``http://h:p`` / ``grpc://h:p`` / ``h:p`` -> (protocol, "h:p")."""
    if "://" not in url:
        url = "http://" + url
    u = urlparse(url)
    if u.scheme not in ("http", "grpc") or not u.hostname or not u.port:
        raise ClientError(f"URL {url!r}: expected http://HOST:PORT or grpc://HOST:PORT — e.g. http://127.0.0.1:8000")
    host = f"[{u.hostname}]" if ":" in u.hostname else u.hostname
    return u.scheme, f"{host}:{u.port}"


def require_loopback(url: str) -> None:
    host = urlparse(url if "://" in url else "http://" + url).hostname or ""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise ClientError(f"loadtest only targets a server on this machine (127.0.0.1, localhost or ::1), got host "
                          f"{host!r}; run the load test on the server's own machine")


def connect(url: str, timeout_s: float = 30.0):
    """(protocol, tritonclient module, client). One client per thread: tritonclient clients are not thread-safe."""
    protocol, address = parse_url(url)
    if protocol == "http":
        import tritonclient.http as tc

        client = tc.InferenceServerClient(address, connection_timeout=timeout_s, network_timeout=timeout_s)
    else:
        import tritonclient.grpc as tc

        client = tc.InferenceServerClient(address)
    return protocol, tc, client


def history_array(history, id_type: str = "") -> np.ndarray:
    """One history as the served model takes it: an object array of str for string ids (sent as BYTES), else
    int64."""
    if id_type == "str":
        return np.asarray([str(x) for x in history], dtype=object)
    return np.asarray(history, np.int64)


def make_inputs(tc, history: np.ndarray, top_k=None, dtype: str | None = None) -> list:
    """Triton inputs for one request; ``dtype`` overrides the declared datatype (bad-request tests)."""
    history = np.asarray(history)
    if history.ndim == 1:
        history = history[None]
    dtype = dtype or ("BYTES" if history.dtype == object else {
        np.dtype(np.int64): "INT64", np.dtype(np.float32): "FP32", np.dtype(np.int32): "INT32"}.get(history.dtype,
                                                                                                     "INT64"))
    x = tc.InferInput("history", list(history.shape), dtype)
    x.set_data_from_numpy(history)
    inputs = [x]
    if top_k is not None:
        k = np.asarray(top_k, np.int64).reshape(1, 1)
        t = tc.InferInput("top_k", [1, 1], "INT64")
        t.set_data_from_numpy(k)
        inputs.append(t)
    return inputs


def infer(tc, client, protocol: str, history, top_k=None, dtype=None, timeout_s: float = 30.0,
          extra: tuple = ()) -> dict:
    """One request -> {"items", "scores", "skipped", "truncated", *extra} (raises tritonclient's
    InferenceServerException). ``extra``: more outputs of an original-id model ("index", "titles")."""
    names = ("items", "scores", "skipped", "truncated", *extra)
    outputs = [tc.InferRequestedOutput(n) for n in names]
    kw = {"client_timeout": timeout_s} if protocol == "grpc" else {}
    res = client.infer(MODEL_NAME, make_inputs(tc, history, top_k, dtype), outputs=outputs, **kw)
    return {n: res.as_numpy(n) for n in names}


def decode_ids(values, id_type: str) -> list:
    """A BYTES/INT64 ``items`` row as Python ids: str for string ids, else int."""
    return [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in values] if id_type == "str" else \
        [int(x) for x in values]


def server_options(url: str) -> dict:
    """The serving options the model was started with (engine dir, beam, limits), from its model config."""
    protocol, tc, client = connect(url)
    try:
        if protocol == "http":
            cfg = client.get_model_config(MODEL_NAME)
        else:
            cfg = client.get_model_config(MODEL_NAME, as_json=True)["config"]
    finally:
        client.close()
    return json.loads(cfg["parameters"][OPTIONS_PARAMETER]["string_value"])


def batch_stats(url: str) -> dict[int, int]:
    """Executions per batch size of ``earn_recommender`` (Triton's statistics extension)."""
    protocol, tc, client = connect(url)
    try:
        stats = client.get_inference_statistics(MODEL_NAME, **({"as_json": True} if protocol == "grpc" else {}))
    finally:
        client.close()
    out = {}
    for m in stats.get("model_stats", []):
        for b in m.get("batch_stats", []):
            out[int(b["batch_size"])] = out.get(int(b["batch_size"]), 0) + int(b["compute_infer"]["count"])
    return out


# -- load test -------------------------------------------------------------------------------------------------
@dataclass
class LoadRequest:
    kind: str  # "good" or one of BAD_KINDS
    history: np.ndarray
    top_k: int | None = None
    dtype: str | None = None


@dataclass
class LoadRecord:
    index: int
    kind: str
    latency_s: float
    outputs: dict | None = None
    error: str | None = None
    error_kind: str | None = None  # the kind the error text names (classify_error)


def classify_error(text: str) -> str:
    for kind, signs in ERROR_SIGNS.items():
        if any(s in text for s in signs):
            return kind
    if "timed out" in text.lower() or "deadline" in text.lower():
        return "timeout"
    return "other"


def sample_histories(engine_dir: str, n: int, seed: int = 0, max_len: int = 20, original: bool = False) -> list:
    """``n`` histories of 1..max_len random catalog items (the catalog of the engine being served); ``original``:
    spelled in the engine's original item ids (its ``item_ids.json``)."""
    from ..data.id_map import engine_id_map
    from ..engine.manifest import load_manifest
    from ..engine.trie_files import engine_trie

    man = load_manifest(engine_dir, verify=False)
    items = np.array(sorted(engine_trie(engine_dir, man).item_paths()), np.int64)
    rng = np.random.default_rng(seed)
    out = [rng.choice(items, size=int(rng.integers(1, max_len + 1))).tolist() for _ in range(n)]
    if original:
        id_map = engine_id_map(engine_dir, man, n_items=int(items[-1]) + 1)
        if id_map is None:
            raise ClientError(f"{engine_dir}: the server speaks original item ids but this engine has no id map "
                              "(item_ids.json); pass --engine with the engine the server was started from")
        out = [[id_map.original(i) for i in h] for h in out]
    return out


def make_load(histories: list, n: int, bad_fraction: float, opts: dict, seed: int = 0,
              top_k: int | None = None) -> list[LoadRequest]:
    """``n`` requests, ``round(n * bad_fraction)`` of them bad (the six kinds in turn), shuffled with ``seed``."""
    if not 0.0 <= bad_fraction <= 1.0:
        raise ClientError(f"--bad-fraction must be in [0, 1], got {bad_fraction}")
    if not histories:
        raise ClientError("no good histories to send")
    rng = np.random.default_rng(seed)
    n_bad = int(round(n * bad_fraction))
    kinds = ["good"] * (n - n_bad) + [BAD_KINDS[i % len(BAD_KINDS)] for i in range(n_bad)]
    rng.shuffle(kinds)
    beam, limit = int(opts["beam"]), int(opts["max_request_items"])
    id_type = opts.get("id_type", "")  # the ids the server takes: "" catalog indices, "int"/"str" original ids
    # an id no catalog holds: far outside any index range, or a spelling no log uses
    unknown = history_array(["earn-loadtest-unknown-item"] if id_type == "str" else [2**62], id_type)
    reqs = []
    for i, kind in enumerate(kinds):
        h = history_array(histories[i % len(histories)], id_type)
        if kind == "good":
            reqs.append(LoadRequest(kind, h, top_k))
        elif kind == "unknown_item":
            reqs.append(LoadRequest(kind, np.append(h, unknown)))
        elif kind == "empty_history":
            reqs.append(LoadRequest(kind, history_array([], id_type)))
        elif kind == "oversized_history":
            reqs.append(LoadRequest(kind, np.resize(h, limit + 1)))
        elif kind == "bad_dtype":
            reqs.append(LoadRequest(kind, np.zeros(len(h), np.float32), dtype="FP32"))
        elif kind == "bad_shape":
            reqs.append(LoadRequest(kind, h.reshape(1, 1, -1)))
        else:  # top_k_out_of_range
            reqs.append(LoadRequest(kind, h, top_k=beam + 1 if i % 2 else 0))
    return reqs


def run_load(url: str, reqs: list[LoadRequest], concurrency: int = 16, max_seconds: float = 300.0,
             request_timeout_s: float = 60.0) -> tuple[list[LoadRecord], float]:
    """Send ``reqs`` from ``concurrency`` threads (one client each) -> (records of the sent ones, wall seconds).
    Stops taking new requests after ``max_seconds``; every request has a client timeout."""
    require_loopback(url)
    if concurrency < 1:
        raise ClientError(f"--concurrency must be >= 1, got {concurrency}")
    lock = threading.Lock()
    nxt = iter(range(len(reqs)))
    records: list[LoadRecord] = []
    deadline = time.monotonic() + max_seconds
    errors: list[BaseException] = []

    def worker():
        try:
            protocol, tc, client = connect(url, timeout_s=request_timeout_s)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
            return
        try:
            while time.monotonic() < deadline:
                with lock:
                    i = next(nxt, None)
                if i is None:
                    return
                r = reqs[i]
                t0 = time.perf_counter()
                try:
                    out = infer(tc, client, protocol, r.history, r.top_k, r.dtype, timeout_s=request_timeout_s)
                    rec = LoadRecord(i, r.kind, time.perf_counter() - t0, outputs=out)
                except Exception as exc:  # noqa: BLE001 - tritonclient's InferenceServerException and socket errors
                    text = str(exc)
                    rec = LoadRecord(i, r.kind, time.perf_counter() - t0, error=text, error_kind=classify_error(text))
                with lock:
                    records.append(rec)
        finally:
            client.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, name=f"loadtest-{j}", daemon=True) for j in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max_seconds + request_timeout_s + 30)
    wall = time.perf_counter() - t0
    if errors:
        raise ClientError(f"could not connect to {url}: {errors[0]}")
    return sorted(records, key=lambda r: r.index), wall


@dataclass
class LoadSummary:
    sent: int
    planned: int
    wall_s: float
    good_ok: int = 0
    good_failed: int = 0
    bad_answered: int = 0  # bad requests answered with the error naming their problem
    bad_wrong: int = 0  # bad requests answered with success or with another error
    mismatches: int = 0  # good answers that differ from the in-process Recommender (verify)
    by_kind: dict = field(default_factory=dict)  # request kind -> {"sent", "ok", "errors": {error kind: n}}
    latency_ms: dict = field(default_factory=dict)  # good requests: p50/p95/p99/mean

    @property
    def clean(self) -> bool:
        return (self.sent == self.planned and self.good_failed == 0 and self.bad_wrong == 0
                and self.mismatches == 0)

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["good_per_s"] = self.good_ok / self.wall_s if self.wall_s else 0.0
        d["requests_per_s"] = self.sent / self.wall_s if self.wall_s else 0.0
        d["clean"] = self.clean
        return d


def summarize(records: list[LoadRecord], planned: int, wall_s: float) -> LoadSummary:
    s = LoadSummary(sent=len(records), planned=planned, wall_s=wall_s)
    lat = []
    for r in records:
        k = s.by_kind.setdefault(r.kind, {"sent": 0, "ok": 0, "errors": {}})
        k["sent"] += 1
        if r.error is None:
            k["ok"] += 1
        else:
            k["errors"][r.error_kind] = k["errors"].get(r.error_kind, 0) + 1
        if r.kind == "good":
            if r.error is None:
                s.good_ok += 1
                lat.append(r.latency_s)
            else:
                s.good_failed += 1
        elif r.error is not None and r.error_kind == r.kind:
            s.bad_answered += 1
        else:
            s.bad_wrong += 1
    if lat:
        ms = np.asarray(lat) * 1e3
        s.latency_ms = {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
                        "p99": float(np.percentile(ms, 99)), "mean": float(ms.mean())}
    return s


def verify(records: list[LoadRecord], reqs: list[LoadRequest], rec, beam: int, default_top_k: int,
           atol: float = 1e-5, id_type: str = "") -> list[int]:
    """Indices of good answers whose items differ from ``rec.recommend`` or whose scores differ by > ``atol``.
    ``id_type``: the ids the server speaks (``server_options()["id_type"]``; "" = catalog indices)."""
    good = [r for r in records if r.kind == "good" and r.error is None]
    if not good:
        return []
    res = rec.recommend([reqs[r.index].history.tolist() for r in good], top_k=beam, beam=beam,
                        ids="original" if id_type else "catalog")
    bad = []
    for row, r in enumerate(good):
        k = reqs[r.index].top_k or default_top_k
        items, scores = r.outputs["items"][0], r.outputs["scores"][0]
        if id_type:  # padding: "" (string ids) / -1 on the wire, None in the Recommender
            items = np.array([None if x in ("", -1) else x for x in decode_ids(items, id_type)], dtype=object)
        if (len(items) != k or not np.array_equal(items, res.items[row, :k])
                or not np.allclose(scores, res.scores[row, :k], atol=atol, rtol=0)):
            bad.append(r.index)
    return bad


# -- CLI ---------------------------------------------------------------------------------------------------------
def _server_reachable(command):
    """A command talking to ``args.url``: nothing listening there is a user error naming what to start."""
    @functools.wraps(command)
    def run(args, **kwargs):
        try:
            return command(args, **kwargs)
        except ConnectionError as exc:
            raise ClientError(f"cannot reach a server at {args.url} ({exc.strerror or exc}) — start one with "
                              "`earn-export serve ENGINE_DIR`, or check the URL and port") from exc

    return run


def served_histories(texts: list[list[str]], id_type: str, where: str) -> list:
    """``--history`` tokens as the server takes them: strings for string original ids, else integers (original
    integer ids or catalog indices; anything else is refused naming the token and what the server expects)."""
    if id_type == "str":
        return [list(h) for h in texts]
    out = []
    for hist in texts:
        bad = [x for x in hist if not x.lstrip("-").isdigit()]
        if bad:
            what = ("the engine's original item ids are integers" if id_type == "int" else
                    "the served model takes catalog indices (integers): the engine has no item id map, or the "
                    "server was started with --catalog-ids")
            raise ClientError(f"{where}: {what}, got {bad[0]!r} — see docs/own-ids.md")
        out.append([int(x) for x in hist])
    return out


@_server_reachable
def run_query(args) -> int:
    from tritonclient.utils import InferenceServerException

    opts = server_options(args.url)
    id_type = opts.get("id_type", "")  # "" catalog indices, "int"/"str" the catalog's original ids
    extra = ("index", "titles") if id_type and opts.get("titles") else ("index",) if id_type else ()
    histories = served_histories(args.history, id_type, "query --history")
    protocol, tc, client = connect(args.url, timeout_s=args.timeout)
    code = 0
    try:
        for hist in histories:
            try:
                out = infer(tc, client, protocol, history_array(hist, id_type), args.top_k, timeout_s=args.timeout,
                            extra=extra)
            except InferenceServerException as exc:
                print(json.dumps({"history": hist, "error": str(exc)}, ensure_ascii=False))
                code = 1
                continue
            found = np.flatnonzero(out["index"][0] >= 0) if id_type else np.flatnonzero(out["items"][0] >= 0)
            items = [decode_ids(out["items"][0], id_type)[j] for j in found] if id_type else \
                [int(out["items"][0][j]) for j in found]
            row = {"history": hist, "items": items,
                   "scores": [round(float(out["scores"][0][j]), 4) for j in found]}
            if "titles" in out:
                row["titles"] = [t.decode("utf-8") or None for t in out["titles"][0][found]]
            if out["skipped"][0, 0]:
                row["skipped"] = int(out["skipped"][0, 0])
            if out["truncated"][0, 0]:
                row["truncated"] = int(out["truncated"][0, 0])
            print(json.dumps(row, ensure_ascii=False))
    finally:
        client.close()
    return code


@_server_reachable
def run_loadtest(args, held_load=None) -> int:
    """``loadtest``: closed-loop requests (``--requests``), or with ``--duration`` the open-loop held load of
    ``held_load.py``, which passes its ``(run, print)`` pair here (it imports this module, not the reverse)."""
    require_loopback(args.url)
    if args.requests < 1:
        raise ClientError(f"--requests must be >= 1, got {args.requests} — pass a positive count")
    opts = server_options(args.url)
    engine = args.engine or opts["engine_dir"]
    if (not args.histories_file or args.check_answers) and not (Path(engine) / "manifest.json").is_file():
        raise ClientError(f"the server's engine directory {engine!r} is not readable here; pass --engine DIR (the "
                          "engine the repository was written from), or --histories-file FILE without "
                          "--check-answers")
    id_type = opts.get("id_type", "")  # the server's ids: original ids (histories sampled in them) or indices
    if args.histories_file:
        lines = [(f"{args.histories_file}:{n}", line) for n, line in
                 enumerate(Path(args.histories_file).read_text().splitlines(), 1) if line.strip()]
        histories = [served_histories([line.replace(",", " ").split()], id_type, where)[0] for where, line in lines]
    else:
        histories = sample_histories(engine, min(args.requests, 5000), seed=args.seed, original=bool(id_type))
    if getattr(args, "duration", None):  # open loop at a fixed rate (held_load.py)
        run_held_load, print_held = held_load
        held = run_held_load(args.url, histories, args.rate, args.duration, top_k=args.top_k,
                             senders=args.concurrency, timeout_s=args.timeout, id_type=id_type)
        print_held(held)
        if args.out:
            with open(args.out, "w") as f:
                json.dump(held, f, indent=2)
        return 0 if not held["errors"] else 1
    reqs = make_load(histories, args.requests, args.bad_fraction, opts, seed=args.seed, top_k=args.top_k)
    print(f"loadtest {args.url}: {args.requests} requests ({args.bad_fraction:.0%} bad), concurrency "
          f"{args.concurrency}, at most {args.max_seconds:.0f} s", flush=True)
    records, wall = run_load(args.url, reqs, args.concurrency, args.max_seconds, args.timeout)
    summary = summarize(records, len(reqs), wall)
    if args.check_answers:
        from ..runtime import Recommender

        backend = opts.get("backend", "onnxruntime")
        rec = Recommender.load(engine, backend="onnxruntime" if backend == "bls" else backend)
        summary.mismatches = len(verify(records, reqs, rec, int(opts["beam"]), int(opts["default_top_k"]),
                                        id_type=id_type))
    d = summary.to_dict()
    lat = summary.latency_ms
    print(f"sent {summary.sent}/{summary.planned} in {wall:.1f} s: {d['requests_per_s']:.1f} requests/s, "
          f"{d['good_per_s']:.1f} good users/s")
    if lat:
        print(f"latency of good requests (ms): p50 {lat['p50']:.1f}  p95 {lat['p95']:.1f}  p99 {lat['p99']:.1f}  "
              f"mean {lat['mean']:.1f}")
    print(f"good: {summary.good_ok} answered, {summary.good_failed} failed"
          + (f", {summary.mismatches} differ from in-process" if args.check_answers else ""))
    print(f"bad: {summary.bad_answered} answered with their error, {summary.bad_wrong} not")
    for kind, k in sorted(summary.by_kind.items()):
        errs = ", ".join(f"{e} {n}" for e, n in sorted(k["errors"].items())) or "none"
        print(f"  {kind:20s} sent {k['sent']:5d}  ok {k['ok']:5d}  errors: {errs}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(d, f, indent=2)
    return 0 if summary.clean else 1
