"""Training step time of a checkpoint, fp32 against bf16 autocast, EARN and dense, same batches.

Reports wall and process-CPU seconds per optimizer step (CPU time is robust to other load on the machine;
wall time is what a run takes on an idle one) and the loss after each step, so the two precisions' losses
can be compared step by step. Used to size fine-tuning runs (benchmarks/llm_beauty.py) and to check what the
CPU's bf16 units give (docs/results/precision.md).

    python benchmarks/train_step.py runs/llm-beauty/converted --data ../shared/data/amazon-beauty --steps 5
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def main(argv=None):
    p = argparse.ArgumentParser(prog="python benchmarks/train_step.py", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="converted or trained checkpoint dir")
    p.add_argument("--data", default=None, help="data dir (default: the checkpoint's data.json)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=5, help="timed steps per setting (after one untimed)")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--splits", default="earn,dense", help="earn (the checkpoint's k) and/or dense (k = N)")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None, help="write the results here (settings already in it are skipped)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from dataclasses import replace

    from earn_export.data.prompts import PromptBuilder
    from earn_export.data.sequences import train_examples
    from earn_export.model import load_pretrained
    from earn_export.data.data_spec import DataSpec
    from earn_export.train.train_checkpoint import encode
    from earn_export.train.trainer import LeftPadCollator, NextItemLoss, autocast_context

    spec = DataSpec.from_args(data=args.data) if args.data else DataSpec.load_from(args.checkpoint)
    data = spec.load()
    prompts = PromptBuilder.load(args.checkpoint)
    te = train_examples(data, max_history=prompts.max_history)
    rng = np.random.default_rng(0)
    pick = rng.choice(len(te.histories), args.batch_size * (args.steps + 1), replace=False)
    ds = encode(prompts, [te.histories[i] for i in pick], [te.targets[i] for i in pick])
    collate = LeftPadCollator(prompts.pad_id)
    batches = [collate([ds[i] for i in range(s, s + args.batch_size)]) for s in range(0, len(ds), args.batch_size)]
    # with --json, each finished setting is saved at once and skipped when the command runs again (a 200-step
    # dense fp32 setting alone takes about an hour of 2 cores)
    results = json.loads(Path(args.json).read_text()) if args.json and Path(args.json).is_file() else []
    for split in args.splits.split(","):
        for precision in args.precisions.split(","):
            if any(r["split"] == split and r["precision"] == precision and len(r["losses"]) == len(batches)
                   for r in results):
                print(f"{split} {precision}: already in {args.json}, skipped", flush=True)
                continue
            model = load_pretrained(args.checkpoint)
            if split == "dense":
                model.set_earn(replace(model.earn, split_layer=model.num_layers))
            wrapper = NextItemLoss(model).train()
            opt = torch.optim.AdamW(wrapper.parameters(), lr=args.lr)
            wall, cpu, losses = [], [], []
            for i, b in enumerate(batches):
                t, c = time.perf_counter(), time.process_time()
                with autocast_context("cpu", precision):
                    loss = wrapper(**b)["loss"]
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                if i:  # the first step warms up kernels and allocations
                    wall.append(time.perf_counter() - t)
                    cpu.append(time.process_time() - c)
                losses.append(float(loss.detach()))
            row = {"split": split, "k": model.split_layer, "precision": precision, "batch": args.batch_size,
                   "prompt_len": int(batches[0]["input_ids"].shape[1]), "wall_s": float(np.median(wall)),
                   "cpu_s": float(np.median(cpu)), "losses": losses}
            results.append(row)
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=2))
            print(f"{split:5s} k={row['k']:2d} {precision:4s}: {row['wall_s']:.2f} s/step wall, "
                  f"{row['cpu_s']:.2f} s/step CPU, losses {', '.join(f'{x:.3f}' for x in losses)}", flush=True)
    for split in args.splits.split(","):
        r = {x["precision"]: x for x in results if x["split"] == split}
        if "fp32" in r and "bf16" in r:
            print(f"{split}: bf16 speed-up {r['fp32']['wall_s'] / r['bf16']['wall_s']:.2f}x wall, "
                  f"{r['fp32']['cpu_s'] / r['bf16']['cpu_s']:.2f}x CPU")


if __name__ == "__main__":
    main()
