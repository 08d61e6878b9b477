"""``python benchmarks/pretrained.py SOURCE``: the real-size pipeline timed stage by stage.

Stages (each a subprocess, so its wall time and peak RSS are its own: ``os.wait4`` returns the child's rusage):
``convert`` (SOURCE -> EARN checkpoint on the Beauty catalog), ``export`` (two fp32 ONNX graphs), ``check
--users N``. Then, in this process, evaluation throughput on the same test users: the torch reference as
``eval`` runs it (users/s) against the ONNX Runtime runtime's own ``Recommender.recommend`` (users/s), one
ratio from one run. Graph sizes include external-data files.

SOURCE: ``smollm2`` (the shipped GGUF), an HF dir, a .gguf file, or ``random:qwen2.5-0.5b`` -- Qwen2.5-0.5B's
exact shapes (24 layers, hidden 896, 151,936-row vocabulary) with random weights and SmolLM2's BPE tokenizer,
its rows past the tokenizer left as padding, as Qwen's own are.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

RANDOM = {"random:qwen2.5-0.5b": "qwen2.5-0.5b"}  # SOURCE -> a shape in earn_export.model.shapes


def random_source(name: str, out: Path) -> Path:
    """A random-weight HF checkpoint of a real model's shape with SmolLM2's tokenizer (see module doc)."""
    import torch
    from transformers import AutoTokenizer

    from earn_export.convert.smollm2 import smollm2_gguf
    from earn_export.model import EarnForCausalLM
    from earn_export.model.shapes import hf_config

    if (out / "config.json").is_file():
        return out
    gguf = smollm2_gguf()
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    torch.manual_seed(0)
    model = EarnForCausalLM(hf_config(RANDOM[name]), init=False)
    model.init_weights(seed=0)
    model.save_pretrained(out)
    tok.save_pretrained(str(out))
    return out


def _stage(name: str, argv: list[str], log: Path) -> dict:
    """Run ``earn-export ARGV`` as a child; wall time, peak RSS (MiB) and exit code."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "earn_export.cli", *argv], stdout=fh, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    row = {"stage": name, "wall_s": round(time.perf_counter() - t0, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024),
           "cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "exit": proc.returncode, "log": str(log)}
    print(f"  {name:8s} {row['wall_s']:7.1f} s wall, {row['cpu_s']:7.1f} s CPU, peak RSS {row['peak_rss_mib']} MiB"
          f"{'' if proc.returncode == 0 else f'  (exit {proc.returncode}, see {log})'}", flush=True)
    return row


def throughput(ckpt: Path, engine: Path, users: int, batch_size: int = 64) -> dict:
    """users/s of ``eval``'s torch reference path (``evaluate_checkpoint``: same backend, head, batching and
    workers) and of the ONNX Runtime runtime's own ``Recommender.recommend``, on the same test users."""
    import numpy as np

    from earn_export.data.catalog import Trie
    from earn_export.data.prompts import PromptBuilder
    from earn_export.data.data_spec import DataSpec
    from earn_export.data.sequences import eval_examples
    from earn_export.model import load_pretrained
    from earn_export.runtime import Recommender
    from earn_export.runtime.backends import TorchBackend
    from earn_export.train.evaluate import _item_head, eval_vocab, evaluate

    ex = eval_examples(DataSpec.load_from(ckpt).load(), "test", max_history=20)
    ex = type(ex)(ex.users[:users], ex.histories[:users], ex.targets[:users])
    order = np.argsort([len(h) for h in ex.histories], kind="stable")
    hist = [ex.histories[i] for i in order]  # eval's own order (length-sorted batches), for both
    rec = Recommender.load(engine, batch_size=batch_size)
    rec.recommend(hist[:2], top_k=20, beam=20)  # warm-up
    t0 = time.perf_counter()
    ort_items = rec.recommend(hist, top_k=20, beam=20).items
    ort_s = time.perf_counter() - t0
    model = load_pretrained(ckpt)
    vocab = eval_vocab(model, "auto")
    backend = TorchBackend(model, head_token_ids=_item_head(ckpt) if vocab == "items" else None)
    trie, prompts = Trie.load(ckpt / "trie.npz"), PromptBuilder.load(ckpt)
    metrics = evaluate(backend, trie, prompts, ex, beam=20, batch_size=batch_size)
    torch_s = metrics["seconds"]
    from earn_export.search.metrics import evaluate_rankings

    ranked = np.empty_like(ort_items)
    ranked[order] = ort_items
    ort_m = evaluate_rankings(ranked, ex.targets)
    return {"users": len(hist), "eval_vocab": vocab, "ort_users_per_s": len(hist) / ort_s,
            "torch_eval_users_per_s": len(hist) / torch_s, "torch_eval_over_ort_time": torch_s / ort_s,
            "recall@20_torch": metrics["recall@20"], "recall@20_ort": ort_m["recall@20"]}


