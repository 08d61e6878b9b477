"""``earn-export analyze``: attention statistics, figures and a split-layer recommendation for checkpoints."""

from __future__ import annotations


def register(sub) -> None:
    from .. import cli_args as ca
    from ..cli_args import existing_dir, existing_file, fraction, nonneg_int, positive_int

    p = sub.add_parser("analyze", help="attention analysis (paper Fig. 2 / Table 4): per-layer sparsity, sinks, "
                                       "token-group mass, figures, and a recommended split layer k")
    p.add_argument("checkpoints", nargs="+", metavar="CKPT", type=existing_dir,
                   help="checkpoint dir(s) written by `earn-export train`; give the dense and the EARN checkpoint "
                        "together to draw them side by side")
    ca.add_data_source(p, default="the data each checkpoint was trained on, from its data.json; else the "
                                  "synthetic default")
    ca.add_users(p, 500, "test users whose prompts are analysed, a seeded sample (default 500; a number above the "
                         "test users: all)")
    p.add_argument("--heads", default="all",
                   help="heads averaged in curves, tables and maps: 'all' or indices like 0 (the paper's Fig. 2 "
                        "head) or 0,2; attention.json always keeps every head")
    p.add_argument("--text", type=existing_file,
                   help="plain-text file (paragraphs separated by blank lines) analysed as well, for the paper's NLP "
                        "contrast (tokenised with each checkpoint's tokenizer)")
    p.add_argument("--forward", default="dense", choices=["dense", "native"],
                   help="dense: every row through every layer, the paper's setting (default); native: the "
                        "checkpoint's own computation (EARN: layers >= k see only the registers)")
    ca.add_split_layer(p, default=None, note="analyze: k for the table's early (< k) / latter (>= k) columns, an "
                                              "integer or 'analyze' (default: the EARN checkpoint's k, else the "
                                              "recommended k)")
    p.add_argument("--threshold", type=fraction, default=None,
                   help="split rule: the history-mass bar τ (default 0.1; see docs/analysis/README.md)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="prompts per forward (memory: one layer's "
                                                               "attention of a batch at a time)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="seed of the user sample")
    ca.add_out(p, "directory for attention.json, table4.md and the PNG figures", required=True)
    ca.add_quiet(p)
    p.set_defaults(func=run_analyze)


def run_analyze(args) -> int:
    if args.split_layer in ("auto", "dense"):
        from ..errors import UsageError

        raise UsageError(f"analyze --split-layer {args.split_layer}: the table needs one k — pass an integer or "
                         "'analyze' (the recommended k)")
    if args.split_layer == "analyze":
        args.split_layer = None
    from ..data.data_spec import DataSpec
    from .run_analysis import analyze
    from .split_rule import THRESHOLD, format_evidence

    spec = DataSpec.from_args(args.data, args.interactions, k_core=args.k_core) if args.data or args.interactions \
        else None
    doc = analyze(args.checkpoints, args.out, data_spec=spec, users=args.users, heads=args.heads,
                  text=args.text, forward=args.forward, batch_size=args.batch_size, split_layer=args.split_layer,
                  threshold=THRESHOLD if args.threshold is None else args.threshold, seed=args.seed,
                  progress=not args.quiet)
    print(doc["table4_markdown"])
    for c in doc["checkpoints"]:
        if "recommendation" in c:
            print()
            print(format_evidence(c["recommendation"], c["label"]))
    print(f"\nwrote {args.out}/attention.json, table4.md, " + ", ".join(doc["figures"]))
    return 0
