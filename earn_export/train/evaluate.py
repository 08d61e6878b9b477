"""Recall/NDCG evaluation with the runtime's own trie-constrained beam search (docs/design.md §6), so evaluation
numbers and served recommendations come from one code path; plus the cheap baselines of the paper's table
(``streaming`` cache eviction, ``truncate``d prompts, ``popularity``)."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..errors import UsageError, hint
from ..search.beam import constrained_beam_search
from ..search.metrics import evaluate_rankings


class StreamingCacheBackend:
    """Wraps a torch backend: after prefill keep only ``n_sink`` first and ``window`` last prompt tokens."""

    def __init__(self, inner, n_sink: int = 4, window: int = 8):
        self.inner, self.n_sink, self.window = inner, n_sink, window
        self.out_token_ids, self.decode = inner.out_token_ids, inner.decode
        self.device = getattr(inner, "device", None)

    def prefill(self, input_ids, attention_mask):
        logprobs, state = self.inner.prefill(input_ids, attention_mask)
        cache = state.prefix  # TorchState: the PrefixCache shared by all beams
        real = cache.attention_mask.bool()
        rank = real.long().cumsum(-1)  # 1-based rank of each real token from the left
        n = real.sum(-1, keepdim=True)
        keep = real & ((rank <= self.n_sink) | (rank > n - self.window))
        cache.attention_mask = keep.to(cache.attention_mask.dtype)
        return logprobs, state


def evaluate(backend, trie, encode, examples, beam: int = 20, batch_size: int = 64, progress: bool = False,
             return_ranked: bool = False):
    """Metrics over ``examples`` plus timing. Users are ranked in length-sorted batches (less padding); torch on
    the CPU runs one single-threaded search per core (``runtime/cpu_workers.py``), which leaves results unchanged.
    ``return_ranked``: also return the ranked item ids ``[U, beam]`` (-1 padding) in the order of ``examples``."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    from ..runtime.cpu_workers import cpu_cores, is_cpu_backend, torch_single_threaded

    order = np.argsort([len(h) for h in examples.histories], kind="stable")
    workers = cpu_cores() if is_cpu_backend(backend) else 1
    ranked = np.full((len(order), beam), -1, dtype=np.int64)
    starts = list(range(0, len(order), batch_size))
    t0 = time.perf_counter()
    bar = tqdm(total=len(order), desc="beam search", unit="user", disable=not progress)

    def search(s):
        rows = order[s: s + batch_size]
        ids, mask = encode([examples.histories[i] for i in rows])
        with torch.no_grad():
            ranked[rows] = constrained_beam_search(backend, trie, ids, mask, beam=beam).items
        bar.update(len(rows))

    try:
        if workers <= 1:
            for s in starts:
                search(s)
        else:
            with torch_single_threaded(), ThreadPoolExecutor(workers) as pool:
                list(pool.map(search, starts))  # list(): re-raise a worker's exception here
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    metrics = {**evaluate_rankings(ranked, examples.targets), "seconds": seconds, "beam": beam}
    return (metrics, ranked) if return_ranked else metrics


def popularity_metrics(train_sequences, examples, num_items: int, ks=(10, 20)) -> dict:
    """The popularity baseline: rank items by training-interaction count, same list for every user."""
    counts = np.bincount(np.fromiter((i for seq in train_sequences for i in seq), np.int64), minlength=num_items)
    top = np.argsort(-counts, kind="stable")[: max(ks)]
    ranked = np.tile(top, (len(examples.targets), 1))
    return evaluate_rankings(ranked, examples.targets, ks=ks)


def _item_head(ckpt) -> np.ndarray | None:
    """The identifier tokens, the only columns beam search reads: restricting the head to them skips a
    [rows, vocab] matmul per step (49k-151k columns against ~1k) and normalises as ``vocab="items"`` engines do."""
    from ..data.catalog import Trie

    path = Path(ckpt) / "trie.npz"
    return np.unique(Trie.load(path).tokens) if path.is_file() else None


def eval_vocab(model, vocab: str = "auto") -> str:
    """``auto`` as ``--vocab auto`` does (``cli_args.auto_vocab``): ``items`` for pretrained-size vocabularies."""
    from ..cli_args import auto_vocab

    if vocab not in ("auto", "full", "items"):
        raise ValueError(f"--vocab {vocab!r}: choose auto, full or items")
    return auto_vocab(vocab, vocab_size=model.config.vocab_size)


