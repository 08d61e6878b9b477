"""Run a model over prompts (or plain text) and reduce its attention to per-layer, per-head statistics.

Memory-bounded: sequences are batched by length and each layer's probabilities are reduced inside the forward
and dropped; only one sequence's maps are kept for the Fig.-2-style plot. ``forward="dense"`` is the paper's
setting (nothing pruned); ``"native"`` is what the checkpoint runs when deployed (for EARN, layers >= k see only
the register keys, and only register rows count as queries there).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import check_choice
from .metrics import GROUPS, AttentionStats
from .probes import capture_attention

FORWARDS = ("dense", "native")


@dataclass
class Corpus:
    """Sequences to analyse: token ids, the group of every position (``metrics.GROUPS`` index), a name."""

    name: str
    rows: list[list[int]]
    groups: list[list[int]]
    meta: dict = field(default_factory=dict)
    targets: list[list[int]] | None = None  # per sequence the L target tokens appended after the prompt

    def __post_init__(self):
        if not self.rows:
            raise ValueError(f"corpus {self.name!r} has no sequences")
        bad = [i for i, (r, g) in enumerate(zip(self.rows, self.groups)) if len(r) != len(g) or not r]
        if len(self.rows) != len(self.groups) or bad:
            raise ValueError(f"corpus {self.name!r}: rows and groups differ in length (first bad row {bad[:1]})")
        if self.targets is not None:
            lengths = {len(t) for t in self.targets}
            if len(self.targets) != len(self.rows) or len(lengths) != 1 or 0 in lengths:
                raise ValueError(f"corpus {self.name!r}: need one non-empty target of the same length per row")


@torch.no_grad()
def collect(model, corpus: Corpus, pad_id: int = 0, batch_size: int = 32, forward: str = "dense",
            progress: bool = True) -> dict:
    """Statistics of ``model``'s attention over ``corpus``: ``{"stats": AttentionStats, "maps": {...}, ...}``,
    with every layer's [H, T, T] map of one median-length sequence."""
    from tqdm.auto import tqdm

    from .groups import pad_groups

    check_choice("forward", forward, FORWARDS)
    n_layers = model.num_layers
    n_heads = model.model.layers[0].self_attn.n_heads
    k = model.split_layer
    earn_native = forward == "native" and k < n_layers
    mode = "masked" if earn_native else "dense"
    reg_ids = torch.tensor(model.earn.register_token_ids if model.earn is not None else [], dtype=torch.int64)
    stats = AttentionStats(n_layers, n_heads)
    maps: dict[int, np.ndarray] = {}
    n_t = 0 if corpus.targets is None else len(corpus.targets[0])
    target_group = GROUPS.index("target")
    order = np.argsort([len(r) for r in corpus.rows], kind="stable")
    map_idx = int(order[len(order) // 2])  # the median-length sequence: a typical prompt for the map figure
    batches = [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
    model.eval()
    bar = tqdm(total=len(corpus.rows), desc=f"attention ({corpus.name}, {forward})", unit="seq", disable=not progress)
    for idx in batches:
        ids, mask, groups = pad_groups([corpus.rows[i] for i in idx], [corpus.groups[i] for i in idx], pad_id)
        p = ids.shape[1]  # prompt columns; the targets (if any) follow, as in training
        if n_t:
            ids = np.concatenate([ids, np.asarray([corpus.targets[i] for i in idx], dtype=np.int64)], axis=1)
            mask = np.concatenate([mask, np.ones((len(idx), n_t), dtype=np.int64)], axis=1)
            groups = np.concatenate([groups, np.full((len(idx), n_t), target_group, dtype=np.int64)], axis=1)
        ids_t, mask_t, groups_t = (torch.from_numpy(a) for a in (ids, mask, groups))
        real = mask_t.bool()
        t = ids.shape[1]
        key_valid = torch.ones(t, t, dtype=torch.bool).tril()[None] & real[:, None, :]  # causal, [B, T, S]
        last = torch.zeros_like(real)
        last[:, p - 1] = True  # left padding: the last prompt column is every prompt's last token
        predict = torch.zeros_like(real)
        predict[:, p - 1: p - 1 + max(n_t, 1)] = True  # rows whose next token is an identifier token
        qsets = {"all": real, "last": last, "predict": predict}
        late_key_valid, late_qsets, kept = key_valid, qsets, None
        if earn_native:  # the split forward's rows in layers >= k: registers and everything after the prompt
            kept = ((ids_t[..., None] == reg_ids).any(-1) & real) | (torch.arange(t) >= p)[None]
            late_key_valid = key_valid & kept[:, None, :]
            late_qsets = {q: rows & kept for q, rows in qsets.items()}
        in_batch = np.flatnonzero(idx == map_idx)

        def reduce(layer: int, probs: torch.Tensor):
            late = earn_native and layer >= k
            kv = late_key_valid if late else key_valid
            stats.update(layer, probs, kv, groups_t, late_qsets if late else qsets)
            if len(in_batch):
                b = int(in_batch[0])
                n = int(real[b].sum())
                m = probs[b].clone()
                if late:  # rows and keys the split forward does not have: blank in the map
                    m[:, ~kept[b]] = float("nan")
                    m[..., ~kept[b]] = float("nan")
                maps[layer] = m[:, t - n:, t - n:].numpy()

        with capture_attention(model, reduce):
            model(ids_t, mask_t, n_target=n_t, mode=mode)
        bar.update(len(idx))
    bar.close()
    map_groups = list(corpus.groups[map_idx]) + [target_group] * n_t
    return {"name": corpus.name, "stats": stats, "maps": maps, "map_groups": map_groups, "n_target": n_t,
            "forward": forward, "sequences": len(corpus.rows),
            "mean_length": float(np.mean([len(r) for r in corpus.rows])), "meta": dict(corpus.meta)}
