"""``earn-export bench``: EARN vs dense vs HF generate — speedup, throughput, KV bytes, against the bound N/k.
The one benchmark a user runs; the lab instruments are scripts in ``benchmarks/`` built on this package (they
reuse :func:`add_bench_options` / :func:`config_from_args`)."""

from __future__ import annotations

# --shape keys: the model fields a user may change on top of --model-config (vocab_size: the synthetic vocabulary)
SHAPE_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
              "vocab_size")


def shape_overrides(text: str) -> dict:
    """``'hidden_size=1024,num_hidden_layers=24'`` -> dict (argparse type of ``--shape``)."""
    import argparse

    out = {}
    for part in filter(None, text.replace(" ", ",").split(",")):
        key, sep, value = part.partition("=")
        if not sep or key not in SHAPE_KEYS or not value.isdigit() or int(value) < 1:
            raise argparse.ArgumentTypeError(f"expected KEY=INT pairs with KEY one of {', '.join(SHAPE_KEYS)}, "
                                             f"got {part!r}")
        out[key] = int(value)
    return out


def add_bench_options(p) -> None:
    """The options of ``earn-export bench`` (also parsed by the ``benchmarks/`` scripts built on its harness)."""
    from .. import cli_args as ca

    ca.add_model_config(p, default="base")
    ca.add_split_layer(p, default="auto", note="bench: an integer or auto (the preset's, N/4)")
    p.add_argument("--shape", type=shape_overrides, default=None, metavar="KEY=INT,...",
                   help=f"change the preset's shape, keys: {', '.join(SHAPE_KEYS)}")
    p.add_argument("--prompt-lens", type=ca.int_list, default=(128, 512, 1024), help="prompt lengths, e.g. '128,512'")
    p.add_argument("--batch-sizes", type=ca.int_list, default=(4,), help="users per call, e.g. '1,4'")
    p.add_argument("--beams", type=ca.int_list, default=(20,), help="beam widths, e.g. '10,20'")
    p.add_argument("--repeats", type=ca.positive_int, default=3,
                   help="timed ONNX Runtime runs per setting after one untimed run, median reported (the PyTorch "
                        "reference and HF generate run once: slow and noisy on a shared CPU)")
    p.add_argument("--backends", default="ort,torch,hf", help="subset of ort,torch,hf")
    ca.add_device(p, default="cpu", note="bench: the PyTorch reference and HF generate")
    ca.add_vocab(p, default="items")
    ca.add_engine_form(p)
    ca.add_threads(p, note="bench: default ONNX Runtime's and torch's own choice")
    ca.add_out(p, "output folder (bench.json, bench.md, speedup.png, engines/)", default="results/bench")
    p.add_argument("--reuse-engines", action="store_true", help="reuse engines in OUT/engines if built for this config")
    ca.add_quiet(p, note="the tables still print to stdout")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="benchmark EARN vs dense vs HF generate (speedup, throughput, KV bytes, bound N/k)",
        description=(
            "Build a random-weight EARN model and its dense twin (same shape and weights), export both, and time "
            "end-to-end recommendation (prefill + decode + trie-constrained beam search) on ONNX Runtime, the "
            "PyTorch reference and Hugging Face generate. Writes bench.json, bench.md and speedup.png under --out. "
            "Defaults: the 'base' preset (hidden 512, 16 layers, k=4), prompts 128/512/1024, batch 4, beam 20 "
            "(about 5-7 minutes on 2 CPU cores)."))
    add_bench_options(p)
    p.set_defaults(func=main)


def config_from_args(args):
    """A :class:`~earn_export.bench.harness.BenchConfig` from parsed bench options (usage errors: exit 2)."""
    from ..cli_args import auto_vocab, resolve_device
    from ..errors import UsageError
    from .harness import BenchConfig

    if args.split_layer in ("dense", "analyze"):
        raise UsageError(f"bench --split-layer {args.split_layer}: the bench builds the dense twin itself — pass an "
                         "integer k or auto")
    shape = dict(args.shape or {})
    vocab_size = shape.pop("vocab_size", 4096)
    vocab = auto_vocab(args.vocab, vocab_size=vocab_size)
    cfg = BenchConfig(
        preset=args.model_config, split_layer=None if args.split_layer == "auto" else args.split_layer,
        overrides=shape, prompt_lens=tuple(args.prompt_lens), batch_sizes=tuple(args.batch_sizes),
        beams=tuple(args.beams), repeats=args.repeats,
        backends=tuple(b.strip() for b in args.backends.split(",") if b.strip()),
        device=resolve_device(args.device), vocab_size=vocab_size, exporter=args.exporter, form=args.form,
        quantize=args.quantize, vocab=vocab, out=args.out, reuse_engines=args.reuse_engines,
        ort_threads=args.threads or 0, torch_threads=args.threads)
    try:
        cfg.validate()
    except ValueError as exc:
        raise UsageError(f"{exc} — see `earn-export bench --help`") from None
    return cfg


def main(args) -> int:
    import os
    import warnings

    from . import report
    from .harness import run_bench

    cfg = config_from_args(args)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for category in (UserWarning, FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    result = run_bench(cfg, progress=not args.quiet)
    print("\n" + report.markdown(result))
    return 0
