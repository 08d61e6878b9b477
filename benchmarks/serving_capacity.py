"""``python benchmarks/serving_capacity.py ENGINE``: served capacity with `serve`'s defaults vs in-process, then a held load.

With the defaults `earn-export serve` chooses on this machine (instances x threads from the CPU cores, dynamic
batching on), in one run so that the ratios share the machine's state:
1. in-process: one ``Recommender`` (ONNX Runtime's default threads) over all users in batches of ``--max-batch``
   -> users/s, the denominator;
2. served: closed-loop gRPC clients at each of ``--concurrencies`` (default 1, 4, 16, 64) -> users/s, its ratio to
   in-process, p50/p95/p99; every answer is checked against the in-process results;
3. with ``--duration S``: ``--hold-fraction`` of the best served users/s held open loop for S seconds
   (``loadtest.run_held_load``) -> achieved rate, p50/p95/p99, errors by kind, server RSS at start and end.

Writes ``serving-capacity.json`` under ``--out``. The issue's target: served users/s at concurrency 16 >= 90% of
in-process.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def parse_args(argv=None):
    from earn_export import cli_args as ca
    from earn_export.cli import Parser

    p = Parser(prog="python benchmarks/serving_capacity.py", description=__doc__.splitlines()[0])
    p.add_argument("engine_dir", type=ca.existing_dir, help="exported engine directory")
    ca.add_users(p, 512, "distinct users (histories) per measurement")
    p.add_argument("--concurrencies", type=ca.int_list, default=(1, 4, 16, 64),
                   help="client concurrencies (default '1,4,16,64')")
    p.add_argument("--requests", type=ca.positive_int, default=None,
                   help="requests per concurrency level (default --users; concurrency 1 sends at most 256)")
    ca.add_data_source(p, default="../shared/data/amazon-beauty when present, else random catalog items", csv=False)
    p.add_argument("--max-batch", type=ca.positive_int, default=32, help="in-process batch and server max batch "
                                                                          "(default 32, serve's default)")
    p.add_argument("--instances", type=ca.positive_int, default=None,
                   help="server model instances (default: serve's choice from the CPU cores)")
    ca.add_threads(p, note="per server instance (default: serve's choice from the CPU cores)")
    ca.add_search(p, top_k=10, beam=20)
    p.add_argument("--duration", type=ca.positive_float, default=None,
                   help="then hold --hold-fraction of the measured capacity for this many seconds (default: no "
                        "held load)")
    p.add_argument("--hold-fraction", type=ca.fraction, default=0.7,
                   help="held rate as a fraction of the best served users/s (default 0.7)")
    ca.add_out(p, "writes serving-capacity.json here", default="results/serving-capacity")
    return p.parse_args(argv)


def main(argv=None) -> int:
    import numpy as np

    from earn_export.runtime import Recommender
    from earn_export.runtime.cpu_workers import cpu_cores
    from earn_export.serve.served_model import ServeOptions, instances_and_threads
    from earn_export.serve.server import start_server

    args = parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import loadtest as sc  # benchmarks/loadtest.py
    from serving import _free_port, load_histories  # the same histories and ports as benchmarks/serving.py

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rec = Recommender.load(args.engine_dir, batch_size=args.max_batch)
    users, source = load_histories(args.engine_dir, args.users, args.data, rec.known_items)
    k, beam = args.top_k, args.beam
    cores = cpu_cores()
    instances, threads = instances_and_threads(cores, args.instances or 0, args.threads or 0)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"engine {args.engine_dir}; {len(users)} users ({source}); top_k {k}, beam {beam}; {cores} CPU cores, "
          f"load average {load:.1f}; server {instances} instance(s) x {threads} thread(s)"
          f"{'' if args.instances and args.threads else ' (serve defaults)'}, max batch {args.max_batch}", flush=True)

    rec.recommend(users[: args.max_batch], top_k=k, beam=beam)  # warm-up
    t0 = time.perf_counter()
    ref = rec.recommend(users, top_k=k, beam=beam)
    inproc = len(users) / (time.perf_counter() - t0)
    del rec
    print(f"in-process recommend, batches of {args.max_batch}: {inproc:.1f} users/s", flush=True)
    result = {"engine": str(args.engine_dir), "users": len(users), "histories": source, "cpu_cores": cores,
              "load_average_start": load, "top_k": k, "beam": beam,
              "server": {"instances": instances, "threads": threads, "max_batch": args.max_batch,
                         "defaults": not (args.instances or args.threads), "protocol": "grpc"},
              "in_process_users_per_s": inproc}

    opts = ServeOptions(engine_dir=str(args.engine_dir), instances=instances, threads=threads,
                        max_batch=args.max_batch, beam=beam, default_top_k=k).validate()
    srv = start_server(opts, http_port=_free_port(), grpc_port=_free_port())
    served = []
    try:
        url = f"grpc://{srv.grpc_url}"
        sc.run_load(url, [sc.LoadRequest("good", np.asarray(h, np.int64)) for h in users[:64]], concurrency=8)
        for c in args.concurrencies:
            n = args.requests or len(users)
            n = min(n, 256) if c == 1 else n
            reqs = [sc.LoadRequest("good", np.asarray(users[i % len(users)], np.int64)) for i in range(n)]
            records, wall = sc.run_load(url, reqs, concurrency=c, max_seconds=900)
            s = sc.summarize(records, n, wall)
            wrong = sum(1 for r in records if r.error is None and not np.array_equal(
                r.outputs["items"][0], ref.items[r.index % len(users)]))
            row = {"concurrency": c, "requests": n, "users_per_s": s.good_ok / wall, **s.latency_ms,
                   "failed": s.good_failed, "items_differ": wrong, "vs_in_process": s.good_ok / wall / inproc}
            served.append(row)
            print(f"served, concurrency {c:3d}: {row['users_per_s']:.1f} users/s ({row['vs_in_process']:.0%} of "
                  f"in-process), p50 {row.get('p50', float('nan')):.1f} ms p95 {row.get('p95', float('nan')):.1f} ms "
                  f"p99 {row.get('p99', float('nan')):.1f} ms; {s.good_failed} failed, {wrong} differ", flush=True)
        result["served"] = served
        if args.duration:
            capacity = max(r["users_per_s"] for r in served)
            rate = args.hold_fraction * capacity
            held = sc.run_held_load(f"http://{srv.http_url}", users, rate, args.duration)
            held["capacity_users_per_s"], held["fraction"] = capacity, args.hold_fraction
            result["held"] = held
            print(f"held load: {args.hold_fraction:.0%} of {capacity:.1f} users/s", flush=True)
            sc.print_held(held)
    finally:
        srv.stop()

    at16 = next((r for r in served if r["concurrency"] == 16), None)
    if at16:
        verdict = "met" if at16["vs_in_process"] >= 0.9 else "NOT met"
        print(f"target served@16 >= 90% of in-process: {at16['vs_in_process']:.0%} ({verdict})")
    (out / "serving-capacity.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out / 'serving-capacity.json'}")
    failed = sum(r["failed"] + r["items_differ"] for r in served) + sum(result.get("held", {}).get("errors", {})
                                                                         .values())
    return 1 if failed else 0


if __name__ == "__main__":
    from earn_export.cli import run_script

    raise SystemExit(run_script(main))
