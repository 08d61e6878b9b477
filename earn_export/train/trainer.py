"""EARN and dense fine-tuning through the Hugging Face ``Trainer`` (schedules, seeds, accelerate for free).
The training graph is the ``split`` forward, exactly as at inference, so the suffix register learns to carry the
history; dense is k = N. Loss: cross-entropy on the L target identifier tokens only."""

from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import dataclass

import numpy as np
import safetensors.torch
import torch
from torch import nn
from torch.nn import functional as F
from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

from ..cli_args import resolve_device
from ..data.prompts import left_pad


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
        # every example has L targets, so left-padding prompt + targets right-aligns the prompts at one column
        ids, mask = left_pad([np.concatenate([x["input_ids"], x["labels"]]) for x in batch], self.pad_id)
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


PRECISIONS = ("fp32", "bf16", "fp16")
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of native bf16 matrix/dot-product units
PRETRAINED_SIZE = 50_000_000  # parameters from which "auto" picks bf16 on such a CPU


def cpu_bf16_units() -> list[str]:
    """The CPU's native bf16 units (AMX-bf16 tiles, AVX-512 BF16 dot products), read from /proc/cpuinfo;
    empty where there are none or the flags cannot be read (then bf16 autocast would be emulated and slow)."""
    from ..runtime.machine import cpu_flags

    flags = cpu_flags() or set()
    return [f for f in CPU_BF16_FLAGS if f in flags]


def resolve_precision(precision: str, device: str, parameters: int) -> tuple[str, str]:
    """(precision, why). ``auto``: bf16 autocast on a CPU with native bf16 units for pretrained-size models
    (measured: AVX-512 BF16 doubles matmul throughput over fp32, AMX multiplies it by about 7; small models
    are dominated by non-matmul work and stay fp32), fp32 otherwise (CUDA users choose explicitly)."""
    if precision != "auto":
        if precision not in PRECISIONS:
            raise ValueError(f"--precision {precision!r}: choose auto or one of {', '.join(PRECISIONS)}")
        return precision, "as asked"
    if str(device).startswith("cuda"):
        return "fp32", "auto on CUDA: fp32 (pass --precision bf16 for autocast)"
    units = cpu_bf16_units()
    if not units:
        return "fp32", "auto: this CPU has no native bf16 units (amx_bf16/avx512_bf16)"
    if parameters < PRETRAINED_SIZE:
        return "fp32", f"auto: fp32 for a {parameters / 1e6:.1f}M-parameter model (bf16 pays from 50M on)"
    return "bf16", f"auto: bf16 autocast on CPU ({', '.join(units)}), weights fp32"


def autocast_context(device: str, precision: str):
    """bf16/fp16 autocast on CUDA, bf16 autocast on CPU (weights stay fp32; the model keeps its fp32 islands
    only where it casts explicitly); a no-op for fp32. fp16 on CPU is refused (no fast kernels, no loss scaling)."""
    import contextlib

    if precision not in PRECISIONS:
        raise ValueError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return contextlib.nullcontext()
    if not str(device).startswith("cuda"):
        if precision == "fp16":
            raise ValueError("--precision fp16 needs --device cuda; on CPU use --precision bf16 (or auto)")
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def validation_loss(wrapper, valid: "EncodedExamples", collator, batch_size: int, deadline: float | None,
                    progress: bool, precision: str = "fp32") -> dict:
    """Validation loss over a capped set of examples, stopping at the deadline: ``Trainer.evaluate`` cannot be cut
    short (a 1,000-prompt pass took 27 minutes after a 3-minute budget). Loss: example-weighted mean of batches."""
    from tqdm.auto import tqdm

    n = len(valid)
    device = next(wrapper.parameters()).device
    was_training = wrapper.training
    wrapper.eval()
    total, done, cut = 0.0, 0, False
    t0 = time.perf_counter()
    bar = tqdm(total=n, desc="validation", unit="ex", disable=not progress, leave=False)
    try:
        with torch.no_grad(), autocast_context(device.type, precision):
            for s in range(0, n, batch_size):
                if deadline is not None and time.perf_counter() > deadline and done:
                    cut = True
                    break
                batch = collator([valid[i] for i in range(s, min(n, s + batch_size))])
                batch = {k: v.to(device) for k, v in batch.items()}
                m = len(batch["labels"])
                total += float(wrapper(**batch)["loss"]) * m
                done += m
                bar.update(m)
    finally:
        bar.close()
        wrapper.train(was_training)
    return {"eval_loss": total / done if done else None, "examples": done, "of": n, "cut_by_budget": cut,
            "seconds": time.perf_counter() - t0}


