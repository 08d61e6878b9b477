"""History -> prompt token ids with the registers around it (docs/CONTRACTS.md "Token space and prompts").

A prompt is ``template`` with ``{prefix}``, ``{items}`` and ``{suffix}`` filled in (paradigms ``lcrec``: the
LC-Rec instruction; ``tiger``: the identifiers only); it ends with ``{suffix}`` so that after left padding the
suffix register is the last column. Rows are cached concatenations of piece ids (tokenising 20k long strings
is slow); the builder checks this against full-text tokenisation and falls back to it for a tokenizer whose
pieces depend on context, so ``row(h)`` always equals tokenising ``text(h)``.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np

from ..errors import check_choice
from .catalog import ItemCatalog, _token_ids
from .errors import DataError, read_json

PARADIGMS = ("lcrec", "tiger")
TEMPLATES = {
    "lcrec": ("{prefix} Below is an instruction that describes a task. Write a response that appropriately "
              "completes the request. ### Instruction: The user has interacted with items {items} in "
              "chronological order. Can you predict the next possible item that the user may expect? "
              "### Response: {suffix}"),
    "tiger": "{prefix}{items}{suffix}",
}
ITEM_SEPS = {"lcrec": ", ", "tiger": ""}
PROMPT_FILE = "prompt.json"
FORMAT_VERSION = 1


def _split_template(template: str) -> tuple[str, str]:
    """(head, tail): the text between ``{prefix}`` and ``{items}``, and between ``{items}`` and ``{suffix}``."""
    for key in ("{prefix}", "{items}", "{suffix}"):
        if template.count(key) != 1:
            raise DataError(f"the prompt template must contain {key} exactly once: {template!r}")
    if not template.startswith("{prefix}") or not template.endswith("{suffix}"):
        raise DataError("the prompt template must start with {prefix} and end with {suffix} (the suffix "
                        f"register must be the last prompt token): {template!r}")
    head, tail = template[len("{prefix}"): -len("{suffix}")].split("{items}")
    return head, tail


def template_words(paradigm: str = "lcrec", template: str | None = None, item_sep: str | None = None) -> list[str]:
    """Words and punctuation the template needs in a word-level vocabulary (Whitespace pre-tokenizer pieces),
    in order of first appearance; pass them to ``tokenizer.build_tokenizer``."""
    from tokenizers.pre_tokenizers import Whitespace

    check_choice("paradigm", paradigm, PARADIGMS, DataError)
    head, tail = _split_template(template or TEMPLATES[paradigm])
    sep = ITEM_SEPS[paradigm] if item_sep is None else item_sep
    pre = Whitespace()
    words = [w for part in (head, sep, tail) for w, _ in pre.pre_tokenize_str(part)]
    return list(dict.fromkeys(words))


def left_pad(rows: list[list[int]], pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(input_ids, attention_mask)`` int64 ``[len(rows), longest]``, rows right-aligned (EARN's suffix
    register is then the last column for every user)."""
    width = max((len(r) for r in rows), default=0)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for b, r in enumerate(rows):
        ids[b, width - len(r):] = r
        mask[b, width - len(r):] = 1
    return ids, mask


