"""``earn-export export`` (checkpoint → two ONNX graphs + manifest) and ``earn-export check`` (parity)."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

# quantized engines: minimum mean overlap of the top-K item sets with the fp32 reference (check --min-identical
# overrides). On the trained Beauty EARN checkpoint the overlaps were 0.979 (int8-nbits) and 0.862 (int4)
# (docs/results/graph-forms.md)
QUANT_MIN_OVERLAP = {"int8": 0.90, "int8-nbits": 0.90, "int4": 0.75}


def register(sub) -> None:
    from .. import cli_args as ca
    from ..cli_args import existing_dir, fraction, positive_int

    p = sub.add_parser("export", help="export prefill.onnx + decode.onnx + manifest.json from a checkpoint dir")
    p.add_argument("checkpoint", type=existing_dir,
                   help="HF checkpoint dir (config.json, model.safetensors, earn.json, items.json ...)")
    ca.add_out(p, "engine directory to write, e.g. engines/NAME (replaced only when the export completes)",
               required=True)
    p.add_argument("--fp16", action="store_true", help="fp16 weights/KV; norms, softmax and logits stay fp32")
    ca.add_vocab(p, default="items", note="export: items is fast, full gives exact full-vocabulary scores")
    ca.add_engine_form(p)
    p.add_argument("--smoothquant", type=float, default=None, metavar="ALPHA",
                   help="with --quantize int8: SmoothQuant strength folded into the weights before quantizing, "
                        "calibrated on prompts of catalog items (default 0.5; 0 = off; docs/quantization.md)")
    p.add_argument("--ort-optimize", action="store_true",
                   help="also save ONNX Runtime's offline-optimised CPU graphs (prefill.ort.onnx, decode.ort.onnx; "
                        "used when the onnxruntime version matches, weights shared)")
    p.add_argument("--opset", type=positive_int, default=None, help="ONNX opset (default 23 fused, 18 reference)")
    p.add_argument("--attention", default="onnx", choices=["onnx", "plugin"],
                   help="decode attention: onnx = standard ops (default); plugin = one earn::CompactedAttention node "
                        "per layer (ONNX Runtime: libearn_ort_ops.so from `make plugins`, loaded automatically; "
                        "TensorRT: earn-export build --plugins)")
    ca.add_quiet(p, note="machine-readable: stdout is a JSON summary only")
    p.set_defaults(func=run_export)

    c = sub.add_parser("check", help="parity of an engine dir with its torch reference checkpoint")
    c.add_argument("engine_dir", type=existing_dir, help="engine directory written by `earn-export export`")
    c.add_argument("--reference", type=existing_dir,
                   help="reference checkpoint dir (default: the manifest's source_checkpoint)")
    ca.add_users(c, 500, "number of test users compared")
    ca.add_search(c, top_k=20, beam=20, top_k_note="the length of the compared lists")
    c.add_argument("--batch-size", type=positive_int, default=32, help="users per search call")
    c.add_argument("--reference-dtype", choices=["float32", "float16"],
                   help="precision of the torch reference (default: the engine's dtype)")
    c.add_argument("--polygraphy", action="store_true", help="also compare prefill.onnx with polygraphy")
    c.add_argument("--min-identical", type=fraction, default=None,
                   help="exit 1 if the identical top-K fraction is below this, in [0, 1] (default: 0.999 fp32, 0.99 "
                        "fp16; for fp16 engines the tie-aware fraction is tested; for --quantize engines the mean "
                        "top-K overlap, default 0.90 int8 and int8-nbits / 0.75 int4; see docs/quantization.md)")
    ca.add_out(c, "write the parity report JSON here")
    c.set_defaults(func=run_check)


def run_export(args) -> int:
    from ..atomic import check_replaceable
    from ..cli_args import auto_vocab
    from ..errors import UsageError

    # what can be checked from file names alone, before loading torch
    if args.smoothquant is not None and (args.quantize != "int8" or not 0 <= args.smoothquant < 1):
        raise UsageError(f"--smoothquant {args.smoothquant} needs --quantize int8 and an alpha in [0, 1) — pass e.g. "
                         "--quantize int8 --smoothquant 0.5 (0 = off), or drop --smoothquant")
    if args.attention == "plugin" and args.ort_optimize:
        raise UsageError("--ort-optimize saves ONNX Runtime's optimised copy of standard-op graphs, and --attention "
                         "plugin puts earn::CompactedAttention nodes in decode.onnx — drop one of the two options")
    args.vocab = auto_vocab(args.vocab, args.checkpoint)
    ckpt = Path(args.checkpoint)
    if not (ckpt / "config.json").is_file():
        raise UsageError(f"{ckpt} has no config.json, so it is not a Hugging Face checkpoint directory — pass the "
                         "directory written by `earn-export train` (or a downloaded HF model)")
    if args.vocab == "items" and not ((ckpt / "trie.npz").is_file() or (ckpt / "items.json").is_file()):
        raise UsageError(f"--vocab items needs the item catalog, and {ckpt} has no trie.npz or items.json (a plain "
                         "HF checkpoint?) — pass --vocab full, or export a checkpoint written by `earn-export train`")
    check_replaceable(args.out, "engine")
    from .onnx_export import export_onnx
    from .progress import StageBars

    bars = StageBars(enabled=not args.quiet)
    try:
        with contextlib.redirect_stdout(sys.stderr) if args.quiet else contextlib.nullcontext():
            manifest = export_onnx(args.checkpoint, args.out, vocab=args.vocab, fp16=args.fp16, opset=args.opset,
                                   exporter=args.exporter, progress=bars, form=args.form, quantize=args.quantize,
                                   ort_optimize=args.ort_optimize, attention=args.attention,
                                   smoothquant=args.smoothquant)
    finally:
        bars.close()
    m = manifest["model"]
    if args.quiet:
        print(json.dumps({"engine": str(args.out), "dtype": manifest["dtype"], "vocab": manifest["vocab"]["mode"],
                          "vocab_out": manifest["vocab"]["vocab_out"], "exporter": manifest["exporter"],
                          "split_layer": m["split_layer"], "num_layers": m["num_layers"],
                          "n_registers": m["n_registers"], "form": manifest["form"]["name"],
                          "attention": args.attention, "weights_bytes": manifest["weights"]["bytes"]}, indent=2))
        return 0
    print(f"wrote {args.out}: prefill.onnx + decode.onnx ({manifest['dtype']}, vocab={manifest['vocab']['mode']} "
          f"[{manifest['vocab']['vocab_out']}], exporter={manifest['exporter']}, attention={args.attention}), "
          f"k={m['split_layer']} of {m['num_layers']} layers, {m['n_registers']} registers")
    w = manifest["weights"]
    print(f"form {manifest['form']['name']} (opset {manifest['opset']}); {w['file']}: {w['bytes'] / 1e6:.1f} MB, "
          f"{w['tensors']} tensors shared by {' + '.join(w['shared_by'])}; stages: "
          + ", ".join(f"{name} {sec:.1f}s" for name, sec in bars.stages))
    return 0


def run_check(args) -> int:
    from ..cli_args import check_top_k_beam, require_extras

    check_top_k_beam(args.top_k, args.beam)
    if args.polygraphy:
        require_extras("polygraphy", what="earn-export check --polygraphy")
    if args.reference is None:
        from ..errors import UsageError
        from ..engine.manifest import load_manifest

        source = load_manifest(args.engine_dir, verify=False).get("source_checkpoint")
        if not source or not Path(source).is_dir():
            raise UsageError(f"the engine's source checkpoint {source!r} (manifest.json) is not available — pass "
                             "--reference DIR, the checkpoint the engine was exported from")
    from .parity_check import check_engine

    report = check_engine(args.engine_dir, args.reference, n=args.users, beam=args.beam, top_k=args.top_k,
                          batch_size=args.batch_size, polygraphy=args.polygraphy, progress=True,
                          reference_dtype=args.reference_dtype)
    quant = report.get("quantization")
    if quant:
        # weight-only int8/int4 moves scores by more than any tie tolerance: identical lists are not the bar; the
        # engine must keep most of the reference's top-K set (accuracy cost: `earn-export eval`, docs/export.md)
        key, threshold = "topk_overlap_mean", QUANT_MIN_OVERLAP[quant]
    elif report["dtype"] == "float16":  # fp16 cannot order items closer than its resolution: tie-aware fraction
        key, threshold = "topk_identical_up_to_ties_fraction", 0.99
    else:  # fp32 must match exactly
        key, threshold = "topk_identical_fraction", 0.999
    threshold = threshold if args.min_identical is None else args.min_identical
    report.update(min_identical=threshold, pass_criterion=key, passed=report[key] >= threshold)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    summary = {k: v for k, v in report.items() if k != "mismatches"}
    summary["mismatches_shown"] = len(report["mismatches"])
    print(json.dumps(summary, indent=2))
    return 0 if report["passed"] else 1
