"""EARN vs dense fine-tuning of a pretrained LLM on Amazon Beauty, as one resumable command.

The paper's central claim (EARN matches or beats plain fine-tuning) is about pretrained LLMs fine-tuned for
recommendation. This script runs that experiment on SmolLM2-135M-Instruct (or any ``convert`` source):

  convert  -> the source on the Beauty catalog, EARN k = N/4 (7 of 30 for SmolLM2)
  sweep    -> learning rates on the validation split, the same short run for EARN and dense
  train    -> EARN (k) and dense (k = N) on the same fixed, seeded training examples, epochs, schedule, seed
  eval     -> Recall/NDCG@10/20 on the test users (beam 20), per-user rankings, popularity
  analyze  -> attention per layer (paper Table 4) of the zero-shot converted model and both fine-tuned models
  deploy   -> export both, check parity, users/s of both engines (Python and C++ runtimes), KV bytes per user
  report   -> one markdown page: both models, paired bootstrap intervals of EARN - dense, the tiny pair,
              popularity, the paper's rows

Every stage runs the ``earn-export`` command line in a subprocess and records its wall time in
``OUT/state.json``; a finished stage is skipped when the script runs again. Training keeps Trainer
checkpoints (``--resume-dir``), so a run stopped by ``--max-minutes`` or killed continues where it was: run the
same command again. Exit status 3 means "not finished yet, run again".

    python benchmarks/llm_beauty.py                       # the full experiment (hours on 2 CPU cores)
    python benchmarks/llm_beauty.py --max-minutes 170     # one bounded slice of it; run again to continue
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("convert", "sweep", "train", "eval", "analyze", "deploy", "report")
NOT_DONE = 3  # exit status: the budget ran out, run the same command again

# Table 1 of the paper (Beauty, Llama-7B): Finetune / EARN
PAPER = {"Finetune (paper, Llama-7B)": {"recall@10": .0145, "recall@20": .0225, "ndcg@10": .0084, "ndcg@20": .0108},
         "EARN (paper, Llama-7B)": {"recall@10": .0167, "recall@20": .0265, "ndcg@10": .0095, "ndcg@20": .0124}}
METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python benchmarks/llm_beauty.py", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--source", default="smollm2", help="what `earn-export convert` starts from")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "amazon-beauty"),
                   help="Beauty-format data dir; 'synthetic' for the embedded default (toy runs)")
    p.add_argument("--out", default="runs/llm-beauty", help="run directory (state.json, checkpoints, results)")
    p.add_argument("--split-layer", default="auto", help="EARN k (auto: N/4)")
    p.add_argument("--train-examples", type=int, default=20000,
                   help="fixed seeded subsample of training examples, identical for both models (0: all)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lrs", default="1e-4,3e-4", help="learning rates of the validation sweep")
    p.add_argument("--sweep-examples", type=int, default=2000, help="training examples of each sweep run")
    p.add_argument("--valid-users", type=int, default=200, help="validation prompts per validation pass")
    p.add_argument("--eval-users", type=int, default=0, help="test users ranked (0: all)")
    p.add_argument("--analyze-users", type=int, default=200, help="users in the attention analysis")
    p.add_argument("--check-users", type=int, default=200, help="users in the export parity check")
    p.add_argument("--speed-users", type=int, default=64, help="users in the users/s measurement")
    p.add_argument("--exporter", default="auto", choices=["auto", "dynamo", "torchscript"],
                   help="`earn-export export --exporter` of the deploy stage (torchscript: the fast one, for smoke runs)")
    p.add_argument("--save-steps", type=int, default=100, help="optimizer steps between Trainer checkpoints")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, one per core)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="budget of this invocation; stages that do not fit stop and resume on the next run")
    p.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset, in order")
    p.add_argument("--docs", default=None, help="also write the results page here (e.g. docs/results/llm-beauty.md)")
    p.add_argument("--tiny-pair", default=str(ROOT / "docs" / "results" / "accuracy.json"),
                   help="JSON with the tiny-preset EARN/dense metrics quoted on the page (skipped when absent)")
    p.add_argument("--cli", default=None, help="earn-export executable (default: the one beside this Python)")
    return p.parse_args(argv)


class Run:
    """The run directory's state: finished stages with their wall times and outputs."""

    def __init__(self, args):
        self.args = args
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.state_path = self.out / "state.json"
        self.state = json.loads(self.state_path.read_text()) if self.state_path.is_file() else {"stages": {}}
        self.t0 = time.time()
        self.deadline = None if args.max_minutes is None else self.t0 + 60 * args.max_minutes
        exe = args.cli or str(Path(sys.executable).with_name("earn-export"))
        self.cli = [exe] if Path(exe).exists() else [sys.executable, "-m", "earn_export.cli"]
        self.data = [] if args.data == "synthetic" else ["--data", args.data]

    def save(self):
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2) + "\n")
        os.replace(tmp, self.state_path)

    def done(self, key):
        return key in self.state["stages"]

    def mark(self, key, **info):
        self.state["stages"][key] = {"finished": time.strftime("%Y-%m-%d %H:%M:%S"), **info}
        self.save()

    def minutes_left(self):
        return None if self.deadline is None else (self.deadline - time.time()) / 60

    def earn(self, *cmd, log=None, ok=(0,)):
        """Run one `earn-export` command; its output goes to the terminal and to ``log``. Returns wall seconds.
        ``ok``: exit statuses that are results rather than failures (`check` exits 1 below its criterion)."""
        full = self.cli + [str(c) for c in cmd]
        if self.args.threads:
            full += ["--threads", str(self.args.threads)] if cmd[0] in ("train", "eval") else []
        print("$ earn-export " + " ".join(str(c) for c in cmd), flush=True)
        t = time.perf_counter()
        if log:
            Path(log).parent.mkdir(parents=True, exist_ok=True)
        with open(log or os.devnull, "a") as f:
            proc = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for line in proc.stdout:
                sys.stdout.write(line)
                f.write(line)
            rc = proc.wait()
        if rc not in ok:
            raise SystemExit(f"llm_beauty: `earn-export {cmd[0]}` failed with status {rc} (log: {log})")
        return time.perf_counter() - t


