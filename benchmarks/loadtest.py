"""``python benchmarks/loadtest.py URL``: bounded load test of a local `earn-export serve` (latency, errors by kind).

Closed loop (default): ``--concurrency`` threads, one client each, send ``--requests`` requests that mix good
ones (histories of catalog items, spelled in original ids when the server speaks them) with bad ones of six
kinds. A bad request counts as answered when the server's error names its problem (:data:`ERROR_SIGNS`); a good
one when it returns items and scores (with ``--check-answers``: the in-process ``Recommender``'s). Bounded in
requests and wall time, and aimed only at this machine (loopback addresses).

Held load (``--duration S --rate R``): the closed loop sends the next request when the previous one returns, so a
slow server is offered less load and its latency looks better than a user would see ("coordinated omission").
Here request ``i`` is due at ``t0 + i / R`` whatever happened before and its latency counts from then. The
summary adds the server's resident memory over time (the ``tritonserver`` listening on the URL's port plus its
model-instance children): flat RSS over minutes means no leak.

The serving tests and the other serving benchmarks drive their servers with these functions.
"""

from __future__ import annotations

import concurrent.futures as cf
import ipaddress
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from earn_export.serve.client import (ClientError, admin_json, connect, decode_ids, history_array, infer,
                                      server_options, server_reachable, served_histories)

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


def parse_args(argv=None):
    from earn_export import cli_args as ca
    from earn_export.cli import Parser

    p = Parser(prog="python benchmarks/loadtest.py", description=__doc__.splitlines()[0])
    p.add_argument("url", help="server URL on this machine: http://127.0.0.1:PORT or grpc://127.0.0.1:PORT")
    p.add_argument("--concurrency", type=ca.positive_int, default=16, help="concurrent clients (default 16)")
    p.add_argument("--requests", type=ca.positive_int, default=2000, help="requests to send in total (default 2000)")
    p.add_argument("--bad-fraction", type=ca.fraction, default=0.0,
                   help="fraction of bad requests (unknown ids, empty/oversized history, wrong dtype/shape, "
                        "top_k out of range), default 0")
    p.add_argument("--max-seconds", type=ca.positive_float, default=300.0,
                   help="stop sending new requests after this many seconds (default 300)")
    p.add_argument("--timeout", type=ca.positive_float, default=60.0, help="seconds per request (default 60)")
    ca.add_histories_file(p, file_format="one history per line (item ids as the server takes them: original ids "
                                         "when it speaks them); default: random catalog items of the served engine")
    p.add_argument("--top-k", type=ca.positive_int, default=None,
                   help="items per user; at most --beam (sent with good requests; default: the server's)")
    p.add_argument("--check-answers", action="store_true",
                   help="after the run, compare every good answer with the in-process Recommender on the served "
                        "engine")
    p.add_argument("--engine", default=None,
                   help="engine directory for sampling histories and --check-answers (default: the engine the server "
                        "reports; give it for a triton-repo server)")
    p.add_argument("--seed", type=ca.nonneg_int, default=0, help="random seed of histories and request order (default 0)")
    ca.add_out(p, "also write the summary as JSON to this file")
    p.add_argument("--duration", type=ca.positive_float, default=None,
                   help="hold the load for this many seconds at --rate requests/s (open loop; --concurrency is then "
                        "the number of senders), report latency percentiles, errors by kind and server RSS over time")
    p.add_argument("--rate", type=ca.positive_float, default=10.0, help="requests/s with --duration (default 10)")
    return p.parse_args(argv)


def require_loopback(url: str) -> None:
    host = urlparse(url if "://" in url else "http://" + url).hostname or ""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise ClientError(f"loadtest only targets a server on this machine (127.0.0.1, localhost or ::1), got host "
                          f"{host!r}; run the load test on the server's own machine")


def batch_stats(url: str) -> dict[int, int]:
    """Executions per batch size of ``earn_recommender`` (Triton's statistics extension)."""
    out = {}
    for m in admin_json(url, "get_inference_statistics").get("model_stats", []):
        for b in m.get("batch_stats", []):
            out[int(b["batch_size"])] = out.get(int(b["batch_size"]), 0) + int(b["compute_infer"]["count"])
    return out


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
    return "timeout" if "timed out" in text.lower() or "deadline" in text.lower() else "other"


