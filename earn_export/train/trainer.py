"""EARN and dense fine-tuning through the Hugging Face ``Trainer``.

The training graph is the model core's ``split`` forward (``mode="split"``): layers >= k see only the
register rows and the target rows, exactly as at inference, so the suffix register learns to carry the
history. The dense baseline is the same code with k = N. Loss: next-token cross-entropy on the L target
identifier tokens only. Using ``Trainer`` gives multi-GPU/accelerate, cosine schedule with warm-up, seed
control and a progress bar without hand-written loops.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class EncodedExamples(torch.utils.data.Dataset):
    """Prompts (token ids, registers included, unpadded) and their L target identifier tokens."""

    def __init__(self, prompts: list, targets: np.ndarray):
        if len(prompts) != len(targets):
            raise ValueError(f"{len(prompts)} prompts but {len(targets)} targets")
        if len(prompts) == 0:
            raise ValueError("no training examples: check the data split and history settings")
        self.prompts = [np.asarray(p, dtype=np.int64) for p in prompts]
        self.targets = np.asarray(targets, dtype=np.int64)

    def __len__(self):
        return len(self.prompts)

    def __getitem__(self, i):
        # "input_ids" is the prompt: HF's length-grouped sampler reads its length
        return {"input_ids": self.prompts[i], "labels": self.targets[i]}


@dataclass
class LeftPadCollator:
    """Left-pads prompts (so the suffix register is the last prompt column) and appends the targets."""

    pad_id: int

    def __call__(self, batch):
        p = max(len(x["input_ids"]) for x in batch)
        n = len(batch)
        t = len(batch[0]["labels"])
        ids = np.full((n, p + t), self.pad_id, dtype=np.int64)
        mask = np.zeros((n, p + t), dtype=np.int64)
        for i, x in enumerate(batch):
            q = x["input_ids"]
            ids[i, p - len(q): p] = q
            mask[i, p - len(q):] = 1
            ids[i, p:] = x["labels"]
        labels = np.stack([x["labels"] for x in batch])
        return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
                "labels": torch.from_numpy(labels)}


class NextItemLoss(nn.Module):
    """Wraps the model for ``Trainer``: split forward, cross-entropy on the target identifier tokens."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, labels):
        t = labels.shape[1]
        logits = self.model(input_ids, attention_mask, n_target=t, mode="split")[:, :t]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1))
        return {"loss": loss}


@dataclass
class TrainConfig:
    output_dir: str
    epochs: float = 3.0
    batch_size: int = 128
    lr: float = 1e-3
    warmup_ratio: float = 0.02
    weight_decay: float = 0.01
    seed: int = 42
    patience: int = 2
    max_steps: int = -1
    eval_steps: int | None = None  # None: evaluate once per epoch
    logging_steps: int = 50
    progress: bool = True
    max_minutes: float | None = None  # wall-clock budget: stop (and keep the best weights) when it is spent


def _best_weights_callback(patience: int):
    from transformers import TrainerCallback

    class BestWeights(TrainerCallback):
        """Early stopping on validation loss, keeping the best weights in memory (no checkpoint files)."""

        def __init__(self):
            self.best = math.inf
            self.best_state = None
            self.bad = 0
            self.history = []

        def on_evaluate(self, args, state, control, metrics=None, model=None, **kw):
            loss = (metrics or {}).get("eval_loss")
            if loss is None:
                return
            self.history.append({"step": state.global_step, "epoch": state.epoch, "eval_loss": loss})
            if loss < self.best - 1e-4:
                self.best, self.bad = loss, 0
                self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                self.bad += 1
                if self.bad >= patience:
                    control.should_training_stop = True

    return BestWeights()


def _time_budget_callback(max_minutes: float):
    from transformers import TrainerCallback

    class TimeBudget(TrainerCallback):
        """Stops training when the wall-clock budget is spent, after one last evaluation."""

        def __init__(self):
            self.start = None
            self.stopped_early = False

        def on_train_begin(self, args, state, control, **kw):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            if time.perf_counter() - self.start > 60 * max_minutes:
                self.stopped_early = True
                control.should_training_stop = True
                control.should_evaluate = args.eval_strategy != "no"

    return TimeBudget()


def train_model(model, train: EncodedExamples, valid: EncodedExamples | None, pad_id: int, cfg: TrainConfig) -> dict:
    """Fine-tune ``model`` in place; returns the training log (losses, best validation loss, steps)."""
    from transformers import Trainer, TrainingArguments, set_seed

    set_seed(cfg.seed)
    wrapper = NextItemLoss(model)
    eval_strategy = "no" if valid is None else ("steps" if cfg.eval_steps else "epoch")
    args = TrainingArguments(
        output_dir=cfg.output_dir,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        learning_rate=cfg.lr,
        lr_scheduler_type="cosine",
        warmup_steps=cfg.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio of total steps
        weight_decay=cfg.weight_decay,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        eval_strategy=eval_strategy,
        eval_steps=cfg.eval_steps,
        save_strategy="no",
        logging_steps=cfg.logging_steps,
        report_to=[],
        seed=cfg.seed,
        data_seed=cfg.seed,
        train_sampling_strategy="group_by_length",
        remove_unused_columns=False,
        label_names=["labels"],
        dataloader_num_workers=0,
        disable_tqdm=not cfg.progress,
        use_cpu=not torch.cuda.is_available(),
    )
    best = _best_weights_callback(cfg.patience)
    callbacks = [best]
    budget = None
    if cfg.max_minutes:
        budget = _time_budget_callback(cfg.max_minutes)
        callbacks.append(budget)
    trainer = Trainer(model=wrapper, args=args, train_dataset=train, eval_dataset=valid,
                      data_collator=LeftPadCollator(pad_id), callbacks=callbacks)
    out = trainer.train()
    if best.best_state is not None:
        wrapper.load_state_dict(best.best_state)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {
        "train_loss": out.training_loss,
        "final_logged_loss": losses[-1] if losses else None,
        "best_eval_loss": None if best.best_state is None else best.best,
        "eval_history": best.history,
        "steps": trainer.state.global_step,
        "epochs": trainer.state.epoch,
        "runtime_s": out.metrics.get("train_runtime"),
        "stopped_by_time_budget": bool(budget and budget.stopped_early),
    }