def stage_convert(run: Run):
    if run.done("convert"):
        return
    dst = run.out / "converted"
    if dst.exists():
        shutil.rmtree(dst)
    s = run.earn("convert", run.args.source, *run.data, "--split-layer", run.args.split_layer, "--out", dst,
                 log=run.out / "convert.log")
    cfg = json.loads((dst / "earn.json").read_text()) if (dst / "earn.json").is_file() else {}
    run.mark("convert", seconds=s, path=str(dst), split_layer=cfg.get("split_layer"))


def train_model(run: Run, name: str, split: str, lr: float, examples: int, out: Path) -> bool:
    """One resumable training run; True when it finished, False when the budget stopped it."""
    key = f"train:{out.relative_to(run.out)}"
    if run.done(key):
        return True
    left = run.minutes_left()
    if left is not None and left < 3:
        return False
    cmd = ["train", "--model", run.out / "converted", *run.data, "--split-layer", split, "--epochs", run.args.epochs,
           "--batch-size", run.args.batch_size, "--lr", lr, "--seed", 42, "--eval-users", run.args.valid_users,
           "--resume-dir", str(out) + ".trainer", "--save-steps", run.args.save_steps, "--out", out]
    if examples:
        cmd += ["--max-train-examples", examples]
    if left is not None:
        cmd += ["--max-minutes", f"{left - 1:.1f}"]
    s = run.earn(*cmd, log=str(out) + ".log")
    log = json.loads((out / "train_log.json").read_text())
    prev = run.state.setdefault("partial", {}).get(key, {"seconds": 0.0})
    wall = prev["seconds"] + s
    if not log.get("complete", True):
        run.state["partial"][key] = {"seconds": wall, "steps": log["steps"]}
        run.save()
        print(f"llm_beauty: {name} stopped by the budget at step {log['steps']}; run again to continue", flush=True)
        return False
    run.state.get("partial", {}).pop(key, None)
    run.mark(key, seconds=wall, lr=lr, steps=log["steps"], examples=log["examples"], train_loss=log["train_loss"],
             best_eval_loss=log["best_eval_loss"], runtime_s=log.get("runtime_s"), precision=log.get("precision"))
    shutil.rmtree(str(out) + ".trainer", ignore_errors=True)  # optimizer state: 3x the weights, not needed now
    return True