def sample_histories(engine_dir: str, n: int, seed: int = 0, max_len: int = 20, original: bool = False) -> list:
    """``n`` histories of 1..max_len random catalog items of the served engine; ``original``: spelled in the
    engine's original item ids (its ``item_ids.json``)."""
    from earn_export.data.id_map import engine_id_map
    from earn_export.engine.manifest import load_manifest
    from earn_export.engine.trie_files import engine_trie

    man = load_manifest(engine_dir, verify=False)
    items = np.array(sorted(engine_trie(engine_dir, man).item_paths()), np.int64)
    rng = np.random.default_rng(seed)
    out = [rng.choice(items, size=int(rng.integers(1, max_len + 1))).tolist() for _ in range(n)]
    if not original:
        return out
    id_map = engine_id_map(engine_dir, man, n_items=int(items[-1]) + 1)
    if id_map is None:
        raise ClientError(f"{engine_dir}: the server speaks original item ids but this engine has no id map "
                          "(item_ids.json); pass --engine with the engine the server was started from")
    return [[id_map.original(i) for i in h] for h in out]


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
    make = {"good": lambda h, i: LoadRequest("good", h, top_k),
            "unknown_item": lambda h, i: LoadRequest("unknown_item", np.append(h, unknown)),
            "empty_history": lambda h, i: LoadRequest("empty_history", history_array([], id_type)),
            "oversized_history": lambda h, i: LoadRequest("oversized_history", np.resize(h, limit + 1)),
            "bad_dtype": lambda h, i: LoadRequest("bad_dtype", np.zeros(len(h), np.float32), dtype="FP32"),
            "bad_shape": lambda h, i: LoadRequest("bad_shape", h.reshape(1, 1, -1)),
            "top_k_out_of_range": lambda h, i: LoadRequest("top_k_out_of_range", h, top_k=beam + 1 if i % 2 else 0)}
    return [make[kind](history_array(histories[i % len(histories)], id_type), i) for i, kind in enumerate(kinds)]


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


def percentiles_ms(seconds: list) -> dict:
    """p50/p95/p99/mean in ms ({} when nothing was answered)."""
    if not seconds:
        return {}
    ms = np.asarray(seconds) * 1e3
    return {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
            "p99": float(np.percentile(ms, 99)), "mean": float(ms.mean())}


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
        per_s = (lambda n: n / self.wall_s if self.wall_s else 0.0)
        return {**self.__dict__, "good_per_s": per_s(self.good_ok), "requests_per_s": per_s(self.sent),
                "clean": self.clean}


def summarize(records: list[LoadRecord], planned: int, wall_s: float) -> LoadSummary:
    s = LoadSummary(sent=len(records), planned=planned, wall_s=wall_s)
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
            else:
                s.good_failed += 1
        elif r.error is not None and r.error_kind == r.kind:
            s.bad_answered += 1
        else:
            s.bad_wrong += 1
    s.latency_ms = percentiles_ms([r.latency_s for r in records if r.kind == "good" and r.error is None])
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


