"""Original item ids in and out around any recommender (Python ``Recommender``, the C++ runtime's wrapper).

The search works on catalog indices; ``ids="original"`` translates histories to indices with ``item_ids.json``,
runs the unchanged search and translates back: ``items`` is an object array of original ids (``None`` padding),
``index`` the indices (-1 padding), ``titles`` the titles. Unknown ids follow ``on_unknown``.
"""

from __future__ import annotations

import numpy as np

from ..errors import UsageError, check_choice

ID_MODES = ("original", "catalog")


def resolve_mode(id_map, ids) -> str:
    """``ids``: None (original when the engine has an id map, else catalog), "original" or "catalog"."""
    if ids is None:
        return "original" if id_map is not None else "catalog"
    check_choice("ids", ids, ID_MODES)
    if ids == "original" and id_map is None:
        raise UsageError("ids='original' needs an engine with an item id map (item_ids.json), and this one has none "
                         "(trained on data without original ids, or exported before id maps) — pass catalog indices "
                         "(ids='catalog'), or retrain/re-export from `earn-export train --interactions FILE`")
    return ids


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


def to_original(id_map, res, skipped_before, unknown=None):
    """A catalog-index RecommendResult -> the same result in original ids (module doc)."""
    index = np.asarray(res.items, dtype=np.int64)
    items = np.empty(index.shape, dtype=object)
    titles = np.empty(index.shape, dtype=object)
    for pos, n in np.ndenumerate(index):
        items[pos] = id_map.original(n) if n >= 0 else None
        titles[pos] = id_map.title(n) if n >= 0 else None
    res.index = index
    res.items = items
    res.titles = titles
    res.skipped = np.asarray(res.skipped, np.int64) + skipped_before
    res.unknown = unknown or {}
    return res


def recommend_with_ids(id_map, inner, histories, top_k, beam, on_unknown, ids):
    """``inner(histories, top_k, beam, on_unknown)`` (catalog indices) in the chosen id mode."""
    mode = resolve_mode(id_map, ids)
    if mode == "catalog":
        res = inner(histories, top_k, beam, on_unknown)
        res.index = np.asarray(res.items, dtype=np.int64)
        if id_map is not None:
            res.titles = np.vectorize(lambda n: id_map.title(n) if n >= 0 else None, otypes=[object])(res.index) \
                if res.index.size else np.empty(res.index.shape, dtype=object)
        return res
    histories = list(histories)
    clean, skipped, unknown = to_catalog(id_map, histories, on_unknown)
    return to_original(id_map, inner(clean, top_k, beam, on_unknown), skipped, unknown)
