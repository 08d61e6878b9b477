"""History → prompt token ids for the runtime.

``build_encoder`` uses the training prompt builder (``earn_export.data.prompts.PromptBuilder``: tokenizer +
template + item catalog) when the engine/checkpoint directory holds its ``prompt.json``; otherwise (engines
exported from a bare model object) it falls back to :class:`TokenPromptEncoder`, a TIGER-style prompt made of the history's identifier tokens (read from
the trie) between the registers, which needs nothing but the trie.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.prompts import left_pad


class TokenPromptEncoder:
    """``[bos] + [reg_p]*n + tokens(item_1) + ... + tokens(item_n) + [reg_s]*m``, left-padded."""

    def __init__(self, item_paths: dict[int, list[int]], prefix_ids=(), suffix_ids=(), bos_id=None, pad_id=0):
        self.item_paths = item_paths
        self.prefix = ([bos_id] if bos_id is not None else []) + list(prefix_ids)
        self.suffix = list(suffix_ids)
        self.pad_id = pad_id

    def row(self, history) -> list[int]:
        body = [t for item in history for t in self.item_paths[int(item)]]
        return self.prefix + body + self.suffix

    def __call__(self, histories) -> tuple[np.ndarray, np.ndarray]:
        rows = [self.row(h) for h in histories]
        if any(not r for r in rows):
            raise ValueError("an empty history gives an empty prompt for a model without registers or template; "
                             "give at least one item")
        return left_pad(rows, self.pad_id)


def build_encoder(directory, info: dict, item_paths: dict[int, list[int]]):
    """The prompt encoder for an engine or checkpoint directory (see module doc)."""
    enc = _data_encoder(Path(directory), info)
    if enc is not None:
        return enc
    return TokenPromptEncoder(item_paths, info.get("prefix_token_ids") or [], info.get("suffix_token_ids") or [])


def _data_encoder(directory: Path, info: dict):
    """The training prompt builder (tokenizer + items.json + prompt.json) when the directory holds it."""
    if not (directory / "prompt.json").is_file():
        return None
    from ..data.prompts import PromptBuilder

    return PromptBuilder.load(directory)
