"""``python benchmarks/cpp_runtime.py ENGINE``: the C++ runtime next to the Python ONNX Runtime runtime, same graphs.

Why a separate bench: the C++ runtime changes only what happens *around* the graphs (prompt building, beam
search, KV reordering, buffer handling), so the figures that matter are the per-batch split into graph time and
bookkeeping + copies, end-to-end users/s, and users/s with 1 and 2 threads calling one shared recommender.
Both runtimes use ONNX Runtime sessions with the same intra-op thread count (default 1, so that threads, not
ORT's pool, use the cores) and are checked to give identical lists on the benchmark's histories first.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def bench_histories(engine_dir, users: int, data_dir=None, seed: int = 0) -> tuple[list[list[int]], str]:
    """Beauty test users' histories when the engine's catalog is Beauty's (and the data is here), else random
    catalog items with lengths 0..max_history."""
    from earn_export.engine.trie_files import load_trie_arrays

    trie = load_trie_arrays(engine_dir)
    items = np.array(sorted(trie.item_paths()), dtype=np.int64)
    data_dir = Path(data_dir) if data_dir else Path(__file__).resolve().parents[2] / "shared/data/amazon-beauty"
    if (data_dir / "sequential_train.txt").is_file() and len(items) == 12035:
        from earn_export.data.sequences import eval_examples, load_sequential

        hist = eval_examples(load_sequential(data_dir), "test", max_history=20).histories
        return [list(map(int, h)) for h in hist[:users]], f"Beauty test users ({data_dir})"
    rng = np.random.default_rng(seed)
    return [rng.choice(items, size=int(rng.integers(0, 21))).tolist() for _ in range(users)], "random catalog items"


def _python_recommender(engine_dir, intra_op_threads: int, batch_size: int):
    import onnxruntime as ort

    from earn_export.runtime import Recommender
    from earn_export.bench.harness import TimedBackend

    so = ort.SessionOptions()
    so.intra_op_num_threads = intra_op_threads
    rec = Recommender.load(engine_dir, session_options=so, batch_size=batch_size, providers=["CPUExecutionProvider"])
    timed = TimedBackend(rec.backend, "ort")  # adds Session.run time to timed.times
    return rec, timed


def _split_python(rec, timed, requests, top_k, beam) -> dict:
    rows = []
    for req in requests:
        timed.times.clear()
        t = time.perf_counter()
        rec.recommend(req, top_k=top_k, beam=beam)
        total = time.perf_counter() - t
        graph = timed.times.get("prefill_graph", 0.0) + timed.times.get("decode_graph", 0.0)
        rows.append((total, graph))
    return _split_stats(rows)


def _split_cpp(rec, requests, top_k, beam) -> dict:
    rows = []
    for req in requests:
        _, t = rec.recommend_timed(req, top_k=top_k, beam=beam)
        rows.append((t["total_s"], t["prefill_graph_s"] + t["decode_graph_s"]))
    return _split_stats(rows)


def _split_stats(rows) -> dict:
    total = statistics.median(r[0] for r in rows)
    graph = statistics.median(r[1] for r in rows)
    book = statistics.median(r[0] - r[1] for r in rows)
    return {"batch_total_ms": 1e3 * total, "batch_graph_ms": 1e3 * graph, "batch_bookkeeping_ms": 1e3 * book}


def _users_per_s(fn, requests, threads: int, repeats: int) -> float:
    n_users = sum(len(r) for r in requests)
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(fn, requests))  # warm-up
        rates = []
        for _ in range(repeats):
            t = time.perf_counter()
            list(pool.map(fn, requests))
            rates.append(n_users / (time.perf_counter() - t))
    return statistics.median(rates)


def run_cpp_bench(engine_dir, users: int = 256, request_users: int = 4, beam: int = 20, top_k: int = 20,
                  threads=(1, 2), repeats: int = 3, intra_op_threads: int = 1, data_dir=None, log=print) -> dict:
    from earn_export.runtime.cpp_runtime import CppRecommender

    engine_dir = Path(engine_dir)
    histories, source = bench_histories(engine_dir, users, data_dir)
    requests = [histories[s: s + request_users] for s in range(0, len(histories), request_users)]
    py, timed = _python_recommender(engine_dir, intra_op_threads, batch_size=max(request_users, 1))
    cc = CppRecommender.load(engine_dir, providers=["CPUExecutionProvider"], intra_op_threads=intra_op_threads,
                             batch_size=max(request_users, 1))
    a = py.recommend(histories, top_k=top_k, beam=beam)
    b = cc.recommend(histories, top_k=top_k, beam=beam)
    identical = float((a.items == b.items).all(axis=1).mean())
    max_score_diff = float(np.nanmax(np.abs(np.where(np.isfinite(a.scores), a.scores - b.scores, 0.0))))
    log(f"engine {engine_dir}: {len(histories)} users ({source}), requests of {request_users} users, beam {beam}, "
        f"top-k {top_k}, ORT intra-op threads {intra_op_threads}")
    log(f"identical lists C++ vs Python: {identical:.2%} of users, max |score diff| {max_score_diff:.2e}")
    result = {"engine": str(engine_dir), "users": len(histories), "histories": source, "request_users": request_users,
              "beam": beam, "top_k": top_k, "intra_op_threads": intra_op_threads, "identical": identical,
              "max_score_diff": max_score_diff, "python": {}, "cpp": {}}
    for _ in range(1):  # warm both before the split
        _split_python(py, timed, requests[:2], top_k, beam)
        _split_cpp(cc, requests[:2], top_k, beam)
    result["python"].update(_split_python(py, timed, requests, top_k, beam))
    result["cpp"].update(_split_cpp(cc, requests, top_k, beam))
    for t in threads:
        result["python"][f"users_per_s_{t}t"] = _users_per_s(
            lambda r: py.recommend(r, top_k=top_k, beam=beam), requests, t, repeats)
        result["cpp"][f"users_per_s_{t}t"] = _users_per_s(
            lambda r: cc.recommend(r, top_k=top_k, beam=beam), requests, t, repeats)
    p, c = result["python"], result["cpp"]
    t0 = threads[0]
    result["speedup_end_to_end"] = c[f"users_per_s_{t0}t"] / p[f"users_per_s_{t0}t"]
    if len(threads) > 1:
        result["cpp_thread_scaling"] = c[f"users_per_s_{threads[1]}t"] / c[f"users_per_s_{t0}t"]
        result["python_thread_scaling"] = p[f"users_per_s_{threads[1]}t"] / p[f"users_per_s_{t0}t"]
    log(markdown(result, threads))
    return result


def markdown(r: dict, threads=(1, 2)) -> str:
    rows = ["| runtime | per batch total (ms) | graphs (ms) | bookkeeping + copies (ms) | "
            + " | ".join(f"users/s, {t} thread{'s' if t > 1 else ''}" for t in threads) + " |",
            "|---|---|---|---|" + "---|" * len(threads)]
    for name, key in (("Python (ORT)", "python"), ("C++ (libearn)", "cpp")):
        x = r[key]
        rows.append(f"| {name} | {x['batch_total_ms']:.2f} | {x['batch_graph_ms']:.2f} | "
                    f"{x['batch_bookkeeping_ms']:.2f} | " + " | ".join(f"{x[f'users_per_s_{t}t']:.1f}" for t in threads)
                    + " |")
    out = "\n".join(rows) + f"\n\nC++ / Python end to end ({threads[0]} thread): {r['speedup_end_to_end']:.2f}x"
    if "cpp_thread_scaling" in r:
        out += (f"; users/s {threads[1]} vs {threads[0]} threads: C++ {r['cpp_thread_scaling']:.2f}x, "
                f"Python {r['python_thread_scaling']:.2f}x")
    return out


def main(argv=None) -> int:
    from earn_export import cli_args as ca
    from earn_export.cli import Parser

    p = Parser(prog="python benchmarks/cpp_runtime.py", description=__doc__.splitlines()[0])
    p.add_argument("engine_dir", type=ca.existing_dir, help="engine directory written by `earn-export export`")
    ca.add_users(p, 256, "users timed (Beauty test users when the engine's catalog is Beauty's, else random)")
    p.add_argument("--request-users", type=ca.positive_int, default=4, help="users per recommend() call")
    ca.add_search(p, top_k=20, beam=20)
    p.add_argument("--intra-op-threads", type=ca.positive_int, default=1,
                   help="ONNX Runtime intra-op threads of both runtimes (1: the calling threads use the cores)")
    ca.add_data_source(p, default="../shared/data/amazon-beauty", csv=False)
    args = p.parse_args(argv)
    ca.check_top_k_beam(args.top_k, args.beam)
    run_cpp_bench(args.engine_dir, users=args.users, request_users=args.request_users, beam=args.beam,
                  top_k=args.top_k, intra_op_threads=args.intra_op_threads, data_dir=args.data)
    return 0


if __name__ == "__main__":
    from earn_export.cli import run_script

    raise SystemExit(run_script(main))
