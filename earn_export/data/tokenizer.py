"""Tokenizers for EARN prompts: a small word-level one for from-scratch models, or an existing one extended.

A from-scratch recommender only reads the template words and identifier codes, so a WordLevel model over
exactly those is tiny and exact; codes and registers are added tokens (``<a_47><b_103>`` is two tokens).
The result is a ``transformers`` fast tokenizer that adds no BOS/EOS.
"""

from __future__ import annotations

import inspect

from .errors import DataError

PAD, UNK = "<pad>", "<unk>"
REGISTERS = ("<reg_p>", "<reg_s>")  # the default registers: one prefix, one suffix (register_tokens(1, 1))


def register_tokens(n_prefix: int = 1, n_suffix: int = 1) -> tuple[list[str], list[str]]:
    """Register strings: ``<reg_p>``/``<reg_s>`` for one each, ``<reg_p0>``, ``<reg_p1>``, ... for more."""
    def names(base, n):
        if n < 0:
            raise DataError(f"register counts must be >= 0, got {n}")
        return [base + ">"] if n == 1 else [f"{base}{i}>" for i in range(n)]

    return names("<reg_p", n_prefix), names("<reg_s", n_suffix)


def _dedup(seq) -> list[str]:
    return list(dict.fromkeys(str(s) for s in seq))


def build_tokenizer(words, code_tokens, register_tokens):
    """A word-level ``PreTrainedTokenizerFast`` (module doc) over plain ``words`` (template words and punctuation,
    e.g. ``prompts.template_words()``), identifier ``code_tokens`` and ``register_tokens``."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    codes, regs = _dedup(code_tokens), _dedup(register_tokens)
    clash = set(codes) & set(regs)
    if clash:
        raise DataError(f"tokens {sorted(clash)[:5]} are both identifier codes and registers; rename one")
    vocab = {PAD: 0, UNK: 1}
    for w in _dedup(words):
        if w in codes or w in regs:
            continue
        if not w or any(ch.isspace() for ch in w):
            raise DataError(f"vocabulary word {w!r} is empty or contains whitespace; pass single words")
        vocab.setdefault(w, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.add_special_tokens([AddedToken(PAD, special=True, normalized=False),
                           AddedToken(UNK, special=True, normalized=False)])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token=PAD, unk_token=UNK)
    return extend_tokenizer(tok, codes, regs)


def extend_tokenizer(tok, code_tokens, register_tokens):
    """Add identifier codes (``add_tokens``) and registers (special tokens) to an existing HF tokenizer, in
    place; returns it. Tokens already present keep their ids. Resize the model's embeddings to ``len(tok)``."""
    from tokenizers import AddedToken

    codes, regs = _dedup(code_tokens), _dedup(register_tokens)
    tok.add_tokens([AddedToken(c, normalized=False, special=False, single_word=False) for c in codes])
    if regs:
        params = inspect.signature(tok.add_special_tokens).parameters  # the keyword's name depends on the version
        kw = {n: False for n in ("replace_extra_special_tokens", "replace_additional_special_tokens") if n in params}
        tok.add_special_tokens({"additional_special_tokens": [AddedToken(r, normalized=False, special=True)
                                                              for r in regs]}, **kw)
    ids = tok.convert_tokens_to_ids(codes + regs)
    bad = [t for t, i in zip(codes + regs, ids) if i is None or (i == tok.unk_token_id and t != tok.unk_token)]
    if bad:
        raise DataError(f"tokens {bad[:5]} could not be added to the tokenizer")
    return tok
