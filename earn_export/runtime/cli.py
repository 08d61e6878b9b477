"""``earn-export inspect`` and ``recommend``."""

from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    from .. import cli_args as ca
    from ..cli_args import existing_dir, positive_float, positive_int

    i = sub.add_parser("inspect", help="print an engine's manifest summary, graph I/O and KV-cache bytes; or, "
                                       "with --machine, this CPU's matrix units and peak GFLOP/s per kernel path")
    i.add_argument("engine_dir", type=existing_dir, nargs="?",
                   help="engine directory written by `earn-export export` (not needed with --machine)")
    i.add_argument("--machine", action="store_true",
                   help="probe this CPU instead: AVX2/AVX-512/VNNI/BF16/AMX flags and the measured one-thread peak "
                        "GFLOP/s of torch fp32/bf16, ORT fp32, dynamic int8 and MatMulNBits on a decode- and a "
                        "prefill-shaped matmul (a few seconds; docs/quantization.md)")
    i.add_argument("--seconds", type=positive_float, default=0.15,
                   help="--machine: CPU seconds measured per kernel path and shape")
    i.add_argument("--batch", type=positive_int, default=1, help="users per call, for the KV-cache figures")
    ca.add_search(i, beam_note="for the KV-cache figures", top_k_flag=False)
    i.add_argument("--prompt-len", type=positive_int, default=128,
                   help="prompt tokens (registers included), for the KV-cache figures")
    i.add_argument("--json", action="store_true", help="print the whole manifest (--machine: the report) as JSON")
    ca.add_verify(i)
    i.set_defaults(func=run_inspect)

    r = sub.add_parser("recommend", help="top-K items for item-id histories with an exported engine",
                       description="Prints one JSON line per history: the history, the top-K item ids (best "
                                   "first) and their scores (sums of identifier-token log-probs).")
    r.add_argument("engine_dir", type=existing_dir, help="engine directory written by `earn-export export`")
    ca.add_history(r, original_ids=True)
    ca.add_histories_file(r)
    ca.add_catalog_ids(r)
    ca.add_search(r, top_k=10)
    ca.add_backend(r)
    r.add_argument("--checkpoint", type=existing_dir,
                   help="--backend torch: the checkpoint the engine was exported from (default: the manifest's "
                        "source_checkpoint)")
    ca.add_on_unknown(r, note="skipped counts are noted in the output")
    ca.add_verify(r)
    r.set_defaults(func=run_recommend)


def run_inspect(args) -> int:
    from ..engine.manifest import load_manifest
    from ..errors import UsageError
    from ..model.kv_cache_bytes import KVShape, kv_report

    if args.machine:
        from .machine import format_report, machine_report

        rep = machine_report(seconds=args.seconds)
        print(json.dumps(rep, indent=2) if args.json else format_report(rep))
        return 0
    if args.engine_dir is None:
        raise UsageError("inspect needs an engine directory — pass ENGINE_DIR, or --machine to probe this CPU")
    man = load_manifest(args.engine_dir, verify=args.verify)
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

    from ..cli_args import check_top_k_beam, parse_history, split_history
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
    try:  # manifest["id_map"], read before loading graphs (bad histories fail fast); checked when the engine loads
        id_map = json.loads((Path(args.engine_dir) / "manifest.json").read_text()).get("id_map")
    except (OSError, ValueError, AttributeError):
        id_map = None
    id_map = id_map if isinstance(id_map, dict) else None
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
    res = rec.recommend(histories, top_k=args.top_k, beam=args.beam, on_unknown=args.on_unknown,
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
