"""Random-weight EARN / dense model pair, a synthetic item catalog and prompts for speed benchmarks.

Speed does not depend on what the weights learned, so one random-weight model serves as EARN (split k) and as
the dense baseline (k = N, same weights): their times differ only by what EARN skips. Vocabulary: 0 pad, prompt
words, ``L·codes`` identifier tokens (level-major), then ``<reg_p>`` = V - 2 and ``<reg_s>`` = V - 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..data.catalog import Trie

PAD_ID = 0


@dataclass
class VocabLayout:
    """Token ids of the vocabulary (module doc): words ``word_range``, codes from ``first_code``, the registers."""

    vocab_size: int
    id_length: int
    codes: int

    def __post_init__(self):
        self.reg_p, self.reg_s = self.vocab_size - 2, self.vocab_size - 1
        self.first_code = self.reg_p - self.id_length * self.codes
        self.word_range = (1, self.first_code)
        if self.first_code - 1 < 16:
            raise ValueError(f"vocab_size={self.vocab_size} leaves {self.first_code - 1} prompt-word tokens beside "
                             f"{self.id_length * self.codes} identifier tokens (id_length={self.id_length} x "
                             f"codes={self.codes}) and 2 registers; raise --vocab-size or lower --codes")

    def code_token(self, level: int, code: int) -> int:
        return self.first_code + level * self.codes + code


def synthetic_item_paths(n_items: int, layout: VocabLayout, seed: int = 0) -> dict[int, list[int]]:
    """``n_items`` distinct L-token identifiers with uniformly random codes per level: item -> token ids."""
    cap = layout.codes ** layout.id_length
    if n_items > cap // 2:
        raise ValueError(f"n_items={n_items} is too many for {layout.codes}^{layout.id_length} identifiers")
    rng = np.random.default_rng(seed)
    seen: dict[tuple, None] = {}  # insertion-ordered set
    while len(seen) < n_items:
        for row in rng.integers(0, layout.codes, size=(n_items, layout.id_length)):
            seen.setdefault(tuple(int(c) for c in row))
            if len(seen) == n_items:
                break
    return {item: [layout.code_token(lvl, c) for lvl, c in enumerate(key)] for item, key in enumerate(seen)}


class TrieWalker:
    """``prefix_allowed_tokens_fn`` for transformers' ``generate``: children of the node a beam has reached."""

    def __init__(self, trie, prompt_len: int):
        offsets, tokens, children = (np.asarray(a).tolist() for a in (trie.offsets, trie.tokens, trie.children))
        self.children = [dict(zip(tokens[a:b], children[a:b])) for a, b in zip(offsets, offsets[1:])]
        self.allowed = [list(c) or [PAD_ID] for c in self.children]  # HF refuses an empty list
        self.leaf_item = np.asarray(trie.leaf_item)
        self.prompt_len = prompt_len

    def node_of(self, generated) -> int:
        node = 0
        for tok in generated:
            node = self.children[node].get(int(tok), -1)
            if node < 0:
                return -1
        return node

    def __call__(self, batch_id: int, sent) -> list[int]:
        node = self.node_of(sent[self.prompt_len:].tolist())
        return self.allowed[node] if node >= 0 else [PAD_ID]  # -1 cannot happen under the mask

    def item_of(self, generated) -> int:
        node = self.node_of(generated)
        return int(self.leaf_item[node]) if node >= 0 else -1


@dataclass
class SyntheticSetup:
    """Model pair (shared weights), catalog, trie and prompt generator for one benchmark run."""

    earn_model: object  # EarnForCausalLM, split k
    dense_model: object  # EarnForCausalLM sharing earn_model's parameters, split N
    layout: VocabLayout
    paths: dict
    trie: object
    item_token_ids: list[int]
    shape: dict = field(default_factory=dict)

    def prompts(self, prompt_len: int, batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``batch`` prompts of exactly ``prompt_len`` tokens: ``<reg_p>`` + random words + ``<reg_s>``."""
        if prompt_len < 3:
            raise ValueError(f"prompt_len must be >= 3 (two registers + one word), got {prompt_len}")
        rng = np.random.default_rng(seed + 1000 * prompt_len + batch)
        lo, hi = self.layout.word_range
        ids = rng.integers(lo, hi, size=(batch, prompt_len)).astype(np.int64)
        ids[:, 0] = self.layout.reg_p
        ids[:, -1] = self.layout.reg_s
        return ids, np.ones_like(ids)


def model_shape(model) -> dict:
    cfg = model.config
    return {
        "model_type": cfg.model_type, "hidden_size": cfg.hidden_size, "intermediate_size": cfg.intermediate_size,
        "num_layers": model.num_layers, "num_attention_heads": cfg.num_attention_heads,
        "n_kv_heads": model.n_kv_heads, "head_dim": model.head_dim, "vocab_size": cfg.vocab_size,
        "split_layer": model.earn.split_layer if model.earn else model.num_layers,
        "n_registers": model.earn.n_registers if model.earn else 0,
        "parameters": int(sum(p.numel() for p in model.parameters())),
    }


def build_setup(preset: str = "base", split_layer: int | None = None, vocab_size: int = 4096, id_length: int = 4,
                codes: int = 256, n_items: int = 12000, seed: int = 0, max_prompt_len: int = 1024,
                overrides: dict | None = None) -> SyntheticSetup:
    """Random-weight model of a ``model.shapes`` preset as EARN (k) and dense (k = N) sharing the weights."""
    import copy

    import torch

    from ..model import EarnConfig, EarnForCausalLM
    from ..model.shapes import preset_config

    layout = VocabLayout(vocab_size, id_length, codes)
    cfg, default_k = preset_config(preset, vocab_size, max_position_embeddings=max(1024, max_prompt_len + id_length + 8),
                                   **(overrides or {}))
    k = default_k if split_layer is None else split_layer
    torch.manual_seed(seed)
    model = EarnForCausalLM(cfg)
    model.init_weights(seed)
    model.eval().requires_grad_(False)

    def earn(split: int) -> "EarnConfig":
        return EarnConfig(split_layer=split, n_prefix=1, n_suffix=1, prefix_token_ids=[layout.reg_p],
                          suffix_token_ids=[layout.reg_s], id_length=id_length, paradigm="lcrec")

    model.set_earn(earn(k))
    dense = copy.copy(model)  # shallow: same modules and parameters, own ``earn`` attribute
    dense.set_earn(earn(model.num_layers))
    paths = synthetic_item_paths(n_items, layout, seed)
    trie = Trie.build(paths)
    return SyntheticSetup(earn_model=model, dense_model=dense, layout=layout, paths=paths, trie=trie,
                          item_token_ids=np.unique(trie.tokens).tolist(), shape=model_shape(model))