def stage_sweep(run: Run) -> bool:
    if run.done("sweep"):
        return True
    lrs = [float(x) for x in run.args.lrs.split(",")]
    losses = {}
    for kind, split in (("earn", run.args.split_layer), ("dense", "dense")):
        for lr in lrs:
            out = run.out / "sweep" / f"{kind}-lr{lr:g}"
            if not train_model(run, f"sweep {kind} lr {lr:g}", split, lr, run.args.sweep_examples, out):
                return False
            losses.setdefault(kind, {})[lr] = run.state["stages"][f"train:{out.relative_to(run.out)}"]["best_eval_loss"]
    best = {kind: min(v, key=v.get) for kind, v in losses.items()}
    run.mark("sweep", losses={k: {f"{lr:g}": x for lr, x in v.items()} for k, v in losses.items()}, lr=best)
    for kind in losses:  # the sweep's weights are not used again
        for lr in lrs:
            shutil.rmtree(run.out / "sweep" / f"{kind}-lr{lr:g}", ignore_errors=True)
    return True


def stage_train(run: Run) -> bool:
    lr = run.state["stages"]["sweep"]["lr"]
    for kind, split in (("earn", run.args.split_layer), ("dense", "dense")):
        if not train_model(run, kind, split, lr[kind], run.args.train_examples, run.out / kind):
            return False
    return True


def stage_eval(run: Run) -> bool:
    ev = run.out / "eval"
    ev.mkdir(exist_ok=True)
    users = ["--users", run.args.eval_users] if run.args.eval_users else []
    for kind in ("earn", "dense"):
        key = f"eval:{kind}"
        if run.done(key):
            continue
        if run.minutes_left() is not None and run.minutes_left() < 5:
            return False
        s = run.earn("eval", run.out / kind, *run.data, "--split", "test", "--beam", 20, *users,
                     "--out", ev / f"{kind}.json", "--rankings", ev / f"{kind}.npz", "--quiet",
                     log=ev / f"{kind}.log")
        run.mark(key, seconds=s)
    if not run.done("eval:popularity"):
        s = run.earn("eval", run.out / "earn", *run.data, "--split", "test", *users, "--baseline", "popularity",
                     "--out", ev / "popularity.json", "--quiet", log=ev / "popularity.log")
        run.mark("eval:popularity", seconds=s)
    return True


def stage_analyze(run: Run) -> bool:
    if run.done("analyze"):
        return True
    if run.minutes_left() is not None and run.minutes_left() < 5:
        return False
    s = run.earn("analyze", run.out / "converted", run.out / "earn", run.out / "dense", *run.data,
                 "--users", run.args.analyze_users, "--out", run.out / "analysis", "--quiet",
                 log=run.out / "analysis.log")
    run.mark("analyze", seconds=s)
    return True


# int8 applies SmoothQuant (alpha 0.5) by default; int8-nosmooth is the per-tensor-scale int8 it improves on
QUANT = {"fp32": [], "int8": ["--quantize", "int8"], "int8-nosmooth": ["--quantize", "int8", "--smoothquant", "0"]}


def stage_deploy(run: Run) -> bool:
    for kind in ("earn", "dense"):
        for q, flags in QUANT.items():
            name = f"{kind}-{q}"
            eng = run.out / "engines" / name
            if not run.done(f"export:{name}"):
                if eng.exists():
                    shutil.rmtree(eng)
                s = run.earn("export", run.out / kind, "--out", eng, *flags, "--exporter", run.args.exporter,
                                 log=run.out / f"export-{name}.log")
                run.mark(f"export:{name}", seconds=s)
            if not run.done(f"check:{name}"):
                rep = run.out / f"check-{name}.json"
                s = run.earn("check", eng, "--reference", run.out / kind, "--users", run.args.check_users,
                             "--out", rep, log=run.out / f"check-{name}.log", ok=(0, 1))
                r = json.loads(rep.read_text())  # status 1 = below the criterion: a result, recorded as such
                run.mark(f"check:{name}", seconds=s, users=r.get("users"), identical=r.get("topk_identical_fraction"),
                         overlap=r.get("topk_overlap_mean"), passed=r.get("passed"),
                         criterion=f"{r.get('pass_criterion')} >= {r.get('min_identical')}")
    if not run.done("speed"):
        speed = measure_speed(run)
        (run.out / "speed.json").write_text(json.dumps(speed, indent=2) + "\n")
        run.mark("speed")
    return True


