"""``earn-export train`` and ``earn-export eval``."""

from __future__ import annotations

import json
from pathlib import Path


def _data_args(p, defaults_from_ckpt: bool = False) -> None:
    src = "default: the data the checkpoint was trained on" if defaults_from_ckpt else \
        "default: the embedded synthetic dataset"
    p.add_argument("--data", help=f"dir with sequential_{{train,valid,test}}.txt + semantic-ID json ({src})")
    p.add_argument("--interactions", help="your own CSV/TSV: user,item,timestamp[,title] (k-core + 8:1:1 split)")
    p.add_argument("--k-core", type=int, default=5, help="k-core filter for --interactions (default 5)")


def register(sub) -> None:
    p = sub.add_parser("train", help="fine-tune an EARN (or dense) recommender and write an HF checkpoint dir")
    _data_args(p)
    p.add_argument("--model", help="start from this HF checkpoint dir (Llama/Qwen2) instead of a fresh preset")
    p.add_argument("--model-config", default="tiny", help="preset for a fresh model: micro|tiny|small|base")
    p.add_argument("--split-layer", default="auto",
                   help="EARN split k (int), 'auto' (preset default, about N/4), 'dense' (k = N baseline) or "
                        "'analyze' (k from the attention of the --model it starts from; see `earn-export analyze`)")
    p.add_argument("--paradigm", default="lcrec", choices=["lcrec", "tiger"])
    p.add_argument("--max-history", type=int, default=20)
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--max-minutes", type=float,
                   help="wall-clock budget of the whole command (loading, training, validation, saving): training "
                        "stops early (best weights kept) and the log says at which step and validation loss")
    p.add_argument("--eval-users", type=int, default=None,
                   help="validation prompts per pass (default 1000; 200 for models of 50M+ parameters)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where to train (auto: cuda when torch sees a GPU)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="autocast precision on CUDA (weights stay fp32); CPU trains in fp32")
    p.add_argument("--max-train-examples", type=int, help="subsample training examples (quick runs)")
    p.add_argument("--synthetic-users", type=int, default=2000, help="size of the embedded synthetic dataset")
    p.add_argument("--synthetic-items", type=int, default=400)
    p.add_argument("--out", required=True, help="checkpoint directory to write")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_train)

    e = sub.add_parser("eval", help="Recall/NDCG@10/20 with trie-constrained beam search (torch reference)")
    e.add_argument("checkpoint", help="checkpoint dir (torch reference) or engine dir (ONNX Runtime)")
    _data_args(e, defaults_from_ckpt=True)
    e.add_argument("--split", default="test", choices=["valid", "test"])
    e.add_argument("--beam", type=int, default=20)
    e.add_argument("--users", type=int, help="evaluate a random subset of this many users (quick runs)")
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--baseline", choices=["streaming", "truncate", "popularity"],
                   help="evaluate a baseline instead of the model as trained (streaming needs a dense checkpoint)")
    e.add_argument("--window", type=int, default=8, help="streaming: last prompt tokens kept")
    e.add_argument("--sink", type=int, default=4, help="streaming: first prompt tokens kept")
    e.add_argument("--keep", type=int, default=5, help="truncate: history items kept")
    e.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="torch reference device for checkpoint dirs (engine dirs run on ONNX Runtime)")
    e.add_argument("--dtype", choices=["float32", "bfloat16", "float16"],
                   help="torch reference weight dtype (default: as stored; bfloat16 is the fast choice on CUDA)")
    e.add_argument("--vocab", default="auto", choices=["auto", "full", "items"],
                   help="torch reference output vocabulary: full (exact model scores), items (LM head restricted "
                        "to identifier tokens, as --vocab items engines) or auto (default: items for vocabularies "
                        "over 8,192 tokens, i.e. pretrained LLMs, where the full head is a large share of decode)")
    e.add_argument("--out", help="write the metrics JSON here")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=run_eval)


def run_train(args) -> int:
    from .pipeline import DataSpec, train

    spec = DataSpec.from_args(args.data, args.interactions, seed=0, k_core=args.k_core,
                              n_users=args.synthetic_users, n_items=args.synthetic_items)
    out = train(args.out, spec, split=args.split_layer, paradigm=args.paradigm, model_path=args.model,
                preset=args.model_config, max_history=args.max_history, epochs=args.epochs,
                batch_size=args.batch_size, lr=args.lr, seed=args.seed, max_minutes=args.max_minutes,
                max_train_examples=args.max_train_examples, progress=not args.quiet,
                valid_users=args.eval_users, device=args.device, precision=args.precision)
    log = json.loads((out / "train_log.json").read_text())
    keys = ("split_layer", "num_layers", "examples", "steps", "epochs", "train_loss", "best_eval_loss", "wall_s",
            "stopped_by_time_budget", "device", "precision")
    if "split_analysis" in log:
        from ..analysis.split_rule import format_evidence

        print(format_evidence(log["split_analysis"], f"{args.model} (dense forward, before training)"))
    print(json.dumps({k: log.get(k) for k in keys}, indent=2))
    print(f"checkpoint: {out}")
    return 0


def run_eval(args) -> int:
    from .pipeline import DataSpec, evaluate_checkpoint

    spec = None
    if args.data or args.interactions:
        spec = DataSpec.from_args(args.data, args.interactions, k_core=args.k_core)
    res = evaluate_checkpoint(args.checkpoint, split=args.split, beam=args.beam, users=args.users,
                              batch_size=args.batch_size, baseline=args.baseline, data_spec=spec,
                              progress=not args.quiet, window=args.window, n_sink=args.sink, keep=args.keep,
                              device=args.device, dtype=args.dtype, vocab=args.vocab)
    from ..export.quantize import quantized_engine_reference

    ref_ckpt = None if args.baseline else quantized_engine_reference(args.checkpoint)
    if ref_ckpt is not None:  # a quantized engine: its accuracy cost against the fp32 checkpoint, same users
        from ..export.quantize import accuracy_cost

        ref = evaluate_checkpoint(ref_ckpt, split=args.split, beam=args.beam, users=args.users,
                                  batch_size=args.batch_size, data_spec=spec, progress=not args.quiet,
                                  device=args.device, dtype=args.dtype, vocab=args.vocab)
        res = {"engine": res, "fp32_reference": ref, "accuracy_cost": accuracy_cost(res, ref)}
    text = json.dumps(res, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0
