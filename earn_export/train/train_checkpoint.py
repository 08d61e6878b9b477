"""Training: data → catalog/tokenizer/prompts → model → Trainer → checkpoint directory, which holds everything a
later step needs (``data.json`` included, so ``eval``/``check`` default to the same data)."""

from __future__ import annotations

import json
import tempfile
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import RunWarning, UsageError, hint


def build_model(catalog, paradigm: str, split: str | int, model_path=None, preset: str = "tiny",
                max_history: int = 20, seed: int = 42):
    """(model, tokenizer, PromptBuilder) with register tokens and the split set (int k, ``"dense"``, ``"auto"`` = N/4);
    ``model_path``: a pretrained model or checkpoint (made EARN as ``convert`` does), else ``preset``."""
    from ..convert.pretrained import earnify, load_earn_source
    from ..data.prompts import template_words
    from ..data.tokenizer import REGISTERS, build_tokenizer
    from ..model import EarnForCausalLM
    from ..model.shapes import preset_config

    if model_path:
        model, tok, prompts, _ = load_earn_source(model_path, catalog, split, paradigm, max_history)
        return model, tok, prompts
    tok = build_tokenizer(template_words(paradigm), catalog.code_tokens(), list(REGISTERS))
    cfg, _ = preset_config(preset, vocab_size=len(tok))
    model = EarnForCausalLM(cfg)
    model.init_weights(seed=seed)
    return model, tok, earnify(model, tok, catalog, split, paradigm, max_history)


def encode(prompts, histories, targets):
    """EncodedExamples: unpadded prompt rows and the target item's identifier token ids."""
    from .trainer import EncodedExamples

    rows = [prompts.row(h) for h in histories]
    # prompts.item_ids: identifier token ids already checked against the tokenizer (catalog.token_paths)
    return EncodedExamples(rows, np.array([prompts.item_ids[int(t)] for t in targets], dtype=np.int64))


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


def train(out_dir, data_spec, split="auto", paradigm="lcrec", model_path=None, preset="tiny",
          max_history=20, epochs=2.0, batch_size=128, lr=1e-3, seed=42, max_minutes=None,
          max_train_examples=None, valid_users=None, progress=True, device="auto", precision="auto",
          resume_dir=None, save_steps=200) -> Path:
    """Fine-tune EARN (or dense: ``split="dense"``) and write a checkpoint; returns its directory.

    ``max_minutes`` bounds the whole call, saving included. ``precision``: ``auto`` (bf16 autocast for
    pretrained-size models on a CPU with bf16 units), fp32, bf16, fp16. ``resume_dir``: Trainer checkpoints, so
    a stopped run continues when called again. ``split="analyze"``: k from :mod:`earn_export.analysis.split_rule`,
    evidence in ``train_log.json``.
    """
    if not epochs > 0:
        raise UsageError(f"epochs must be > 0, got {epochs} (0 would save an untrained model) — "
                         + hint("pass epochs=", "pass --epochs") + " 1 or more")
    from ..cli_args import resolve_device
    from ..data.data_spec import make_catalog
    from ..data.sequences import eval_examples, train_examples
    from ..model.checkpoint_dir import save_checkpoint
    from .trainer import resolve_precision, train_model

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
    precision, why = resolve_precision(precision, resolve_device(device), n_params)
    if progress or precision != "fp32":
        print(f"earn-export train: precision {precision} ({why})", flush=True)
    # a resumable run also writes a Trainer checkpoint (weights + 2 optimizer moments) when the budget stops it
    keep = save_seconds(model) * (4 if resume_dir else 1)
    deadline = None if not max_minutes else t0 + 60 * max_minutes - keep
    if valid_users is None:
        valid_users = default_eval_users(n_params)
    te = train_examples(data, max_history=max_history)
    hist, tgt = te.histories, te.targets
    split_analysis = None
    if split == "analyze":  # the attention rule of earn_export.analysis on the starting model (dense forward)
        from dataclasses import replace

        from ..analysis.run_analysis import choose_split_layer

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
    valid_set = encode(prompts, [ve.histories[i] for i in pick], [min(ve.targets[i]) for i in pick]) \
        if len(pick) else None
    with tempfile.TemporaryDirectory() as scratch:  # Trainer wants an output_dir (checkpoints: resume_dir)
        log = train_model(model, train_set, valid_set, tok.pad_token_id or 0, output_dir=scratch, epochs=epochs,
                          batch_size=batch_size, lr=lr, seed=seed, progress=progress, deadline=deadline, device=device,
                          precision=precision, resume_dir=None if resume_dir is None else str(resume_dir),
                          save_steps=save_steps)
    model.cpu()
    if "time_budget" in log:
        print(f"earn-export train: {log['time_budget']['message']}", flush=True)
        if resume_dir:
            print(f"earn-export train: run again with the same arguments to continue from {resume_dir}", flush=True)
    log.update(examples=len(train_set), valid_examples=0 if valid_set is None else len(valid_set),
               split_layer=model.split_layer, num_layers=model.num_layers, paradigm=paradigm,
               parameters=n_params, data=asdict(data_spec), preset=None if model_path else preset, lr=lr,
               batch_size=batch_size, skipped=getattr(data, "skipped", {}), max_minutes=max_minutes,
               source_model=str(model_path) if model_path else None, precision_reason=why,
               resume_dir=None if resume_dir is None else str(resume_dir))
    if split_analysis is not None:
        log["split_analysis"] = split_analysis
    log["wall_s_before_save"] = time.perf_counter() - t0
    out = save_checkpoint(out_dir, model, tok, catalog, prompts, data_spec, log, data=data)
    log["wall_s"] = time.perf_counter() - t0
    (Path(out) / "train_log.json").write_text(json.dumps(log, indent=2, default=str) + "\n")
    return out
