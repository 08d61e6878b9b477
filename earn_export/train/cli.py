"""``earn-export train`` and ``earn-export eval``."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path


def _data_args(p, defaults_from_ckpt: bool = False) -> None:
    from ..cli_args import existing_dir, existing_file, positive_int

    src = "default: the data the checkpoint was trained on" if defaults_from_ckpt else \
        "default: the embedded synthetic dataset"
    p.add_argument("--data", type=existing_dir,
                   help=f"dir with sequential_{{train,valid,test}}.txt + semantic-ID json ({src})")
    p.add_argument("--interactions", type=existing_file,
                   help="your own CSV/TSV: user,item,timestamp[,title] (k-core + 8:1:1 split)")
    p.add_argument("--k-core", type=positive_int, default=5,
                   help="--interactions: drop users and items with fewer interactions, repeatedly")


def register(sub) -> None:
    from ..cli_args import (THREADS_HELP, existing_dir, existing_path, nonneg_int, positive_float, positive_int,
                            split_layer)
    from .presets import PRESETS

    p = sub.add_parser("train", help="fine-tune an EARN (or dense) recommender and write an HF checkpoint dir")
    _data_args(p)
    p.add_argument("--model", type=existing_path,
                   help="start from this HF checkpoint dir or .gguf file (Llama/Qwen2) instead of a fresh preset")
    p.add_argument("--model-config", default="tiny", choices=list(PRESETS),
                   help="preset for a fresh model (ignored with --model)")
    p.add_argument("--split-layer", type=split_layer, default="auto",
                   help="EARN split k (1..number of layers), 'auto' (about N/4), 'dense' (k = N baseline) or "
                        "'analyze' (k from the attention of the --model it starts from; see `earn-export analyze`)")
    p.add_argument("--paradigm", default="lcrec", choices=["lcrec", "tiger"],
                   help="prompt style: lcrec (instruction + identifiers) or tiger (identifiers only)")
    p.add_argument("--max-history", type=positive_int, default=20, help="most recent history items in a prompt")
    p.add_argument("--epochs", type=positive_float, default=2.0, help="passes over the training examples")
    p.add_argument("--batch-size", type=positive_int, default=128, help="training examples per step")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="peak learning rate (cosine schedule)")
    p.add_argument("--seed", type=nonneg_int, default=42, help="seed of initialisation, sampling and data order")
    p.add_argument("--max-minutes", type=positive_float,
                   help="wall-clock budget of the whole command (loading, training, validation, saving): training "
                        "stops early (best weights kept) and the log says at which step and validation loss")
    p.add_argument("--eval-users", type=positive_int, default=None,
                   help="validation prompts per pass (default 1000; 200 for models of 50M+ parameters)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where to train (auto: cuda when torch sees a GPU)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="autocast precision, weights stay fp32 (auto: bf16 for 50M+ parameter models on a CPU with "
                        "AMX/AVX-512 bf16 units, else fp32; fp16 needs CUDA)")
    p.add_argument("--resume-dir", default=None,
                   help="keep Trainer checkpoints here; running the same command again continues a run that "
                        "--max-minutes stopped (or that was killed) instead of starting over")
    p.add_argument("--save-steps", type=positive_int, default=200,
                   help="with --resume-dir: optimizer steps between Trainer checkpoints")
    p.add_argument("--max-train-examples", type=positive_int, help="subsample training examples (quick runs)")
    p.add_argument("--synthetic-users", type=positive_int, default=2000,
                   help="users of the embedded synthetic dataset (without --data/--interactions)")
    p.add_argument("--synthetic-items", type=positive_int, default=400,
                   help="items of the embedded synthetic dataset (without --data/--interactions)")
    p.add_argument("--threads", type=positive_int, help=THREADS_HELP)
    p.add_argument("--out", required=True, help="checkpoint directory to write (replaced only when complete)")
    p.add_argument("--quiet", action="store_true",
                   help="machine-readable: stdout is the JSON summary only; logs go to stderr, no progress bars")
    p.set_defaults(func=run_train)

    e = sub.add_parser("eval", help="Recall/NDCG@10/20 with trie-constrained beam search (torch reference)")
    e.add_argument("checkpoint", type=existing_dir,
                   help="checkpoint dir (torch reference) or engine dir (ONNX Runtime)")
    _data_args(e, defaults_from_ckpt=True)
    e.add_argument("--split", default="test", choices=["valid", "test"], help="which held-out split to rank")
    e.add_argument("--beam", type=positive_int, default=20,
                   help="beam width; the ranked list has --beam items, and @20 metrics need at least 20")
    e.add_argument("--users", type=positive_int, help="evaluate a random subset of this many users (quick runs)")
    e.add_argument("--batch-size", type=positive_int, default=64, help="users per search call")
    e.add_argument("--baseline", choices=["streaming", "truncate", "popularity"],
                   help="evaluate a baseline instead of the model as trained (streaming needs a dense checkpoint)")
    e.add_argument("--window", type=positive_int, default=8, help="streaming: last prompt tokens kept")
    e.add_argument("--sink", type=nonneg_int, default=4, help="streaming: first prompt tokens kept")
    e.add_argument("--keep", type=positive_int, default=5, help="truncate: history items kept")
    e.add_argument("--threads", type=positive_int, help=THREADS_HELP)
    e.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="torch reference device for checkpoint dirs (engine dirs run on ONNX Runtime)")
    e.add_argument("--dtype", choices=["float32", "bfloat16", "float16"],
                   help="torch reference weight dtype (default: as stored; bfloat16 is the fast choice on CUDA)")
    e.add_argument("--vocab", default="auto", choices=["auto", "full", "items"],
                   help="torch reference output vocabulary: full (exact model scores), items (LM head restricted "
                        "to identifier tokens, as --vocab items engines) or auto (default: items for vocabularies "
                        "over 8,192 tokens, i.e. pretrained LLMs, where the full head is a large share of decode)")
    e.add_argument("--out", help="write the metrics JSON here")
    e.add_argument("--rankings", help="also write each user's ranked list here (.npz: users, ranked, targets), for "
                                      "paired comparisons of two models on the same users")
    e.add_argument("--quiet", action="store_true",
                   help="machine-readable: stdout is the metrics JSON only; no progress bars")
    e.set_defaults(func=run_eval)


def _check_data_args(args) -> None:
    from ..errors import UsageError

    if args.data and args.interactions:
        raise UsageError("--data and --interactions both given — pass one: --data (sequential split files) or "
                         "--interactions (CSV/TSV)")


def _stdout_to_stderr(quiet: bool):
    """--quiet: everything the work prints (Trainer logs included) goes to stderr; stdout keeps the summary."""
    return contextlib.redirect_stdout(sys.stderr) if quiet else contextlib.nullcontext()


def run_train(args) -> int:
    from ..atomic import check_replaceable
    from ..cli_args import check_split_layer, model_depth

    _check_data_args(args)
    if args.split_layer == "analyze" and not args.model:
        from ..errors import UsageError

        raise UsageError("--split-layer analyze reads the attention of the model training starts from, and a fresh "
                         "--model-config preset has random weights — pass --model DIR (e.g. a dense run) or an "
                         "integer --split-layer")
    if args.model:
        check_split_layer(args.split_layer, model_depth(args.model), f"--model {args.model}")
    else:
        check_split_layer(args.split_layer, model_depth(preset=args.model_config),
                          f"--model-config {args.model_config}")
    check_replaceable(args.out, "checkpoint")
    with _stdout_to_stderr(args.quiet):
        from ..cli_args import set_threads
        from .pipeline import DataSpec, train

        set_threads(args.threads)

        spec = DataSpec.from_args(args.data, args.interactions, seed=0, k_core=args.k_core,
                                  n_users=args.synthetic_users, n_items=args.synthetic_items)
        out = train(args.out, spec, split=args.split_layer, paradigm=args.paradigm, model_path=args.model,
                    preset=args.model_config, max_history=args.max_history, epochs=args.epochs,
                    batch_size=args.batch_size, lr=args.lr, seed=args.seed, max_minutes=args.max_minutes,
                    max_train_examples=args.max_train_examples, progress=not args.quiet,
                    valid_users=args.eval_users, device=args.device, precision=args.precision,
                    resume_dir=args.resume_dir, save_steps=args.save_steps)
    log = json.loads((out / "train_log.json").read_text())
    keys = ("split_layer", "num_layers", "examples", "steps", "epochs", "train_loss", "best_eval_loss", "wall_s",
            "stopped_by_time_budget", "device", "precision")
    if "split_analysis" in log:
        from ..analysis.split_rule import format_evidence

        print(format_evidence(log["split_analysis"], f"{args.model} (dense forward, before training)"),
              file=sys.stderr if args.quiet else sys.stdout)
    print(json.dumps({**{k: log.get(k) for k in keys}, "checkpoint": str(out)}, indent=2))
    return 0


def run_eval(args) -> int:
    from ..errors import UsageError

    _check_data_args(args)
    if args.beam < 20 and args.baseline != "popularity":
        raise UsageError(f"--beam {args.beam} ranks {args.beam} items per user, and Recall/NDCG@20 need 20 — pass "
                         "--beam 20 or more")
    ckpt = Path(args.checkpoint)
    if not (args.data or args.interactions or (ckpt / "data.json").is_file()):
        raise UsageError(f"{ckpt} has no data.json saying which data it was trained on — pass --data DIR or "
                         "--interactions FILE")
    if args.baseline == "streaming":
        _check_dense(ckpt)
    if args.rankings and args.baseline == "popularity":
        raise UsageError("--rankings: the popularity baseline ranks the same list for every user — drop --rankings "
                         "or --baseline popularity")
    with _stdout_to_stderr(args.quiet):
        from ..cli_args import set_threads
        from .pipeline import DataSpec, evaluate_checkpoint

        set_threads(args.threads)  # torch; an engine dir's ORT session uses its own default

        spec = None
        if args.data or args.interactions:
            spec = DataSpec.from_args(args.data, args.interactions, k_core=args.k_core)
        res = evaluate_checkpoint(args.checkpoint, split=args.split, beam=args.beam, users=args.users,
                                  batch_size=args.batch_size, baseline=args.baseline, data_spec=spec,
                                  progress=not args.quiet, window=args.window, n_sink=args.sink, keep=args.keep,
                                  device=args.device, dtype=args.dtype, vocab=args.vocab, rankings_out=args.rankings)
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


def _check_dense(ckpt: Path) -> None:
    """--baseline streaming compresses a dense model's torch cache: refuse engines and EARN checkpoints early."""
    from ..cli_args import model_depth
    from ..errors import UsageError

    fix = "pass the dense checkpoint (`earn-export train --split-layer dense`)"
    if (ckpt / "manifest.json").is_file():
        raise UsageError(f"--baseline streaming runs the torch reference, and {ckpt} is an engine dir — {fix}")
    try:
        k = json.loads((ckpt / "earn.json").read_text()).get("split_layer")
    except (OSError, ValueError):
        return  # the model loader reports a broken checkpoint
    n = model_depth(ckpt)
    if isinstance(k, int) and n is not None and k != n:
        raise UsageError(f"--baseline streaming compresses a dense model's cache, and {ckpt} is EARN (k={k} of {n} "
                         f"layers) — {fix}")
