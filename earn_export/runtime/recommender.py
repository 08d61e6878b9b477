"""``Recommender``: item-id histories in, top-K item ids out (prefill → beam expand → decode ×(L-1), trie mask).

Contract of :meth:`Recommender.recommend`: unknown ids raise :class:`UnknownItemError` naming them (or, with
``on_unknown="skip"``, are dropped and counted in ``skipped``); an empty history is allowed; a history longer
than ``max_history`` keeps its most recent items (counted in ``truncated``); fewer valid items than ``top_k``
pad with -1 / -inf. ``recommend`` keeps no per-call state on ``self``, so threads may call it concurrently.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import check_choice, hint
from ..search.beam import constrained_beam_search, token_columns
from ..engine.prompt_pieces import PromptPieces
from ..engine.trie_files import engine_trie
from .results import RecommendResult, UnknownItemError  # noqa: F401 (UnknownItemError: imported from here)


class Recommender:
    """Top-K items per user from a search backend, the trie and a prompt encoder."""

    def __init__(self, backend, trie, encoder, known_items, max_history: int = 20, batch_size: int = 64,
                 manifest: dict | None = None, id_map=None):
        self.backend = backend
        self.id_map = id_map  # earn_export.data.id_map.ItemIdMap: original item ids (None: catalog indices only)
        self.trie = trie
        self.encoder = encoder
        self.known_items = frozenset(int(i) for i in known_items)
        self.max_history = int(max_history)
        self.batch_size = int(batch_size)
        self.manifest = manifest or {}
        # trie token -> output column, once: also refuses, at load, an engine exported for another catalog
        self.columns = token_columns(trie, backend.out_token_ids)

    # -- construction ----------------------------------------------------------------------------------------
    @classmethod
    def load(cls, engine_dir, backend: str = "onnxruntime", providers=None, checkpoint=None, verify="fast",
             batch_size: int = 64, session_options=None, device=None) -> "Recommender":
        """An exported engine directory. ``backend="torch"``: the torch reference on the source checkpoint (on
        ``device``) with the engine's trie, prompts and head; ``"cpp"``: the C++ runtime. ``verify``: ``"fast"``,
        ``"full"`` or ``"off"``."""
        from ..engine.manifest import EngineDirError, load_manifest
        from .backends import OrtBackend, TorchBackend

        if backend == "cpp":  # libearn (cpp/): same checks, prompts and search, in C++
            from .cpp_runtime import CppRecommender

            return CppRecommender.load(engine_dir, providers=providers, verify=verify, batch_size=batch_size)
        engine_dir = Path(engine_dir)
        manifest = load_manifest(engine_dir, verify=verify)
        trie = engine_trie(engine_dir, manifest)  # refuses an engine without a trie before loading graphs
        if backend == "onnxruntime":
            be = OrtBackend(engine_dir, providers=providers, manifest=manifest, session_options=session_options)
        elif backend == "torch":
            ckpt = checkpoint or manifest.get("source_checkpoint")
            if not ckpt or not Path(ckpt).is_dir():
                raise EngineDirError(f"backend='torch' needs the checkpoint the engine was exported from, and the "
                                     f"manifest's source_checkpoint {ckpt!r} is not available — "
                                     + hint("pass checkpoint=DIR", "pass --checkpoint DIR"))
            from ..model import load_pretrained

            be = TorchBackend(load_pretrained(ckpt).to(device or "cpu"),
                              head_token_ids=manifest["vocab"]["vocab_out_token_ids"])
        else:
            raise ValueError(f"backend must be 'onnxruntime', 'cpp' or 'torch', got {backend!r}")
        return cls.from_engine(engine_dir, manifest, be, batch_size=batch_size, trie=trie)

    @classmethod
    def from_engine(cls, engine_dir, manifest: dict, backend, batch_size: int = 64, trie=None) -> "Recommender":
        """The engine's trie, prompt encoder and history rules around any search backend (ORT sessions, the
        torch reference, Triton BLS calls ...). ``manifest`` is the already-checked ``load_manifest`` result.
        Prompts come from the engine's prompt pieces (no tokenizer) unless its tokenizer is context-dependent."""
        from ..data.id_map import engine_id_map

        trie = trie if trie is not None else engine_trie(engine_dir, manifest)
        if (manifest.get("prompt") or {}).get("format") == "pieces":
            encoder = PromptPieces.load(engine_dir)
        else:
            from ..data.prompts import PromptBuilder

            encoder = PromptBuilder.load(engine_dir)
        paths = trie.item_paths()
        id_map = engine_id_map(engine_dir, manifest, n_items=max(paths) + 1 if paths else 0)
        return cls(backend, trie, encoder, paths.keys(), max_history=manifest["model"].get("max_history") or 20,
                   batch_size=batch_size, manifest=manifest, id_map=id_map)

    # -- inference -------------------------------------------------------------------------------------------
    def prepare(self, histories, on_unknown: str = "error"):
        """Validate, filter and truncate histories -> (clean histories, skipped [U], truncated [U])."""
        check_choice("on_unknown", on_unknown, ("error", "skip"))
        clean, unknown = [], {}
        skipped = np.zeros(len(histories), np.int64)
        truncated = np.zeros(len(histories), np.int64)
        for u, hist in enumerate(histories):
            hist = [int(i) for i in hist]
            bad = [i for i in hist if i not in self.known_items]
            if bad:
                unknown[u] = bad
                skipped[u] = len(bad)
                hist = [i for i in hist if i in self.known_items]
            if len(hist) > self.max_history:
                truncated[u] = len(hist) - self.max_history
                hist = hist[-self.max_history:] if self.max_history > 0 else []
            clean.append(hist)
        if unknown and on_unknown == "error":
            raise UnknownItemError(unknown)
        return clean, skipped, truncated

    def recommend(self, histories, top_k: int = 20, beam: int = 20, on_unknown: str = "error",
                  ids: str | None = None) -> RecommendResult:
        """Top-``top_k`` items for each history (item-id lists, oldest first); ``ids``: None (original ids when
        the engine has a map), "original" or "catalog"."""
        from .original_ids import recommend_with_ids

        return recommend_with_ids(self.id_map, self._recommend_catalog, histories, top_k, beam, on_unknown, ids)

    def _recommend_catalog(self, histories, top_k, beam, on_unknown) -> RecommendResult:
        if beam < 1 or not 1 <= top_k <= beam:
            raise ValueError(f"need 1 <= top_k <= beam, got top_k={top_k}, beam={beam}")
        histories = list(histories)
        clean, skipped, truncated = self.prepare(histories, on_unknown)
        u = len(clean)
        items = np.full((u, top_k), -1, np.int64)
        scores = np.full((u, top_k), -np.inf, np.float32)
        for s in range(0, u, self.batch_size):
            chunk = clean[s: s + self.batch_size]
            ids, mask = self.encoder(chunk)
            res = constrained_beam_search(self.backend, self.trie, ids, mask, beam=beam, columns=self.columns)
            items[s: s + len(chunk)] = res.items[:, :top_k]  # the search marks empty slots: item -1, score -inf
            scores[s: s + len(chunk)] = res.scores[:, :top_k]
        return RecommendResult(items=items, scores=scores, skipped=skipped, truncated=truncated)
