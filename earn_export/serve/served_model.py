"""The served ``earn_recommender`` model: its options, its Triton model repository, and per-request validation.

One user per request (the dynamic batcher groups them; ``allow_ragged_batch`` lets histories of different lengths
share a batch); its tensors: docs/serving.md. A bad request gets its own Triton error naming the problem and the
fix (:class:`BadRequest`); the others in its batch are answered normally.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from . import MODEL_NAME

OPTIONS_PARAMETER = "earn_serve_options"

MAX_AUTO_INSTANCES = 8


def instances_and_threads(cores: int, instances: int = 0, threads: int = 0) -> tuple[int, int]:
    """(model instances, ONNX Runtime threads per instance) for ``cores`` CPU cores; a given (non-zero) one is kept.
    Why one single-threaded instance per core: threads of one instance split and join every small op of a served
    batch while separate instances run whole batches side by side (docs/results/serving.md). At most
    ``MAX_AUTO_INSTANCES`` (each holds its own copy of the engine); the remaining cores become threads."""
    cores = max(1, int(cores))
    if not instances:
        instances = min(cores, MAX_AUTO_INSTANCES)
    if not threads:
        threads = max(1, cores // instances)
    return instances, threads


@dataclass
class ServeOptions:
    """What ``earn-export serve`` passes to every model instance (a JSON string parameter of config.pbtxt)."""

    engine_dir: str
    backend: str = "onnxruntime"  # Recommender.load(backend=...): onnxruntime | cpp (| torch)
    instances: int = 1  # model instances, each a stub process holding one Recommender (serve: from the cores)
    threads: int = 0  # ONNX Runtime intra-op threads per instance; 0 = CPU cores / instances
    max_batch: int = 32  # dynamic batcher's largest batch (users)
    max_queue_delay_us: int = 2000  # how long the batcher waits to fill a batch
    beam: int = 20
    default_top_k: int = 10
    on_unknown: str = "error"  # error | skip
    max_request_items: int = 1000  # longer histories are refused (the model keeps its last max_history items)
    allow_empty_history: bool = False
    max_queue_size: int = 0  # bounded: overload answers "busy, retry" at once; 0 = 4 x max_batch x instances
    queue_timeout_us: int = 0  # a request waiting longer in the queue is rejected; 0 = no limit
    catalog_ids: bool = False  # --catalog-ids: catalog indices in and out even when the engine has an id map
    id_type: str = ""  # set by with_engine_ids: "" catalog indices, "int" / "str" the catalog's original ids
    titles: bool = False  # set by with_engine_ids: the engine's id map has titles

    def validate(self) -> "ServeOptions":
        least = {"beam": 1, "instances": 1, "threads": 0, "max_batch": 1, "max_queue_delay_us": 0, "max_queue_size": 0,
                 "queue_timeout_us": 0, "max_request_items": 1}  # field (its flag: --field with dashes) -> minimum
        problems = [f"--{name.replace('_', '-')} must be >= {low}, got {getattr(self, name)}"
                    for name, low in least.items() if getattr(self, name) < low]
        if self.on_unknown not in ("error", "skip"):
            problems.append(f"--on-unknown must be 'error' or 'skip', got {self.on_unknown!r}")
        if not 1 <= self.default_top_k <= self.beam:
            problems.append(f"--top-k must be in 1..--beam ({self.beam}), got {self.default_top_k}")
        if problems:
            from ..errors import UsageError

            raise UsageError("; ".join(problems) + " — see `earn-export serve --help`")
        return self

    @classmethod
    def from_args(cls, args, **rest) -> "ServeOptions":
        """The options of the model flags that `serve` and `triton-repo` share; ``rest`` sets the others."""
        return cls(engine_dir=args.engine_dir, max_batch=args.max_batch, max_queue_delay_us=args.max_queue_delay_us,
                   beam=args.beam, default_top_k=args.top_k, on_unknown=args.on_unknown,
                   max_request_items=args.max_request_items, allow_empty_history=args.allow_empty_history,
                   max_queue_size=args.max_queue_size, queue_timeout_us=args.queue_timeout_us,
                   catalog_ids=args.catalog_ids, **rest).validate()

    def with_engine_ids(self, manifest: dict) -> "ServeOptions":
        """These options with ``id_type``/``titles`` of the engine's id map, unless it has none or ``catalog_ids``."""
        entry = None if self.catalog_ids else (manifest.get("id_map") or None)
        return replace(self, id_type=entry["id_type"] if entry else "", titles=bool(entry and entry.get("titles")))

    @classmethod
    def from_json(cls, text: str) -> "ServeOptions":
        return cls(**json.loads(text))


