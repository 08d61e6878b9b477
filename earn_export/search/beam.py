"""Trie-constrained beam search over item identifiers (docs/design.md §5), vectorised in numpy.

Only the children of a beam's trie node are candidates (the trie mask), ranked over beam × children per user.
A beam without candidates is *dead* (score -inf, item -1) but keeps its slot, so tensors keep the static
``[B, beam]`` shape of the graphs. Scores are sums of log-probs, as transformers ranks with ``length_penalty=0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class BeamResult:
    items: np.ndarray  # [B, beam] int64, best first; -1 = no valid item in this slot
    scores: np.ndarray  # [B, beam] float32 sum of log-probs; -inf where items == -1
    tokens: np.ndarray  # [B, beam, L] int64 identifier token ids; -1 where items == -1


def token_columns(trie, out_token_ids) -> np.ndarray:
    """Column of the backend's log-prob output for every trie token id (-1 padding kept; ``out_token_ids`` None:
    full vocabulary); a trie token missing from the output is an engine/catalog mismatch, reported."""
    tokens = np.unique(trie.tokens)
    size = int(max(tokens.max(initial=0), 0)) + 1
    if out_token_ids is None:
        return np.arange(size, dtype=np.int64)
    out = np.asarray(out_token_ids, dtype=np.int64)
    col = np.full(max(size, int(out.max(initial=0)) + 1), -1, dtype=np.int64)
    col[out] = np.arange(len(out))
    missing = tokens[col[tokens] < 0]
    if len(missing):
        raise ValueError(f"{len(missing)} identifier tokens of the trie (e.g. {missing[:5].tolist()}) are not in the "
                         "engine's output vocabulary; the engine was exported for another catalog. Re-export with "
                         "this catalog's trie.")
    return col


def _select(scores: np.ndarray, beam: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``scores [B, M]``: indices and values of the ``beam`` best, best first (stable on ties)."""
    b, m = scores.shape
    if m > beam:
        # O(M) selection equal to a stable full sort: everything above the beam-th best value, then the
        # lowest-index entries equal to it (argpartition alone picks arbitrary members of a tie at the cut)
        kth = -np.partition(-scores, beam - 1, axis=1)[:, beam - 1:beam]
        above = scores > kth
        tied = scores == kth
        keep = above | (tied & (np.cumsum(tied, axis=1) <= beam - above.sum(1, keepdims=True)))
        part = np.nonzero(keep)[1].reshape(b, beam)  # per row, in index order
        vals = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-vals, axis=1, kind="stable")
        idx = np.take_along_axis(part, order, axis=1)
    else:
        idx = np.argsort(-scores, axis=1, kind="stable")
        if m < beam:
            idx = np.concatenate([idx, np.zeros((b, beam - m), dtype=idx.dtype)], axis=1)
    vals = np.take_along_axis(scores, idx, axis=1)
    if m < beam:
        vals[:, m:] = -np.inf
    return idx, vals


def constrained_beam_search(backend, trie, input_ids, attention_mask, beam: int = 20,
                            columns: np.ndarray | None = None) -> BeamResult:
    """Top-``beam`` valid identifiers per prompt (see the module doc). ``backend``: SearchBackend protocol."""
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    child_tokens, child_nodes = trie.padded_children()
    col = token_columns(trie, backend.out_token_ids) if columns is None else columns

    input_ids = np.asarray(input_ids)
    n_users = input_ids.shape[0]
    logprobs, state = backend.prefill(input_ids, attention_mask)
    # step 0: one row per user, all at the root
    nodes = np.zeros((n_users, 1), dtype=np.int64)
    scores = np.zeros((n_users, 1), dtype=np.float32)
    logprobs = logprobs[:, None, :]
    path = np.zeros((n_users, beam, 0), dtype=np.int64)
    parents = np.zeros((n_users, 1), dtype=np.int64)
    for step in range(int(trie.depth)):
        if step > 0:
            # dead beams (token -1) feed token 0: their scores stay -inf, the slot only keeps shapes static
            logprobs, state = backend.decode(state, np.maximum(path[:, :, -1], 0), parents, step)
        # only the current nodes' children are looked up: a whole-trie table would cost O(nodes x C) per call
        kids = child_tokens[nodes]  # [B, nb, C], -1 = padding
        ok = (kids >= 0) & np.isfinite(scores)[..., None]
        lp = np.take_along_axis(logprobs, np.where(ok, col[np.maximum(kids, 0)], 0), axis=2)
        cand = np.where(ok, scores[..., None] + lp, -np.inf).reshape(n_users, -1)
        idx, new_scores = _select(cand, beam)
        parent, which = np.divmod(idx, child_tokens.shape[1])
        parent_nodes = np.take_along_axis(nodes, parent, axis=1)
        alive = np.isfinite(new_scores)
        new_tokens = np.where(alive, child_tokens[parent_nodes, which], -1)
        new_nodes = np.where(alive, child_nodes[parent_nodes, which], 0)
        parent = np.where(alive, parent, 0)
        prev = np.take_along_axis(path, parent[..., None].repeat(path.shape[2], 2), axis=1) if step else path
        path = np.concatenate([prev, new_tokens[..., None]], axis=2)
        nodes, scores, parents = new_nodes, new_scores.astype(np.float32), parent
    leaf = trie.leaf_item[nodes]
    alive = np.isfinite(scores) & (leaf >= 0)
    items = np.where(alive, leaf, -1).astype(np.int64)
    return BeamResult(items=items, scores=np.where(alive, scores, -np.inf).astype(np.float32),
                      tokens=np.where(alive[..., None], path, -1))
