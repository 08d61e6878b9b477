"""``earn-export bench``: EARN vs dense vs HF generate — speedup, throughput, KV bytes, against the bound N/k."""

from __future__ import annotations

import shlex
import sys


def _ints(text: str) -> tuple:
    import argparse

    try:
        values = tuple(int(x) for x in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like '128,512', got {text!r}")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1 like '128,512', got {text!r}")
    return values


def register(subparsers) -> None:
    from ..cli_args import positive_float, positive_int

    p = subparsers.add_parser(
        "bench", help="benchmark EARN vs dense vs HF generate (speedup, throughput, KV bytes, bound N/k)",
        description=(
            "Build a random-weight EARN model and its dense twin (same shape and weights), export both, and time "
            "end-to-end recommendation (prefill + decode + trie-constrained beam search) on ONNX Runtime, the "
            "PyTorch reference and Hugging Face generate. Writes bench.json, bench.md and speedup.png under --out. "
            "Defaults: the 'base' preset (hidden 512, 16 layers, k=4), prompts 128/512/1024, batch 4, beam 20 "
            "(about 5-7 minutes on 2 CPU cores)."))
    p.add_argument("--model-config", default="base", help="model preset (micro, tiny, small, base); default base")
    p.add_argument("--split", type=int, default=None, help="EARN split layer k (default: the preset's, N/4)")
    p.add_argument("--hidden-size", type=int, help="override the preset's hidden size")
    p.add_argument("--layers", type=int, help="override the preset's number of layers")
    p.add_argument("--intermediate-size", type=int, help="override the preset's FFN size")
    p.add_argument("--heads", type=int, help="override the number of attention heads")
    p.add_argument("--kv-heads", type=int, help="override the number of KV heads")
    p.add_argument("--prompt-lens", type=_ints, default=(128, 512, 1024), help="prompt lengths, e.g. '128,512,1024'")
    p.add_argument("--batch-sizes", type=_ints, default=(4,), help="users per call, e.g. '1,4' (default 4)")
    p.add_argument("--beams", type=_ints, default=(20,), help="beam widths (default 20)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs per job (default 1)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per job, median reported (default 3)")
    p.add_argument("--torch-warmup", type=int, default=1, help="untimed PyTorch-reference runs per job (default 1)")
    p.add_argument("--torch-repeats", type=int, default=1,
                   help="timed PyTorch-reference runs per job (default 1: the reference is slow and noisy on a "
                        "shared CPU; raise it on a quiet machine or with --device cuda)")
    p.add_argument("--backends", default="ort,torch,hf", help="subset of ort,torch,hf (default all)")
    p.add_argument("--hf-batch", type=int, default=1, help="users per HF generate call (default 1)")
    p.add_argument("--hf-repeats", type=int, default=1, help="timed HF generate calls per setting (default 1)")
    p.add_argument("--hf-max-prompt-len", type=int, default=None,
                   help="skip HF generate above this prompt length (default: run every length)")
    p.add_argument("--device", default="cpu", help="device of the PyTorch reference and HF generate: cpu or cuda")
    p.add_argument("--vocab-size", type=int, default=4096, help="synthetic vocabulary size (default 4096)")
    p.add_argument("--id-length", type=int, default=4, help="identifier tokens per item L (default 4)")
    p.add_argument("--codes", type=int, default=256, help="codes per identifier level (default 256)")
    p.add_argument("--n-items", type=int, default=12000, help="items in the synthetic catalog (default 12000)")
    p.add_argument("--vocab", choices=("items", "full"), default="items", help="exported output head (default items)")
    p.add_argument("--exporter", choices=("torchscript", "dynamo", "auto"), default="auto",
                   help="torch.onnx exporter (default auto: dynamo for the fused form)")
    p.add_argument("--form", choices=("fused", "reference"), default="fused",
                   help="graph form of the engines (default fused: opset-23 ops; reference: the model's own ops, "
                        "exportable with --exporter torchscript)")
    p.add_argument("--quantize", choices=("int8", "int4"), default=None,
                   help="benchmark weight-only quantized engines (ONNX Runtime CPU)")
    p.add_argument("--ort-threads", type=int, default=0, help="ORT intra-op threads (default: ORT's choice)")
    p.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--no-profile", action="store_true", help="skip the onnxruntime profiler pass")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and prompts")
    p.add_argument("--out", default="results/bench", help="output folder (default results/bench)")
    p.add_argument("--reuse-engines", action="store_true", help="reuse engines in OUT/engines if built for this config")
    p.add_argument("--docs", default=None, help="also rewrite the bench block of this markdown file (docs/results/benchmarks.md)")
    p.add_argument("--earn-ckpt", default=None, help="trained EARN checkpoint for an end-to-end row (with --dense-ckpt)")
    p.add_argument("--dense-ckpt", default=None, help="trained dense checkpoint for the end-to-end row")
    p.add_argument("--data-dir", default=None, help="dataset of the end-to-end row (default ../shared/data/amazon-beauty)")
    p.add_argument("--e2e-users", type=int, default=64, help="test users in the end-to-end row (default 64)")
    p.add_argument("--e2e-only", action="store_true",
                   help="only the end-to-end row (writes e2e.json / e2e.md); needs --earn-ckpt and --dense-ckpt")
    p.add_argument("--cpp-runtime", metavar="ENGINE_DIR", default=None,
                   help="only compare the C++ runtime with the Python ORT runtime on this engine (per-batch graph vs "
                        "bookkeeping time, users/s with 1 and 2 threads; earn_export/bench/cpp_runtime.py)")
    p.add_argument("--cpp-users", type=positive_int, default=256, help="users in the --cpp-runtime comparison (default 256)")
    p.add_argument("--cpp-request-users", type=positive_int, default=4,
                   help="users per recommend() call in the --cpp-runtime comparison (default 4)")
    p.add_argument("--quiet", action="store_true", help="no progress bars (the tables still print to stdout)")
    p.add_argument("--attention", choices=("onnx", "plugin"), default="onnx",
                   help="plugin: instead of the default benchmark, time EARN decode with the earn::CompactedAttention "
                        "custom op against the plain graph on ONNX Runtime CPU (writes attention.json/.md)")
    p.add_argument("--peer", choices=("genai",), default=None,
                   help="instead of the speed benchmark: time our engines against onnxruntime-genai built from the "
                        "same dense weights (per-forward prefill and end-to-end beam search, interleaved; needs "
                        "the optional extra: pip install 'earn-export[genai]')")
    p.add_argument("--export-cost", metavar="SHAPES", default=None,
                   help="instead of the speed benchmark: export and load random full-depth checkpoints of these "
                        "shapes (comma list of bench, qwen2.5-0.5b, llama3.2-1b) and print engine bytes, export "
                        "time, peak RSS and load time (writes export_cost.json/.md under --out)")
    p.add_argument("--export-cost-exporters", default="auto",
                   help="exporters measured by --export-cost, comma list of auto, dynamo, torchscript (default auto)")
    p.add_argument("--export-cost-rss-cap-gb", type=positive_float, default=14.0,
                   help="--export-cost: kill an export/load child whose RSS passes this many GB (shared machines; "
                        "default 14)")
    p.add_argument("--export-cost-pythonpath", default=None,
                   help="--export-cost: run the export/load children with this earn_export checkout first on "
                        "PYTHONPATH (to measure another version, e.g. before a change)")
    p.add_argument("--pretrained", metavar="SOURCE", default=None,
                   help="instead: time convert/export/check and eval-vs-ORT throughput of a real-size model: "
                        "'smollm2', 'random:qwen2.5-0.5b', an HF dir or a .gguf (see earn_export/bench/pretrained.py)")
    p.add_argument("--check-users", type=positive_int, default=100, help="--pretrained: users in the check stage (default 100)")
    p.add_argument("--eval-users", type=positive_int, default=64, help="--pretrained: users in the throughput stage (default 64)")
    p.set_defaults(func=main)


