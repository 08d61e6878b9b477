"""``TritonPythonModel`` of ``earn_recommender``: one ``Recommender`` per model instance (stub process).

``execute`` gets a ragged dynamic batch. Each request is checked on its own (``served_model.parse_request``):
the valid ones go through one ``Recommender.recommend`` call, each invalid one gets its own error response. A
failure inside ``recommend`` fails only that batch's valid requests, with its text; the instance keeps serving.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from .served_model import OPTIONS_PARAMETER, BadRequest, ServeOptions, parse_request


def load_recommender(engine_dir, backend: str, threads: int, batch_size: int):
    """A Recommender (a served instance, a Ray actor) whose ONNX Runtime sessions use ``threads`` threads."""
    from ..runtime import Recommender

    if backend == "cpp":
        from ..runtime.cpp_runtime import CppRecommender

        return CppRecommender.load(engine_dir, verify="fast", batch_size=batch_size, intra_op_threads=threads)
    so = None
    if backend == "onnxruntime":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    return Recommender.load(engine_dir, backend=backend, batch_size=batch_size, session_options=so)


def answer(rec, opts: ServeOptions, requests: list[tuple]) -> list:
    """``requests``: (history array | None, top_k array | None) per request -> per request either a dict of
    output arrays or a :class:`BadRequest` / other exception. Pure (no Triton types): tested without a server."""
    out: list = [None] * len(requests)
    good = []
    for i, (history, top_k) in enumerate(requests):
        try:
            good.append((i, *parse_request(history, top_k, rec.known_items, opts, id_map=rec.id_map)))
        except BadRequest as exc:
            out[i] = exc
    if good:
        max_k = max(k for _, _, k in good)
        try:
            res = rec.recommend([h for _, h, _ in good], top_k=max_k, beam=opts.beam, on_unknown=opts.on_unknown,
                                ids="original" if opts.id_type else "catalog")
        except Exception as exc:  # noqa: BLE001 - answered to these requests; the instance stays up
            for i, _, _ in good:
                out[i] = exc
            return out
        for row, (i, _, k) in enumerate(good):
            out[i] = {"items": _items_tensor(res.items[row: row + 1, :k], opts.id_type),
                      "scores": res.scores[row: row + 1, :k].astype(np.float32),
                      "skipped": res.skipped[row: row + 1, None].astype(np.int64),
                      "truncated": res.truncated[row: row + 1, None].astype(np.int64)}
            if opts.id_type:
                out[i]["index"] = res.index[row: row + 1, :k].astype(np.int64)
            if opts.id_type and opts.titles:
                out[i]["titles"] = _strings(res.titles[row: row + 1, :k])
    return out


def _strings(values: np.ndarray) -> np.ndarray:
    """An object array of UTF-8 bytes (a BYTES tensor); None -> b\"\"."""
    return np.vectorize(lambda x: b"" if x is None else str(x).encode("utf-8"), otypes=[object])(values) \
        if values.size else np.empty(values.shape, dtype=object)


def _items_tensor(items: np.ndarray, id_type: str) -> np.ndarray:
    """The ``items`` output: BYTES for string ids (``""`` pads), else INT64 (-1 pads)."""
    if id_type == "str":
        return _strings(items)
    if id_type == "int":
        return np.array([[-1 if x is None else int(x) for x in row] for row in items], np.int64).reshape(items.shape)
    return items.astype(np.int64)


def check_id_map(rec, opts: ServeOptions) -> None:
    """The model config was written for the engine's id map: a copy of the engine without it (or with another
    kind of ids) fails the load by name instead of answering in the wrong ids."""
    have = rec.id_map.id_type if rec.id_map is not None else ""
    if opts.id_type and have != opts.id_type:
        raise RuntimeError(f"the model config expects original item ids of type {opts.id_type!r} but the engine at "
                           f"{opts.engine_dir} has {'ids of type ' + repr(have) if have else 'no item id map'}; "
                           "write the model repository again from this engine")


class TritonPythonModel:
    """Triton Python-backend model (``initialize`` / ``execute`` / ``finalize``)."""

    def initialize(self, args):
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        self.opts = ServeOptions.from_json(config["parameters"][OPTIONS_PARAMETER]["string_value"])
        self.name = args.get("model_instance_name", "earn_recommender")
        t0 = time.perf_counter()
        self.rec = self.load(args)
        pb_utils.Logger.log_info(f"{self.name}: engine {self.opts.engine_dir} ({self.opts.backend}) loaded in "
                                 f"{time.perf_counter() - t0:.1f} s")

    def load(self, args):
        """The instance's Recommender; a failed test recommendation fails the load (the server never reports
        ready with an engine that cannot answer)."""
        opts = self.opts
        threads = opts.threads or max(1, (os.cpu_count() or 1) // max(opts.instances, 1))
        rec = load_recommender(opts.engine_dir, opts.backend, threads, max(opts.max_batch, 1))
        check_id_map(rec, self.opts)
        rec.recommend([[min(rec.known_items)]], top_k=1, beam=self.opts.beam, ids="catalog")
        return rec

    def _error(self, exc):
        bad = isinstance(exc, BadRequest)
        text = str(exc) if bad else f"{type(exc).__name__}: {exc}"
        try:
            err = self.pb.TritonError(text, getattr(self.pb.TritonError, "INVALID_ARG" if bad else "INTERNAL"))
        except (AttributeError, TypeError):  # older Python backends have no codes and take the message only
            err = self.pb.TritonError(text)
        return self.pb.InferenceResponse(output_tensors=[], error=err)

    def execute(self, requests):
        pb = self.pb

        def tensor(request, name):
            t = pb.get_input_tensor_by_name(request, name)
            return None if t is None else t.as_numpy()

        results = answer(self.rec, self.opts, [(tensor(r, "history"), tensor(r, "top_k")) for r in requests])
        return [self._error(res) if isinstance(res, Exception) else
                pb.InferenceResponse(output_tensors=[pb.Tensor(n, a) for n, a in res.items()]) for res in results]

    def finalize(self):
        self.rec = None
