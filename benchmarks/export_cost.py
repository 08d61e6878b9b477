"""``python benchmarks/export_cost.py``: what exporting and loading a real-sized engine costs.

For each model shape (the bench model, Qwen2.5-0.5B, Llama-3.2-1B: full depth, real vocabulary, random
weights), one run builds a random fp32 checkpoint (EARN registers and a synthetic 12,000-item catalog), exports
it in a child process and loads the engine in child processes. Per shape and exporter it prints: checkpoint
bytes, engine bytes (and their ratio), export wall time, CPU time and peak RSS (the child's ``ru_maxrss`` from
``wait4``, so other processes do not count), and load times: the first load (hashes every file) and a later
load (``--verify fast``: the remembered hashes when size and mtime are unchanged).

Speed does not depend on what the weights learned, so random weights give the real costs. Checkpoints are
written in shards of at most 512 MB: ``safetensors.save_file`` copies a whole file's tensors to bytes first,
so one 5 GB file would need 10 GB while writing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

SHAPES = ("bench", "qwen2.5-0.5b", "llama3.2-1b")  # names in earn_export.model.shapes
SHARD_BYTES = 512 << 20


def make_random_checkpoint(name: str, out, seed: int = 0, n_items: int = 12000) -> Path:
    """A random-weight fp32 EARN checkpoint of the registry shape ``name``: sharded safetensors, earn.json,
    trie.npz."""
    import torch
    from safetensors.torch import save_file

    from earn_export.bench.synthetic import VocabLayout, synthetic_item_paths
    from earn_export.data.catalog import Trie
    from earn_export.model import EarnConfig, EarnForCausalLM
    from earn_export.model.shapes import hf_config
    from earn_export.model.shapes import shape as registry_shape

    shape = registry_shape(name)
    out = Path(out)
    if (out / "model.safetensors.index.json").is_file() and (out / "trie.npz").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    cfg = hf_config(name, max_position_embeddings=4096)
    layout = VocabLayout(cfg.vocab_size, 4, 256)
    torch.manual_seed(seed)
    model = EarnForCausalLM(cfg, init=False)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # transformers' init, parameter by parameter (no second copy)
        for pname, p in model.named_parameters():
            if pname.endswith("norm.weight"):
                p.fill_(1.0)
            elif pname.endswith(".bias"):
                p.zero_()
            else:
                p.normal_(0.0, 0.02, generator=gen)
    model.set_earn(EarnConfig(split_layer=shape["split"], n_prefix=1, n_suffix=1, prefix_token_ids=[layout.reg_p],
                              suffix_token_ids=[layout.reg_s], id_length=4, paradigm="lcrec"))
    cfg.architectures = ["Qwen2ForCausalLM" if cfg.model_type == "qwen2" else "LlamaForCausalLM"]
    cfg.save_pretrained(str(out))
    model.earn.save(out)
    state = {k: v for k, v in model.state_dict().items() if not (cfg.tie_word_embeddings and k == "lm_head.weight")}
    shards, cur, size = [], {}, 0
    for k, v in state.items():
        nbytes = v.numel() * v.element_size()
        if cur and size + nbytes > SHARD_BYTES:
            shards.append(cur)
            cur, size = {}, 0
        cur[k] = v
        size += nbytes
    shards.append(cur)
    weight_map = {}
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file({k: v.contiguous() for k, v in shard.items()}, str(out / fname), metadata={"format": "pt"})
        weight_map.update({k: fname for k in shard})
    total = sum(v.numel() * v.element_size() for v in state.values())
    Trie.build(synthetic_item_paths(n_items, layout, seed)).save(out / "trie.npz")
    (out / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
    return out


def _dir_bytes(path: Path, suffixes: tuple) -> int:
    return sum(f.stat().st_size for f in Path(path).iterdir() if f.is_file() and f.name.endswith(suffixes))


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _child(cmd: list[str], env: dict | None = None, rss_cap: int | None = None, cwd=None) -> dict:
    """Run a child process; wall time, CPU time and peak RSS of that child alone (wait4). A child whose RSS
    passes ``rss_cap`` bytes is killed (the machine is shared) and reported as such."""
    import tempfile
    import threading

    t = time.perf_counter()
    log = tempfile.TemporaryFile(mode="w+")
    # cwd: outside any checkout, so `python -m` / `-c` import earn_export from PYTHONPATH or the install
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True, cwd=cwd)
    killed = []

    def watch():
        while proc.poll() is None:
            if rss_cap and _rss(proc.pid) > rss_cap:
                killed.append(_rss(proc.pid))
                proc.kill()
                return
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t
    log.seek(0)
    out = log.read()
    if killed:
        out += f"\nkilled: RSS passed the cap of {rss_cap / 1e9:.1f} GB (--rss-cap-gb)"
    return {"rc": proc.returncode, "wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime,
            "peak_rss_bytes": ru.ru_maxrss * 1024, "killed_at_rss_cap": bool(killed), "output_tail": out[-3000:]}


# Children import earn_export from EARN_EXPORT_CHECKOUT when it is set (``--other-checkout``): an
# editable install (scikit-build-core) puts a redirecting finder on sys.meta_path that would otherwise win over
# PYTHONPATH and silently measure this checkout instead.
BOOT = """
import os, sys
_root = os.environ.get("EARN_EXPORT_CHECKOUT")
if _root:
    sys.meta_path[:] = [f for f in sys.meta_path if "RedirectingFinder" not in type(f).__name__]
    sys.path.insert(0, _root)