class Validation(TrainerCallback):
    """Validation per epoch, early stopping on its loss, best weights kept in memory (no checkpoint files).
    ``validate`` is also called once more after a time-budget stop; ``one_pass()`` is one validation pass."""

    def __init__(self, wrapper, one_pass, patience: int = 2):
        self.wrapper, self.one_pass, self.patience = wrapper, one_pass, patience
        self.best = math.inf
        self.best_state = None
        self.best_step = None
        self.bad = 0
        self.history = []

    def validate(self, state, control=None):
        res = self.one_pass()
        if res["eval_loss"] is None:
            return res
        self.history.append({"step": state.global_step, "epoch": state.epoch, **res})
        loss = res["eval_loss"]
        if loss < self.best - 1e-4:
            self.best, self.bad, self.best_step = loss, 0, state.global_step
            self.best_state = {k: v.detach().clone() for k, v in self.wrapper.state_dict().items()}
        else:
            self.bad += 1
            if control is not None and self.bad >= self.patience:
                control.should_training_stop = True
        return res

    def on_epoch_end(self, args, state, control, **kw):
        # also when training is stopping (last epoch, or the time budget cut it): that pass is the final one
        self.validate(state, control)


class TimeBudget(TrainerCallback):
    """Stops training when the time left would not cover one more step plus the final validation pass
    (estimated from the measured step time: a forward-only batch costs about half a training step)."""

    def __init__(self, deadline: float, n_valid: int, batch_size: int):
        self.deadline, self.n_valid, self.batch_size = deadline, n_valid, batch_size
        self.start = None
        self.first_step = 0
        self.stopped_early = False
        self.where = None

    def on_train_begin(self, args, state, control, **kw):
        self.start = time.perf_counter()
        self.first_step = state.global_step  # > 0 when resumed from a Trainer checkpoint

    def on_step_end(self, args, state, control, **kw):
        now = time.perf_counter()
        step_s = (now - self.start) / max(state.global_step - self.first_step, 1)
        valid_s = 0.5 * step_s * math.ceil(self.n_valid / self.batch_size)
        if now + step_s + valid_s > self.deadline and state.global_step < state.max_steps:
            self.stopped_early = True
            self.where = {"step": state.global_step, "max_steps": state.max_steps, "epoch": state.epoch,
                          "step_s": step_s, "estimated_validation_s": valid_s}
            control.should_training_stop = True
            control.should_save = args.save_strategy != "no"  # a resumable run keeps its place


class TiedWeightsTrainer(Trainer):
    """``Trainer`` whose checkpoints hold the wrapped model's weights once: the loss wrapper is no
    ``PreTrainedModel``, so Trainer would write its raw state dict, which safetensors refuses for tied
    embeddings. ``save_model``/``load_model`` store a shared tensor once and restore both names."""

    def _save(self, output_dir=None, state_dict=None):
        output_dir = output_dir or self.args.output_dir
        os.makedirs(output_dir, exist_ok=True)
        safetensors.torch.save_model(self.model, os.path.join(output_dir, "model.safetensors"))
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        safetensors.torch.load_model(model or self.model, os.path.join(resume_from_checkpoint, "model.safetensors"))