class BadRequest(ValueError):
    """One request the model refuses; ``kind`` is a short category (counted by ``loadtest``)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def parse_request(history, top_k, known_items, opts: ServeOptions, id_map=None) -> tuple[list, int]:
    """Check one request's tensors -> (history as ids, top_k), or raise :class:`BadRequest`.

    ``opts.id_type`` "" : ids are catalog indices, checked against ``known_items``; "int"/"str": the catalog's
    original ids, looked up in ``id_map`` and named as spelled when unknown."""
    want = "BYTES" if opts.id_type == "str" else "INT64"
    if history is None:
        raise BadRequest("bad_shape", f"input 'history' is missing; send it as {want} [1, n]")
    history = np.asarray(history)
    if history.dtype != (object if want == "BYTES" else np.int64):
        how = "UTF-8 strings: the engine's original item ids are strings" if want == "BYTES" else "int64"
        raise BadRequest("bad_dtype", f"input 'history' must be {want}, got {history.dtype}; send the ids as {how}")
    if history.ndim != 2 or history.shape[0] != 1:
        raise BadRequest("bad_shape", f"input 'history' must have shape [1, n] (one user per request; the server "
                                      f"batches requests itself), got {list(history.shape)}")
    n = history.shape[1]
    if n == 0 and not opts.allow_empty_history:
        raise BadRequest("empty_history", "input 'history' is empty; send at least one item id (or start the "
                                          "server with --allow-empty-history to answer with the registers-only "
                                          "prompt)")
    if n > opts.max_request_items:
        raise BadRequest("oversized_history", f"input 'history' has {n} items, more than this server accepts "
                                              f"({opts.max_request_items}, --max-request-items); send the most "
                                              "recent items only (the model reads the last max_history of them)")
    k = opts.default_top_k
    if top_k is not None:
        top_k = np.asarray(top_k)
        if top_k.size != 1:
            raise BadRequest("bad_shape", f"input 'top_k' must have shape [1, 1], got {list(top_k.shape)}")
        k = int(top_k.reshape(-1)[0])
        if not 1 <= k <= opts.beam:
            raise BadRequest("top_k_out_of_range", f"top_k={k} is out of range: it must be in 1..{opts.beam} "
                                                   f"(the server's beam width; restart with --beam to raise it)")
    if opts.id_type != "str":
        items = [int(i) for i in history[0]]
    else:
        try:  # the Python backend hands BYTES over as bytes
            items = [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in history[0]]
        except UnicodeDecodeError as exc:
            raise BadRequest("bad_dtype", f"input 'history' holds an id that is not UTF-8 ({exc}); send the "
                                          "catalog's original ids as UTF-8 strings") from None
    if opts.on_unknown == "error":
        if opts.id_type:
            unknown = sorted({i for i in items if id_map.lookup(i) is None}, key=str)
            size, fix = len(id_map), "check them against the engine's item_ids.json"
        else:
            unknown = sorted({i for i in items if i not in known_items})
            size, fix = len(known_items), "map them to catalog ids"
        if unknown:
            raise BadRequest("unknown_item", f"unknown item ids {unknown[:10]}{' ...' if len(unknown) > 10 else ''}: "
                                             f"not in the engine's catalog ({size} items); {fix}, or start the server "
                                             "with --on-unknown skip to drop them (counted in the 'skipped' "
                                             "output)")
    return items, k


def model_config(opts: ServeOptions, warmup: bool = True):
    """The ``earn_recommender`` config as a ``model_config_pb2.ModelConfig`` message."""
    from tritonclient.grpc import model_config_pb2 as mc

    ids = mc.TYPE_STRING if opts.id_type == "str" else mc.TYPE_INT64
    cfg = mc.ModelConfig(name=MODEL_NAME, backend="python", max_batch_size=opts.max_batch)
    cfg.input.add(name="history", data_type=ids, dims=[-1], allow_ragged_batch=True)
    cfg.input.add(name="top_k", data_type=mc.TYPE_INT64, dims=[1], optional=True)
    outputs = [("items", ids, -1), ("scores", mc.TYPE_FP32, -1), ("skipped", mc.TYPE_INT64, 1),
               ("truncated", mc.TYPE_INT64, 1)]
    if opts.id_type:
        outputs += [("index", mc.TYPE_INT64, -1)] + ([("titles", mc.TYPE_STRING, -1)] if opts.titles else [])
    for name, dtype, dim in outputs:
        cfg.output.add(name=name, data_type=dtype, dims=[dim])
    cfg.dynamic_batching.max_queue_delay_microseconds = opts.max_queue_delay_us
    policy = cfg.dynamic_batching.default_queue_policy  # full queue or waited too long: UNAVAILABLE, retry later
    policy.max_queue_size = opts.max_queue_size or 4 * opts.max_batch * opts.instances
    if opts.queue_timeout_us:
        policy.timeout_action = mc.ModelQueuePolicy.REJECT
        policy.default_timeout_microseconds = opts.queue_timeout_us
    cfg.instance_group.add(count=opts.instances, kind=mc.ModelInstanceGroup.KIND_CPU)
    cfg.parameters[OPTIONS_PARAMETER].string_value = json.dumps(asdict(opts))
    if warmup:  # a real request through execute() before the model (and so the server) reports ready
        cfg.model_warmup.add(name="history_warmup", batch_size=1, count=1).inputs["history"].CopyFrom(
            mc.ModelWarmup.Input(data_type=ids, dims=[WARMUP_ITEMS], input_data_file="history"))
    return cfg


WARMUP_ITEMS = 3

MODEL_PY = '''"""Triton Python-backend entry point (written by earn-export). Needs earn-export installed in the Python
backend's environment (pip install earn-export[serve] in the server image, or EXECUTION_ENV_PATH)."""
import sys
from pathlib import Path