def config_from_args(args):
    from .harness import BenchConfig

    overrides = {}
    for arg, key in (("hidden_size", "hidden_size"), ("layers", "num_hidden_layers"),
                     ("intermediate_size", "intermediate_size"), ("heads", "num_attention_heads"),
                     ("kv_heads", "num_key_value_heads")):
        v = getattr(args, arg)
        if v is not None:
            overrides[key] = v
    return BenchConfig(
        preset=args.model_config, split_layer=args.split, overrides=overrides, prompt_lens=tuple(args.prompt_lens),
        batch_sizes=tuple(args.batch_sizes), beams=tuple(args.beams), warmup=args.warmup, repeats=args.repeats,
        torch_warmup=args.torch_warmup, torch_repeats=args.torch_repeats,
        backends=tuple(b.strip() for b in args.backends.split(",") if b.strip()), hf_batch=args.hf_batch,
        hf_repeats=args.hf_repeats, hf_max_prompt_len=args.hf_max_prompt_len, device=args.device,
        vocab_size=args.vocab_size, id_length=args.id_length, codes=args.codes, n_items=args.n_items,
        seed=args.seed, exporter=args.exporter, form=args.form, quantize=args.quantize, vocab=args.vocab,
        profile=not args.no_profile, out=args.out,
        reuse_engines=args.reuse_engines, ort_threads=args.ort_threads, torch_threads=args.torch_threads,
        earn_ckpt=args.earn_ckpt, dense_ckpt=args.dense_ckpt, data_dir=args.data_dir, e2e_users=args.e2e_users,
    )


