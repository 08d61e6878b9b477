"""Turn a pretrained model (HF directory or GGUF file) of a family in the architecture table into an EARN checkpoint.

Identifier codes and registers become added tokens of the *real* tokenizer, each exactly one token. Their rows
(``init="pieces"``, default) are the mean of the pretrained rows of the pieces the original tokenizer splits the
string into, plus 2% seeded noise: a mean ignores order, so ``<a_12>`` and ``<a_21>`` would otherwise tie.
``init="mean"``: the mean of all rows plus noise. Every new token is initialised, also inside a padded
vocabulary. Then earn.json, items.json, trie.npz, prompt.json and data.json (docs/CONTRACTS.md); the tokenizer's
own BOS goes before the prefix register. GGUF files are read by transformers' GGUF support, offline.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..data.tokenizer import REGISTERS
from ..errors import check_choice
from ..model.architectures import supported
from ..model.config import ModelConfigError

INITS = ("pieces", "mean")
PIECES_NOISE = 0.02  # std of the noise added to a pieces-mean row, relative to the pretrained rows' std


class ConvertError(ModelConfigError):
    """A source that cannot be converted, with the reason and the fix."""


def load_source(source, dtype: torch.dtype = torch.float32, progress: bool = False):
    """``(EarnForCausalLM without earn.json, tokenizer)`` from an HF checkpoint dir or a ``.gguf`` file."""
    from transformers import AutoTokenizer

    from ..model import EarnForCausalLM, load_pretrained

    path = Path(source)
    if path.is_file() and path.suffix.lower() == ".gguf":
        try:
            import gguf  # noqa: F401  (transformers' GGUF reader needs it)
        except ImportError as exc:
            raise ConvertError(f"{path}: reading GGUF needs the 'gguf' package; pip install 'earn-export[smollm2]' "
                               "(or pip install gguf)") from exc
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        if not progress:
            hf_logging.disable_progress_bar()
        try:
            tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
            hf = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
        finally:
            hf_logging.enable_progress_bar()
        cfg = hf.config
        if hasattr(cfg, "quantization_config"):  # the weights are dequantised now; keep config.json plain
            del cfg.quantization_config
        model = EarnForCausalLM(cfg, init=False)
        state = hf.state_dict()
        if cfg.tie_word_embeddings:
            state.pop("lm_head.weight", None)
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not (k == "lm_head.weight" and cfg.tie_word_embeddings)]
        if missing or unexpected:
            raise ConvertError(f"{path}: GGUF tensors do not match the {cfg.model_type} layout (missing "
                               f"{missing[:5]}, unexpected {unexpected[:5]}); earn-export supports {supported()}")
        del hf
        return model.to(dtype), tok
    if path.is_dir():
        if not (path / "config.json").is_file():
            ggufs = sorted(path.glob("*.gguf"))
            hint = f"; pass the GGUF file itself ({ggufs[0]})" if ggufs else ""
            raise ConvertError(f"{path}: no config.json{hint}. Pass a Hugging Face checkpoint directory or a .gguf file")
        model = load_pretrained(path, dtype=dtype)
        model.set_earn(None)
        return model, AutoTokenizer.from_pretrained(str(path))
    raise ConvertError(f"{path}: not found, or neither a checkpoint directory nor a .gguf file — pass one of those "
                       "(or 'smollm2' for the shipped SmolLM2-135M-Instruct)")


@torch.no_grad()
def add_catalog_tokens(model, tokenizer, code_tokens, register_tokens=REGISTERS, init: str = "pieces") -> dict:
    """Add identifier codes and registers to ``tokenizer`` (in place) and give the model rows for them; tokens
    already there keep their ids and rows. Returns ``{"added": n, "init": init, "resized_from": old vocab or None}``."""
    from ..data.tokenizer import extend_tokenizer

    check_choice("init", init, INITS, ConvertError)
    strings = list(dict.fromkeys([*code_tokens, *register_tokens]))
    vocab = tokenizer.get_vocab()
    new = [s for s in strings if s not in vocab]
    # pieces under the ORIGINAL tokenizer, before the strings become single tokens
    pieces = {s: tokenizer(s, add_special_tokens=False)["input_ids"] for s in new} if init == "pieces" else {}
    extend_tokenizer(tokenizer, code_tokens, register_tokens)
    old_size = model.config.vocab_size
    resized = None
    if len(tokenizer) > old_size:
        model.resize_token_embeddings(len(tokenizer))
        resized = old_size
    ids = tokenizer.convert_tokens_to_ids(new)
    if init == "pieces" and new:
        # the embedding, and the LM head when it is not tied: (matrix, pretrained rows, noise std)
        mats = [model.model.embed_tokens.weight] + ([] if model.config.tie_word_embeddings else [model.lm_head.weight])
        srcs = [(w, w[:old_size].float()) for w in mats]
        srcs = [(w, src, PIECES_NOISE * float(src.std())) for w, src in srcs]
        gen = torch.Generator().manual_seed(0)
        for s, i in zip(new, ids):
            p = [t for t in pieces[s] if t < old_size]
            for w, src, noise in srcs if p else ():
                w[i] = (src[p].mean(0) + noise * torch.randn(src.shape[1], generator=gen)).to(w.dtype)
    elif init == "mean" and new and resized is None:
        # no resize happened (ids inside a padded vocabulary): give those rows the resize init explicitly
        emb = model.model.embed_tokens.weight
        gen = torch.Generator().manual_seed(0)
        mean, std = emb[:old_size].float().mean(0), float(emb[:old_size].float().std())
        for i in ids:
            emb[i] = (mean + 0.02 * std * torch.randn(mean.shape, generator=gen)).to(emb.dtype)
            if not model.config.tie_word_embeddings:
                model.lm_head.weight[i] = emb[i]
    return {"added": len(new), "init": init, "resized_from": resized}


def resolve_split(split, num_layers: int) -> int:
    """``"auto"`` (N/4, the paper's recommendation), ``"dense"`` (k = N) or an int in 1..N."""
    if split == "dense":
        return num_layers
    if split in (None, "auto"):
        return max(1, num_layers // 4)
    try:
        k = int(split)
    except (TypeError, ValueError):
        raise ConvertError(f"--split-layer {split!r}: give an integer k, 'auto' or 'dense'") from None
    if not 1 <= k <= num_layers:
        raise ConvertError(f"--split-layer {k} is out of range: the model has {num_layers} layers; use 1..{num_layers}")
    return k


def earnify(model, tokenizer, catalog, split="auto", paradigm: str = "lcrec", max_history: int = 20):
    """Set the EARN config (split k, the registers of ``tokenizer``) on ``model``; returns its PromptBuilder."""
    from ..data.prompts import PromptBuilder
    from ..model import EarnConfig

    k = resolve_split(split, model.num_layers)
    reg = tokenizer.convert_tokens_to_ids(list(REGISTERS))
    model.set_earn(EarnConfig(split_layer=k, prefix_token_ids=[reg[0]], suffix_token_ids=[reg[1]],
                              paradigm=paradigm, id_length=catalog.id_length, max_history=max_history))
    return PromptBuilder(tokenizer, catalog, paradigm=paradigm, max_history=max_history,
                         prefix_tokens=(REGISTERS[0],), suffix_tokens=(REGISTERS[1],))


def load_earn_source(source, catalog, split="auto", paradigm: str = "lcrec", max_history: int = 20,
                     init: str = "pieces", progress: bool = False):
    """``(model, tokenizer, PromptBuilder, added)``: ``source`` (HF dir, .gguf, or an EARN checkpoint) with the
    catalog's tokens added and EARN set: what ``convert`` writes and ``train --model`` starts from."""
    model, tok = load_source(source, dtype=torch.float32, progress=progress)
    added = add_catalog_tokens(model, tok, catalog.code_tokens(), REGISTERS, init=init)
    return model, tok, earnify(model, tok, catalog, split, paradigm, max_history), added


def convert(source, out_dir, data_spec=None, split="auto", paradigm: str = "lcrec", max_history: int = 20,
            init: str = "pieces", dtype: str = "float32", progress: bool = False) -> Path:
    """Write an EARN checkpoint for ``source`` (HF dir or .gguf) and the catalog of ``data_spec``'s data."""
    from ..data.data_spec import DataSpec, make_catalog
    from ..model.checkpoint_dir import save_checkpoint

    t0 = time.perf_counter()
    check_choice("dtype", dtype, ("float32", "bfloat16", "float16"), ConvertError)
    spec = data_spec or DataSpec()
    data = spec.load()
    catalog = make_catalog(data, seed=spec.seed)
    model, tok, prompts, added = load_earn_source(source, catalog, split, paradigm, max_history, init, progress)
    vocab_before = added["resized_from"] or model.config.vocab_size
    k = model.split_layer
    model = model.to(getattr(torch, dtype))
    log = {"converted_from": str(Path(source).resolve()), "vocab_before": vocab_before,
           "vocab_after": model.config.vocab_size, "tokens": added, "split_layer": k,
           "num_layers": model.num_layers, "paradigm": paradigm, "dtype": dtype,
           "bos_ids": prompts.special_prefix, "prompt_cache": prompts.cached,
           "parameters": sum(p.numel() for p in model.parameters()), "items": len(catalog),
           "data": json.loads(json.dumps(spec.__dict__)), "wall_s": None}
    out = save_checkpoint(out_dir, model, tok, catalog, prompts, spec, log, data=data)
    log["wall_s"] = time.perf_counter() - t0
    (Path(out) / "train_log.json").write_text(json.dumps(log, indent=2, default=str) + "\n")
    return Path(out)