if Path({root!r}).is_dir():  # the checkout that wrote this repository, when the server runs beside it
    sys.path.insert(0, {root!r})
from earn_export.serve.{module} import {cls} as TritonPythonModel  # noqa: E402,F401
'''


def model_py(module: str, cls: str = "TritonPythonModel") -> str:
    """A ``model.py`` whose ``TritonPythonModel`` is ``earn_export.serve.<module>.<cls>``."""
    return MODEL_PY.format(root=str(Path(__file__).resolve().parents[2]), module=module, cls=cls)


def write_model_repository(opts: ServeOptions, repo_dir) -> Path:
    """``repo_dir/earn_recommender/{config.pbtxt, 1/model.py, warmup/history}``; returns the repository path.
    The model speaks the engine's original item ids when it has an id map (``ServeOptions.with_engine_ids``)."""
    from google.protobuf import text_format
    from tritonclient.utils import serialize_byte_tensor

    from ..data.id_map import engine_id_map
    from ..engine.manifest import load_manifest
    from ..engine.trie_files import engine_trie

    opts.validate()
    engine = Path(opts.engine_dir).resolve()
    manifest = load_manifest(engine, verify=False)  # instances verify the hashes when they load
    known = sorted(engine_trie(engine, manifest).item_paths())
    if not known:
        raise ValueError(f"{engine}: the engine's trie has no items; re-export the engine")
    opts = replace(opts, engine_dir=str(engine)).with_engine_ids(manifest)
    model_dir = Path(repo_dir) / MODEL_NAME
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    (model_dir / "warmup").mkdir(exist_ok=True)
    warm = (known * WARMUP_ITEMS)[:WARMUP_ITEMS]
    if opts.id_type:  # a map that does not fit the engine is refused here, by name, not by a failing warm-up
        id_map = engine_id_map(engine, manifest, n_items=known[-1] + 1)
        warm = [id_map.original(n) for n in warm]
    (model_dir / "warmup" / "history").write_bytes(  # the tensor's raw bytes (BYTES: 4-byte length, then UTF-8)
        serialize_byte_tensor(np.asarray(warm, dtype=object)).item() if opts.id_type == "str"
        else np.asarray(warm, np.int64).tobytes())
    (model_dir / "config.pbtxt").write_text(text_format.MessageToString(model_config(opts)))
    (model_dir / "1" / "model.py").write_text(model_py("python_model"))
    return Path(repo_dir)
