"""``earn-export batch --part-size N``: batch scoring that survives faults and resumes where it stopped.

Why: the single-file output is all-or-nothing, so a 10M-user job killed at 80% lost everything. Here ``--out`` is
a directory of parts, each committed on its own (temporary file, fsync, rename) and recorded in ``_parts.json``;
a re-run of the same command skips the recorded parts, and after Ray lost a node or a worker the unfinished parts
are scored again on the nodes alive. Guarantees, layout and the ``_bad_rows.parquet`` report (bad rows are never
dropped silently): docs/batch_faults.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from ..data.errors import DataError
from ..errors import UsageError
from .batch import RecommenderActor, output_schema, prepare_job, ray_data, run_batch, sorted_ids, unknown_ids

PARTS_FORMAT = "earn-batch-parts/1"
MANIFEST = "_parts.json"
BAD_ROWS = "_bad_rows.parquet"
LOCK = ".lock"


class PartsDirError(UsageError):
    """``--out`` cannot be used as a parts directory as it is; the message names the problem and the fix."""


def part_name(i: int) -> str:
    return f"part-{i:05d}.parquet"


def _atomic_write(path: Path, write) -> None:
    """``write(tmp_path)``, fsync, rename over ``path``, fsync the directory: the file is whole or absent."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename itself reaches the disk
        finally:
            os.close(fd)
    finally:
        tmp.unlink(missing_ok=True)


def _write_json(path: Path, obj: dict) -> None:
    _atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=1, sort_keys=True)))


