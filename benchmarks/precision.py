"""fp32 vs int8 vs bf16 end to end on CPU: users/s and per-graph GFLOP/s as a fraction of the machine's peak.

For each model (SmolLM2-135M, real weights converted on the Beauty catalog; the Qwen2.5-0.5B shape, random
weights) and each of EARN (split layer k) and dense:
- one fp32 engine and its ``--quantize int8`` twin (same checkpoint, same graph form);
- end-to-end users/s of batch-4, beam-20 recommendation of Beauty test users: ONNX Runtime fp32 and int8 in the
  Python runtime and in the C++ runtime; the torch reference in fp32 and bf16 (ONNX Runtime has no bf16 MatMul on
  x86 CPUs, so bf16 runs in torch: ``inspect --machine`` says whether this ORT build has one);
- per graph (prefill, decode): achieved GFLOP/s = the call's matmul FLOPs (``torch.utils.flop_counter`` on the
  reference model for the same inputs) / the call's thread CPU time, and that as a fraction of the peak the probe
  (``earn_export.runtime.machine``) measures for the same kernel path and shape class (ort_fp32,
  ort_int8_dynamic, torch_fp32, torch_bf16).

Everything runs on one thread (ONNX Runtime intra-op 1, torch 1 thread) and is timed in thread/process CPU seconds,
so a loaded shared machine still gives a core's figures; wall users/s are printed too.

    python benchmarks/precision.py --work /tmp/precision --users 12          # SmolLM2 (EARN k=7 and dense)
    python benchmarks/precision.py --models smollm2,qwen0.5b ...              # + the Qwen2.5-0.5B shape
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEAUTY = Path(os.environ.get("EARN_BEAUTY_DIR", REPO.parent / "shared" / "data" / "amazon-beauty"))
SPLITS = {"smollm2": 7, "qwen0.5b": 6}  # EARN split layer per model: N/4 (SmolLM2: 7 of 30; Qwen2.5-0.5B: 6 of 24)


def _cli(argv: list[str], log: Path) -> float:
    """``earn-export ARGV`` in a child process (its memory is returned when it ends); wall seconds."""
    t = time.perf_counter()
    with open(log, "w") as fh:
        rc = subprocess.call([sys.executable, "-m", "earn_export.cli", *argv], stdout=fh, stderr=subprocess.STDOUT)
    if rc != 0:
        raise SystemExit(f"earn-export {' '.join(argv)} failed (exit {rc}); see {log}")
    return time.perf_counter() - t


def build(model: str, split: str, work: Path, form: str) -> dict:
    """Checkpoint (convert) + fp32 engine + int8 engine for one model and split; reused when present."""
    root = work / f"{model}-{split}"
    root.mkdir(parents=True, exist_ok=True)
    ckpt, eng = root / "ckpt", {"fp32": root / "fp32", "int8": root / "int8"}
    src = "smollm2"
    if model == "qwen0.5b":
        from pretrained import random_source  # benchmarks/pretrained.py, beside this script

        src = str(random_source("random:qwen2.5-0.5b", work / "qwen0.5b-source"))
    stages = {}
    if not (ckpt / "model.safetensors").is_file():
        stages["convert_s"] = _cli(["convert", src, "--data", str(BEAUTY), "--split-layer", split, "--out",
                                    str(ckpt)], root / "convert.log")
    exporter = ["--exporter", "torchscript"] if form == "reference" else ["--form", "fused"]
    for prec, d in eng.items():
        if not (d / "manifest.json").is_file():
            extra = ["--quantize", "int8"] if prec == "int8" else []
            stages[f"export_{prec}_s"] = _cli(["export", str(ckpt), "--out", str(d), *exporter, *extra],
                                              root / f"export_{prec}.log")
    return {"ckpt": ckpt, "engines": eng, "stages": stages}


class CpuTimed:
    """SearchBackend wrapper: thread CPU seconds and call shapes of prefill / decode (one thread: the caller's)."""

    def __init__(self, inner):
        self.inner, self.out_token_ids = inner, inner.out_token_ids
        self.cpu = {"prefill": 0.0, "decode": 0.0}
        self.calls = {"prefill": 0, "decode": 0}
        self.first = {}

    def prefill(self, input_ids, attention_mask):
        t = time.thread_time()
        out = self.inner.prefill(input_ids, attention_mask)
        self.cpu["prefill"] += time.thread_time() - t
        self.calls["prefill"] += 1
        self.first.setdefault("prefill", (input_ids, attention_mask))
        return out

    def decode(self, state, tokens, parents, step):
        t = time.thread_time()
        out = self.inner.decode(state, tokens, parents, step)
        self.cpu["decode"] += time.thread_time() - t
        self.calls["decode"] += 1
        return out


def graph_flops(model, head, histories, rec, beam: int) -> dict:
    """Matmul FLOPs per prefill call and per decode step of one batch (torch flop counter on the reference)."""
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from earn_export.runtime.backends import TorchBackend
    from earn_export.search.beam import constrained_beam_search

    class Count(TorchBackend):
        def __init__(self):
            super().__init__(model, head_token_ids=head)
            self.flops = {"prefill": [], "decode": []}

        def prefill(self, ids, mask):
            with FlopCounterMode(display=False) as fc:
                out = super().prefill(ids, mask)
            self.flops["prefill"].append(fc.get_total_flops())
            return out

        def decode(self, state, tokens, parents, step):
            with FlopCounterMode(display=False) as fc:
                out = super().decode(state, tokens, parents, step)
            self.flops["decode"].append(fc.get_total_flops())
            return out

    c = Count()
    ids, mask = rec.encoder(histories)
    with torch.no_grad():
        constrained_beam_search(c, rec.trie, ids, mask, beam=beam, columns=rec.columns)
    return {"prefill": float(np.mean(c.flops["prefill"])), "decode": float(np.mean(c.flops["decode"]))}


def run_recommender(rec, histories, batch: int, beam: int) -> dict:
    """users/s (wall and per process CPU second) of ``rec.recommend`` over ``histories`` in batches."""
    rec.recommend(histories[:batch], top_k=20, beam=beam)  # warm-up (sessions, allocator, oneDNN primitives)
    timed = rec.backend if isinstance(getattr(rec, "backend", None), CpuTimed) else None
    if timed:
        timed.cpu = dict.fromkeys(timed.cpu, 0.0)
        timed.calls = dict.fromkeys(timed.calls, 0)
    w, c = time.perf_counter(), time.process_time()
    items = []
    for s in range(0, len(histories), batch):
        items.append(rec.recommend(histories[s: s + batch], top_k=20, beam=beam).items)
    wall, cpu = time.perf_counter() - w, time.process_time() - c
    import numpy as np

    row = {"users_per_s": len(histories) / wall, "users_per_cpu_s": len(histories) / cpu,
           "items": np.concatenate(items)}
    if timed:
        row["graph_cpu_s"] = {g: timed.cpu[g] / max(timed.calls[g], 1) for g in timed.cpu}
    return row


def measure(built: dict, histories, batch: int, beam: int, peaks: dict) -> list[dict]:
    import onnxruntime as ort
    import torch

    from earn_export.engine.manifest import load_manifest
    from earn_export.model import load_pretrained
    from earn_export.runtime import Recommender
    from earn_export.runtime.backends import OrtBackend, TorchBackend
    from earn_export.runtime.cpp_runtime import CppRecommender

    torch.set_num_threads(1)
    rows = []
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
    fp32_dir = built["engines"]["fp32"]
    man = load_manifest(fp32_dir)
    head = man["vocab"]["vocab_out_token_ids"]
    model = load_pretrained(built["ckpt"]).eval()
    ref_rec = Recommender.from_engine(fp32_dir, man, TorchBackend(model, head_token_ids=head), batch_size=batch)
    flops = graph_flops(model, head, histories[:batch], ref_rec, beam)
    fp32_items = None
    for prec in ("fp32", "int8"):
        d = built["engines"][prec]
        m = load_manifest(d)
        py = Recommender.from_engine(d, m, CpuTimed(OrtBackend(d, manifest=m, session_options=so)), batch_size=batch)
        r = run_recommender(py, histories, batch, beam)
        path = "ort_fp32" if prec == "fp32" else "ort_int8_dynamic"
        rows.append(_row(f"onnxruntime {prec}", "python", r, flops, peaks, path))
        if prec == "fp32":
            fp32_items = r["items"]
        else:
            rows[-1]["top20_overlap_vs_fp32"] = _overlap(r["items"], fp32_items)
        try:
            cc = CppRecommender.load(d, batch_size=batch, intra_op_threads=1)  # as the Python runtime: 1 thread
        except Exception as exc:  # noqa: BLE001 - the C++ runtime is optional (headers/compiler)
            rows.append({"engine": f"onnxruntime {prec}", "runtime": "cpp", "error": str(exc).splitlines()[0]})
            continue
        r = run_recommender(cc, histories, batch, beam)
        rows.append(_row(f"onnxruntime {prec}", "cpp", r, None, peaks, path))
    for dtype, path in ((torch.float32, "torch_fp32"), (torch.bfloat16, "torch_bf16")):
        mdl = model.to(dtype)
        rec = Recommender.from_engine(fp32_dir, man, CpuTimed(TorchBackend(mdl, head_token_ids=head)),
                                      batch_size=batch)
        with torch.no_grad():
            r = run_recommender(rec, histories, batch, beam)
        rows.append(_row(f"torch {str(dtype).split('.')[-1]}", "python", r, flops, peaks, path))
        rows[-1]["top20_overlap_vs_fp32"] = _overlap(r["items"], fp32_items)
    model.to(torch.float32)
    return rows, flops


def _overlap(a, b) -> float:
    from earn_export.search.metrics import topk_overlap

    return float(topk_overlap(a, b).mean())


def _row(engine, runtime, r, flops, peaks, path) -> dict:
    row = {"engine": engine, "runtime": runtime, "users_per_s": round(r["users_per_s"], 3),
           "users_per_cpu_s": round(r["users_per_cpu_s"], 3), "path": path}
    if flops and "graph_cpu_s" in r:
        for g, shape in (("prefill", "prefill"), ("decode", "decode")):
            gf = flops[g] / r["graph_cpu_s"][g] / 1e9
            row[f"{g}_gflops"] = round(gf, 1)
            row[f"{g}_of_peak"] = round(gf / peaks[shape][path], 3)
    return row


def markdown(results: list[dict]) -> str:
    lines = ["| model | split | engine | runtime | users/s (wall) | users per CPU-s | vs fp32 (same runtime, CPU-s) "
             "| prefill GFLOP/s (of peak) | decode GFLOP/s (of peak) | top-20 overlap vs ORT fp32 |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for res in results:
        base = {r["runtime"]: r["users_per_cpu_s"] for r in res["rows"]
                if r["engine"] == "onnxruntime fp32" and "error" not in r}
        tbase = next((r["users_per_cpu_s"] for r in res["rows"] if r["engine"] == "torch float32"), None)
        for r in res["rows"]:
            if "error" in r:
                lines.append(f"| {res['model']} | {res['split']} | {r['engine']} | {r['runtime']} | "
                             f"{r['error']} ||||||")
                continue
            ref = tbase if r["engine"].startswith("torch") else base.get(r["runtime"])
            g = lambda k: (f"{r[k + '_gflops']:.0f} ({r[k + '_of_peak']:.0%})" if k + "_gflops" in r  # noqa: E731
                           else "-")
            ov = r.get("top20_overlap_vs_fp32")
            lines.append(f"| {res['model']} | {res['split']} | {r['engine']} | {r['runtime']} | {r['users_per_s']:.2f} "
                         f"| {r['users_per_cpu_s']:.2f} | {r['users_per_cpu_s'] / ref:.2f}x | {g('prefill')} | "
                         f"{g('decode')} | {'-' if ov is None else f'{ov:.3f}'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python benchmarks/precision.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="runs/precision-bench", help="checkpoints and engines (reused when present)")
    ap.add_argument("--models", default="smollm2", help="comma list of smollm2, qwen0.5b")
    ap.add_argument("--splits", default="earn,dense", help="comma list of earn, dense")
    ap.add_argument("--users", type=int, default=12, help="Beauty test users timed per configuration")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--beam", type=int, default=20)
    ap.add_argument("--form", choices=["reference", "fused"], default="reference",
                    help="graph form of both engines (reference: TorchScript, the faster export)")
    ap.add_argument("--out", help="write the results JSON here")
    args = ap.parse_args(argv)
    from earn_export.data.sequences import eval_examples, load_sequential
    from earn_export.runtime.machine import cpu_features, measure_peaks

    if not (BEAUTY / "sequential_train.txt").is_file():
        raise SystemExit(f"Beauty data not found at {BEAUTY} (set EARN_BEAUTY_DIR)")
    work = Path(args.work)
    feats = cpu_features()
    print("features: " + ", ".join(f for f in ("avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16") if feats[f])
          + f"; load average {os.getloadavg()[0]:.1f}", flush=True)
    peaks = measure_peaks(paths=("torch_fp32", "torch_bf16", "ort_fp32", "ort_int8_dynamic"), seconds=0.3)
    print("peaks GFLOP/s (one thread):", json.dumps(peaks), flush=True)
    histories = [list(map(int, h)) for h in
                 eval_examples(load_sequential(BEAUTY), "test", max_history=20).histories[:args.users]]
    results = []
    for model in args.models.split(","):
        for split in args.splits.split(","):
            k = str(SPLITS[model]) if split == "earn" else "dense"
            t = time.perf_counter()
            built = build(model, k, work, args.form)
            print(f"{model} {split}: built in {time.perf_counter() - t:.0f} s {built['stages']}", flush=True)
            rows, flops = measure(built, histories, args.batch, args.beam, peaks)
            res = {"model": model, "split": f"{split} (k={k})", "rows": rows, "flops_per_call": flops,
                   "stages": built["stages"]}
            results.append(res)
            print(markdown([res]), flush=True)
    out = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "features": feats, "peaks": peaks,
           "users": args.users, "batch": args.batch, "beam": args.beam, "form": args.form,
           "load_average_1min": os.getloadavg()[0], "results": results}
    print("\n" + markdown(results))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
