"""``earn-export loadtest --duration S --rate R``: load held at a fixed request rate (open loop) for minutes.

Why: the closed-loop ``loadtest`` sends the next request when the previous one returns, so a slow server is
offered less load and its latency looks better than a user would see ("coordinated omission"). Here request
``i`` is due at ``t0 + i / R`` whatever happened before; its latency is measured from that due time, so queueing
in the client (all senders busy) counts too. The summary gives the achieved rate, p50/p95/p99 latency, errors by
kind (``classify_error``; ``busy`` = refused by the server's bounded queue), and the server's resident memory
(the ``tritonserver`` process listening on the URL's port plus its model-instance children) sampled over time:
flat RSS over minutes means no leak.

Bounded: sending stops at ``duration``; requests still running then get ``timeout_s`` to finish.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from . import client as sc


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
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
        return 0.0

    top = one(pid)
    if top is None:
        return None
    total = top
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                text = (d / "stat").read_text()
            except OSError:
                continue
            if int(text[text.rindex(")") + 2:].split()[1]) == pid:
                total += one(int(d.name)) or 0.0
    return total


def run_held_load(url: str, histories: list, rate: float, duration_s: float, top_k: int | None = None,
                  senders: int = 64, timeout_s: float = 30.0, rss_every_s: float = 5.0, id_type: str = "") -> dict:
    """Send ``rate`` requests/s for ``duration_s`` (histories in turn) -> summary dict (see the module doc).
    ``id_type``: the ids the server takes ("" catalog indices, "int"/"str" original ids)."""
    sc.require_loopback(url)
    if rate <= 0 or duration_s <= 0:
        raise sc.ClientError(f"--rate and --duration must be > 0, got {rate} and {duration_s}")
    port = urlparse(url if "://" in url else "http://" + url).port
    server_pid = _listening_pid(port)
    local = threading.local()
    lat, errors, done_at = [], {}, []
    lock = threading.Lock()

    def send(i: int, due: float):
        if not hasattr(local, "conn"):
            local.conn = sc.connect(url, timeout_s)
        proto, tc, client = local.conn
        err = None
        try:
            sc.infer(tc, client, proto, sc.history_array(histories[i % len(histories)], id_type), top_k,
                     timeout_s=timeout_s)
        except Exception as exc:  # noqa: BLE001 - tritonclient errors and socket errors are counted by kind
            err = sc.classify_error(str(exc)) or "other"
        end = time.perf_counter()
        with lock:
            done_at.append(end)
            if err is None:
                lat.append(end - due)
            else:
                errors[err] = errors.get(err, 0) + 1

    rss, stop = [], threading.Event()

    def sample(t0):
        while server_pid and not stop.is_set():
            mb = _rss_mb(server_pid)
            if mb is not None:
                rss.append((round(time.perf_counter() - t0, 1), round(mb, 1)))
            stop.wait(rss_every_s)

    n = int(rate * duration_s)
    t0 = time.perf_counter()
    sampler = threading.Thread(target=sample, args=(t0,), daemon=True)
    sampler.start()
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
        pool.shutdown(wait=True, cancel_futures=False)
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join(timeout=rss_every_s + 5)
    if server_pid and (mb := _rss_mb(server_pid)) is not None:
        rss.append((round(wall, 1), round(mb, 1)))
    ms = np.asarray(lat) * 1e3
    pct = {f"p{q}": float(np.percentile(ms, q)) for q in (50, 95, 99)} if len(ms) else {}
    return {"planned_rate": rate, "duration_s": duration_s, "sent": n, "ok": len(lat),
            "achieved_ok_per_s": len(lat) / wall if wall else 0.0, "wall_s": wall, "latency_ms": pct,
            "errors": errors, "late_sends": late, "server_pid": server_pid, "rss_mb": rss,
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


def run_loadtest_cli(args) -> int:
    """The ``loadtest`` command: :func:`client.run_loadtest` with this module's held load for ``--duration``."""
    return sc.run_loadtest(args, held_load=(run_held_load, print_held))
