"""Per-row attention statistics, reduced per batch into running sums (never storing the attention itself).

Definitions (EARN paper App. A.1; docs/analysis/README.md) over a row's *valid* keys only: ``sparsity`` (share of
keys above ε = 0.05, the paper's), ``sink_head`` / ``sink_tail`` (mass on the first / last 3 keys), ``entropy``
(nats), ``topk_mass`` and ``mass_<group>``. Rows weigh equally; query sets: ``all``, ``last`` (the suffix
register) and ``predict`` (the rows that predict identifier tokens: what EARN keeps in layers >= k).
"""

from __future__ import annotations

import numpy as np
import torch

EPS = 0.05
SINK_HEAD = 3
SINK_TAIL = 3
TOPK = 5
GROUPS = ("bos", "prefix_register", "instruction", "history", "suffix_register", "target", "text")
ROW_METRICS = ("sparsity", "sink_head", "sink_tail", "entropy", "topk_mass")
QUERY_SETS = ("all", "last", "predict")
METRIC_NAMES = ROW_METRICS + tuple(f"mass_{g}" for g in GROUPS)


def row_metrics(probs: torch.Tensor, key_valid: torch.Tensor, key_group: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every metric of every query row: probs [B, H, T, S], key_valid [B, T, S] bool, key_group [B, S] (index into
    ``GROUPS``, -1 padding) -> name -> [B, H, T] float32."""
    kv = key_valid[:, None]
    p = torch.where(kv, probs.to(torch.float32), 0.0)  # [B, H, T, S]; invalid keys hold exactly 0 from here on
    b, h, t, s = p.shape
    n = key_valid.sum(-1)  # [B, T] valid keys per row
    rank = key_valid.cumsum(-1)  # 1-based rank of each valid key from the left
    # sinks from one cumulative sum: mass up to (and including) the SINK_HEAD-th valid key, and after the
    # (n - SINK_TAIL)-th valid key; a searchsorted on the ranks gives those key columns per row
    cs = p.cumsum(-1)
    cs0 = torch.nn.functional.pad(cs, (1, 0))  # cs0[..., j] = mass of keys < j

    def mass_before(m):  # m [B, T]: mass of the first m valid keys of each row
        col = torch.searchsorted(rank.contiguous(), m.clamp_min(0)[..., None].to(rank.dtype), right=True)  # [B,T,1]
        col = torch.where(m[..., None] > 0, col, torch.zeros_like(col))
        return torch.gather(cs0, -1, col[:, None].expand(b, h, t, 1))[..., 0]

    onehot = torch.stack([key_group == gi for gi in range(len(GROUPS))], dim=-1).to(p.dtype)  # [B, S, G]
    gmass = torch.bmm(p.reshape(b, h * t, s), onehot).reshape(b, h, t, len(GROUPS))
    out = {
        "sparsity": (p > EPS).sum(-1).to(torch.float32) / n.clamp_min(1).to(torch.float32)[:, None],
        "sink_head": mass_before(n.clamp_max(SINK_HEAD)),
        "sink_tail": cs[..., -1] - mass_before((n - SINK_TAIL).clamp_min(0)),
        "entropy": -torch.special.xlogy(p, p).sum(-1),
        "topk_mass": p.topk(min(TOPK, s), dim=-1).values.sum(-1),
    }
    for gi, g in enumerate(GROUPS):
        out[f"mass_{g}"] = gmass[..., gi]
    return out


class AttentionStats:
    """Running sums of every metric per (query set, layer, head); ``update`` per batch and layer."""

    def __init__(self, num_layers: int, num_heads: int):
        self.sums = {q: {m: np.zeros((num_layers, num_heads)) for m in METRIC_NAMES} for q in QUERY_SETS}
        self.rows = {q: np.zeros(num_layers, dtype=np.int64) for q in QUERY_SETS}

    def update(self, layer: int, probs: torch.Tensor, key_valid: torch.Tensor, key_group: torch.Tensor,
               query_sets: dict[str, torch.Tensor]) -> None:
        """Add one batch of one layer. ``query_sets``: name -> [B, T] bool, the rows that count in that set (sets
        not given get no rows from this batch)."""
        per_row = row_metrics(probs, key_valid, key_group)
        for q, rows in query_sets.items():
            w = rows[:, None, :].to(torch.float32)  # [B, 1, T]
            self.rows[q][layer] += int(rows.sum())
            for m, v in per_row.items():
                self.sums[q][m][layer] += (v * w).sum(dim=(0, 2)).double().numpy()

    def means(self) -> dict[str, dict[str, np.ndarray]]:
        """query set -> metric -> [L, H] mean over rows (NaN where a layer saw no rows of that set)."""
        out = {}
        for q in QUERY_SETS:
            cnt = self.rows[q].astype(np.float64)[:, None]
            with np.errstate(invalid="ignore", divide="ignore"):
                out[q] = {m: np.where(cnt > 0, s / np.maximum(cnt, 1), np.nan) for m, s in self.sums[q].items()}
        return out