def run(source: str, data_dir: str, out_dir: str, check_users: int = 100, eval_users: int = 64,
        split: int | None = None, reuse: bool = False) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if source in RANDOM:
        src = str(random_source(source, out / "source"))
    else:
        src = source
    ckpt, engine = out / "ckpt", out / "engine"
    rows = []
    print(f"benchmarks/pretrained.py {source}: {out}", flush=True)
    if not (reuse and (ckpt / "model.safetensors").is_file()):
        argv = ["convert", src, "--data", data_dir, "--out", str(ckpt)]
        if split:
            argv += ["--split-layer", str(split)]
        rows.append(_stage("convert", argv, out / "convert.log"))
    if not (reuse and (engine / "manifest.json").is_file()):
        rows.append(_stage("export", ["export", str(ckpt), "--out", str(engine), "--exporter", "torchscript"],
                           out / "export.log"))
    if not (reuse and (out / "check.json").is_file()):
        rows.append(_stage("check", ["check", str(engine), "--users", str(check_users), "--out",
                                     str(out / "check.json")], out / "check.log"))
    manifest = json.loads((engine / "manifest.json").read_text())
    sizes = {p.name: p.stat().st_size for p in engine.iterdir() if p.name.startswith(("prefill.onnx", "decode.onnx"))}
    check = json.loads((out / "check.json").read_text()) if (out / "check.json").is_file() else {}
    result = {"source": source, "params": json.loads((ckpt / "train_log.json").read_text()).get("parameters"),
              "num_layers": manifest["model"]["num_layers"], "split_layer": manifest["model"]["split_layer"],
              "stages": rows, "graph_bytes": sizes,
              "check": {k: check.get(k) for k in ("users", "topk_identical_fraction", "prefill_max_abs_diff",
                                                   "decode_max_abs_diff", "workers")},
              "load_average_1min": os.getloadavg()[0], "cores": os.cpu_count()}
    print(f"  graphs: " + ", ".join(f"{k} {v / 2**20:.0f} MiB" for k, v in sorted(sizes.items())), flush=True)
    prev = out / "bench_pretrained.json"
    if reuse and prev.is_file():  # keep the stage rows of the run that built the engine
        result["stages"] = json.loads(prev.read_text()).get("stages", []) + rows
    result["throughput"] = throughput(ckpt, engine, eval_users)
    t = result["throughput"]
    print(f"  eval throughput on {t['users']} users: torch reference {t['torch_eval_users_per_s']:.2f} users/s, "
          f"ORT runtime {t['ort_users_per_s']:.2f} users/s -> eval/ORT time {t['torch_eval_over_ort_time']:.2f}x "
          f"(recall@20 torch {t['recall@20_torch']:.4f} / ORT {t['recall@20_ort']:.4f})", flush=True)
    (out / "bench_pretrained.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"  wrote {out / 'bench_pretrained.json'}")
    return result


def main(argv=None) -> int:
    from earn_export import cli_args as ca
    from earn_export.cli import Parser

    p = Parser(prog="python benchmarks/pretrained.py", description=__doc__.splitlines()[0])
    p.add_argument("source", help="'smollm2' (the shipped GGUF), 'random:qwen2.5-0.5b', an HF dir or a .gguf file")
    ca.add_data_source(p, default="../shared/data/amazon-beauty", csv=False)
    ca.add_split_layer(p, default="auto")
    p.add_argument("--check-users", type=ca.positive_int, default=100, help="users in the check stage")
    p.add_argument("--eval-users", type=ca.positive_int, default=64, help="users in the throughput stage")
    p.add_argument("--reuse", action="store_true", help="skip stages whose outputs exist under --out")
    ca.add_out(p, "output folder (default results/pretrained-SOURCE)")
    args = p.parse_args(argv)
    out = args.out or f"results/pretrained-{args.source.replace(':', '-')}"
    split = None if args.split_layer == "auto" else args.split_layer
    run(args.source, args.data or "../shared/data/amazon-beauty", out, check_users=args.check_users,
        eval_users=args.eval_users, split=split, reuse=args.reuse)
    return 0


if __name__ == "__main__":
    from earn_export.cli import run_script

    raise SystemExit(run_script(main))
