"""End-to-end training and evaluation: data → catalog/tokenizer/prompts → model → Trainer → checkpoint → metrics.

``earn-export train``/``eval`` and ``earn-export demo`` call these functions; everything a later step needs is
written into the checkpoint directory (docs/CONTRACTS.md "Checkpoint directory"), including ``data.json``
saying which data the model was trained on, so ``eval``/``check`` default to the same data.
"""

from __future__ import annotations

import json
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_output
from ..data.errors import DataError
from ..errors import RunWarning, UsageError, hint

REGISTERS = ("<reg_p>", "<reg_s>")


@dataclass
class DataSpec:
    """Where the interactions come from: ``sequential`` (Beauty format dir), ``interactions`` (CSV/TSV) or
    ``synthetic`` (the embedded default)."""

    kind: str = "synthetic"
    path: str | None = None
    seed: int = 0
    k_core: int = 5
    n_users: int = 2000
    n_items: int = 400

    @classmethod
    def from_args(cls, data=None, interactions=None, seed=0, k_core=5, **kw) -> "DataSpec":
        if data and interactions:
            raise UsageError("give --data (sequential split files) or --interactions (CSV/TSV), not both")
        if data:
            return cls("sequential", str(Path(data).resolve()), seed, k_core, **kw)
        if interactions:
            return cls("interactions", str(Path(interactions).resolve()), seed, k_core, **kw)
        return cls("synthetic", None, seed, k_core, **kw)

    def load(self):
        if self.kind == "sequential":
            from ..data.sequences import load_sequential

            return load_sequential(self.path)
        if self.kind == "interactions":
            from ..data.interactions import load_interactions

            return load_interactions(self.path, k_core=self.k_core)
        if self.kind == "synthetic":
            from ..data.synthetic import make_synthetic

            return make_synthetic(n_users=self.n_users, n_items=self.n_items, seed=self.seed)
        raise DataError(f"unknown data kind {self.kind!r} in data.json; expected sequential|interactions|synthetic")

    def save(self, ckpt_dir) -> None:
        (Path(ckpt_dir) / "data.json").write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load_from(cls, ckpt_dir) -> "DataSpec | None":
        path = Path(ckpt_dir) / "data.json"
        if not path.is_file():
            return None
        fields = cls.__dataclass_fields__  # data.json also records what was loaded ("stats"), not an option
        return cls(**{k: v for k, v in json.loads(path.read_text()).items() if k in fields})


def make_catalog(data, seed: int = 0):
    """The data's semantic IDs when it has them, else IDs built from titles or co-occurrence."""
    from ..data.catalog import ItemCatalog
    from ..data.semantic_ids import build_semantic_ids, item_features

    if data.semantic_ids:
        return ItemCatalog(data.semantic_ids)
    feats = item_features(titles=data.titles, sequences=list(data.train.values()), num_items=data.num_items,
                          seed=seed)
    return ItemCatalog(build_semantic_ids(feats, seed=seed))