def evaluate_checkpoint(ckpt_dir, split="test", beam=20, users=None, batch_size=64, baseline=None,
                        data_spec=None, seed=0, progress=True, window=8, n_sink=4,
                        keep=5, device="cpu", dtype=None, vocab="auto", rankings_out=None) -> dict:
    """Recall/NDCG@10/20 of a checkpoint (torch reference) or an engine (its ONNX graphs, e.g. to measure fp16).

    ``baseline``: None, ``"streaming"`` (first ``n_sink`` and last ``window`` prompt tokens), ``"truncate"`` (last
    ``keep`` items) or ``"popularity"``. ``rankings_out``: each user's ranked list (``.npz``) for paired comparisons.
    """
    from ..data.catalog import Trie
    from ..cli_args import resolve_device
    from ..data.data_spec import DataSpec
    from ..data.prompts import PromptBuilder
    from ..data.sequences import eval_examples
    from ..engine.trie_files import load_trie_arrays
    from ..model import load_pretrained
    from ..runtime.backends import OrtBackend, TorchBackend

    ckpt = Path(ckpt_dir)
    spec = data_spec or DataSpec.load_from(ckpt)
    if spec is None:
        raise UsageError(f"{ckpt}: no data.json saying which data it was trained on — "
                         + hint("pass data_spec=", "pass --data DIR or --interactions FILE"))
    data = spec.load()
    is_engine = (ckpt / "manifest.json").is_file()
    if is_engine:
        backend = OrtBackend(ckpt)
        m = backend.manifest["model"]
        n_layers, k = m["num_layers"], m["split_layer"]
    else:
        model = load_pretrained(ckpt, dtype=getattr(torch, dtype) if dtype else None)
        vocab = eval_vocab(model, vocab)
        head = _item_head(ckpt) if vocab == "items" else None
        dev = resolve_device(device)
        # CUDA: decode steps as CUDA graphs (eval searches batch after batch, one at a time)
        backend = TorchBackend(model.to(dev), head_token_ids=head, cuda_graphs=dev.startswith("cuda"))
        n_layers, k = model.num_layers, model.split_layer
    prompts = PromptBuilder.load(ckpt)
    if baseline == "truncate":
        prompts.max_history = keep
    ex = eval_examples(data, split, max_history=prompts.max_history)
    if users and users < len(ex.users):
        pick = np.sort(np.random.default_rng(seed).choice(len(ex.users), users, replace=False))
        ex = type(ex)([ex.users[i] for i in pick], [ex.histories[i] for i in pick], [ex.targets[i] for i in pick])
    # n_users/n_items of the spec are options of the synthetic generator; report what was loaded instead
    data_info = {f: v for f, v in asdict(spec).items() if f not in ("n_users", "n_items")}
    data_info.update(n_items=data.num_items, users_evaluated=len(ex.users))
    result = {"checkpoint": str(ckpt), "split": split, "baseline": baseline or "none",
              "split_layer": k, "num_layers": n_layers, "data": data_info,
              "backend": f"onnxruntime ({backend.manifest['dtype']})" if is_engine else "torch",
              "vocab": backend.manifest["vocab"]["mode"] if is_engine else vocab}
    if baseline == "popularity":
        result.update(popularity_metrics(list(data.train.values()), ex, data.num_items))
        return result
    if baseline == "streaming":
        if is_engine or k != n_layers:
            raise UsageError("the streaming baseline compresses a dense model's torch cache; pass the dense checkpoint "
                             "(not an EARN checkpoint or an engine dir)")
        backend = StreamingCacheBackend(backend, n_sink=n_sink, window=window)
        result.update(n_sink=n_sink, window=window)
    if baseline == "truncate":
        result["keep_items"] = keep
    elif baseline not in (None, "streaming"):
        raise UsageError(f"unknown baseline {baseline!r}; choose streaming, truncate or popularity")
    trie = load_trie_arrays(ckpt) if is_engine else Trie.load(ckpt / "trie.npz")
    with torch.no_grad():
        metrics, ranked = evaluate(backend, trie, prompts, ex, beam=beam, batch_size=batch_size, progress=progress,
                                   return_ranked=True)
    result.update(metrics)
    if rankings_out:
        save_rankings(rankings_out, ex, ranked)
    return result


def save_rankings(path, examples, ranked) -> None:
    """Per-user ranked lists with their users and held-out targets (flattened with offsets: ragged sets)."""
    targets = [sorted(int(t) for t in ts) for ts in examples.targets]
    np.savez(path, users=np.asarray(examples.users), ranked=np.asarray(ranked),
             targets=np.fromiter((t for ts in targets for t in ts), dtype=np.int64),
             target_offsets=np.cumsum([0] + [len(ts) for ts in targets]))
