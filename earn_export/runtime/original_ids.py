"""Original item ids in and out around any recommender (Python ``Recommender``, the C++ runtime's wrapper).

The search works on catalog indices; ``ids="original"`` translates histories to indices with ``item_ids.json``,
runs the unchanged search and translates back: ``items`` is an object array of original ids (``None`` padding),
``index`` the indices (-1 padding), ``titles`` the titles. Unknown ids follow ``on_unknown``.
"""

from __future__ import annotations

import numpy as np

from ..errors import UsageError, check_choice


def to_catalog(id_map, histories, on_unknown: str):
    """Original-id histories -> (catalog-index histories, unknown ids dropped per user [U], {user: unknown ids})."""
    from .results import UnknownItemError

    check_choice("on_unknown", on_unknown, ("error", "skip"))
    out, unknown = [], {}
    skipped = np.zeros(len(histories), np.int64)
    for u, hist in enumerate(histories):
        if isinstance(hist, (str, bytes)):
            raise ValueError(f"history {u} is a single string {hist!r}; pass a list of item ids per user")
        row = []
        for x in (hist.tolist() if isinstance(hist, np.ndarray) else hist):
            x = x.item() if isinstance(x, np.generic) else x
            n = id_map.lookup(x)
            if n is None:
                unknown.setdefault(u, []).append(x)
            else:
                row.append(n)
        skipped[u] = len(unknown.get(u, ()))
        out.append(row)
    if unknown and on_unknown == "error":
        raise UnknownItemError(unknown)
    return out, skipped, unknown


def _per_item(index: np.ndarray, fn) -> np.ndarray:
    """``fn(n)`` of every catalog index as an object array (None for the -1 padding)."""
    out = np.empty(index.shape, dtype=object)
    for pos, n in np.ndenumerate(index):
        out[pos] = fn(n) if n >= 0 else None
    return out


def recommend_with_ids(id_map, inner, histories, top_k, beam, on_unknown, ids):
    """``inner(histories, top_k, beam, on_unknown)`` (catalog indices) in the id mode ``ids``: None (original
    when the engine has an id map, else catalog), "original" or "catalog"."""
    if ids is None:
        ids = "original" if id_map is not None else "catalog"
    check_choice("ids", ids, ("original", "catalog"))
    if ids == "original" and id_map is None:
        raise UsageError("ids='original' needs an engine with an item id map (item_ids.json), and this one has none "
                         "(trained on data without original ids, or exported before id maps) — pass catalog indices "
                         "(ids='catalog'), or retrain/re-export from `earn-export train --interactions FILE`")
    if ids == "original":
        histories, skipped, unknown = to_catalog(id_map, list(histories), on_unknown)
    res = inner(histories, top_k, beam, on_unknown)
    res.index = np.asarray(res.items, dtype=np.int64)
    if id_map is not None:
        res.titles = _per_item(res.index, id_map.title)
    if ids == "original":
        res.items = _per_item(res.index, id_map.original)
        res.skipped = np.asarray(res.skipped, np.int64) + skipped
        res.unknown = unknown
    return res