"""
EXPORT_SNIPPET = BOOT + """
import earn_export
print("EARN_EXPORT_FROM", earn_export.__file__)
from earn_export.cli import main
sys.exit(main(sys.argv[1:]))
"""

LOAD_SNIPPET = BOOT + """
import sys, time, json
t = time.perf_counter()
import earn_export
print("EARN_EXPORT_FROM", earn_export.__file__)
from earn_export import Recommender
kw = json.loads(sys.argv[2])
rec = Recommender.load(sys.argv[1], **kw)
print("LOAD_S", time.perf_counter() - t)
"""


def measure(name: str, work_dir, exporters=("auto",), extra_args=(), pythonpath: str | None = None,
            load_kwargs=({},), say=None, rss_cap: int | None = None) -> dict:
    """Export the ``name`` checkpoint with each exporter and load it: one record per exporter."""
    say = say or (lambda msg, **_: print(msg, flush=True))
    work = Path(work_dir).resolve()
    ckpt = make_random_checkpoint(name, work / f"ckpt-{name}")
    env = dict(os.environ)
    if pythonpath:  # measure another checkout of earn_export (e.g. before a change) with this environment
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
        env["EARN_EXPORT_CHECKOUT"] = str(Path(pythonpath).resolve())
    ckpt_bytes = _dir_bytes(ckpt, (".safetensors",))
    where = subprocess.run([sys.executable, "-c", BOOT + "import earn_export; print(earn_export.__file__)"],
                           env=env, cwd=work, capture_output=True, text=True).stdout.strip()
    if pythonpath and not where.startswith(str(Path(pythonpath).resolve())):
        raise RuntimeError(f"--other-checkout {pythonpath}: the children import earn_export from {where}")
    rows = []
    for exporter in exporters:
        eng = work / f"engine-{name}-{exporter}{'-other-checkout' if pythonpath else ''}"
        if eng.exists():  # no stale files in the byte count
            shutil.rmtree(eng)
        cmd = [sys.executable, "-c", EXPORT_SNIPPET, "export", str(ckpt), "--out", str(eng),
               "--exporter", exporter, *extra_args]
        say(f"[{name}] export ({exporter}) ...")
        ex = _child(cmd, env, rss_cap, cwd=work)
        row = {"shape": name, "exporter": exporter, "checkpoint_bytes": ckpt_bytes, "export": ex,
               "earn_export_from": where}
        if ex["rc"] == 0:
            row["engine_bytes"] = _dir_bytes(eng, (".onnx", ".data", ".bin", ".npz", ".npy", ".json", ".txt"))
            row["weights_bytes"] = _dir_bytes(eng, (".data", ".bin"))
            row["engine_over_checkpoint"] = row["engine_bytes"] / ckpt_bytes
            row["export_rss_over_checkpoint"] = ex["peak_rss_bytes"] / ckpt_bytes
            loads = []
            for kw in load_kwargs:
                for attempt in ("first", "again"):
                    r = _child([sys.executable, "-c", LOAD_SNIPPET, str(eng), json.dumps(kw)], env, rss_cap,
                               cwd=work)
                    line = [ln for ln in r["output_tail"].splitlines() if ln.startswith("LOAD_S")]
                    loads.append({"kwargs": kw, "attempt": attempt, "rc": r["rc"], "wall_s": r["wall_s"],
                                  "load_s": float(line[-1].split()[1]) if line else None,
                                  "peak_rss_bytes": r["peak_rss_bytes"],
                                  "error": None if r["rc"] == 0 else r["output_tail"][-800:]})
            row["loads"] = loads
        rows.append(row)
        say(json.dumps({k: v for k, v in row.items() if k != "export"} | {"export": {
            k: v for k, v in ex.items() if k != "output_tail"}}, default=str), flush=True)
        if ex["rc"] != 0:
            say(ex["output_tail"])
    return {"shape": name, "rows": rows}


def markdown(results: list[dict]) -> str:
    gb = 1e9
    lines = ["| shape | exporter | checkpoint GB | engine GB | engine / ckpt | export wall s | export CPU s | "
             "peak RSS GB | RSS / ckpt | load s (first / again) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for res in results:
        for r in res["rows"]:
            ex = r["export"]
            if ex["rc"] != 0:
                why = "killed at the RSS cap" if ex.get("killed_at_rss_cap") else f"failed (rc {ex['rc']})"
                lines.append(f"| {r['shape']} | {r['exporter']} | {r['checkpoint_bytes'] / gb:.2f} | {why} "
                             f"| | {ex['wall_s']:.0f} | {ex['cpu_s']:.0f} | {ex['peak_rss_bytes'] / gb:.2f} "
                             "| | |")
                continue
            loads = " ; ".join(
                f"{json.dumps(ld['kwargs']) if ld['kwargs'] else 'default'} {ld['attempt']}: "
                + (f"{ld['load_s']:.2f}" if ld["load_s"] is not None else "failed")
                for ld in r.get("loads", []))
            lines.append(
                f"| {r['shape']} | {r['exporter']} | {r['checkpoint_bytes'] / gb:.2f} | {r['engine_bytes'] / gb:.2f} | "
                f"{r['engine_over_checkpoint']:.2f} | {ex['wall_s']:.0f} | {ex['cpu_s']:.0f} | "
                f"{ex['peak_rss_bytes'] / gb:.2f} | {r['export_rss_over_checkpoint']:.2f} | {loads} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from earn_export.cli import Parser

    p = Parser(prog="python benchmarks/export_cost.py", description=__doc__.splitlines()[0])
    p.add_argument("--shapes", default="bench",
                   help=f"comma list of model shapes (earn_export/model/shapes.py): {', '.join(SHAPES)}")
    p.add_argument("--exporters", default="auto", help="comma list of auto, dynamo, torchscript")
    p.add_argument("--rss-cap-gb", type=float, default=14.0,
                   help="kill an export/load child whose RSS passes this many GB (shared machines)")
    p.add_argument("--other-checkout", default=None, metavar="DIR",
                   help="run the export/load children with this earn_export checkout first on PYTHONPATH (to "
                        "measure another version, e.g. before a change)")
    p.add_argument("--out", default="results/export-cost", help="writes export_cost_*.json/.md and the engines here")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = [s.strip() for s in args.shapes.split(",") if s.strip()]
    bad = [n for n in names if n not in SHAPES]
    if bad:
        p.error(f"unknown --shapes {bad}; choose from {', '.join(SHAPES)}")
    exporters = [e.strip() for e in args.exporters.split(",") if e.strip()]
    loads = [{}] if args.other_checkout else [{"verify": "full"}, {}]
    tag = "_".join(names) + "_" + "_".join(exporters) + ("_other-checkout" if args.other_checkout else "")
    results = []
    for name in names:
        results.append(measure(name, out, exporters=exporters, pythonpath=args.other_checkout,
                               load_kwargs=loads, rss_cap=int(args.rss_cap_gb * 1e9)))
        (out / f"export_cost_{tag}.json").write_text(json.dumps(results, indent=1, default=str))
    table = markdown(results)
    (out / f"export_cost_{tag}.md").write_text(table + "\n")
    print()
    print(table)
    return 0


if __name__ == "__main__":
    from earn_export.cli import run_script

    raise SystemExit(run_script(main))
