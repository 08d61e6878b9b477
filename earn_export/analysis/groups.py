"""Which token group (``metrics.GROUPS``) each prompt position belongs to, from the prompt builder's own pieces
(``PromptBuilder.segments``), so by construction, not by matching strings. Padding is -1 and never counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.errors import DataError
from .metrics import GROUPS

_SEGMENT_GROUP = {"bos": "bos", "prefix_register": "prefix_register", "instruction": "instruction",
                  "history": "history", "separator": "history", "suffix_register": "suffix_register"}


def prompt_row_groups(prompts, history) -> tuple[list[int], list[int]]:
    """(token ids, group index per position) of one prompt, from the builder's segments."""
    ids, groups = [], []
    for name, piece in prompts.segments(history):
        ids += piece
        groups += [GROUPS.index(_SEGMENT_GROUP[name])] * len(piece)
    if ids != prompts.row(history):
        raise DataError(
            "the prompt builder's pieces do not concatenate to its rows (a tokenizer whose pieces depend on their "
            "context), so token groups cannot be assigned by position; analyse a checkpoint whose tokenizer keeps "
            "identifier codes and registers as added tokens (every earn-export checkpoint does)")
    return ids, groups


def pad_groups(rows: list[list[int]], groups: list[list[int]], pad_id: int):
    """Left-pad (as the runtime does) -> input_ids, attention_mask [B, P] int64 and key groups [B, P] (-1 pad)."""
    from ..data.prompts import left_pad

    ids, mask = left_pad(rows, pad_id)
    g = np.full(ids.shape, -1, dtype=np.int64)
    for b, gr in enumerate(groups):
        if gr:
            g[b, ids.shape[1] - len(gr):] = gr
    return ids, mask, g


def text_rows(tokenizer, path, max_tokens: int = 256, max_rows: int = 200) -> tuple[list[list[int]], dict]:
    """Plain-text sequences for the NLP contrast: the first ``max_rows`` non-empty paragraphs (blank-line separated)
    of ``path``, tokenised with the checkpoint's tokenizer (its BOS included), cut to ``max_tokens``. Also returns
    counts, including the share of unknown tokens (a word-level recommender vocabulary maps most English to <unk>)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--text {path}: no such file; pass a UTF-8 plain-text file (paragraphs separated by blank "
                        "lines)")
    paras = [" ".join(p.split()) for p in path.read_text(encoding="utf-8", errors="replace").split("\n\n")]
    paras = [p for p in paras if p][:max_rows]
    rows = []
    for p in paras:
        ids = list(tokenizer(p, add_special_tokens=True)["input_ids"])[:max_tokens]
        if len(ids) >= 2:
            rows.append(ids)
    if not rows:
        raise DataError(f"--text {path}: no paragraph with at least 2 tokens; pass a file with some prose")
    unk = getattr(tokenizer, "unk_token_id", None)
    n_tok = sum(len(r) for r in rows)
    n_unk = sum(r.count(unk) for r in rows) if unk is not None else 0
    return rows, {"sequences": len(rows), "tokens": n_tok, "unknown_fraction": n_unk / max(n_tok, 1)}
