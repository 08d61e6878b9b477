"""``earn-export batch``: offline top-K scoring of every user on Ray Data, Parquet in and out.

Input: a Parquet file with a ``history`` column (list of int item ids, oldest first) and optionally a ``user``
column (any integer id; the row number otherwise). Output: one Parquet file with ``user``, ``items`` (list<int64>,
best first, -1 = fewer valid items), ``scores`` (list<float32>), ``skipped`` and ``truncated`` (int64), in input
order.

``map_batches`` runs over a pool of actors that each hold one ``Recommender`` (loaded once per actor). Local Ray by
default; ``--address ray://HOST:10001`` (or ``auto``) runs on a cluster, whose workers must have earn-export
installed and ``ENGINE_DIR`` at the same path. Output is all-or-nothing: rows stream into a temporary file beside
``--out`` that is renamed into place only when every row is written; on failure it is removed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from ..data.errors import DataError


def read_users(path):
    """The users table (``user`` int64, ``history`` list<int64>) from a Parquet file, checked."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; give --histories-file a Parquet file with a 'history' column")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc}); write it with pyarrow or pandas.to_parquet")
    if "history" not in table.column_names:
        raise DataError(f"{path}: no 'history' column (columns: {table.column_names}); add one with each user's "
                        "item ids, oldest first")
    hist = table.column("history")
    if not (pa.types.is_list(hist.type) or pa.types.is_large_list(hist.type)) or not pa.types.is_integer(
            hist.type.value_type):
        raise DataError(f"{path}: column 'history' has type {hist.type}; it must be a list of integers")
    if hist.null_count:
        raise DataError(f"{path}: {hist.null_count} rows have a null 'history'; use an empty list for no history")
    if "user" in table.column_names:
        user = table.column("user")
        if not pa.types.is_integer(user.type) or user.null_count:
            raise DataError(f"{path}: column 'user' must be non-null integers, got {user.type}")
        user = user.cast(pa.int64())
    else:
        user = pa.array(np.arange(table.num_rows, dtype=np.int64))
    return pa.table({"user": user, "history": hist.cast(pa.list_(pa.int64()))})


