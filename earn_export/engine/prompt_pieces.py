"""Pre-tokenised prompt pieces: a prompt is a concatenation of stored token-id lists, no tokenizer at run time
(the Python and C++ runtimes must not need transformers). Stored from the training ``PromptBuilder`` when it is
``cached``; files: docs/CONTRACTS.md "Prompt pieces". Only numpy is imported here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..data.prompts import left_pad
from ..errors import UserError, hint

PIECES_FILE = "prompt_pieces.json"
ITEM_OFFSETS_FILE = "prompt_items.offsets.npy"
ITEM_TOKENS_FILE = "prompt_items.tokens.npy"
PIECES_FORMAT_VERSION = 1
FIXED = ("special_prefix", "prefix", "head", "sep", "tail", "suffix")


class PromptPiecesError(ValueError, UserError):
    """Prompt pieces that cannot be used as they are; the message names the problem and the fix."""


class PromptPieces:
    """Histories → left-padded prompt token ids by concatenating stored pieces (see the module doc)."""

    def __init__(self, item_offsets, item_tokens, special_prefix=(), prefix=(), head=(), sep=(), tail=(), suffix=(),
                 pad_id: int = 0, max_history: int = 20, register_token_ids=()):
        for name, piece in zip(FIXED, (special_prefix, prefix, head, sep, tail, suffix)):
            setattr(self, name, [int(t) for t in piece])
        self.item_offsets = np.ascontiguousarray(item_offsets, dtype=np.int64)
        self.item_tokens = np.ascontiguousarray(item_tokens, dtype=np.int64)
        self.pad_id = int(pad_id)
        self.max_history = int(max_history)
        self.register_token_ids = [int(t) for t in register_token_ids]
        o = self.item_offsets
        if o.ndim != 1 or len(o) < 1 or o[0] != 0 or (np.diff(o) < 0).any() or o[-1] != len(self.item_tokens):
            raise PromptPiecesError("prompt item offsets are not a CSR index over the item tokens (must start at 0, "
                                    "never decrease, end at len(item_tokens)); re-export the engine")
        # lists, not array slices, for the per-row concatenation (the hot path of prompt building)
        self._items = [self.item_tokens[o[i]:o[i + 1]].tolist() for i in range(len(o) - 1)]

    @classmethod
    def from_item_paths(cls, item_paths: dict[int, list[int]], **fixed) -> "PromptPieces":
        """Pieces with items given as ``item id -> token ids`` (ids absent from the dict are unknown)."""
        paths = dict(sorted((int(i), list(toks)) for i, toks in item_paths.items()))
        lengths = np.zeros(max(paths, default=-1) + 1, dtype=np.int64)
        lengths[list(paths)] = [len(toks) for toks in paths.values()]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        tokens = np.array([t for toks in paths.values() for t in toks], dtype=np.int64)
        return cls(offsets, tokens, **fixed)

    @classmethod
    def from_builder(cls, builder) -> "PromptPieces | None":
        """The pieces of a ``PromptBuilder``, or None when its tokenizer is context-dependent (``cached`` False:
        a row is then not a concatenation of pieces and needs the tokenizer)."""
        if not getattr(builder, "cached", False):
            return None
        return cls.from_item_paths(
            builder.item_ids, special_prefix=builder.special_prefix, prefix=builder.prefix_ids,
            head=builder._head, sep=builder._sep, tail=builder._tail, suffix=builder.suffix_ids,
            pad_id=builder.pad_id, max_history=builder.max_history,
            register_token_ids=builder.register_ids.tolist())

    @property
    def n_registers(self) -> int:
        return len(self.prefix) + len(self.suffix)

    def known(self, item: int) -> bool:
        return 0 <= item < len(self._items) and bool(self._items[item])

    def row(self, history) -> list[int]:
        """Token ids of one prompt; ``history`` is already checked and truncated by the caller (the
        Recommender), but an unknown id is still refused here rather than silently dropped."""
        ids = self.special_prefix + self.prefix + self.head
        for k, item in enumerate(history):
            item = int(item)
            if not self.known(item):
                raise PromptPiecesError(f"item {item} has no prompt tokens in this engine's catalog — drop unknown "
                                        "items before building prompts ("
                                        + hint("Recommender: on_unknown='skip'", "--on-unknown skip") + ")")
            if k:
                ids = ids + self.sep
            ids = ids + self._items[item]
        row = ids + self.tail + self.suffix
        if not row:
            raise PromptPiecesError("an empty history gives an empty prompt for a model without registers or "
                                    "template; give at least one item")
        return row

    def __call__(self, histories) -> tuple[np.ndarray, np.ndarray]:
        """``(input_ids [B, P], attention_mask [B, P])`` int64, left-padded with the pad id."""
        return left_pad([self.row(h) for h in histories], self.pad_id)

    def save(self, directory) -> list[str]:
        """Write the three files into ``directory``; returns their names (for the manifest's sha256)."""
        directory = Path(directory)
        doc = {"format_version": PIECES_FORMAT_VERSION,
               **{k: getattr(self, k) for k in FIXED},
               "pad_id": self.pad_id, "max_history": self.max_history,
               "register_token_ids": self.register_token_ids,
               "item_offsets": ITEM_OFFSETS_FILE, "item_tokens": ITEM_TOKENS_FILE}
        (directory / PIECES_FILE).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        np.save(directory / ITEM_OFFSETS_FILE, self.item_offsets)
        np.save(directory / ITEM_TOKENS_FILE, self.item_tokens)
        return [PIECES_FILE, ITEM_OFFSETS_FILE, ITEM_TOKENS_FILE]

    @classmethod
    def load(cls, directory) -> "PromptPieces":
        directory = Path(directory)
        path = directory / PIECES_FILE
        fix = "re-export the engine (`earn-export export CKPT --out DIR`)"
        if not path.is_file():
            raise PromptPiecesError(f"{path}: missing; {fix}")
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise PromptPiecesError(f"{path}: not valid JSON ({exc}); {fix}") from exc
        if doc.get("format_version") != PIECES_FORMAT_VERSION:
            raise PromptPiecesError(f"{path}: format_version {doc.get('format_version')!r} is not supported "
                                    f"(expects {PIECES_FORMAT_VERSION}); {fix}")
        try:
            offsets = np.load(directory / doc["item_offsets"], allow_pickle=False)
            tokens = np.load(directory / doc["item_tokens"], allow_pickle=False)
            fixed = {k: doc[k] for k in FIXED}
        except (OSError, KeyError, ValueError) as exc:
            raise PromptPiecesError(f"{path}: cannot read the prompt pieces ({type(exc).__name__}: {exc}); "
                                    f"{fix}") from exc
        return cls(offsets, tokens, pad_id=doc.get("pad_id", 0), max_history=doc.get("max_history", 20),
                   register_token_ids=doc.get("register_token_ids", ()), **fixed)
