"""Attention probabilities straight from the one model definition: ``capture_attention`` installs a per-layer
callback inside ``Attention.attend`` for a ``with`` block, so there is no second attention implementation to
drift; the callback must reduce at once, which bounds memory by one layer's batch."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable

import torch


@contextmanager
def capture_attention(model, callback: Callable[[int, torch.Tensor], None]):
    """Within the block, every ``Attention.attend`` of layer i calls ``callback(i, probs [B, Hq, T, S])``."""
    attns = [layer.self_attn for layer in model.model.layers]
    busy = [i for i, a in enumerate(attns) if a.probs_hook is not None]
    if busy:
        raise RuntimeError(f"attention of layers {busy} is already being captured; nested captures are not supported")
    try:
        for i, a in enumerate(attns):
            a.probs_hook = lambda probs, i=i: callback(i, probs)
        yield model
    finally:
        for a in attns:
            a.probs_hook = None
