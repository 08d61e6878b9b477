"""``earn-export batch``: offline top-K scoring of every user on Ray Data, Parquet in and out (columns and id
kinds: docs/serving.md). ``map_batches`` runs over a pool of actors that each hold one ``Recommender``, on a local
Ray or a cluster (``--address``; its workers need earn-export and ``ENGINE_DIR`` at the same path). Output is
all-or-nothing: rows stream into a temporary file that is renamed to ``--out`` only when every row is written.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from ..data.errors import DataError
from ..errors import check_choice


def read_users(path, id_type: str = ""):
    """The users table (``user`` int64, ``history`` list<int64> or list<string>) from a Parquet file, checked.
    ``id_type``: the ids the histories hold ("" catalog indices, "int"/"str" the engine's original ids)."""
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
    is_list = pa.types.is_list(hist.type) or pa.types.is_large_list(hist.type)
    strings = is_list and (pa.types.is_string(hist.type.value_type) or pa.types.is_large_string(hist.type.value_type))
    if id_type == "str" and not strings:
        raise DataError(f"{path}: column 'history' has type {hist.type}; the engine's original item ids are strings, "
                        "so it must be a list of strings (or pass --catalog-ids if it holds catalog indices)")
    if id_type != "str" and not (is_list and pa.types.is_integer(hist.type.value_type)):
        what = ("the engine's original item ids are integers" if id_type == "int" else
                "it holds catalog indices (the engine has no item id map, or --catalog-ids was given)")
        raise DataError(f"{path}: column 'history' has type {hist.type}; it must be a list of integers: {what}")
    if hist.null_count:
        raise DataError(f"{path}: {hist.null_count} rows have a null 'history'; use an empty list for no history")
    if "user" in table.column_names:
        user = table.column("user")
        if not pa.types.is_integer(user.type) or user.null_count:
            raise DataError(f"{path}: column 'user' must be non-null integers, got {user.type}")
        user = user.cast(pa.int64())
    else:
        user = pa.array(np.arange(table.num_rows, dtype=np.int64))
    return pa.table({"user": user, "history": hist.cast(pa.list_(pa.string() if id_type == "str" else pa.int64()))})


def write_users(path, histories, users=None) -> Path:
    """Write a users file (tests, benchmarks, callers with histories in Python): str ids as list<string>, else int64."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    users = np.arange(len(histories), dtype=np.int64) if users is None else np.asarray(users, np.int64)
    strings = any(isinstance(x, str) for h in histories for x in h)
    hist = pa.array([list(map(str, h)) for h in histories], type=pa.list_(pa.string())) if strings else \
        pa.array([list(map(int, h)) for h in histories], type=pa.list_(pa.int64()))
    pq.write_table(pa.table({"user": users, "history": hist}), path)
    return Path(path)


def batch_ids(engine_dir, manifest, catalog_ids: bool = False):
    """(id map or None, keys): the engine's original ids when it has an id map and ``catalog_ids`` is not set,
    else its catalog indices; ``keys`` is a pyarrow array of every valid history id."""
    import pyarrow as pa

    from ..data.id_map import engine_id_map
    from ..engine.trie_files import engine_trie

    known = sorted(engine_trie(engine_dir, manifest).item_paths())
    id_map = None if catalog_ids else engine_id_map(engine_dir, manifest, n_items=known[-1] + 1 if known else 0)
    if id_map is None:
        return None, pa.array(np.asarray(known, np.int64))
    return id_map, pa.array(id_map.ids, type=pa.string() if id_map.id_type == "str" else pa.int64())


def unknown_ids(table, keys):
    """(rows [k], ids [k]) of the history entries not in ``keys`` (:func:`batch_ids`), in row order; ids as
    spelled in the file (string ids are looked up without surrounding spaces, as ``ItemIdMap.lookup`` does)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    flat_hist = table.column("history").combine_chunks()
    values = pc.list_flatten(flat_hist)
    probe = pc.utf8_trim_whitespace(values) if pa.types.is_string(values.type) else values
    bad = np.flatnonzero(~np.asarray(pc.is_in(probe, value_set=keys.cast(probe.type)).fill_null(False)))
    rows = np.asarray(pc.list_parent_indices(flat_hist))[bad]
    return rows, np.asarray(values.take(pa.array(bad, pa.int64())).to_pylist(), dtype=object)


def sorted_ids(ids) -> list:
    return sorted(set(ids.tolist()), key=lambda i: (isinstance(i, str), i))


class RecommenderActor:
    """One ``Recommender`` per Ray actor, called on pyarrow batches of (user, history); ``ids``: "original" or
    "catalog"."""

    def __init__(self, engine_dir, backend="onnxruntime", top_k=20, beam=20, on_unknown="error", threads=1,
                 batch_size=64, ids="catalog"):
        from .python_model import load_recommender

        self.rec = load_recommender(engine_dir, backend, max(1, threads), batch_size)
        self.top_k, self.beam, self.on_unknown, self.ids = top_k, beam, on_unknown, ids

    def __call__(self, batch):
        import pyarrow as pa

        res = self.rec.recommend(batch.column("history").to_pylist(), top_k=self.top_k, beam=self.beam,
                                 on_unknown=self.on_unknown, ids=self.ids)
        schema = output_schema(self.rec.id_map if self.ids == "original" else None)
        cols = {"user": batch.column("user"), "items": [row.tolist() for row in res.items], "scores": list(res.scores),
                "skipped": res.skipped, "truncated": res.truncated}
        if "titles" in schema.names:
            cols["titles"] = [row.tolist() for row in res.titles]
        return pa.table(cols, schema=schema)  # in the schema's column order and types


def output_schema(id_map=None):
    """The output columns (docs/serving.md): ``id_map`` is the engine's map when the run speaks original ids."""
    import pyarrow as pa

    item = pa.string() if id_map is not None and id_map.id_type == "str" else pa.int64()
    fields = [("user", pa.int64()), ("items", pa.list_(item)), ("scores", pa.list_(pa.float32()))]
    if id_map is not None and id_map.titles:
        fields.append(("titles", pa.list_(pa.string())))
    return pa.schema(fields + [("skipped", pa.int64()), ("truncated", pa.int64())])


def prepare_job(engine_dir, users, top_k: int, beam: int, on_unknown: str, catalog_ids: bool, backend: str,
                threads: int, batch_size: int):
    """(``RecommenderActor`` kwargs, id map or None, valid ids, users table): what a batch run checks before any
    work: unknown ids fail here under ``on_unknown="error"``, named as spelled with their users. ``catalog_ids``:
    histories and items are catalog indices even when the engine has an id map."""
    from ..engine.manifest import load_manifest

    if not 1 <= top_k <= beam:
        raise ValueError(f"need 1 <= --top-k <= --beam, got --top-k {top_k}, --beam {beam}")
    check_choice("--on-unknown", on_unknown, ("error", "skip"))
    engine_dir = str(Path(engine_dir).resolve())
    id_map, keys = batch_ids(engine_dir, load_manifest(engine_dir, verify=True), catalog_ids)
    table = read_users(users, id_map.id_type if id_map is not None else "")
    rows, values = unknown_ids(table, keys) if on_unknown == "error" else ((), ())
    if len(rows):
        bad_users = np.asarray(table.column("user"))[np.unique(rows)]
        ids = sorted_ids(values)
        raise DataError(f"{users}: unknown item ids {ids[:10]}{' ...' if len(ids) > 10 else ''} in the "
                        f"histories of {len(bad_users)} users (e.g. {bad_users[:10].tolist()}); the engine's catalog "
                        "has no such items. Map them to catalog ids, or pass --on-unknown skip to drop them (counted "
                        "in the 'skipped' column)")
    actor = {"engine_dir": engine_dir, "backend": backend, "top_k": top_k, "beam": beam, "on_unknown": on_unknown,
             "threads": threads, "batch_size": batch_size, "ids": "catalog" if id_map is None else "original"}
    return actor, id_map, keys, table


def ray_data(address: str | None, progress: bool):
    """``init_ray``, with Ray Data keeping rows in input order (the output, or the parts, are cut from them)."""
    ray = init_ray(address)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = progress
    return ray


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
              threads: int = 1, progress: bool = True, overwrite: bool = False, catalog_ids: bool = False) -> dict:
    """Score every user of ``users`` (Parquet) into ``out`` (Parquet); returns counts and timings."""
    import pyarrow.parquet as pq

    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; choose another --out or pass --overwrite")
    actor, id_map, _, table = prepare_job(engine_dir, users, top_k, beam, on_unknown, catalog_ids, backend, threads,
                                          batch_size)
    ray = ray_data(address, progress)
    n_actors = actors or max(1, int(ray.available_resources().get("CPU", 1)) // max(threads, 1))
    t0 = time.perf_counter()
    # several blocks per actor, each a whole number of batches: one block goes to one actor at a time
    per_block = max(batch_size, -(-table.num_rows // (4 * n_actors) // batch_size) * batch_size)
    blocks = [table.slice(i, per_block) for i in range(0, table.num_rows, per_block)] or [table]
    ds = ray.data.from_arrow(blocks).map_batches(
        RecommenderActor, fn_constructor_kwargs=actor, batch_size=batch_size, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=n_actors), num_cpus=threads)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    written, first = 0, None  # first: (seconds, rows) when the first rows arrived (actor start-up included)
    try:
        schema = output_schema(id_map)
        with pq.ParquetWriter(tmp, schema) as writer:
            for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
                writer.write_table(batch.select(schema.names).cast(schema))
                written += batch.num_rows
                first = first or (time.perf_counter() - t0, batch.num_rows)
        if written != table.num_rows:
            raise RuntimeError(f"wrote {written} rows for {table.num_rows} users; nothing written to {out}")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    seconds = time.perf_counter() - t0
    return {"users": written, "seconds": seconds, "users_per_s": written / seconds if seconds else 0.0,
            "first_rows_s": first[0] if first else float("nan"),
            "actors": n_actors, "out": str(out)}