# -- held load ---------------------------------------------------------------------------------------------------
def _listening_pid(port: int) -> int | None:
    """The pid of the local process listening on TCP ``port`` (Linux /proc), None when not found."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if int(f[1].rsplit(":", 1)[1], 16) == port and f[3] == "0A":  # 0A: LISTEN
                inodes.add(f[9])
    if not inodes:
        return None
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            for fd in (d / "fd").iterdir():
                link = str(fd.readlink())
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return int(d.name)
        except OSError:
            continue
    return None


def _rss_mb(pid: int) -> float | None:
    """Resident memory of ``pid`` and its direct children, in MiB (None when the process is gone)."""
    def one(p):
        try:
            lines = Path(f"/proc/{p}/status").read_text().splitlines()
        except OSError:
            return None
        return next((int(line.split()[1]) / 1024 for line in lines if line.startswith("VmRSS:")), 0.0)

    def parent(d):
        try:
            text = (d / "stat").read_text()
        except OSError:
            return None
        return int(text[text.rindex(")") + 2:].split()[1])

    top = one(pid)
    if top is None:
        return None
    return top + sum(one(int(d.name)) or 0.0 for d in Path("/proc").iterdir() if d.name.isdigit() and parent(d) == pid)


def run_held_load(url: str, histories: list, rate: float, duration_s: float, top_k: int | None = None,
                  senders: int = 64, timeout_s: float = 30.0, rss_every_s: float = 5.0, id_type: str = "") -> dict:
    """Send ``rate`` requests/s for ``duration_s`` (histories in turn) -> summary dict (see the module doc).
    ``id_type``: the ids the server takes ("" catalog indices, "int"/"str" original ids)."""
    require_loopback(url)
    if rate <= 0 or duration_s <= 0:
        raise ClientError(f"--rate and --duration must be > 0, got {rate} and {duration_s}")
    server_pid = _listening_pid(urlparse(url if "://" in url else "http://" + url).port)
    local = threading.local()
    lat, errors = [], {}
    lock = threading.Lock()

    def send(i: int, due: float):
        if not hasattr(local, "conn"):
            local.conn = connect(url, timeout_s)
        proto, tc, client = local.conn
        err = None
        try:
            infer(tc, client, proto, history_array(histories[i % len(histories)], id_type), top_k, timeout_s=timeout_s)
        except Exception as exc:  # noqa: BLE001 - tritonclient errors and socket errors are counted by kind
            err = classify_error(str(exc))
        end = time.perf_counter()
        with lock:
            if err is None:
                lat.append(end - due)
            else:
                errors[err] = errors.get(err, 0) + 1

    rss, stop = [], threading.Event()

    def sample_rss(at):
        if server_pid and (mb := _rss_mb(server_pid)) is not None:
            rss.append((round(at, 1), round(mb, 1)))

    def sampler():
        while not stop.is_set():
            sample_rss(time.perf_counter() - t0)
            stop.wait(rss_every_s)

    n = int(rate * duration_s)
    t0 = time.perf_counter()
    watcher = threading.Thread(target=sampler, daemon=True)
    watcher.start()
    late = 0
    with cf.ThreadPoolExecutor(max_workers=senders) as pool:
        for i in range(n):
            due = t0 + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            elif wait < -0.01:
                late += 1
            pool.submit(send, i, due)
    wall = time.perf_counter() - t0
    stop.set()
    watcher.join(timeout=rss_every_s + 5)
    sample_rss(wall)
    return {"planned_rate": rate, "duration_s": duration_s, "sent": n, "ok": len(lat),
            "achieved_ok_per_s": len(lat) / wall if wall else 0.0, "wall_s": wall,
            "latency_ms": percentiles_ms(lat), "errors": errors,
            "late_sends": late, "server_pid": server_pid, "rss_mb": rss,
            "rss_start_end_mb": (rss[0][1], rss[-1][1]) if rss else None}


def print_held(s: dict) -> None:
    lat = ", ".join(f"{k} {v:.1f} ms" for k, v in s["latency_ms"].items()) or "none answered"
    print(f"held {s['planned_rate']:.1f} req/s for {s['duration_s']:.0f} s: {s['ok']} of {s['sent']} answered "
          f"({s['achieved_ok_per_s']:.1f}/s), latency {lat}; errors {s['errors'] or 'none'}; "
          f"{s['late_sends']} sends late by > 10 ms")
    if s["rss_start_end_mb"]:
        a, b = s["rss_start_end_mb"]
        print(f"server RSS (pid {s['server_pid']} + instances): {a:.0f} MiB at start, {b:.0f} MiB at end, "
              f"{len(s['rss_mb'])} samples")
    else:
        print("server RSS: not sampled (no local process found listening on the URL's port)")


def print_summary(s: LoadSummary, checked: bool) -> None:
    d, lat = s.to_dict(), s.latency_ms
    print(f"sent {s.sent}/{s.planned} in {s.wall_s:.1f} s: {d['requests_per_s']:.1f} requests/s, "
          f"{d['good_per_s']:.1f} good users/s")
    if lat:
        print(f"latency of good requests (ms): p50 {lat['p50']:.1f}  p95 {lat['p95']:.1f}  p99 {lat['p99']:.1f}  "
              f"mean {lat['mean']:.1f}")
    print(f"good: {s.good_ok} answered, {s.good_failed} failed"
          + (f", {s.mismatches} differ from in-process" if checked else ""))
    print(f"bad: {s.bad_answered} answered with their error, {s.bad_wrong} not")
    for kind, k in sorted(s.by_kind.items()):
        errs = ", ".join(f"{e} {n}" for e, n in sorted(k["errors"].items())) or "none"
        print(f"  {kind:20s} sent {k['sent']:5d}  ok {k['ok']:5d}  errors: {errs}")


@server_reachable
def run_loadtest(args) -> int:
    """Closed-loop requests (``--requests``), or with ``--duration`` the open-loop held load."""
    require_loopback(args.url)
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
    if args.duration:  # open loop at a fixed rate
        d = run_held_load(args.url, histories, args.rate, args.duration, top_k=args.top_k,
                          senders=args.concurrency, timeout_s=args.timeout, id_type=id_type)
        print_held(d)
        ok = not d["errors"]
    else:
        reqs = make_load(histories, args.requests, args.bad_fraction, opts, seed=args.seed, top_k=args.top_k)
        print(f"loadtest {args.url}: {args.requests} requests ({args.bad_fraction:.0%} bad), concurrency "
              f"{args.concurrency}, at most {args.max_seconds:.0f} s", flush=True)
        records, wall = run_load(args.url, reqs, args.concurrency, args.max_seconds, args.timeout)
        summary = summarize(records, len(reqs), wall)
        if args.check_answers:
            from earn_export.runtime import Recommender

            backend = opts.get("backend", "onnxruntime")
            rec = Recommender.load(engine, backend="onnxruntime" if backend == "bls" else backend)
            summary.mismatches = len(verify(records, reqs, rec, int(opts["beam"]), int(opts["default_top_k"]),
                                            id_type=id_type))
        print_summary(summary, args.check_answers)
        d, ok = summary.to_dict(), summary.clean
    if args.out:
        Path(args.out).write_text(json.dumps(d, indent=2))
    return 0 if ok else 1


def main(argv=None) -> int:
    from earn_export.cli_args import require_extras

    args = parse_args(argv)
    require_extras("tritonclient", what="python benchmarks/loadtest.py")
    return run_loadtest(args)


if __name__ == "__main__":
    from earn_export.cli import run_script

    raise SystemExit(run_script(main))
