"""``Recommender.load(dir, backend="cpp")``: the C++ runtime (libearn, ``cpp/``) behind the Python ``recommend`` API:
the same engine and search semantics without Python in the per-step loop (calls release the GIL). libearn
``dlopen()``s the ``libonnxruntime`` of the installed ``onnxruntime`` wheel."""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path

import numpy as np

from .results import RecommendResult


class CppRuntimeUnavailable(ImportError):
    """The C++ runtime was not built or cannot load ONNX Runtime; the message says how to get it."""


def onnxruntime_library() -> Path:
    """The ``libonnxruntime.so.*`` inside the installed ``onnxruntime`` wheel (found without importing it)."""
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise CppRuntimeUnavailable("the onnxruntime package is not installed (pip install onnxruntime)")
    capi = Path(list(spec.submodule_search_locations)[0]) / "capi"
    libs = sorted(capi.glob("libonnxruntime.so*"), key=lambda p: len(p.name), reverse=True)
    if not libs:
        raise CppRuntimeUnavailable(f"{capi}: no libonnxruntime.so* in the onnxruntime wheel; the C++ runtime "
                                    "needs the wheel's shared library (Linux wheels ship it)")
    return libs[0]


@functools.cache  # a failed load is not cached: the next call tries again
def module():
    """The ``earn_export_cpp`` extension with ONNX Runtime loaded (once per process)."""
    try:
        import earn_export_cpp
    except ImportError as exc:
        raise CppRuntimeUnavailable(
            f"the C++ runtime is not built ({exc}); it is built by `make install` / `pip install -e .` when the "
            "ONNX Runtime C++ headers are found (ORT_INCLUDE_DIR, /usr/include/onnxruntime or "
            "../shared/third_party/onnxruntime/1.27.1-include; docs/cpp-runtime.md). "
            "Use backend='onnxruntime' meanwhile.") from exc
    earn_export_cpp.load_onnxruntime(str(onnxruntime_library()))
    return earn_export_cpp


def available() -> bool:
    try:
        module()
        return True
    except ImportError:
        return False


class CppRecommender:
    """The C++ ``Recommender`` with the Python one's ``recommend`` signature and ``RecommendResult``."""

    def __init__(self, native, engine_dir):
        self.native = native
        self.engine_dir = Path(engine_dir)
        self.manifest = json.loads(native.manifest_json)
        self.max_history = native.max_history
        from ..data.id_map import engine_id_map

        # original item ids: translated here, around libearn (which works on catalog indices)
        self.id_map = engine_id_map(self.engine_dir, self.manifest)

    @functools.cached_property
    def known_items(self) -> frozenset:
        """The catalog's item ids (read once from the engine's trie arrays): servers check requests against it
        before they reach libearn, as for the Python ``Recommender``."""
        from ..engine.trie_files import engine_trie

        return frozenset(int(i) for i in engine_trie(self.engine_dir, self.manifest).item_paths())

    @classmethod
    def load(cls, engine_dir, providers=None, verify="full", batch_size: int = 64,
             custom_op_libraries=(), intra_op_threads: int = 0) -> "CppRecommender":
        """``verify``: ``"full"``/True (libearn hashes every file), ``"fast"`` (Python's remembered check,
        ``earn_export.engine.manifest``, hashes only files not verified before; libearn then checks presence only)
        or ``"off"``/False (presence only)."""
        from ..engine.manifest import attention_mode, load_manifest
        from ..ops.libraries import require_ort_ops

        if verify == "fast":
            load_manifest(engine_dir, verify="fast")
        man_path = Path(engine_dir) / "manifest.json"
        if not custom_op_libraries and man_path.is_file():  # --attention plugin: the op library Python registers
            manifest = json.loads(man_path.read_text())
            if attention_mode(manifest) == "plugin":
                custom_op_libraries = [require_ort_ops(manifest, engine_dir)]
        native = module().Recommender.load(str(engine_dir), providers=list(providers or []),
                                           custom_op_libraries=[str(p) for p in custom_op_libraries],
                                           verify=verify in (True, "full"), batch_size=batch_size,
                                           intra_op_threads=intra_op_threads)
        return cls(native, engine_dir)

    def recommend(self, histories, top_k: int = 20, beam: int = 20, on_unknown: str = "error", ids=None):
        """As ``Recommender.recommend`` (``ids``: original ids by default when the engine has an id map)."""
        from .original_ids import recommend_with_ids

        return recommend_with_ids(self.id_map, self._recommend_catalog, histories, top_k, beam, on_unknown, ids)

    def _recommend_catalog(self, histories, top_k, beam, on_unknown):
        # libearn returns (items, scores, skipped, truncated): RecommendResult's first four fields, in order
        return RecommendResult(*self.native.recommend(_lists(histories), top_k, beam, on_unknown))

    def recommend_timed(self, histories, top_k: int = 20, beam: int = 20, on_unknown: str = "error"):
        """``(RecommendResult, timings)``: timings splits the call into graph time and bookkeeping + copies."""
        result, times = self.native.recommend_timed(_lists(histories), top_k, beam, on_unknown)
        return RecommendResult(*result), times


def _lists(histories) -> list[list[int]]:
    return [np.asarray(h, dtype=np.int64).reshape(-1).tolist() for h in histories]
