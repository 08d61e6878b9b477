"""The split-layer rule: per-layer attention curves of a dense (base) model -> EARN's k.

What EARN removes. In layers >= k the rows that predict the item identifier (the suffix register, the prompt's
last row, and the identifier tokens generated so far) can no longer read the prompt: everything they still need
from the user's history must already be in the registers. The user-specific part of the prompt is the history
(the instruction is the same for every user, so the prefix register can learn it). So the rule looks at h_l,
the attention mass those rows put on the history tokens in layer l (mean over the selected heads, the rows and
the prompts, with the user's next item appended as in training), measured with the dense forward of the model
EARN starts from:

    k = the smallest l in 1..N such that h_j <= τ for every layer j >= l      (τ = 0.1 by default)

i.e. the first layer after which the history stays under τ: from there on the dense model itself takes less
than a tenth of those rows' attention from the history, so cutting it off costs little. k >= 1 always (the
registers must read the history somewhere); if even the last layer reads more than τ from the history, the rule
returns N (no layer range is safe to prune: keep the model dense, or raise ``threshold`` knowingly). The
paper's default, N/4, is printed next to it, and the evidence (h_l per layer) is returned with the answer.
τ is a judgement, not a fitted value: the share of attention one accepts to lose per pruned layer.
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
    # suffix_ok[l]: every layer j >= l is under the threshold
    suffix_ok = np.flip(np.cumprod(np.flip(under))).astype(bool)
    candidates = [l for l in range(1, n + 1) if l == n or suffix_ok[l]]
    k = candidates[0]
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
