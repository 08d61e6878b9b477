"""A small synthetic dataset: the product's embedded default when the user passes no data.

It must be learnable the way real data is (so a tiny model beats popularity and a broken pipeline shows as a
metric drop) yet build in under a second: clustered items with their own title words, a next item from the same
or the successor cluster, Zipf popularity, and the 8:1:1 global-time split. Deterministic for a seed.
"""

from __future__ import annotations

import numpy as np

from .interactions import global_time_split
from .semantic_ids import build_semantic_ids, item_features
from .sequences import SequentialData

_SYLLABLES = ["ka", "lo", "mi", "ra", "ve", "zu", "ta", "ne", "si", "bo", "du", "fe", "gi", "ho", "ju", "pa",
              "qui", "ro", "sha", "to", "vi", "wa", "xe", "yo", "zen", "mar", "lin", "tor", "bel", "cor"]


def _words(rng: np.random.Generator, n: int) -> list[str]:
    words: dict[str, None] = {}  # distinct, in order of first draw
    while len(words) < n:
        words["".join(rng.choice(_SYLLABLES, size=int(rng.integers(2, 4))))] = None
    return list(words)


def make_synthetic(n_users: int = 2000, n_items: int = 400, n_clusters: int = 20, seed: int = 0,
                   mean_length: float = 12.0, split=(0.8, 0.1, 0.1), levels: int = 3,
                   codebook: int = 16, zipf: float = 0.8) -> SequentialData:
    """Synthetic :class:`SequentialData` with titles and semantic IDs (module doc)."""
    if n_users < 1 or n_items < 2 or not 1 <= n_clusters <= n_items:
        raise ValueError(f"need n_users >= 1, n_items >= 2 and 1 <= n_clusters <= n_items, got {n_users}, "
                         f"{n_items}, {n_clusters}")
    rng = np.random.default_rng(seed)
    cluster = rng.permutation(np.arange(n_items) % n_clusters)
    succ = (np.arange(n_clusters) + 1 + rng.integers(0, max(n_clusters - 1, 1), n_clusters)) % n_clusters
    pop = 1.0 / (rng.permutation(n_items) + 1.0) ** zipf

    # titles: 3 cluster words + 1 generic word
    vocab = _words(rng, 6 * n_clusters + 12)
    generic = vocab[6 * n_clusters:]
    titles = {}
    for i in range(n_items):
        own = vocab[6 * cluster[i]: 6 * cluster[i] + 6]
        words = list(rng.choice(own, size=3, replace=False)) + [generic[int(rng.integers(len(generic)))]]
        titles[i] = " ".join(words)

    # per-cluster cumulative popularity, padded, for vectorised sampling
    members = [np.flatnonzero(cluster == c) for c in range(n_clusters)]
    width = max(len(m) for m in members)
    c_items = np.zeros((n_clusters, width), dtype=np.int64)
    c_cum = np.ones((n_clusters, width))
    for c, m in enumerate(members):
        c_items[c, : len(m)] = m
        c_cum[c, : len(m)] = np.cumsum(pop[m]) / pop[m].sum()
    g_cum = np.cumsum(pop) / pop.sum()

    def draw_global(k):
        return np.minimum(np.searchsorted(g_cum, rng.random(k)), n_items - 1)

    lengths = 3 + rng.poisson(max(mean_length - 3, 0), n_users)
    max_len = int(lengths.max())
    seq = np.zeros((n_users, max_len), dtype=np.int64)
    seq[:, 0] = draw_global(n_users)
    for t in range(1, max_len):
        prev = seq[:, t - 1]
        r = rng.random(n_users)
        target = np.where(r < 0.55, cluster[prev], succ[cluster[prev]])
        u = rng.random(n_users)
        pick = c_items[target, np.minimum((c_cum[target] < u[:, None]).sum(1), width - 1)]
        pick = np.where(r >= 0.85, draw_global(n_users), pick)
        again = pick == prev  # no immediate repeat: fall back to a global draw, then to the next item id
        pick[again] = draw_global(int(again.sum()))
        pick = np.where(pick == prev, (prev + 1) % n_items, pick)
        seq[:, t] = pick

    # each user is active from a random start to the end of the timeline, so the later splits hold the
    # recent items of many users (with a train history) rather than only late newcomers
    start = rng.uniform(0.0, 700.0, n_users)
    times = start[:, None] + np.sort(rng.uniform(0.0, 1.0, (n_users, max_len)), axis=1) * (1000.0 - start[:, None])
    valid = np.arange(max_len)[None, :] < lengths[:, None]
    users = np.repeat(np.arange(n_users), lengths)
    items = seq[valid]
    ts = times[valid]
    part = global_time_split(ts, split)
    out = [{u: [] for u in range(n_users)} for _ in range(3)]
    for u, i, p in zip(users.tolist(), items.tolist(), part.tolist()):
        out[p][u].append(i)

    sem = build_semantic_ids(item_features(titles=titles, num_items=n_items, dim=32, seed=seed),
                             levels=levels, codebook=codebook, seed=seed)
    return SequentialData(train=out[0], valid=out[1], test=out[2], num_items=n_items, titles=titles,
                          semantic_ids=sem, skipped={},
                          source=f"synthetic(n_users={n_users}, n_items={n_items}, n_clusters={n_clusters}, "
                                 f"seed={seed})")
