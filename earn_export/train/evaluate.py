"""Recall/NDCG evaluation with trie-constrained beam search (the protocol of DESIGN.md §6).

The same beam search and backend protocol as the deployed runtime are used, so evaluation numbers and
served recommendations come from one code path. Baselines of the paper's table that are cheap here:
- ``streaming``: StreamingLLM-style cache eviction on the dense model: after a full prefill, decode steps see
  only the first ``n_sink`` and last ``window`` prompt tokens in every layer;
- ``truncate``: the prompt holds only the last ``keep`` history items;
- ``popularity``: the most frequent training items, same list for every user.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..search.beam import constrained_beam_search
from ..search.metrics import evaluate_rankings


class StreamingCacheBackend:
    """Wraps a torch backend: after prefill keep only ``n_sink`` first and ``window`` last prompt tokens."""

    def __init__(self, inner, n_sink: int = 4, window: int = 8):
        self.inner, self.n_sink, self.window = inner, n_sink, window
        self.out_token_ids = inner.out_token_ids
        self.device = getattr(inner, "device", None)

    def prefill(self, input_ids, attention_mask):
        logprobs, state = self.inner.prefill(input_ids, attention_mask)
        cache = state.prefix  # TorchState: the PrefixCache shared by all beams
        mask = cache.attention_mask.clone()
        real = mask.bool()
        rank = real.long().cumsum(-1)  # 1-based rank of each real token from the left
        n = real.sum(-1, keepdim=True)
        keep = real & ((rank <= self.n_sink) | (rank > n - self.window))
        cache.attention_mask = keep.to(mask.dtype)
        return logprobs, state

    def decode(self, state, tokens, parents, step):
        return self.inner.decode(state, tokens, parents, step)


def rank_users(backend, trie, encode, histories: list, beam: int = 20, batch_size: int = 64,
               progress: bool = False, workers: int | None = None) -> np.ndarray:
    """Top-``beam`` item ids per user ([U, beam], -1 where fewer valid items).

    ``workers``: batches searched at once. None: one single-threaded search per core for a torch backend on
    the CPU (``runtime/cpu_workers.py`` says why), else 1 (ONNX Runtime and CUDA bring their own parallelism).
    Results do not depend on it: batches are independent and each is searched exactly as alone.
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    from ..runtime.cpu_workers import cpu_cores, is_cpu_backend, torch_single_threaded

    cpu = is_cpu_backend(backend)
    if workers is None:
        workers = cpu_cores() if cpu else 1
    out = np.full((len(histories), beam), -1, dtype=np.int64)
    starts = list(range(0, len(histories), batch_size))
    bar = tqdm(total=len(histories), desc="beam search", unit="user", disable=not progress)

    def search(s):
        ids, mask = encode(histories[s: s + batch_size])
        with torch.no_grad():
            res = constrained_beam_search(backend, trie, ids, mask, beam=beam)
        out[s: s + len(res.items)] = res.items
        bar.update(len(res.items))

    try:
        if workers <= 1:
            for s in starts:
                search(s)
        else:
            with torch_single_threaded(cpu), ThreadPoolExecutor(workers) as pool:
                list(pool.map(search, starts))  # list(): re-raise a worker's exception here
    finally:
        bar.close()
    return out


def evaluate(backend, trie, encode, examples, beam: int = 20, batch_size: int = 64,
             ks=(10, 20), progress: bool = False, workers: int | None = None, return_ranked: bool = False):
    """Metrics over ``examples`` plus timing; users are ranked in length-sorted batches (less padding).
    ``return_ranked``: also return the ranked item ids ``[U, beam]`` in the order of ``examples``."""
    order = np.argsort([len(h) for h in examples.histories], kind="stable")
    hist = [examples.histories[i] for i in order]
    t0 = time.perf_counter()
    ranked_sorted = rank_users(backend, trie, encode, hist, beam=beam, batch_size=batch_size, progress=progress,
                               workers=workers)
    seconds = time.perf_counter() - t0
    ranked = np.empty_like(ranked_sorted)
    ranked[order] = ranked_sorted
    metrics = evaluate_rankings(ranked, examples.targets, ks=ks)
    metrics["seconds"] = seconds
    metrics["beam"] = beam
    return (metrics, ranked) if return_ranked else metrics


def popularity_metrics(train_sequences, examples, num_items: int, ks=(10, 20)) -> dict:
    """The popularity baseline: rank items by training-interaction count, same list for every user."""
    counts = np.zeros(num_items, dtype=np.int64)
    for seq in train_sequences:
        np.add.at(counts, np.asarray(seq, dtype=np.int64), 1)
    top = np.argsort(-counts, kind="stable")[: max(ks)]
    ranked = np.tile(top, (len(examples.targets), 1))
    return evaluate_rankings(ranked, examples.targets, ks=ks)
