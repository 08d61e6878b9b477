"""``python benchmarks/trained_e2e.py EARN_CKPT DENSE_CKPT``: EARN vs dense (ONNX Runtime) vs HF generate on two
trained checkpoints, with the real prompts of test users.

The random-weight ``earn-export bench`` measures speed at chosen shapes; this script measures what a trained
pair (e.g. the Beauty models of ``earn-export train``) does on its own data: both checkpoints are exported,
``--users`` test users are recommended in batches of the largest ``--batch-sizes`` with the largest ``--beams``
(median of ``--repeats`` runs), and the dense checkpoint also runs through HF ``generate``. Writes ``e2e.json``
and ``e2e.md`` under ``--out``.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path


def e2e_markdown(e2e: dict, machine: dict | None = None) -> str:
    """Table of the end-to-end row (trained EARN and dense checkpoints, real prompts)."""
    lines = []
    if machine and machine.get("busy_warning"):
        lines += [f"> **Warning:** {machine['busy_warning']}", ""]
    lines.append("**End-to-end on trained checkpoints** (real prompts of test users; ORT time for all users)")
    lines.append("")
    lines.append("| model | users | mean prompt | batch | ORT s | users/s | k/N |")
    lines.append("|---|---:|---:|---:|---:|---:|---|")
    for name in ("earn", "dense"):
        r = e2e[name]
        lines.append(f"| {name} | {r['users']} | {r['prompt_len_mean']:.0f} | {r['batch']} | "
                     f"{r['stats']['median_s']:.3f} | {r['stats']['users_per_s']:.1f} | {r['split_layer']}/{r['num_layers']} |")
    lines.append(f"| **EARN/dense** | | | | **{e2e['speedup_ort']:.2f}×** | | bound {e2e['bound_N_over_k']:g} |")
    if e2e.get("hf_dense"):
        h = e2e["hf_dense"]
        lines.append(f"| HF generate (dense), per user | {h['users']} | | {h['batch']} | {h['per_user_s']:.3f} / user | "
                     f"{1 / h['per_user_s']:.1f} | EARN ORT vs HF **{e2e['speedup_ort_earn_vs_hf']:.1f}×** |")
    return "\n".join(lines) + "\n"


def run_e2e_only(cfg, earn_ckpt, dense_ckpt, data_dir=None, users: int = 64, log=print) -> dict:
    """Only the end-to-end row (trained checkpoints): writes ``e2e.json`` and ``e2e.md`` under ``cfg.out``."""
    from earn_export.bench import report
    from earn_export.bench.harness import SCHEMA_VERSION, busy_warning, machine_info

    cfg.validate()
    t0 = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    info = machine_info(cfg)
    say = (lambda msg: log(f"[bench e2e {time.perf_counter() - t0:6.1f}s] {msg}")) if log else (lambda msg: None)
    e2e = run_e2e(cfg, earn_ckpt, dense_ckpt, data_dir, users, say)
    info["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    info["busy_warning"] = busy_warning(info)
    result = {"schema_version": SCHEMA_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "config": asdict(cfg), "checkpoints": [str(earn_ckpt), str(dense_ckpt)], "machine": info, "e2e": e2e, "total_s": time.perf_counter() - t0}
    (out / "e2e.json").write_text(json.dumps(result, indent=1, default=report._json_default) + "\n")
    (out / "e2e.md").write_text(e2e_markdown(e2e, info))
    say(f"done; wrote {out / 'e2e.json'}, {out / 'e2e.md'}")
    return result


def run_e2e(cfg, earn_ckpt, dense_ckpt, data_dir=None, users: int = 64, say=print) -> dict:
    """EARN vs dense on trained checkpoints with real prompts (test users of ``data_dir``), ORT + HF.

    Needs ``earn_export.data`` (sequences + prompts) and checkpoints written by ``earn-export train``.
    """
    import numpy as np

    from earn_export.bench.harness import TimedBackend, _ort_backend, _run_search, _stats, hf_generate, load_hf_model
    from earn_export.data.prompts import PromptBuilder
    from earn_export.data.sequences import eval_examples, load_sequential
    from earn_export.engine.trie_files import load_trie_arrays
    from earn_export.export import export_onnx
    from earn_export.model import KVShape, kv_report, load_pretrained

    out = Path(cfg.out) / "e2e"
    earn_ckpt, dense_ckpt = Path(earn_ckpt), Path(dense_ckpt)
    data_dir = Path(data_dir) if data_dir else Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon-beauty"
    data = load_sequential(data_dir)
    ex = eval_examples(data, "test")
    histories = list(ex.histories)[:users]
    rows = {}
    for name, ckpt in (("earn", earn_ckpt), ("dense", dense_ckpt)):
        eng = out / name
        t = time.perf_counter()
        export_onnx(ckpt, eng, vocab=cfg.vocab, exporter=cfg.exporter, form=cfg.form, quantize=cfg.quantize)
        exp_s = time.perf_counter() - t
        builder = PromptBuilder.load(ckpt)
        ids, mask = builder(histories)
        be = TimedBackend(_ort_backend(eng, cfg), "ort")
        trie = load_trie_arrays(eng)
        b = min(max(cfg.batch_sizes), len(histories))
        recs = []
        for i in range(cfg.warmup + cfg.repeats):
            tot = defaultdict(float)
            for s in range(0, len(histories), b):
                rec, _ = _run_search(be, trie, ids[s:s + b], mask[s:s + b], max(cfg.beams))
                for kk, v in rec.items():
                    tot[kk] += v
            if i >= cfg.warmup:
                recs.append(dict(tot))
        model = load_pretrained(ckpt)
        kshape = KVShape.of(model)
        rows[name] = {
            "checkpoint": str(ckpt), "export_s": exp_s, "users": len(histories), "batch": b,
            "prompt_len_mean": float(mask.sum(1).mean()), "prompt_len_padded": int(ids.shape[1]),
            "stats": _stats(recs, cfg.warmup, len(histories), max(cfg.beams), model.earn.id_length if model.earn else cfg.id_length),
            "kv_formula": kv_report(kshape, batch=len(histories), beam=max(cfg.beams), prompt_len=int(ids.shape[1]),
                                    steps=(model.earn.id_length if model.earn else cfg.id_length) - 1,
                                    split_layer=model.split_layer,
                                    n_registers=model.earn.n_registers if model.earn else 0),
            "split_layer": model.split_layer, "num_layers": model.num_layers,
            "id_length": model.earn.id_length if model.earn else cfg.id_length,
        }
    rows["speedup_ort"] = rows["dense"]["stats"]["median_s"] / rows["earn"]["stats"]["median_s"]
    rows["bound_N_over_k"] = rows["earn"]["num_layers"] / rows["earn"]["split_layer"]
    if "hf" in cfg.backends:
        from earn_export.bench.synthetic import TrieWalker

        hf = load_hf_model(dense_ckpt, cfg.device)
        walker = TrieWalker(trie, 0)
        builder = PromptBuilder.load(dense_ckpt)
        n_hf = min(len(histories), max(cfg.hf_batch, 8))
        beam = max(cfg.beams)
        ids, mask = builder(histories[:n_hf])
        hf_generate(hf, ids[:1], mask[:1], beam, rows["dense"]["id_length"], walker, cfg.device)  # warm-up
        t = time.perf_counter()
        valid = []
        for s in range(0, n_hf, cfg.hf_batch):
            _, items, _ = hf_generate(hf, ids[s:s + cfg.hf_batch], mask[s:s + cfg.hf_batch], beam,
                                      rows["dense"]["id_length"], walker, cfg.device)
            valid.append((items >= 0).mean())
        per_user = (time.perf_counter() - t) / n_hf
        rows["hf_dense"] = {"users": n_hf, "batch": cfg.hf_batch, "per_user_s": per_user,
                            "valid_item_fraction": float(np.mean(valid))}
        rows["speedup_ort_earn_vs_hf"] = per_user / rows["earn"]["stats"]["per_user_s"]
    return rows


def main(argv=None) -> int:
    from earn_export import cli_args as ca
    from earn_export.bench.cli import add_bench_options, config_from_args
    from earn_export.cli import Parser

    p = Parser(prog="python benchmarks/trained_e2e.py", description=__doc__.splitlines()[0])
    p.add_argument("earn_ckpt", metavar="EARN_CKPT", type=ca.existing_dir, help="trained EARN checkpoint")
    p.add_argument("dense_ckpt", metavar="DENSE_CKPT", type=ca.existing_dir, help="trained dense checkpoint")
    add_bench_options(p)
    ca.add_data_source(p, default="../shared/data/amazon-beauty", csv=False)
    ca.add_users(p, 64, "test users timed")
    p.set_defaults(out="results/e2e")
    args = p.parse_args(argv)
    result = run_e2e_only(config_from_args(args), args.earn_ckpt, args.dense_ckpt, args.data, args.users)
    print()
    print(e2e_markdown(result["e2e"], result["machine"]))
    return 0


if __name__ == "__main__":
    from earn_export.cli import run_script

    raise SystemExit(run_script(main))