def measure_speed(run: Run) -> dict:
    """Users/s of the engines on the same test users (batches of 4, beam 20), Python and C++ runtimes, and
    the KV cache each keeps per user for these prompts (exact byte accounting, fp32)."""
    import numpy as np

    from earn_export import Recommender
    from earn_export.engine.prompt_pieces import PromptPieces
    from earn_export.model.kv_cache_bytes import KVShape, kv_bytes

    hist = test_histories(run, run.args.speed_users)
    out = {}
    for kind in ("earn", "dense"):
        for q in QUANT:
            eng = run.out / "engines" / f"{kind}-{q}"
            for backend in ("onnxruntime", "cpp"):
                try:
                    rec = Recommender.load(eng, backend=backend)
                except Exception as exc:  # the C++ runtime is optional (built by make install)
                    out[f"{kind}-{q}/{backend}"] = {"error": str(exc).splitlines()[0]}
                    continue
                rec.recommend(hist[:4], ids="catalog")  # warm-up
                t, c = time.perf_counter(), time.process_time()
                for s in range(0, len(hist), 4):
                    rec.recommend(hist[s:s + 4], top_k=20, beam=20, ids="catalog")
                dt, cpu = time.perf_counter() - t, time.process_time() - c
                out[f"{kind}-{q}/{backend}"] = {"users": len(hist), "seconds": dt, "users_per_s": len(hist) / dt,
                                                "cpu_seconds": cpu}
        eng = run.out / "engines" / f"{kind}-fp32"
        man = json.loads((eng / "manifest.json").read_text())
        m = man["model"]
        pieces = PromptPieces.load(eng)
        shape = KVShape(m["num_layers"], m["n_kv_heads"], m["head_dim"], 4)
        per_user = [kv_bytes(shape, batch=1, beam=20, prompt_len=len(pieces.row(h)), steps=(m.get("id_length") or 4) - 1,
                             split_layer=m.get("split_layer") or m["num_layers"], n_registers=pieces.n_registers)
                    for h in hist]
        out[f"{kind}/kv_bytes_per_user"] = float(np.mean(per_user))
    out["mean_history"] = float(np.mean([len(h) for h in hist]))
    return out


def test_histories(run: Run, n: int) -> list:
    """The first ``n`` test users' histories, from the data the EARN checkpoint was trained on."""
    from earn_export.data.sequences import eval_examples
    from earn_export.data.data_spec import DataSpec

    ex = eval_examples(DataSpec.load_from(run.out / "earn").load(), "test", max_history=20)
    return [list(map(int, h)) for h in ex.histories[:n]]


def median_step_seconds(log: Path) -> float | None:
    """Median seconds per optimizer step from a training log's progress bar (tqdm's "N/M [.., X s/it]")."""
    import re
    import statistics

    if not log.is_file():
        return None
    v = [float(x) for x in re.findall(r"\|\s*\d+/\d+ \[[^,\]]+,\s*([\d.]+)s/it\]", log.read_text(errors="replace"))]
    return statistics.median(v) if v else None


def paired_bootstrap(a, b, resamples: int = 10_000, seed: int = 0,
                     level: float = 0.95) -> dict:
    """Mean of ``a - b`` over the same users and its percentile bootstrap interval (users resampled with
    replacement, the pair kept together), plus the share of resamples where ``a`` is not below ``b``."""
    import numpy as np

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"paired_bootstrap needs two equal-length 1-D arrays, got {a.shape} and {b.shape}")
    d = a - b
    rng = np.random.default_rng(seed)
    means = np.array([d[rng.integers(0, len(d), len(d))].mean() for _ in range(resamples)])
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return {"diff": float(d.mean()), "low": float(lo), "high": float(hi), "level": level,
            "p_not_below": float((means >= 0).mean()), "users": len(d), "resamples": resamples}