def write_users(path, histories, users=None) -> Path:
    """Write a users file (tests, benchmarks, and users who have histories in Python)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    users = np.arange(len(histories), dtype=np.int64) if users is None else np.asarray(users, np.int64)
    pq.write_table(pa.table({"user": users, "history": pa.array([list(map(int, h)) for h in histories],
                                                                type=pa.list_(pa.int64()))}), path)
    return Path(path)


def check_known(table, known_items, path) -> None:
    """Unknown item ids fail before any work, naming users and ids (``--on-unknown skip`` drops them instead)."""
    import pyarrow.compute as pc

    flat = table.column("history").combine_chunks()
    values = np.asarray(pc.list_flatten(flat))
    known = np.fromiter(known_items, np.int64)
    bad = ~np.isin(values, known)
    if bad.any():
        rows = np.asarray(pc.list_parent_indices(flat))[bad]
        users = np.asarray(table.column("user"))[np.unique(rows)]
        ids = np.unique(values[bad])
        raise DataError(f"{path}: unknown item ids {ids[:10].tolist()}{' ...' if len(ids) > 10 else ''} in the "
                        f"histories of {len(users)} users (e.g. {users[:10].tolist()}); the engine's catalog has no "
                        "such items. Map them to catalog ids, or pass --on-unknown skip to drop them (counted in "
                        "the 'skipped' column)")


class RecommenderActor:
    """One ``Recommender`` per Ray actor; called on pyarrow batches of (user, history)."""

    def __init__(self, engine_dir, backend="onnxruntime", top_k=20, beam=20, on_unknown="error", threads=1,
                 batch_size=64):
        from ..runtime import Recommender

        kwargs = {"backend": backend, "batch_size": batch_size}
        if backend == "onnxruntime":
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = max(1, threads)
            so.inter_op_num_threads = 1
            kwargs["session_options"] = so
        self.rec = Recommender.load(engine_dir, **kwargs)
        self.top_k, self.beam, self.on_unknown = top_k, beam, on_unknown

    def __call__(self, batch):
        import pyarrow as pa

        res = self.rec.recommend(batch.column("history").to_pylist(), top_k=self.top_k, beam=self.beam,
                                 on_unknown=self.on_unknown, ids="catalog")
        return pa.table({
            "user": batch.column("user"),
            "items": pa.array(list(res.items), type=pa.list_(pa.int64())),
            "scores": pa.array(list(res.scores), type=pa.list_(pa.float32())),
            "skipped": pa.array(res.skipped, type=pa.int64()),
            "truncated": pa.array(res.truncated, type=pa.int64()),
        })


def output_schema():
    import pyarrow as pa

    return pa.schema([("user", pa.int64()), ("items", pa.list_(pa.int64())), ("scores", pa.list_(pa.float32())),
                      ("skipped", pa.int64()), ("truncated", pa.int64())])


def init_ray(address: str | None = None, num_cpus: int | None = None, object_store_mb: int = 256):
    """Connect to ``address`` (a cluster) or start a small local Ray (no dashboard) unless one is running."""
    import ray

    if ray.is_initialized():
        return ray
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False,
                 object_store_memory=object_store_mb * 2**20, configure_logging=False)
    return ray


def run_batch(engine_dir, users, out, address: str | None = None, actors: int | None = None, batch_size: int = 64,
              top_k: int = 20, beam: int = 20, on_unknown: str = "error", backend: str = "onnxruntime",
              threads: int = 1, progress: bool = True, overwrite: bool = False) -> dict:
    """Score every user of ``users`` (Parquet) into ``out`` (Parquet); returns {"users", "seconds", "users_per_s"}."""
    import pyarrow.parquet as pq

    from ..engine.manifest import load_manifest
    from ..engine.trie_files import engine_trie

    if not 1 <= top_k <= beam:
        raise ValueError(f"need 1 <= --top-k <= --beam, got --top-k {top_k}, --beam {beam}")
    if on_unknown not in ("error", "skip"):
        raise ValueError(f"--on-unknown must be 'error' or 'skip', got {on_unknown!r}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; choose another --out or pass --overwrite")
    engine_dir = str(Path(engine_dir).resolve())
    manifest = load_manifest(engine_dir, verify=True)
    table = read_users(users)
    if on_unknown == "error":
        check_known(table, engine_trie(engine_dir, manifest).item_paths().keys(), users)

    ray = init_ray(address)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # output rows in input order
    ctx.enable_progress_bars = progress
    n_actors = actors or max(1, int(ray.available_resources().get("CPU", 1)) // max(threads, 1))
    t0 = time.perf_counter()
    # several blocks per actor, each a whole number of batches: one block goes to one actor at a time
    per_block = max(batch_size, -(-table.num_rows // (4 * n_actors) // batch_size) * batch_size)
    blocks = [table.slice(i, per_block) for i in range(0, table.num_rows, per_block)] or [table]
    ds = ray.data.from_arrow(blocks).map_batches(
        RecommenderActor, fn_constructor_kwargs={"engine_dir": engine_dir, "backend": backend, "top_k": top_k,
                                                 "beam": beam, "on_unknown": on_unknown, "threads": threads,
                                                 "batch_size": batch_size},
        batch_size=batch_size, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=n_actors),
        num_cpus=threads)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    written, first = 0, None  # first: (seconds, rows) when the first rows arrived (actor start-up included)
    try:
        with pq.ParquetWriter(tmp, output_schema()) as writer:
            for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
                writer.write_table(batch.select(output_schema().names).cast(output_schema()))
                written += batch.num_rows
                first = first or (time.perf_counter() - t0, batch.num_rows)
        if written != table.num_rows:
            raise RuntimeError(f"wrote {written} rows for {table.num_rows} users; nothing written to {out}")
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    seconds = time.perf_counter() - t0
    return {"users": written, "seconds": seconds, "users_per_s": written / seconds if seconds else 0.0,
            "first_rows_s": first[0] if first else float("nan"),
            "actors": n_actors, "out": str(out)}
