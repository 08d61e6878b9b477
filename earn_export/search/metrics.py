"""Recall@K and NDCG@K with several targets per user (docs/design.md §6): binary gains, IDCG over
min(|targets|, K) hits, users weighted equally; slots of -1 never hit. (The paired bootstrap of two models on one
user set is ``benchmarks/llm_beauty.py``'s.)"""

from __future__ import annotations

import numpy as np


def per_user_metrics(ranked, targets, ks=(10, 20)) -> dict[str, np.ndarray]:
    """Recall@K and NDCG@K of each user (``[U]`` arrays, for paired comparisons of two models on the same users).
    ``ranked [U, >= max(ks)]``: item ids best first; ``targets``: one non-empty set of item ids per user."""
    ranked = np.asarray(ranked)
    if ranked.ndim != 2 or ranked.shape[0] != len(targets):
        raise ValueError(f"ranked must be [U, K] with U = len(targets) = {len(targets)}, got {ranked.shape}")
    if ranked.shape[1] < max(ks):
        raise ValueError(f"need at least {max(ks)} ranked items per user, got {ranked.shape[1]}")
    if any(len(t) == 0 for t in targets):
        raise ValueError("every user needs at least one target item (leave out users without targets)")
    kmax = max(ks)
    hits = np.array([[int(i) in t and i >= 0 for i in row[:kmax]] for row, t in zip(ranked, targets)],
                    dtype=float).reshape(len(targets), kmax)
    n_t = np.array([len(t) for t in targets], dtype=float)
    discount = 1.0 / np.log2(np.arange(2, kmax + 2))
    out = {}
    for k in ks:
        dcg = (hits[:, :k] * discount[:k]).sum(1)
        ideal = np.array([discount[: int(min(n, k))].sum() for n in n_t])
        out[f"recall@{k}"] = hits[:, :k].sum(1) / n_t
        out[f"ndcg@{k}"] = dcg / ideal
    return out


def topk_overlap(items, reference) -> np.ndarray:
    """Per user, the fraction of the reference's top-K set (slots of -1 left out) that ``items`` also holds: how
    a quantized engine is judged against fp32, where near-ties may reorder but should not replace items."""
    return np.array([len({int(x) for x in a if x >= 0} & ref) / max(len(ref), 1)
                     for a, ref in ((a, {int(x) for x in b if x >= 0}) for a, b in zip(items, reference))])


def evaluate_rankings(ranked, targets, ks=(10, 20)) -> dict:
    """Mean of :func:`per_user_metrics` over users (equal weight), plus the user count."""
    per_user = per_user_metrics(ranked, targets, ks)
    return {"users": len(targets), **{k: float(v.mean()) if len(targets) else 0.0 for k, v in per_user.items()}}