def stage_report(run: Run) -> str:
    import numpy as np

    from earn_export.search.metrics import per_user_metrics

    ev = run.out / "eval"
    res = {k: json.loads((ev / f"{k}.json").read_text()) for k in ("earn", "dense", "popularity")}
    per = {}
    for k in ("earn", "dense"):
        z = np.load(ev / f"{k}.npz")
        off = z["target_offsets"]
        targets = [set(z["targets"][off[i]:off[i + 1]].tolist()) for i in range(len(off) - 1)]
        per[k] = (z["users"], per_user_metrics(z["ranked"], targets))
    if not np.array_equal(per["earn"][0], per["dense"][0]):
        raise SystemExit("llm_beauty: EARN and dense were evaluated on different users; delete OUT/eval and rerun")
    boot = {m: paired_bootstrap(per["earn"][1][m], per["dense"][1][m]) for m in METRICS}
    st = run.state["stages"]
    lr = st["sweep"]["lr"]
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    argv = list(sys.argv[1:])
    if "--stages" in argv:  # which stages an invocation ran does not change the figures
        i = argv.index("--stages")
        del argv[i:i + 2]
    command = "python benchmarks/llm_beauty.py " + " ".join(argv)
    lines = [
        "# EARN vs dense fine-tuning of a pretrained LLM on Amazon Beauty",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} at commit {commit} by `{command.strip()}` (2 CPU cores; the stages "
        "can span several invocations of the same command).",
        "",
        f"Source model: `{run.args.source}`, EARN k = {st['convert'].get('split_layer')}; "
        f"training examples: {run.args.train_examples or 'all'} (seeded subsample, identical for both), "
        f"{run.args.epochs:g} epoch(s), batch {run.args.batch_size}, cosine schedule, seed 42; "
        f"learning rate from the validation sweep ({run.args.lrs}): EARN {lr['earn']:g}, dense {lr['dense']:g}. "
        f"Test: {res['earn']['users']} users, beam 20, trie-constrained.",
        "",
        "| model | R@10 | R@20 | N@10 | N@20 | train wall | median step | train steps | final valid loss | precision |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for k in ("dense", "earn"):
        t = st[f"train:{k}"]
        r = res[k]
        step = median_step_seconds(run.out / f"{k}.log")
        lines.append(f"| {'dense (k = N)' if k == 'dense' else 'EARN'} | "
                     + " | ".join(f"{r[m]:.4f}" for m in METRICS)
                     + f" | {t['seconds'] / 60:.1f} min | {'' if step is None else f'{step:.2f} s'} | {t['steps']} | "
                     f"{'' if t.get('best_eval_loss') is None else format(t['best_eval_loss'], '.3f')} | "
                     f"{t.get('precision')} |")
    lines.append("| popularity | " + " | ".join(f"{res['popularity'][m]:.4f}" for m in METRICS) + " | | | | | |")
    tiny = Path(run.args.tiny_pair)
    if tiny.is_file():
        for name, r in json.loads(tiny.read_text()).items():
            lines.append(f"| {name} | " + " | ".join(f"{r[m]:.4f}" for m in METRICS) + " | | | | | |")
    for name, r in PAPER.items():
        lines.append(f"| *{name}* | " + " | ".join(f"*{r[m]:.4f}*" for m in METRICS) + " | | | | | |")
    lines += ["", "Train wall is the stage's wall time on the shared 2-core machine (other jobs ran beside it for "
              "parts of it); median step is the median of the progress bar's seconds per optimizer step, the "
              "comparable figure."]
    lines += ["", "EARN − dense on the same users (paired bootstrap, 10,000 resamples, 95% interval):", "",
              "| metric | EARN − dense | 95% interval | share of resamples EARN ≥ dense |", "|---|---:|---|---:|"]
    for m in METRICS:
        b = boot[m]
        lines.append(f"| {m} | {b['diff']:+.4f} | [{b['low']:+.4f}, {b['high']:+.4f}] | {b['p_not_below']:.2f} |")
    sweep = st["sweep"]["losses"]
    lines += ["", "Validation loss of the learning-rate sweep (" + f"{run.args.sweep_examples} examples each):", "",
              "| lr | " + " | ".join(sweep) + " |", "|---|" + "---:|" * len(sweep)]
    for lr_s in next(iter(sweep.values())):
        lines.append(f"| {lr_s} | " + " | ".join(f"{sweep[k][lr_s]:.4f}" for k in sweep) + " |")
    speed = run.out / "speed.json"
    if speed.is_file():
        sp = json.loads(speed.read_text())
        lines += ["", f"Deployment ({sp.get('mean_history', 0):.1f} items of history on average, batches of 4 users, "
                  "beam 20, top-20; parity = `check` against the fine-tuned torch model on "
                  f"{run.args.check_users} test users):", "",
                  "| engine | precision | runtime | users/s | CPU s per user | top-20 identical | top-20 overlap "
                  "| check |",
                  "|---|---|---|---:|---:|---:|---:|---|"]
        for kind in ("earn", "dense"):
            for q in QUANT:
                chk = st.get(f"check:{kind}-{q}", {})
                for backend in ("onnxruntime", "cpp"):
                    v = sp.get(f"{kind}-{q}/{backend}", {})
                    if "users_per_s" not in v:
                        lines.append(f"| {kind} | {q} | {backend} | {v.get('error', 'not measured')} | | | | |")
                        continue
                    ident = chk.get("identical")
                    ov = chk.get("overlap")
                    verdict = "" if "passed" not in chk else (
                        f"{'passed' if chk['passed'] else 'FAILED'} ({chk.get('criterion', '')})")
                    lines.append(f"| {kind} | {q} | {backend} | {v['users_per_s']:.2f} | "
                                 f"{v['cpu_seconds'] / v['users']:.3f} | "
                                 f"{'' if ident is None else f'{ident:.1%}'} | {'' if ov is None else f'{ov:.3f}'} | {verdict} |")
        ke, kd = sp.get("earn/kv_bytes_per_user"), sp.get("dense/kv_bytes_per_user")
        if ke and kd:
            lines += ["", f"KV cache per user (fp32, beam 20, these prompts): EARN {ke / 2**20:.2f} MiB, dense "
                      f"{kd / 2**20:.2f} MiB ({1 - ke / kd:.1%} less)."]
    table4 = run.out / "analysis" / "table4.md"
    if table4.is_file():
        lines += ["", "Attention (paper Table 4 metrics; converted = zero-shot):", "", table4.read_text().strip()]
    walls = {k: round(v["seconds"] / 60, 1) for k, v in st.items() if "seconds" in v}
    lines += ["", f"Stage wall times (min): {json.dumps(walls)}"]
    page = "\n".join(lines) + "\n"
    (run.out / "results.md").write_text(page)
    (run.out / "results.json").write_text(json.dumps({"metrics": res, "bootstrap": boot, "lr": lr}, indent=2) + "\n")
    return page


def main(argv=None) -> int:
    args = parse_args(argv)
    run = Run(args)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise SystemExit(f"llm_beauty: unknown stage(s) {unknown}; choose from {','.join(STAGES)}")
    steps = {"convert": lambda: stage_convert(run) or True, "sweep": lambda: stage_sweep(run),
             "train": lambda: stage_train(run), "eval": lambda: stage_eval(run),
             "analyze": lambda: stage_analyze(run), "deploy": lambda: stage_deploy(run)}
    for s in stages:
        if s == "report":
            page = stage_report(run)
            print(page)
            if args.docs:
                Path(args.docs).parent.mkdir(parents=True, exist_ok=True)
                Path(args.docs).write_text(page)
            continue
        if not steps[s]():
            print(f"llm_beauty: not finished ({s}); run the same command again to continue", flush=True)
            return NOT_DONE
    return 0


if __name__ == "__main__":
    sys.exit(main())
