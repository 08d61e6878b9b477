"""SmoothQuant (Xiao et al., 2023) before ``--quantize int8``: move activation outliers into the weights.

Why: ``int8`` quantizes each activation tensor with one scale per call; LLMs carry a few input channels 10-100x
larger than the rest (at the norms' outputs and at ``down_proj``'s input), which leaves the other channels a handful
of levels. Dividing channel j of a MatMul's input by s_j and multiplying row j of its weight by s_j is exact in
real arithmetic, and the division folds into what produces the input (the RMSNorm weight before QKV and
gate/up, the rows of ``up_proj`` before ``down_proj``), so the graphs keep their ops and the fp32 path its values
up to rounding. s_j = max|x_j|^alpha / max|W_j|^(1 - alpha), with max|x_j| measured on calibration prompts.
"""

from __future__ import annotations

import numpy as np
import torch

DEFAULT_ALPHA = 0.5


def calibration_batch(pieces, item_paths: dict, users: int = 32, history: int = 10, seed: int = 0):
    """Prompts of random catalog items, each followed by one item's tokens (the rows decode sees): (ids, mask,
    n_target)."""
    rng = np.random.default_rng(seed)
    length = max(len(p) for p in item_paths.values())
    items = [i for i, p in sorted(item_paths.items()) if len(p) == length and pieces.known(i)]
    hist = [rng.choice(items, size=min(history, pieces.max_history or history)).tolist() for _ in range(users)]
    ids, mask = pieces(hist)
    targets = np.array([item_paths[int(i)] for i in rng.choice(items, size=users)], dtype=np.int64)
    ids = np.concatenate([ids, targets], axis=1)
    mask = np.concatenate([mask, np.ones_like(targets)], axis=1)
    return torch.from_numpy(ids), torch.from_numpy(mask), length


@torch.no_grad()
def smooth_model(model, ids, mask, n_target: int, alpha: float = DEFAULT_ALPHA) -> dict:
    """Fold SmoothQuant scales into ``model`` in place (fp32); returns the manifest entry."""
    if not 0 < alpha < 1:
        raise ValueError(f"smoothquant alpha must be in (0, 1), got {alpha}")
    x_max = {}

    def record(key):
        def hook(_module, inputs, _output):
            x = inputs[0].detach().float().abs().reshape(-1, inputs[0].shape[-1]).amax(0)
            x_max[key] = torch.maximum(x_max[key], x) if key in x_max else x
        return hook

    layers = model.model.layers
    hooks = [m.register_forward_hook(record((i, name))) for i, layer in enumerate(layers)
             for name, m in (("qkv", layer.self_attn.q_proj), ("gate_up", layer.mlp.gate_proj),
                             ("down", layer.mlp.down_proj))]
    try:
        model(ids, attention_mask=mask, n_target=n_target)
    finally:
        for h in hooks:
            h.remove()

    def fold(key, linears, divide):
        if key not in x_max:  # a layer the calibration rows never reach keeps its weights
            return
        w_max = torch.stack([lin.weight.abs().amax(0) for lin in linears]).amax(0)
        s = (x_max[key].clamp(min=1e-5) ** alpha / w_max.clamp(min=1e-5) ** (1 - alpha)).clamp(1e-5, 1e5)
        divide(s)
        for lin in linears:
            lin.weight.mul_(s[None, :])

    def rows_of(linear):
        def divide(s):
            linear.weight.div_(s[:, None])
            if linear.bias is not None:
                linear.bias.div_(s)
        return divide

    for i, layer in enumerate(layers):
        attn, mlp = layer.self_attn, layer.mlp
        fold((i, "qkv"), [attn.q_proj, attn.k_proj, attn.v_proj], layer.input_layernorm.weight.div_)
        fold((i, "gate_up"), [mlp.gate_proj, mlp.up_proj], layer.post_attention_layernorm.weight.div_)
        fold((i, "down"), [mlp.down_proj], rows_of(mlp.up_proj))
    return {"alpha": alpha, "calibration_rows": int(ids.shape[0]), "folded_into": "RMSNorm weights (QKV, gate/up), "
            "up_proj rows (down_proj)", "layers": len({i for i, _ in x_max})}