def train_model(model, train: EncodedExamples, valid: EncodedExamples | None, pad_id: int, *, output_dir: str,
                epochs: float = 3.0, batch_size: int = 128, lr: float = 1e-3, seed: int = 42, progress: bool = True,
                deadline: float | None = None, device: str = "auto", precision: str = "fp32",
                resume_dir: str | None = None, save_steps: int = 200) -> dict:
    """Fine-tune ``model`` in place; returns the training log (losses, best validation loss, steps, and where
    a time budget cut the run). ``deadline``: the ``time.perf_counter()`` by which training and validation must be
    over (the caller keeps the time it needs to save; None: no budget). ``precision``: fp32, bf16 or fp16 autocast,
    weights fp32 (resolve "auto" first). ``resume_dir``: Trainer checkpoints (weights, optimizer, scheduler, RNG,
    data position) every ``save_steps`` steps and when the budget stops training; the next call with the same
    directory continues from the last one (None: not resumable)."""
    set_seed(seed)
    device = resolve_device(device)
    autocast_context(device, precision)  # validates precision against the device before any work
    wrapper = NextItemLoss(model)
    collator = LeftPadCollator(pad_id)
    args = TrainingArguments(
        output_dir=resume_dir or output_dir, per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size, learning_rate=lr, lr_scheduler_type="cosine",
        warmup_steps=0.02,  # transformers 5: a float in [0, 1) is a ratio of total steps
        weight_decay=0.01, num_train_epochs=epochs,
        eval_strategy="no",  # validation runs in our Validation callback (capped, deadline-aware)
        save_strategy="steps" if resume_dir else "no", save_steps=save_steps, save_total_limit=1,
        logging_steps=50, report_to=[], seed=seed, data_seed=seed, train_sampling_strategy="group_by_length",
        remove_unused_columns=False, label_names=["labels"], dataloader_num_workers=0, disable_tqdm=not progress,
        use_cpu=device == "cpu", bf16=precision == "bf16", fp16=precision == "fp16")
    validation = budget = None
    if valid is not None:
        validation = Validation(wrapper, functools.partial(
            validation_loss, wrapper, valid, collator, batch_size, deadline, progress, precision))
    if deadline is not None:
        budget = TimeBudget(deadline, 0 if valid is None else len(valid), batch_size)
    callbacks = [c for c in (validation, budget) if c is not None]
    trainer = TiedWeightsTrainer(model=wrapper, args=args, train_dataset=train, data_collator=collator,
                                 callbacks=callbacks)
    resume_from = None
    if resume_dir:
        resume_from = get_last_checkpoint(resume_dir) if os.path.isdir(resume_dir) else None
        if resume_from:
            print(f"earn-export train: resuming from {resume_from}", flush=True)
    out = trainer.train(resume_from_checkpoint=resume_from)
    state = trainer.state
    stopped = budget is not None and budget.stopped_early
    final = None
    if validation is not None and stopped:
        last = validation.history[-1]["step"] if validation.history else None
        final = validation.validate(state) if last != state.global_step else validation.history[-1]
    if validation is not None and validation.best_state is not None:
        wrapper.load_state_dict(validation.best_state)
    losses = [h["loss"] for h in state.log_history if "loss" in h]
    log = {
        "train_loss": out.training_loss, "final_logged_loss": losses[-1] if losses else None,
        "best_eval_loss": None if validation is None or validation.best_state is None else validation.best,
        "best_step": None if validation is None else validation.best_step,
        "eval_history": [] if validation is None else validation.history,
        "steps": state.global_step, "epochs": state.epoch, "runtime_s": out.metrics.get("train_runtime"),
        "stopped_by_time_budget": stopped, "device": device, "precision": precision,
        "resumed_from_step": int(resume_from.rsplit("-", 1)[1]) if resume_from else None, "complete": not stopped,
    }
    if stopped:
        w = budget.where
        loss = None if final is None else final.get("eval_loss")
        msg = (f"time budget reached: training stopped at step {w['step']} of {w['max_steps']} (epoch "
               f"{w['epoch']:.2f}); ")
        if final is None:
            msg += "no validation set"
        else:
            msg += (f"validation loss {loss:.4f} on {final['examples']}/{final['of']} examples"
                    if loss is not None else "validation: no examples evaluated")
            if final.get("cut_by_budget"):
                msg += " (validation cut by the budget)"
        if log["best_eval_loss"] is not None:
            msg += f"; keeping the best weights (step {log['best_step']}, validation loss {log['best_eval_loss']:.4f})"
        log["time_budget"] = {**w, "validation": final, "message": msg}
    return log
