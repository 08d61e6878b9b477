"""Accuracy of int8 and bf16 against fp32 on every Beauty test user (Recall/NDCG@10/20, top-20 overlap).

One EARN checkpoint (``--checkpoint``, or the tests' ``beauty_ckpt`` recipe: micro preset, k = auto, 3,000 real
Beauty training examples, 3 epochs) is exported twice (fp32, ``--quantize int8``) and evaluated four ways on the
same users: ONNX Runtime fp32 and int8 engines, the torch reference in fp32 and in bf16 on the CPU (ONNX Runtime has
no bf16 MatMul on x86). Prints a markdown table: metrics, relative change against the fp32 row of the same runtime,
and the mean top-20 set overlap with that fp32 row (same users, same batches).

    python benchmarks/precision_accuracy.py --work /tmp/precision-acc
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEAUTY = Path(os.environ.get("EARN_BEAUTY_DIR", REPO.parent / "shared" / "data" / "amazon-beauty"))
METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")


def rankings(backend_rec, histories, batch: int):
    import numpy as np

    out = [backend_rec.recommend(histories[s: s + batch], top_k=20, beam=20).items
           for s in range(0, len(histories), batch)]
    return np.concatenate(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python benchmarks/precision_accuracy.py",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="runs/precision-accuracy")
    ap.add_argument("--checkpoint", help="an EARN checkpoint trained on Beauty (default: train the micro recipe)")
    ap.add_argument("--users", type=int, default=None, help="first N test users (default: all)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--out", help="write the results JSON here")
    args = ap.parse_args(argv)

    import numpy as np
    import onnxruntime as ort
    import torch

    from earn_export.data.sequences import eval_examples, load_sequential
    from earn_export.export import export_onnx, load_manifest
    from earn_export.model import load_pretrained
    from earn_export.runtime import Recommender
    from earn_export.runtime.backends import OrtBackend, TorchBackend
    from earn_export.search.metrics import evaluate_rankings, topk_overlap
    from earn_export.data.data_spec import DataSpec
    from earn_export.train.train_checkpoint import train

    torch.set_num_threads(1)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    ckpt = Path(args.checkpoint) if args.checkpoint else work / "ckpt"
    t0 = time.perf_counter()
    if not (ckpt / "model.safetensors").is_file():
        train(ckpt, DataSpec.from_args(data=BEAUTY), split="auto", preset="micro", epochs=3, batch_size=64, lr=3e-3,
              progress=False, max_train_examples=3000, valid_users=200)
    engines = {"fp32": work / "fp32", "int8": work / "int8"}
    for prec, d in engines.items():
        if not (d / "manifest.json").is_file():
            export_onnx(ckpt, d, vocab="items", exporter="torchscript", quantize="int8" if prec == "int8" else None)
    print(f"checkpoint + engines ready in {time.perf_counter() - t0:.0f} s", flush=True)

    ex = eval_examples(load_sequential(BEAUTY), "test", max_history=20)
    n = args.users or len(ex.users)
    histories, targets = [list(map(int, h)) for h in ex.histories[:n]], ex.targets[:n]
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
    man = load_manifest(engines["fp32"])
    head = man["vocab"]["vocab_out_token_ids"]
    model = load_pretrained(ckpt).eval()
    runs = {}
    for prec, d in engines.items():
        m = load_manifest(d)
        runs[f"onnxruntime {prec}"] = Recommender.from_engine(d, m, OrtBackend(d, manifest=m, session_options=so),
                                                              batch_size=args.batch)
    runs["torch float32"] = Recommender.from_engine(engines["fp32"], man, TorchBackend(model, head_token_ids=head),
                                                    batch_size=args.batch)
    model_bf16 = load_pretrained(ckpt, dtype=torch.bfloat16).eval()
    runs["torch bfloat16"] = Recommender.from_engine(engines["fp32"], man,
                                                     TorchBackend(model_bf16, head_token_ids=head),
                                                     batch_size=args.batch)
    rows, items = {}, {}
    for name, rec in runs.items():
        t = time.perf_counter()
        with torch.no_grad():
            items[name] = rankings(rec, histories, args.batch)
        rows[name] = {k: float(v) for k, v in evaluate_rankings(items[name], targets).items() if k in METRICS}
        rows[name]["seconds"] = round(time.perf_counter() - t, 1)
        print(name, json.dumps(rows[name]), flush=True)
    lines = ["| run | " + " | ".join(METRICS) + " | relative change (R@10 / R@20 / N@10 / N@20) | top-20 overlap |",
             "|---|" + "---:|" * (len(METRICS) + 2)]
    for name, row in rows.items():
        base = "onnxruntime fp32" if name.startswith("onnxruntime") else "torch float32"
        rel = [(row[k] - rows[base][k]) / rows[base][k] if rows[base][k] else 0.0 for k in METRICS]
        a, b = items[name], items[base]
        ov = float(topk_overlap(a, b).mean())
        row["relative_change"], row["top20_overlap"] = dict(zip(METRICS, rel)), ov
        lines.append(f"| {name} | " + " | ".join(f"{row[k]:.5f}" for k in METRICS) + " | "
                     + " / ".join(f"{r:+.1%}" for r in rel) + f" | {ov:.3f} |")
    print(f"\n{n} Beauty test users, beam 20, checkpoint {ckpt}\n" + "\n".join(lines))
    if args.out:
        Path(args.out).write_text(json.dumps({"users": n, "checkpoint": str(ckpt), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
