"""SmolLM2-135M EARN vs dense on Beauty, on one GPU in a few minutes (the device run of issue 14).

UNVERIFIED: written and smoke-run on the CPU with tiny budgets; no GPU was lent to the work that wrote it.
``benchmarks/gpu_smollm2.sh`` stages the model file and runs this on the lent machine. Steps, one process:
1. convert the shipped SmolLM2-135M-Instruct GGUF to an EARN checkpoint on the Beauty catalog (once);
2. fine-tune EARN (k = 7 ≈ N/4 of 30 layers) and dense (k = N) from it with the *same* wall-clock budget
   (``--max-minutes`` bounds loading, training, validation and saving), bf16 autocast;
3. evaluate both on all 3,553 Beauty test users (torch reference on CUDA, bf16 weights, items head, beam 20,
   decode steps as CUDA graphs): Recall/NDCG@10/20 next to the paper's Llama-7B rows, and users/s EARN vs
   dense (the torch-CUDA runtime's throughput at beam 20, from the same timed evaluation);
4. write ``gpu_smollm2.json`` and ``gpu_smollm2.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

PAPER = {  # EARN paper (arXiv 2507.00715), Table 1, Beauty, Llama-7B (docs/results/accuracy.md)
    "paper Finetune (Llama-7B)": {"recall@10": .0145, "recall@20": .0225, "ndcg@10": .0084, "ndcg@20": .0108},
    "paper EARN (Llama-7B)": {"recall@10": .0167, "recall@20": .0265, "ndcg@10": .0095, "ndcg@20": .0124},
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/gpu_smollm2.py", description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/amazon-beauty", help="Beauty data dir")
    p.add_argument("--work", default="runs/gpu-smollm2", help="checkpoints go here")
    p.add_argument("--out", default="results/gpu-smollm2", help="results (json, md) go here")
    p.add_argument("--minutes", type=float, default=2.0, help="fine-tuning budget per model (same for both)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--epochs", type=float, default=3.0, help="upper bound; the budget usually stops first")
    p.add_argument("--eval-users", type=int, default=200, help="validation prompts per pass")
    p.add_argument("--test-users", type=int, default=None, help="default: all test users (3,553 on Beauty)")
    p.add_argument("--device", default="cuda", help="cuda (the run) or cpu (a smoke run with tiny budgets)")
    p.add_argument("--max-train-examples", type=int, default=None, help="subsample (smoke runs)")
    p.add_argument("--source", default="smollm2", help="model to convert (default: the shipped SmolLM2 GGUF; "
                                                       "an HF dir for smoke runs)")
    args = p.parse_args(argv)

    import torch

    from earn_export.convert import convert
    from earn_export.convert.smollm2 import smollm2_gguf
    from earn_export.data.data_spec import DataSpec
    from earn_export.train.evaluate import evaluate_checkpoint
    from earn_export.train.train_checkpoint import train

    t0 = time.perf_counter()
    cuda = args.device.startswith("cuda")
    work, out = Path(args.work), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spec = DataSpec.from_args(data=args.data)
    info = {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "torch": torch.__version__,
            "budget_minutes_per_model": args.minutes, "batch_size": args.batch_size, "lr": args.lr}
    print(f"[gpu_smollm2] {info}", flush=True)
    conv = work / "converted"
    if not (conv / "model.safetensors").is_file():
        convert(smollm2_gguf() if args.source == "smollm2" else args.source, conv, spec, split="auto")
    print(f"[gpu_smollm2] converted in {time.perf_counter() - t0:.0f}s", flush=True)
    rows, logs = {}, {}
    for name, split in (("EARN (k=N/4)", "auto"), ("dense Finetune (k=N)", "dense")):
        ckpt = work / ("earn" if split == "auto" else "dense")
        t1 = time.perf_counter()
        train(ckpt, spec, split=split, model_path=conv, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
              max_minutes=args.minutes, valid_users=args.eval_users, max_train_examples=args.max_train_examples,
              device=args.device, precision="bf16" if cuda else "fp32", progress=False)
        log = json.loads((ckpt / "train_log.json").read_text())
        logs[name] = {k: log.get(k) for k in ("steps", "epochs", "best_eval_loss", "wall_s", "stopped_by_time_budget",
                                              "split_layer", "num_layers")}
        print(f"[gpu_smollm2] trained {name} in {time.perf_counter() - t1:.0f}s: {logs[name]}", flush=True)
        m = evaluate_checkpoint(ckpt, users=args.test_users, device=args.device,
                                dtype="bfloat16" if cuda else None, vocab="items", progress=False)
        m["users_per_s"] = m["users"] / m["seconds"]
        rows[name] = m
        print(f"[gpu_smollm2] {name}: R@10 {m['recall@10']:.4f} R@20 {m['recall@20']:.4f} N@10 {m['ndcg@10']:.4f} "
              f"N@20 {m['ndcg@20']:.4f} on {m['users']} users, {m['users_per_s']:.1f} users/s (beam 20)", flush=True)
    earn, dense = rows["EARN (k=N/4)"], rows["dense Finetune (k=N)"]
    lines = ["| method | R@10 | R@20 | N@10 | N@20 | users/s (torch CUDA, beam 20) | steps in budget |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, m in rows.items():
        lines.append(f"| SmolLM2-135M {name} | {m['recall@10']:.4f} | {m['recall@20']:.4f} | {m['ndcg@10']:.4f} | "
                     f"{m['ndcg@20']:.4f} | {m['users_per_s']:.1f} | {logs[name]['steps']} |")
    for name, m in PAPER.items():
        lines.append(f"| *{name}* | *{m['recall@10']:.4f}* | *{m['recall@20']:.4f}* | *{m['ndcg@10']:.4f}* | "
                     f"*{m['ndcg@20']:.4f}* | | |")
    lines.append(f"\nEARN / dense throughput: {earn['users_per_s'] / dense['users_per_s']:.2f}x on {info['device']}; "
                 f"{args.minutes:g} min budget per model; total {time.perf_counter() - t0:.0f}s.")
    table = "\n".join(lines)
    print(table, flush=True)
    (out / "gpu_smollm2.md").write_text(table + "\n")
    (out / "gpu_smollm2.json").write_text(json.dumps({"info": info, "train": logs, "eval": rows, "paper": PAPER},
                                                     indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
