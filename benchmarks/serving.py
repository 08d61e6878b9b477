"""``python benchmarks/serving.py ENGINE``: served throughput and latency vs in-process ``recommend``, and Ray batch scoring.

On one engine and one set of histories, in one run (so the ratios share the machine's state):
1. in-process: ``Recommender.recommend`` over all users in batches of ``--max-batch`` -> users/s (the target's
   denominator), plus per-call latency at batch 1;
2. served: ``earn-export serve`` on 127.0.0.1, good requests only, at each of ``--concurrencies`` -> users/s and
   p50/p95/p99 latency per request, every answer checked against the in-process results;
3. Ray: ``earn-export batch`` on a local Ray over the same users -> users/s (``ray.init`` excluded, actor start-up
   included).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path


def parse_args(argv=None):
    from earn_export import cli_args as ca
    from earn_export.cli import Parser

    p = Parser(prog="python benchmarks/serving.py", description=__doc__.splitlines()[0])
    p.add_argument("engine_dir", type=ca.existing_dir, help="exported engine directory")
    ca.add_users(p, 1024, "distinct users (histories) per measurement")
    p.add_argument("--concurrencies", type=ca.int_list, default=(1, 4, 16), help="client concurrencies, e.g. '1,4,16'")
    p.add_argument("--requests", type=ca.positive_int, default=None,
                   help="requests per concurrency level (default --users; concurrency 1 sends at most 256)")
    ca.add_data_source(p, default="../shared/data/amazon-beauty when present, else random catalog items", csv=False)
    p.add_argument("--max-batch", type=ca.positive_int, default=32, help="in-process batch and server max batch")
    p.add_argument("--max-queue-delay-us", type=ca.nonneg_int, default=2000, help="server batcher delay")
    p.add_argument("--instances", type=ca.positive_int, default=1, help="server model instances")
    ca.add_threads(p, note="per server instance (default CPU cores / instances)")
    ca.add_search(p, top_k=20, beam=20)
    p.add_argument("--no-ray", action="store_true", help="skip the Ray batch measurement")
    p.add_argument("--ray-actors", type=ca.positive_int, default=None, help="Ray actors (default: CPU cores, 1 thread each)")
    ca.add_out(p, "writes bench-serve.json here", default="results/bench-serve")
    return p.parse_args(argv)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_histories(engine_dir, n: int, data: str | None, known) -> tuple[list, str]:
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon-beauty"
    data_dir = Path(data) if data else default
    if (data_dir / "sequential_train.txt").is_file():
        from earn_export.data.sequences import eval_examples, load_sequential

        hs = eval_examples(load_sequential(data_dir), "test", max_history=20).histories
        if all(i in known for h in hs for i in h):
            hs = (hs * (n // len(hs) + 1))[:n]
            return hs, f"{data_dir.name} test histories"
    from loadtest import sample_histories  # benchmarks/loadtest.py (main puts this folder on sys.path)

    return sample_histories(str(engine_dir), n, seed=0), "random catalog histories (1-20 items)"


def main(argv=None) -> int:
    import numpy as np

    from earn_export.runtime import Recommender
    from earn_export.serve.served_model import ServeOptions
    from earn_export.serve.server import start_server

    args = parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import loadtest as sc  # benchmarks/loadtest.py
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_load = time.perf_counter()
    rec = Recommender.load(args.engine_dir, batch_size=args.max_batch)
    load_s = time.perf_counter() - t_load
    users, source = load_histories(args.engine_dir, args.users, args.data, rec.known_items)
    k, beam = args.top_k, args.beam
    cores = os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"engine {args.engine_dir}; {len(users)} users ({source}); top_k {k}, beam {beam}; {cores} CPU cores, "
          f"load average {load:.1f} at start", flush=True)

    # 1. in-process
    rec.recommend(users[: args.max_batch], top_k=k, beam=beam)  # warm-up
    t0 = time.perf_counter()
    ref = rec.recommend(users, top_k=k, beam=beam)
    inproc_s = time.perf_counter() - t0
    single = []
    for h in users[:64]:
        t1 = time.perf_counter()
        rec.recommend([h], top_k=k, beam=beam)
        single.append(time.perf_counter() - t1)
    inproc_e2e = len(users) / (inproc_s + load_s)  # what a one-process job pays: engine load + scoring
    result = {"engine": str(args.engine_dir), "users": len(users), "histories": source, "cpu_cores": cores,
              "load_average_start": load,
              "in_process": {"users_per_s": len(users) / inproc_s, "batch": args.max_batch, "load_s": load_s,
                             "users_per_s_with_load": inproc_e2e,
                             "batch1_latency_ms_p50": float(np.median(single) * 1e3)}}
    print(f"in-process recommend, batches of {args.max_batch}: {result['in_process']['users_per_s']:.1f} users/s "
          f"({inproc_e2e:.1f} users/s with the {load_s:.1f} s engine load); "
          f"batch 1: p50 {result['in_process']['batch1_latency_ms_p50']:.1f} ms", flush=True)
    del rec

    # 2. served
    opts = ServeOptions(engine_dir=str(args.engine_dir), instances=args.instances, threads=args.threads or 0,
                        max_batch=args.max_batch, max_queue_delay_us=args.max_queue_delay_us, beam=beam,
                        default_top_k=k).validate()
    srv = start_server(opts, http_port=_free_port(), grpc_port=_free_port())
    served = []
    try:
        url = f"grpc://{srv.grpc_url}"
        warm = [sc.LoadRequest("good", np.asarray(h, np.int64), top_k=k) for h in users[:64]]
        sc.run_load(url, warm, concurrency=8)
        for c in args.concurrencies:
            n = args.requests or len(users)
            n = min(n, 256) if c == 1 else n
            reqs = [sc.LoadRequest("good", np.asarray(users[i % len(users)], np.int64), top_k=k) for i in range(n)]
            records, wall = sc.run_load(url, reqs, concurrency=c, max_seconds=900)
            s = sc.summarize(records, n, wall)
            wrong = sum(1 for r in records if r.error is None and not np.array_equal(
                r.outputs["items"][0], ref.items[r.index % len(users)]))
            row = {"concurrency": c, "requests": n, "users_per_s": s.good_ok / wall, **s.latency_ms,
                   "failed": s.good_failed, "items_differ": wrong,
                   "vs_in_process": (s.good_ok / wall) / result["in_process"]["users_per_s"]}
            served.append(row)
            print(f"served, concurrency {c:3d}: {row['users_per_s']:.1f} users/s ({row['vs_in_process']:.0%} of "
                  f"in-process), latency p50 {row.get('p50', float('nan')):.1f} ms p95 {row.get('p95', float('nan')):.1f}"
                  f" ms p99 {row.get('p99', float('nan')):.1f} ms; {s.good_failed} failed, {wrong} differ", flush=True)
        result["batch_sizes_seen"] = sc.batch_stats(url)
    finally:
        srv.stop()
    result["served"] = served
    result["server"] = {"instances": args.instances, "threads": args.threads or 0, "max_batch": args.max_batch,
                        "max_queue_delay_us": args.max_queue_delay_us, "protocol": "grpc"}

    # 3. Ray
    if not args.no_ray:
        import tempfile

        from earn_export.serve.batch import init_ray, run_batch, write_users

        ray = init_ray(num_cpus=cores, object_store_mb=256)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                src = write_users(Path(tmp) / "users.parquet", users)
                stats = run_batch(args.engine_dir, src, Path(tmp) / "recs.parquet", actors=args.ray_actors,
                                  batch_size=args.max_batch, top_k=k, beam=beam, progress=False)
        finally:
            ray.shutdown()
        stats["vs_in_process"] = stats["users_per_s"] / result["in_process"]["users_per_s"]
        result["ray"] = {key: stats[key] for key in ("users", "seconds", "users_per_s", "first_rows_s",
                                                     "actors", "vs_in_process")}
        print(f"Ray batch ({stats['actors']} actors): {stats['users_per_s']:.1f} users/s end to end "
              f"({stats['vs_in_process']:.0%} of in-process recommend, {stats['users_per_s'] / inproc_e2e:.0%} of "
              f"in-process load + recommend); first rows after {stats['first_rows_s']:.1f} s (actors load their "
              "engines first)", flush=True)

    at16 = next((r for r in served if r["concurrency"] == 16), None)
    if at16:
        verdict = "met" if at16["vs_in_process"] >= 0.8 else "NOT met"
        print(f"target served@16 >= 80% of in-process batched throughput: {at16['vs_in_process']:.0%} ({verdict})")
    (out / "bench-serve.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out / 'bench-serve.json'}")
    return 0


if __name__ == "__main__":
    from earn_export.cli import run_script

    raise SystemExit(run_script(main))