@contextlib.contextmanager
def _locked(out: Path):
    """One driver per output directory: a second concurrent run fails at once instead of interleaving parts."""
    with open(out / LOCK, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PartsDirError(f"{out} is being written by another batch run (lock {out / LOCK}); wait for it or "
                                "choose another --out") from None
        yield


def job_identity(engine_dir, users, n_users: int, part_size: int, options: dict) -> dict:
    """What a parts directory was written for; a re-run must match it exactly to reuse finished parts."""
    from ..engine.manifest import sha256_file

    return {"format": PARTS_FORMAT, "users_sha256": sha256_file(Path(users)), "n_users": int(n_users),
            "engine_manifest_sha256": sha256_file(Path(engine_dir) / "manifest.json"), "part_size": int(part_size),
            "options": dict(sorted(options.items()))}


def _prepare_out(out: Path, identity: dict, overwrite: bool) -> dict:
    """The finished parts recorded in ``out`` for this very job ({} for a new or overwritten directory)."""
    names = {p.name for p in out.iterdir()} - {LOCK}
    if names and MANIFEST not in names:
        raise PartsDirError(f"{out} holds {len(names)} entries but no {MANIFEST}; it is not a batch parts directory. "
                            "Pass a new or empty directory to --out")
    if not names:
        return {}
    if overwrite:
        for p in out.iterdir():
            if p.name != LOCK:
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        return {}
    try:
        old = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise PartsDirError(f"{out / MANIFEST} is unreadable ({exc}); pass --overwrite to start over") from None
    diff = [k for k in sorted(set(identity) | set(old.get("job", {}))) if identity.get(k) != old.get("job", {}).get(k)]
    if diff:
        detail = "; ".join(f"{k}: was {old.get('job', {}).get(k)!r}, now {identity.get(k)!r}" for k in diff)
        raise PartsDirError(f"{out} was written for another job ({detail}); re-run with the same users file, engine "
                            "and options to resume, or pass --overwrite to start over")
    done = {int(key): rec for key, rec in old.get("parts", {}).items()  # a part that vanished is scored again
            if (out / rec["file"]).is_file() and (out / rec["file"]).stat().st_size == rec["bytes"]}
    for p in out.glob(".*.tmp-*"):  # leftovers of a killed run (a part or the manifest being written)
        p.unlink()
    return done


def bad_rows(table, known_items, on_unknown: str):
    """One row per problem found in the users table (docs/batch_faults.md); ``None`` when there is none.
    ``known_items``: ``batch_ids``' keys (original ids or catalog indices); unknown ones are named as spelled."""
    import pyarrow as pa
    import pyarrow.compute as pc

    users = np.asarray(table.column("user"))
    lengths = np.asarray(pc.list_value_length(table.column("history")).fill_null(0))
    found = []  # (row, kind, detail, action)
    action = ("run refused (--on-unknown error)" if on_unknown == "error"
              else "ids dropped, rest scored (counted in 'skipped')")
    owners, values = unknown_ids(table, known_items)  # owners sorted: list_parent_indices is non-decreasing
    cuts = np.flatnonzero(np.diff(owners)) + 1
    for r, group in zip(owners[np.r_[0, cuts]] if len(owners) else [], np.split(values, cuts)):
        ids = sorted_ids(group)
        found.append((r, "unknown_items", f"{len(ids)} unknown item id(s) {ids[:10]}{' ...' if len(ids) > 10 else ''}",
                      action))
    found += [(r, "empty_history", "no items", "scored on the prompt alone") for r in np.flatnonzero(lengths == 0)]
    _, inverse, counts = np.unique(users, return_inverse=True, return_counts=True)
    found += [(r, "duplicate_user", f"user id {users[r]} appears {counts[inverse][r]} times", "every row scored")
              for r in np.flatnonzero(counts[inverse] > 1)]
    if not found:
        return None
    rows, kinds, details, actions = zip(*sorted(found, key=lambda f: f[0]))  # stable: kinds in this order per row
    rows = np.asarray(rows, np.int64)
    return pa.table({"user": users[rows], "row": rows, "kind": list(kinds), "detail": list(details),
                     "action": list(actions)})


class PlacedRecommenderActor(RecommenderActor):
    """``RecommenderActor`` whose rows also say which Ray node and process scored them (placement summary)."""

    def __call__(self, batch):
        import pyarrow as pa
        import ray

        out = super().__call__(batch)
        n = out.num_rows
        node = ray.get_runtime_context().get_node_id()
        return out.append_column("node", pa.array([node] * n, pa.string())).append_column(
            "pid", pa.array(np.full(n, os.getpid(), np.int64)))


def node_labels() -> dict:
    """Ray node id -> a readable label: its custom resources (how a cluster names its nodes) or its address."""
    import ray

    labels = {}
    for n in ray.nodes():
        custom = sorted(k for k in n.get("Resources", {}) if k not in ("CPU", "GPU", "memory", "object_store_memory")
                        and not k.startswith(("node:", "accelerator_type")))
        labels[n["NodeID"]] = f"{n['NodeID'][:8]} ({', '.join(custom) or n.get('NodeManagerAddress', '?')})"
    return labels


LOST_WORK = {"ActorDiedError", "ActorUnavailableError", "NodeDiedError", "ObjectLostError", "OwnerDiedError",
             "ObjectReconstructionFailedError", "WorkerCrashedError", "RaySystemError", "LocalRayletDiedError"}


def _lost_work(exc: BaseException) -> bool:
    """An error of Ray losing a node, a worker or an object (worth re-running the unfinished parts on the nodes
    alive), as opposed to an error of the scoring itself (re-raised: it would fail the same way again)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if LOST_WORK & {c.__name__ for c in type(exc).__mro__}:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _score_parts(table, todo, part_size, out, state, pids, rounds, actor_kwargs, id_map, *, address, actors,
                 progress, max_restarts, task_retries) -> int:
    """One Ray Data pass over the parts ``todo``, committing each part as soon as its rows are in; returns the
    number of actors. After a lost node (``rounds`` > 0) the pool starts with one actor and grows to what the nodes
    alive can hold, so it never waits for an actor that cannot be placed. ``pids``: node label -> scoring processes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n, threads = table.num_rows, actor_kwargs["threads"]
    ray = ray_data(address, progress)
    cpus = (sum(node.get("Resources", {}).get("CPU", 0) for node in ray.nodes() if node.get("Alive")) if rounds
            else ray.cluster_resources().get("CPU", 1))
    fit = max(1, int(cpus) // max(threads, 1))  # the actors the nodes can hold
    n_actors = min(actors or fit, len(todo))
    if rounds:
        n_actors = min(n_actors, fit)
    pool = (ray.data.ActorPoolStrategy(size=n_actors) if not rounds
            else ray.data.ActorPoolStrategy(min_size=1, max_size=n_actors))
    blocks = [table.slice(i * part_size, part_size) for i in todo]
    ds = ray.data.from_arrow(blocks).map_batches(
        PlacedRecommenderActor, fn_constructor_kwargs=actor_kwargs, batch_size=actor_kwargs["batch_size"],
        batch_format="pyarrow", compute=pool, num_cpus=threads, max_restarts=max_restarts,
        max_task_retries=task_retries)
    labels = node_labels()
    schema = output_schema(id_map)
    buf, buffered, k = [], 0, 0  # k: index into todo, the part being filled
    for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        buf.append(batch)
        buffered += batch.num_rows
        while k < len(todo):
            i = todo[k]
            rows = min(part_size, n - i * part_size)
            if buffered < rows:
                break
            whole = pa.concat_tables(buf)
            part, rest = whole.slice(0, rows), whole.slice(rows)
            buf, buffered = [rest], rest.num_rows
            expect = table.column("user").slice(i * part_size, rows)
            if not np.array_equal(part.column("user").to_numpy(), expect.to_numpy()):
                raise RuntimeError(f"part {i}: the scored rows are not this part's users in input order "
                                   "(a lost or duplicated row); nothing of this part was written")
            where = [labels.get(node, node[:8]) for node in part.column("node").to_pylist()]
            for label, pid in zip(where, part.column("pid").to_pylist()):
                pids[label].add(pid)
            data = part.select(schema.names).cast(schema)
            f = out / part_name(i)
            _atomic_write(f, lambda tmp: pq.write_table(data, tmp))
            state["parts"][str(i)] = {"file": f.name, "rows": rows, "bytes": f.stat().st_size,
                                      "first_user": int(expect[0].as_py()), "nodes": dict(Counter(where))}
            _write_json(out / MANIFEST, state)  # the part counts as finished from here on
            k += 1
    if k != len(todo) or buffered:
        raise RuntimeError(f"scored {k} of {len(todo)} pending parts ({buffered} rows left over); the "
                           f"finished ones are kept in {out}, re-run the same command to finish")
    return n_actors


def run_batch_parts(engine_dir, users, out, part_size: int, address: str | None = None, actors: int | None = None,
                    batch_size: int = 64, top_k: int = 20, beam: int = 20, on_unknown: str = "error",
                    backend: str = "onnxruntime", threads: int = 1, progress: bool = True, overwrite: bool = False,
                    max_restarts: int = 3, task_retries: int = 3, catalog_ids: bool = False) -> dict:
    """Score the users of ``users`` into the parts directory ``out``, skipping parts a previous run finished."""
    import pyarrow.parquet as pq

    if part_size < 1:
        raise ValueError(f"--part-size must be >= 1, got {part_size}")
    out = Path(out)
    actor, id_map, known, table = prepare_job(engine_dir, users, top_k, beam, on_unknown, catalog_ids, backend,
                                              threads, batch_size)
    n = table.num_rows
    report = bad_rows(table, known, on_unknown)
    options = {"top_k": top_k, "beam": beam, "on_unknown": on_unknown, "backend": backend}
    if id_map is not None:  # recorded only then: parts directories of catalog-index runs keep their identity
        options["ids"] = "original"
    identity = job_identity(actor["engine_dir"], users, n, part_size, options)
    n_parts = -(-n // part_size)
    if out.exists() and not out.is_dir():
        raise PartsDirError(f"{out} is a file; with --part-size, --out is a directory of parts — pass a directory "
                            "path (or drop --part-size to write one Parquet file)")
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out):
        done = _prepare_out(out, identity, overwrite)
        if report is not None:
            _atomic_write(out / BAD_ROWS, lambda tmp: pq.write_table(report, tmp))
        state = {"job": identity, "n_parts": n_parts, "complete": False,
                 "parts": {str(i): rec for i, rec in sorted(done.items())}}
        _write_json(out / MANIFEST, state)
        pending = [i for i in range(n_parts) if i not in done]
        t0 = time.perf_counter()
        pids = defaultdict(set)  # node label -> the actor processes that scored its rows
        n_actors = rounds = 0
        while todo := [i for i in pending if str(i) not in state["parts"]]:  # parts not committed yet
            try:
                n_actors = _score_parts(table, todo, part_size, out, state, pids, rounds, actor, id_map,
                                        address=address, actors=actors, progress=progress,
                                        max_restarts=max_restarts, task_retries=task_retries)
            except Exception as exc:  # noqa: BLE001 - only Ray's lost-work errors are retried, the rest re-raised
                if not _lost_work(exc) or rounds >= max_restarts:
                    raise
                rounds += 1
                left = [i for i in pending if str(i) not in state["parts"]]
                print(f"Ray lost work ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); the "
                      f"{len(pending) - len(left)} finished part(s) are kept, scoring the other {len(left)} on the "
                      f"nodes alive (round {rounds + 1} of at most {max_restarts + 1}, --max-restarts)",
                      file=sys.stderr, flush=True)
        state["complete"] = True
        _write_json(out / MANIFEST, state)
    seconds = time.perf_counter() - t0
    scored = sum(min(part_size, n - i * part_size) for i in pending)
    kinds = dict(Counter(report.column("kind").to_pylist())) if report is not None else {}
    users_by_node = sum((Counter(state["parts"][str(i)]["nodes"]) for i in pending), Counter())
    return {"users": n, "scored_users": scored, "parts": n_parts, "parts_skipped": len(done),
            "parts_scored": len(pending), "seconds": seconds, "users_per_s": scored / seconds if seconds else 0.0,
            "actors": n_actors, "out": str(out), "bad_rows": kinds,
            "placement": {k: {"users": users_by_node[k], "actors": len(v)} for k, v in sorted(pids.items())}}


def read_parts(out):
    """The whole output of a parts directory as one table, parts in input order; refuses an unfinished run."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    try:
        state = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{out}: no readable {MANIFEST} ({exc}); is this a batch --part-size output?") from None
    if not state.get("complete"):
        raise DataError(f"{out}: the run is unfinished ({len(state['parts'])} of {state['n_parts']} parts); re-run "
                        "the same batch command to finish it")
    return pa.concat_tables([pq.read_table(out / part_name(i)) for i in range(state["n_parts"])])


def run_batch_cli(args) -> int:
    job = {"address": args.address, "actors": args.actors, "batch_size": args.batch_size, "top_k": args.top_k,
           "beam": args.beam, "on_unknown": args.on_unknown, "backend": args.backend, "threads": args.threads,
           "progress": not args.quiet, "overwrite": args.overwrite, "catalog_ids": args.catalog_ids}
    if not args.part_size:  # one Parquet file, all-or-nothing (batch.py)
        stats = run_batch(args.engine_dir, args.histories_file, args.out, **job)
        print(f"scored {stats['users']} users with {stats['actors']} actor(s) in {stats['seconds']:.1f} s "
              f"({stats['users_per_s']:.1f} users/s) -> {stats['out']}")
        return 0
    stats = run_batch_parts(args.engine_dir, args.histories_file, args.out, args.part_size,
                            max_restarts=args.max_restarts, task_retries=args.task_retries, **job)
    print(f"scored {stats['scored_users']} of {stats['users']} users ({stats['parts_scored']} part(s) scored, "
          f"{stats['parts_skipped']} finished part(s) skipped) with {stats['actors']} actor(s) in "
          f"{stats['seconds']:.1f} s ({stats['users_per_s']:.1f} users/s) -> {stats['out']}")
    for node, p in stats["placement"].items():
        print(f"  node {node}: {p['users']} users by {p['actors']} actor process(es)")
    if stats["bad_rows"]:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(stats["bad_rows"].items()))
        print(f"  bad rows: {kinds} (one row each in {Path(stats['out']) / BAD_ROWS})")
    return 0
