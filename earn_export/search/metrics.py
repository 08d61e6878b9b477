"""Recall@K and NDCG@K with several targets per user (the protocol of the paper's group, docs/design.md §6).

Recall@K = hits in the top K / number of targets; NDCG@K = DCG / IDCG with binary gains, IDCG over
min(|targets|, K) ideal hits. Users are averaged with equal weight. Ranked slots of -1 (fewer valid items
than K) never hit.
"""

from __future__ import annotations

import numpy as np


def evaluate_rankings(ranked, targets, ks=(10, 20)) -> dict:
    """``ranked [U, >= max(ks)]`` item ids best first; ``targets``: one non-empty set of item ids per user."""
    ranked = np.asarray(ranked)
    if ranked.ndim != 2 or ranked.shape[0] != len(targets):
        raise ValueError(f"ranked must be [U, K] with U = len(targets) = {len(targets)}, got {ranked.shape}")
    if ranked.shape[1] < max(ks):
        raise ValueError(f"need at least {max(ks)} ranked items per user, got {ranked.shape[1]}")
    if any(len(t) == 0 for t in targets):
        raise ValueError("every user needs at least one target item (leave out users without targets)")
    kmax = max(ks)
    hits = np.array([[int(i) in t and i >= 0 for i in row[:kmax]] for row, t in zip(ranked, targets)], dtype=float)
    n_t = np.array([len(t) for t in targets], dtype=float)
    discount = 1.0 / np.log2(np.arange(2, kmax + 2))
    out = {"users": len(targets)}
    for k in ks:
        dcg = (hits[:, :k] * discount[:k]).sum(1)
        ideal = np.array([discount[: int(min(n, k))].sum() for n in n_t])
        out[f"recall@{k}"] = float((hits[:, :k].sum(1) / n_t).mean()) if len(targets) else 0.0
        out[f"ndcg@{k}"] = float((dcg / ideal).mean()) if len(targets) else 0.0
    return out