def build_model(catalog, paradigm: str, split: str | int, model_path=None, preset: str = "tiny",
                max_history: int = 20, seed: int = 42):
    """(model, tokenizer, PromptBuilder) with register tokens and the EARN split set.

    ``split``: an int k, ``"dense"`` (k = N, the fine-tuning baseline) or ``"auto"`` (the preset's k ≈ N/4).
    """
    from ..data.prompts import PromptBuilder, template_words
    from ..data.tokenizer import build_tokenizer
    from ..model import EarnConfig, EarnForCausalLM
    from .presets import preset_config

    codes = catalog.code_tokens()
    if model_path:
        from ..convert import add_catalog_tokens, load_source

        # a pretrained HF dir / GGUF file, or a converted/trained checkpoint (its tokens keep their ids and rows)
        model, tok = load_source(model_path, dtype=torch.float32)
        add_catalog_tokens(model, tok, codes, REGISTERS)
        default_k = max(1, model.num_layers // 4)
    else:
        tok = build_tokenizer(template_words(paradigm), codes, list(REGISTERS))
        cfg, default_k = preset_config(preset, vocab_size=len(tok))
        model = EarnForCausalLM(cfg)
        model.init_weights(seed=seed)
    n = model.num_layers
    k = n if split == "dense" else default_k if split == "auto" else int(split)
    reg = tok.convert_tokens_to_ids(list(REGISTERS))
    model.set_earn(EarnConfig(split_layer=k, prefix_token_ids=[reg[0]], suffix_token_ids=[reg[1]],
                              paradigm=paradigm, id_length=catalog.id_length, max_history=max_history))
    prompts = PromptBuilder(tok, catalog, paradigm=paradigm, max_history=max_history,
                            prefix_tokens=(REGISTERS[0],), suffix_tokens=(REGISTERS[1],))
    return model, tok, prompts


def encode(prompts, histories, targets):
    """EncodedExamples: unpadded prompt rows and the target item's identifier token ids."""
    from .trainer import EncodedExamples

    rows = [prompts.row(h) for h in histories]
    # prompts.item_ids: identifier token ids already checked against the tokenizer (catalog.token_paths)
    return EncodedExamples(rows, np.array([prompts.item_ids[int(t)] for t in targets], dtype=np.int64))


@atomic_output("out_dir", "checkpoint")
def save_checkpoint(out_dir, model, tokenizer, catalog, prompts, data_spec, log: dict, data=None) -> Path:
    """Everything export and runtime need: weights, earn.json, tokenizer, items.json, trie.npz, prompt.json,
    and, given the loaded ``data``, its original item ids (item_ids.json) and counts (data.json "stats").
    Written atomically (``earn_export.atomic``): an interrupted save leaves the previous checkpoint as it was."""
    out = Path(out_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(str(out))
    catalog.save(out)
    catalog.trie(tokenizer).save(out / "trie.npz")
    prompts.save(out)
    data_spec.save(out)
    if data is not None:
        from ..data.id_map import write_data_files

        write_data_files(out, data, log)
    (out / "train_log.json").write_text(json.dumps(log, indent=2, default=str) + "\n")
    return out


MIN_EXAMPLES = 1000  # below this a model learns next to nothing: the run is probably a mistake, so say it


def warn_if_degenerate(examples: int, users: int, batch_size: int, epochs: float) -> None:
    """A :class:`RunWarning` (one line under the CLI) when there is too little data to learn from."""
    steps = max(1, round(examples / batch_size * epochs))
    if examples < MIN_EXAMPLES:
        warnings.warn(f"only {examples} training examples from {users} users ({steps} optimizer steps): too few to "
                      "learn item transitions, expect near-popularity recommendations — "
                      + hint("use more data", "use more data (--data, --interactions, or --synthetic-users for the "
                                              "embedded dataset)"), RunWarning, stacklevel=3)


def default_eval_users(parameters: int) -> int:
    """Validation prompts per pass: 1,000 for the small from-scratch presets, 200 from 50M parameters on
    (a 135M model validates about 1 prompt/s on 2 CPU cores: 1,000 prompts would take longer than training)."""
    return 1000 if parameters < 50_000_000 else 200


def save_seconds(model) -> float:
    """Time kept back from ``--max-minutes`` to write the checkpoint (weights at ~100 MB/s, plus 5 s)."""
    return 5.0 + sum(p.numel() * p.element_size() for p in model.parameters()) / 100e6


def train(out_dir, data_spec: DataSpec, split="auto", paradigm="lcrec", model_path=None, preset="tiny",
          max_history=20, epochs=2.0, batch_size=128, lr=1e-3, seed=42, max_minutes=None,
          max_train_examples=None, valid_users=None, progress=True, device="auto", precision="fp32") -> Path:
    """Fine-tune EARN (or dense: ``split="dense"``) and write a checkpoint; returns its directory.

    ``max_minutes`` bounds the whole call (loading, training, validation and saving): training stops when the
    time left covers only one more step, the final validation pass and the save; the validation pass stops at
    the deadline. ``valid_users``: validation prompts per pass (None: :func:`default_eval_users`).
    ``split="analyze"`` picks k with the attention rule of ``earn_export.analysis.split_rule`` on the starting
    model (``model_path``) before training; the evidence goes into ``train_log.json`` as ``split_analysis``.
    """
    if not epochs > 0:
        raise UsageError(f"epochs must be > 0, got {epochs} (0 would save an untrained model) — "
                         + hint("pass epochs=", "pass --epochs") + " 1 or more")
    from ..data.sequences import eval_examples, train_examples
    from .trainer import TrainConfig, train_model

    t0 = time.perf_counter()
    if split == "analyze" and not model_path:
        from ..model.config import ModelConfigError

        raise ModelConfigError(
            "--split-layer analyze reads the attention of the model training starts from, but a fresh "
            "--model-config preset has random weights (no attention pattern to analyse). Start from a trained "
            "model: --model HF_DIR (e.g. a dense run: `earn-export train --split-layer dense --out runs/dense`, then "
            "`--model runs/dense --split-layer analyze`), or pass an integer --split-layer")
    data = data_spec.load()
    catalog = make_catalog(data, seed=data_spec.seed)
    model, tok, prompts = build_model(catalog, paradigm, "dense" if split == "analyze" else split, model_path,
                                      preset, max_history, seed)
    n_params = sum(p.numel() for p in model.parameters())
    deadline = None if not max_minutes else t0 + 60 * max_minutes - save_seconds(model)
    if valid_users is None:
        valid_users = default_eval_users(n_params)
    te = train_examples(data, max_history=max_history)
    hist, tgt = te.histories, te.targets
    split_analysis = None
    if split == "analyze":  # the attention rule of earn_export.analysis on the starting model (dense forward)
        from dataclasses import replace

        from ..analysis.run import choose_split_layer

        pick = np.random.default_rng(seed).permutation(len(hist))[:300]
        split_analysis = choose_split_layer(model, prompts, [hist[i] for i in pick], [tgt[i] for i in pick],
                                            progress=progress)
        model.set_earn(replace(model.earn, split_layer=split_analysis["k"]))
    if max_train_examples and len(hist) > max_train_examples:
        pick = np.random.default_rng(seed).choice(len(hist), max_train_examples, replace=False)
        hist, tgt = [hist[i] for i in pick], [tgt[i] for i in pick]
    train_set = encode(prompts, hist, tgt)
    warn_if_degenerate(len(train_set), len(data.train), batch_size, epochs)
    # validation loss: the first valid item of (a sample of) users with valid items, history = train items
    ve = eval_examples(data, "valid", max_history=max_history)
    pick = np.random.default_rng(seed).permutation(len(ve.users))[:valid_users]
    valid_set = None
    if len(pick):
        valid_set = encode(prompts, [ve.histories[i] for i in pick],
                           [min(ve.targets[i]) for i in pick])
    with tempfile.TemporaryDirectory() as scratch:  # Trainer wants an output_dir; we save no Trainer checkpoints
        cfg = TrainConfig(output_dir=scratch, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                          progress=progress, max_minutes=max_minutes, deadline=deadline, device=device,
                          precision=precision)
        log = train_model(model, train_set, valid_set, tok.pad_token_id or 0, cfg)
    model.cpu()
    if "time_budget" in log:
        print(f"earn-export train: {log['time_budget']['message']}", flush=True)
    log.update(examples=len(train_set), valid_examples=0 if valid_set is None else len(valid_set),
               split_layer=model.split_layer, num_layers=model.num_layers, paradigm=paradigm,
               parameters=n_params, data=asdict(data_spec), preset=None if model_path else preset, lr=lr,
               batch_size=batch_size, skipped=getattr(data, "skipped", {}), max_minutes=max_minutes,
               source_model=str(model_path) if model_path else None)
    if split_analysis is not None:
        log["split_analysis"] = split_analysis
    log["wall_s_before_save"] = time.perf_counter() - t0
    out = save_checkpoint(out_dir, model, tok, catalog, prompts, data_spec, log, data=data)
    log["wall_s"] = time.perf_counter() - t0
    (Path(out) / "train_log.json").write_text(json.dumps(log, indent=2, default=str) + "\n")
    return out


def _item_head(ckpt) -> np.ndarray | None:
    """The identifier tokens (what a ``vocab="items"`` engine outputs): beam search only ever reads these
    columns, and restricting the LM head to them skips a [rows, vocab] matmul per step (49k columns for SmolLM2,
    151k for Qwen2.5, against ~1k identifier tokens). Log-probs are then normalised over identifier tokens,
    exactly as vocab="items" engines do; ``None`` when the checkpoint has no trie."""
    from ..data.catalog import Trie

    path = Path(ckpt) / "trie.npz"
    return np.unique(Trie.load(path).tokens) if path.is_file() else None


def eval_vocab(model, vocab: str = "auto") -> str:
    """``auto``: ``items`` for pretrained-size vocabularies (> 8,192 tokens: SmolLM2 has 49k, Qwen2.5 151k, and
    the full LM head is then a large share of every decode step), ``full`` for the small from-scratch ones."""
    if vocab not in ("auto", "full", "items"):
        raise ValueError(f"--vocab {vocab!r}: choose auto, full or items")
    if vocab != "auto":
        return vocab
    return "items" if model.config.vocab_size > 8192 else "full"


def evaluate_checkpoint(ckpt_dir, split="test", beam=20, users=None, batch_size=64, baseline=None,
                        data_spec: DataSpec | None = None, seed=0, progress=True, window=8, n_sink=4,
                        keep=5, device="cpu", dtype=None, vocab="auto") -> dict:
    """Recall/NDCG@10/20 with trie-constrained beam search: a checkpoint dir runs the torch reference, an engine
    dir (``manifest.json``) runs its ONNX graphs on ONNX Runtime (e.g. to measure what fp16 costs in accuracy).

    ``baseline``: None (the model as trained), ``"streaming"`` (keep the first ``n_sink`` and last ``window``
    prompt tokens in every layer's cache after prefill), ``"truncate"`` (prompts hold only the last ``keep``
    history items), ``"popularity"`` (most frequent training items).
    """
    from ..data.catalog import Trie
    from ..data.prompts import PromptBuilder
    from ..data.sequences import eval_examples
    from ..model import load_pretrained
    from ..runtime.backends import TorchBackend
    from .evaluate import StreamingCacheBackend, evaluate, popularity_metrics

    ckpt = Path(ckpt_dir)
    spec = data_spec or DataSpec.load_from(ckpt)
    if spec is None:
        raise UsageError(f"{ckpt}: no data.json saying which data it was trained on — "
                         + hint("pass data_spec=", "pass --data DIR or --interactions FILE"))
    data = spec.load()
    is_engine = (ckpt / "manifest.json").is_file()
    if is_engine:
        from ..runtime.backends import OrtBackend

        backend = OrtBackend(ckpt)
        m = backend.manifest["model"]
        n_layers, k = m["num_layers"], m["split_layer"]
    else:
        from .trainer import resolve_device

        model = load_pretrained(ckpt, dtype=getattr(torch, dtype) if dtype else None)
        vocab = eval_vocab(model, vocab)
        head = _item_head(ckpt) if vocab == "items" else None
        dev = resolve_device(device)
        # CUDA: decode steps as CUDA graphs (eval searches batch after batch, one at a time)
        backend = TorchBackend(model.to(dev), head_token_ids=head, cuda_graphs=dev.startswith("cuda"))
        n_layers, k = model.num_layers, model.split_layer
    prompts = PromptBuilder.load(ckpt)
    max_history = prompts.max_history
    if baseline == "truncate":
        max_history = keep
        prompts.max_history = keep
    ex = eval_examples(data, split, max_history=max_history)
    if users and users < len(ex.users):
        pick = np.sort(np.random.default_rng(seed).choice(len(ex.users), users, replace=False))
        ex = type(ex)([ex.users[i] for i in pick], [ex.histories[i] for i in pick], [ex.targets[i] for i in pick])
    result = {"checkpoint": str(ckpt), "split": split, "baseline": baseline or "none",
              "split_layer": k, "num_layers": n_layers, "data": asdict(spec),
              "backend": f"onnxruntime ({backend.manifest['dtype']})" if is_engine else "torch",
              "vocab": backend.manifest["vocab"]["mode"] if is_engine else vocab}
    if baseline == "popularity":
        result.update(popularity_metrics(list(data.train.values()), ex, data.num_items))
        return result
    if baseline == "streaming":
        if is_engine or k != n_layers:
            raise UsageError("the streaming baseline compresses a dense model's torch cache; pass the dense checkpoint "
                             "(not an EARN checkpoint or an engine dir)")
        backend = StreamingCacheBackend(backend, n_sink=n_sink, window=window)
        result.update(n_sink=n_sink, window=window)
    if baseline == "truncate":
        result["keep_items"] = keep
    elif baseline not in (None, "streaming"):
        raise UsageError(f"unknown baseline {baseline!r}; choose streaming, truncate or popularity")
    trie = Trie.load(ckpt if is_engine else ckpt / "trie.npz")  # engines hold trie.*.npy
    with torch.no_grad():
        result.update(evaluate(backend, trie, prompts, ex, beam=beam, batch_size=batch_size, progress=progress))
    return result