def main(args) -> int:
    import os
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    if args.peer == "genai":
        from .peer_genai import main as peer_main

        return peer_main(args)
    if args.export_cost:
        from .export_cost import run as run_export_cost

        return run_export_cost(args)
    if args.cpp_runtime:
        from .cpp_runtime import run_cpp_bench

        run_cpp_bench(args.cpp_runtime, users=args.cpp_users, request_users=args.cpp_request_users,
                      beam=args.beams[0], top_k=args.beams[0], intra_op_threads=args.ort_threads or 1,
                      data_dir=args.data_dir)
        return 0
    if args.pretrained:
        from .pretrained import run

        run(args.pretrained, args.data_dir or "../shared/data/amazon-beauty",
            args.out if args.out != "results/bench" else f"results/pretrained-{args.pretrained.replace(':', '-')}",
            check_users=args.check_users, eval_users=args.eval_users, split=args.split, reuse=args.reuse_engines)
        return 0
    from . import report
    from .harness import run_bench

    from ..errors import UsageError

    try:
        cfg = config_from_args(args)
        cfg.validate()
    except ValueError as exc:
        raise UsageError(f"{exc} — see `earn-export bench --help`") from None
    if args.attention == "plugin":
        from .attention import markdown, run_attention_bench

        result = run_attention_bench(cfg, progress=not args.quiet)
        print()
        print(markdown(result))
        return 0
    if args.e2e_only:
        from .harness import run_e2e_only

        try:
            result = run_e2e_only(cfg)
        except ValueError as exc:
            raise UsageError(f"{exc} — see `earn-export bench --help`") from None
        print()
        print(report.e2e_markdown(result["e2e"], result["machine"]))
        return 0
    result = run_bench(cfg, progress=not args.quiet)
    table = report.markdown(result)
    print()
    print(table)
    if args.docs:
        cmd = "earn-export " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["bench"] else None
        if report.update_docs(args.docs, table, cmd):
            print(f"updated the bench block of {args.docs}")
        else:
            print(f"{args.docs}: no {report.BEGIN} / {report.END} block; table not inserted", file=sys.stderr)
    return 0
