"""``earn-export train`` and ``earn-export eval``."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

from ..errors import UsageError


def register(sub) -> None:
    from .. import cli_args as ca
    from ..cli_args import existing_dir, nonneg_int, positive_float, positive_int

    p = sub.add_parser("train", help="fine-tune an EARN (or dense) recommender and write an HF checkpoint dir")
    ca.add_data_source(p, synthetic=True)
    ca.add_pretrained_model(p, note="train: instead of a fresh --model-config preset")
    ca.add_model_config(p, default="tiny")
    ca.add_split_layer(p, default="auto")
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
    ca.add_device(p, default="auto", note="where to train")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="autocast precision, weights stay fp32 (auto: bf16 for 50M+ parameter models on a CPU with "
                        "AMX/AVX-512 bf16 units, else fp32; fp16 needs CUDA)")
    p.add_argument("--resume-dir", default=None,
                   help="keep Trainer checkpoints here; running the same command again continues a run that "
                        "--max-minutes stopped (or that was killed) instead of starting over")
    p.add_argument("--save-steps", type=positive_int, default=200,
                   help="with --resume-dir: optimizer steps between Trainer checkpoints")
    p.add_argument("--max-train-examples", type=positive_int, help="subsample training examples (quick runs)")
    ca.add_threads(p)
    ca.add_out(p, "checkpoint directory to write (replaced only when complete)", required=True)
    ca.add_quiet(p, note="machine-readable: stdout is the JSON summary only; logs go to stderr")
    p.set_defaults(func=run_train)

    e = sub.add_parser("eval", help="Recall/NDCG@10/20 with trie-constrained beam search (torch reference)")
    e.add_argument("checkpoint", type=existing_dir,
                   help="checkpoint dir (torch reference) or engine dir (ONNX Runtime)")
    ca.add_data_source(e, default="the data the checkpoint was trained on")
    e.add_argument("--split", default="test", choices=["valid", "test"], help="which held-out split to rank")
    ca.add_search(e, beam_note="the ranked list has --beam items, and @20 metrics need at least 20", top_k_flag=False)
    ca.add_users(e, None, "evaluate a random subset of this many users (quick runs)")
    e.add_argument("--batch-size", type=positive_int, default=64, help="users per search call")
    e.add_argument("--baseline", choices=["streaming", "truncate", "popularity"],
                   help="evaluate a baseline instead of the model as trained (streaming needs a dense checkpoint)")
    e.add_argument("--window", type=positive_int, default=8, help="streaming: last prompt tokens kept")
    e.add_argument("--sink", type=nonneg_int, default=4, help="streaming: first prompt tokens kept")
    e.add_argument("--keep", type=positive_int, default=5, help="truncate: history items kept")
    ca.add_threads(e)
    ca.add_device(e, default="cpu", note="of the torch reference for checkpoint dirs (engine dirs run on ONNX Runtime)")
    e.add_argument("--dtype", choices=["float32", "bfloat16", "float16"],
                   help="torch reference weight dtype (default: as stored; bfloat16 is the fast choice on CUDA)")
    ca.add_vocab(e, default="auto", note="of the torch reference (items: as --vocab items engines)")
    ca.add_out(e, "write the metrics JSON here")
    e.add_argument("--rankings", help="also write each user's ranked list here (.npz: users, ranked, targets), for "
                                      "paired comparisons of two models on the same users")
    ca.add_quiet(e, note="machine-readable: stdout is the metrics JSON only")
    e.set_defaults(func=run_eval)


def _stdout_to_stderr(quiet: bool):
    """--quiet: everything the work prints (Trainer logs included) goes to stderr; stdout keeps the summary."""
    return contextlib.redirect_stdout(sys.stderr) if quiet else contextlib.nullcontext()


def run_train(args) -> int:
    from ..atomic import check_replaceable
    from ..cli_args import check_split_layer, model_depth, require_gguf_reader
    from ..data.data_spec import DataSpec

    spec = DataSpec.from_args(args.data, args.interactions, seed=0, k_core=args.k_core, n_users=args.synthetic_users,
                              n_items=args.synthetic_items)
    require_gguf_reader(args.model, "earn-export train --model")
    if args.split_layer == "analyze" and not args.model:
        raise UsageError("--split-layer analyze reads the attention of the model training starts from, and a fresh "
                         "--model-config preset has random weights — pass --model DIR (e.g. a dense run) or an "
                         "integer --split-layer")
    depth = model_depth(args.model) if args.model else model_depth(preset=args.model_config)
    check_split_layer(args.split_layer, depth, f"--model {args.model}" if args.model else
                      f"--model-config {args.model_config}")
    check_replaceable(args.out, "checkpoint")
    with _stdout_to_stderr(args.quiet):
        from ..cli_args import set_threads
        from .train_checkpoint import train

        set_threads(args.threads)
        if args.model == "smollm2":
            from ..convert.smollm2 import smollm2_gguf

            args.model = str(smollm2_gguf())
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
    from ..data.data_spec import DataSpec

    spec = DataSpec.from_args(args.data, args.interactions, k_core=args.k_core) if args.data or args.interactions \
        else None
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
        from ..cli_args import resolve_device, set_threads
        from .evaluate import evaluate_checkpoint

        set_threads(args.threads)  # torch; an engine dir's ORT session uses its own default
        same = dict(split=args.split, beam=args.beam, users=args.users, batch_size=args.batch_size, data_spec=spec,
                    progress=not args.quiet, device=resolve_device(args.device), dtype=args.dtype, vocab=args.vocab)
        res = evaluate_checkpoint(args.checkpoint, baseline=args.baseline, window=args.window, n_sink=args.sink,
                                  keep=args.keep, rankings_out=args.rankings, **same)
        from ..export.quantize import accuracy_cost, quantized_engine_reference

        ref_ckpt = None if args.baseline else quantized_engine_reference(args.checkpoint)
        if ref_ckpt is not None:  # a quantized engine: its accuracy cost against the fp32 checkpoint, same users
            ref = evaluate_checkpoint(ref_ckpt, **same)  # same users, split and beam as the engine
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
