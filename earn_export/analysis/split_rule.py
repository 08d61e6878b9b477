"""The split-layer rule: per-layer attention curves of a dense (base) model -> EARN's k.

In layers >= k the rows that predict the identifier can no longer read the prompt, so what they need from the
history must already be in the registers. With h_l the attention mass those rows put on the history in layer l
(dense forward of the starting model, next item appended as in training):

    k = the smallest l in 1..N such that h_j <= τ for every layer j >= l      (τ = 0.1 by default)

N when even the last layer reads more than τ (keep the model dense). τ is a judgement, not a fitted value: the
share of attention one accepts to lose per pruned layer. The paper's N/4 is printed beside it.
"""

from __future__ import annotations

import numpy as np

THRESHOLD = 0.1


def recommend_split(history_mass, threshold: float = THRESHOLD) -> dict:
    """``history_mass``: per-layer h_l (length N) of the rows that predict the identifier. Returns k, the rule and
    its evidence."""
    h = np.asarray(history_mass, dtype=np.float64)
    n = len(h)
    if n == 0 or not np.isfinite(h).all():
        raise ValueError(f"need a finite history mass for every layer, got {h.tolist()}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    under = h <= threshold
    k = next((l for l in range(1, n) if under[l:].all()), n)
    if k == n and not under[n - 1]:
        verdict = (f"the last layer still puts {h[-1]:.3f} > {threshold} of the predicting rows' attention on the "
                   "history: no late layer range is safe to prune by this rule (k = N = dense)")
    elif k == n:
        verdict = f"only the last layer is under {threshold}; k = N leaves nothing to prune"
    else:
        verdict = (f"layers {k}..{n - 1} each put <= {threshold} of the predicting rows' attention on the history "
                   f"(max {h[k:].max():.3f}); layer {k - 1} puts {h[k - 1]:.3f}")
    return {"k": int(k), "num_layers": n, "paper_default_k": max(1, n // 4), "threshold": threshold,
            "history_mass": [float(x) for x in h], "rule": "smallest k >= 1 with h_j <= threshold for all j >= k; "
            "h_j = attention mass that the rows predicting the identifier (suffix register + generated tokens) put "
            "on the history tokens in layer j (dense forward, mean over the selected heads, rows and prompts)",
            "verdict": verdict}


def format_evidence(rec: dict, label: str = "") -> str:
    """Human-readable lines: the per-layer curve with the chosen k marked."""
    lines = [f"split-layer recommendation{(' for ' + label) if label else ''}: k = {rec['k']} of {rec['num_layers']} "
             f"(paper default N/4 = {rec['paper_default_k']})",
             f"  rule: {rec['rule']}; threshold {rec['threshold']}",
             "  layer  history mass of the predicting rows"]
    for i, v in enumerate(rec["history_mass"]):
        mark = "  <- k (first pruned layer)" if i == rec["k"] else ""
        lines.append(f"  {i:5d}  {v:.3f}{' <= ' if v <= rec['threshold'] else ' >  '}{rec['threshold']}{mark}")
    lines.append(f"  {rec['verdict']}")
    return "\n".join(lines)
