"""Semantic IDs for catalogs that come without them: item features -> residual k-means codes.

Generative recommenders decode an item as a code sequence whose prefixes group similar items; residual k-means
gives the RQ-VAE's coarse-to-fine structure without training a network, deterministically and in seconds.
Features: TF-IDF + SVD of titles when there are any, else co-occurrence in users' sequences + SVD. A last
collision level ``<x_j>`` makes every identifier unique.
"""

from __future__ import annotations

import string
import warnings

import numpy as np

from ..errors import hint
from .errors import DataError


def _svd(matrix, dim: int, seed: int) -> np.ndarray:
    from sklearn.decomposition import TruncatedSVD

    n, f = matrix.shape
    k = min(dim, f - 1, n - 1)
    if k < 1:  # too small to reduce: use the matrix itself
        return np.asarray(matrix.todense() if hasattr(matrix, "todense") else matrix, dtype=np.float64)
    return TruncatedSVD(n_components=k, random_state=seed, algorithm="randomized", n_iter=7).fit_transform(matrix)


def _normalise(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norm > 0, norm, 1.0)).astype(np.float32)


def item_features(titles=None, sequences=None, num_items: int | None = None, dim: int = 64, seed: int = 0,
                  window: int = 3) -> np.ndarray:
    """Feature matrix ``[num_items, <= dim]`` float32 (module doc). ``titles``: dict item -> text or a list;
    ``sequences``: dict user -> item list or an iterable of item lists. Items without a title or without
    co-occurrences get a zero row (k-means then groups them; the collision level keeps them apart)."""
    if titles:
        if not isinstance(titles, dict):
            titles = dict(enumerate(titles))
        n = num_items if num_items is not None else max(titles) + 1
        docs = [str(titles.get(i, "") or "") for i in range(n)]
        from sklearn.feature_extraction.text import TfidfVectorizer

        try:
            tfidf = TfidfVectorizer(sublinear_tf=True, token_pattern=r"(?u)\b\w+\b").fit_transform(docs)
        except ValueError:  # every title empty after tokenisation
            raise DataError("item titles contain no words — " + hint(
                "pass sequences= to build co-occurrence features",
                "drop the title column of --interactions to build identifiers from co-occurrence"))
        return _normalise(_svd(tfidf, dim, seed))
    if sequences is not None:
        from scipy import sparse

        seqs = list(sequences.values()) if isinstance(sequences, dict) else list(sequences)
        rows, cols = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]  # pairs (item, item w steps later)
        for s in seqs:
            s = np.asarray(s, dtype=np.int64)
            for w in range(1, window + 1):
                rows.append(s[:-w])
                cols.append(s[w:])
        top = max((int(np.max(s)) for s in seqs if len(s)), default=-1)
        n = num_items if num_items is not None else top + 1
        if n <= 0:
            raise DataError("no items in the sequences; cannot build co-occurrence features")
        r, c = np.concatenate(rows), np.concatenate(cols)
        m = sparse.coo_matrix((np.ones(len(r)), (r, c)), shape=(n, n)).tocsr()
        m = m + m.T
        m.data = np.log1p(m.data)
        return _normalise(_svd(m, dim, seed))
    raise DataError("item_features needs titles or sequences (neither was given)")


def build_semantic_ids(features, levels: int = 3, codebook: int = 256, seed: int = 0) -> dict[int, list[str]]:
    """Residual k-means codes + a collision level (module doc): item id (row) -> ``levels + 1`` code strings."""
    from sklearn.cluster import KMeans

    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise DataError(f"features must be a non-empty [n_items, F] matrix, got shape {x.shape}")
    if levels < 1 or codebook < 1:
        raise DataError(f"levels and codebook must be >= 1, got {levels}, {codebook}")
    letters = string.ascii_lowercase
    if levels + 1 > len(letters):
        raise DataError(f"at most {len(letters) - 1} levels are supported, got {levels}")
    n = len(x)
    codes = np.zeros((n, levels), dtype=np.int64)
    resid = x.copy()
    for lvl in range(levels):
        k = min(codebook, n)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "fewer distinct points than clusters" on tiny or duplicate data
            km = KMeans(n_clusters=k, n_init=1, random_state=seed + lvl, max_iter=100).fit(resid)
        codes[:, lvl] = km.labels_
        resid = resid - km.cluster_centers_[km.labels_]
    out: dict[int, list[str]] = {}
    count: dict[tuple, int] = {}
    for i in range(n):
        key = tuple(codes[i])
        j = count.get(key, 0)
        count[key] = j + 1
        out[i] = [f"<{letters[lvl]}_{codes[i, lvl]}>" for lvl in range(levels)] + [f"<{letters[levels]}_{j}>"]
    return out


def semantic_ids_for(data, levels: int = 3, codebook: int = 256, dim: int = 64, seed: int = 0) -> dict[int, list[str]]:
    """Semantic IDs for a :class:`SequentialData`: from its titles if any, else train co-occurrence."""
    feats = item_features(titles=data.titles or None, sequences=None if data.titles else data.train,
                          num_items=data.num_items, dim=dim, seed=seed)
    return build_semantic_ids(feats, levels=levels, codebook=codebook, seed=seed)