class PromptBuilder:
    """Token ids of prompts for a tokenizer, an item catalog and a paradigm (module doc)."""

    def __init__(self, tokenizer, catalog: ItemCatalog, paradigm: str = "lcrec", max_history: int = 20,
                 prefix_tokens=("<reg_p>",), suffix_tokens=("<reg_s>",), template: str | None = None,
                 item_sep: str | None = None):
        check_choice("paradigm", paradigm, PARADIGMS, DataError)
        self.tokenizer = tokenizer
        self.catalog = catalog
        self.paradigm = paradigm
        self.max_history = int(max_history)
        self.prefix_tokens = [str(t) for t in prefix_tokens]
        self.suffix_tokens = [str(t) for t in suffix_tokens]
        self.template = template or TEMPLATES[paradigm]
        self.item_sep = ITEM_SEPS[paradigm] if item_sep is None else item_sep
        self._head_text, self._tail_text = _split_template(self.template)

        regs = self.prefix_tokens + self.suffix_tokens
        if not regs:
            raise DataError("a prompt needs at least one register token (prefix_tokens or suffix_tokens)")
        reg_ids = _token_ids(tokenizer, regs, "register")
        self.prefix_ids = [reg_ids[t] for t in self.prefix_tokens]
        self.suffix_ids = [reg_ids[t] for t in self.suffix_tokens]
        self.register_ids = np.array(sorted(set(self.prefix_ids + self.suffix_ids)), dtype=np.int64)
        self.n_registers = len(regs)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._tokenizer_lock = threading.Lock()
        self.special_prefix = self._special_prefix()

        self.item_ids: dict[int, list[int]] = catalog.token_paths(tokenizer)
        self._head = self._encode(self._head_text)
        self._tail = self._encode(self._tail_text)
        self._sep = self._encode(self.item_sep)
        items = catalog.items()
        probes = [[], items[:1], items[:3], items[-2:]]
        self.cached = all(self.row(h, _cached=True) == self.row(h, _cached=False) for h in probes)

    def _encode(self, text: str) -> list[int]:
        if not text:
            return []
        # a fast HF tokenizer call mutably borrows its Rust state (padding/truncation settings): concurrent
        # Recommender.recommend calls on an uncached prompt builder would fail with "Already borrowed"
        with self._tokenizer_lock:
            return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _special_prefix(self) -> list[int]:
        """Leading special ids the tokenizer adds (BOS); trailing ones (EOS) are not used in prompts."""
        plain = self._encode("a")
        full = list(self.tokenizer("a", add_special_tokens=True)["input_ids"])
        for k in range(len(full) - len(plain) + 1):
            if full[k: k + len(plain)] == plain:
                return full[:k]
        bos = getattr(self.tokenizer, "bos_token_id", None)
        return [bos] if bos is not None and full[:1] == [bos] else []

    def text(self, history) -> str:
        """The prompt text of ``history`` (after truncation to the last ``max_history`` items)."""
        hist = self._truncate(history)
        items = self.item_sep.join(self.catalog.identifier(i) for i in hist)
        return "".join(self.prefix_tokens) + self._head_text + items + self._tail_text + "".join(self.suffix_tokens)

    def _truncate(self, history) -> list[int]:
        hist = [int(i) for i in history]
        hist = hist[-self.max_history:] if self.max_history > 0 else []
        unknown = [i for i in hist if i not in self.item_ids]
        if unknown:
            raise DataError(f"history items {unknown[:5]} are not in the item catalog ({len(self.item_ids)} items); "
                            "drop unknown items before building prompts")
        return hist

    def row(self, history, _cached: bool | None = None) -> list[int]:
        """Token ids of one prompt: [BOS] + prefix registers + template/history + suffix registers."""
        cached = getattr(self, "cached", True) if _cached is None else _cached
        if not cached:
            return self.special_prefix + self._encode(self.text(history))
        return [t for _, ids in self.segments(history) for t in ids]

    def segments(self, history) -> list[tuple[str, list[int]]]:
        """The pieces of ``row(history)`` in order, named by role (``bos``, ``prefix_register``, ``instruction``,
        ``history``, ``separator``, ``suffix_register``): the attention analysis labels positions with them."""
        hist = self._truncate(history)
        out = [("bos", list(self.special_prefix)), ("prefix_register", list(self.prefix_ids)),
               ("instruction", list(self._head))]
        for k, item in enumerate(hist):
            if k:
                out.append(("separator", list(self._sep)))
            out.append(("history", list(self.item_ids[item])))
        out += [("instruction", list(self._tail)), ("suffix_register", list(self.suffix_ids))]
        return [(name, ids) for name, ids in out if ids]

    def __call__(self, histories) -> tuple[np.ndarray, np.ndarray]:
        """``(input_ids [B, P], attention_mask [B, P])`` int64, left-padded with the pad id."""
        rows = [self.row(h) for h in histories]
        ids, mask = left_pad(rows, self.pad_id)
        n_reg = (np.isin(ids, self.register_ids) & (mask == 1)).sum(axis=1)
        if len(rows) and (n_reg != self.n_registers).any():
            b = int(np.flatnonzero(n_reg != self.n_registers)[0])
            raise DataError(f"prompt row {b} holds {int(n_reg[b])} register tokens, expected {self.n_registers}; "
                            "the template or an identifier code contains a register string")
        return ids, mask

    def save(self, directory) -> Path:
        """Write ``prompt.json``, the tokenizer and ``items.json`` (all that ``load`` reads); returns prompt.json."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(str(directory))
        self.catalog.save(directory)
        config = {"format_version": FORMAT_VERSION, "paradigm": self.paradigm, "max_history": self.max_history,
                  "prefix_tokens": self.prefix_tokens, "suffix_tokens": self.suffix_tokens,
                  "template": self.template, "item_sep": self.item_sep}
        path = directory / PROMPT_FILE
        path.write_text(json.dumps(config, indent=1), encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory) -> "PromptBuilder":
        """From a checkpoint/engine directory: tokenizer files, ``items.json`` and ``prompt.json``."""
        directory = Path(directory)
        path = directory / PROMPT_FILE
        if not path.is_file():
            raise DataError(f"{path}: missing; save the prompt settings with PromptBuilder.save(directory)")
        cfg = read_json(path, "re-create it with PromptBuilder.save")
        if cfg.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
            raise DataError(f"{path}: format_version {cfg.get('format_version')} is not supported (expected "
                            f"{FORMAT_VERSION}); re-create it with PromptBuilder.save")
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(str(directory)), ItemCatalog.load(directory),
                   paradigm=cfg["paradigm"], max_history=cfg["max_history"], prefix_tokens=cfg["prefix_tokens"],
                   suffix_tokens=cfg["suffix_tokens"], template=cfg.get("template"), item_sep=cfg.get("item_sep"))
