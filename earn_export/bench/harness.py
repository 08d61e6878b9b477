"""Benchmark harness: EARN vs dense (same shape, same weights) on ONNX Runtime and PyTorch, vs HF ``generate``.

A random-weight model pair (:mod:`.synthetic`) is exported to the two-graph format and end-to-end
recommendation (token ids to items; tokenisation is the same for every backend, so untimed) is timed per
(prompt length, batch, beam) for ``ort_*`` (exported graphs), ``torch_*`` (the reference) and ``hf_dense``
(transformers ``generate`` with a trie mask: what users run today; slow, so timed at ``hf_batch`` users and
compared per user with ``ort_*@hf``). Jobs run round-robin so that a change in machine load hits all alike.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

SCHEMA_VERSION = 1


@dataclass
class BenchConfig:
    preset: str = "base"  # earn_export.model.shapes preset (base: hidden 512, 16 layers, k = 4)
    split_layer: int | None = None  # EARN k (None: the preset's)
    overrides: dict = field(default_factory=dict)  # preset field overrides (hidden_size=..., num_hidden_layers=...)
    prompt_lens: tuple = (128, 512, 1024)
    batch_sizes: tuple = (4,)
    beams: tuple = (20,)
    warmup: int = 1
    repeats: int = 3
    torch_warmup: int = 1  # the PyTorch reference: slower and noisier on a shared CPU, so fewer runs by default
    torch_repeats: int = 1
    backends: tuple = ("ort", "torch", "hf")
    hf_batch: int = 1
    hf_repeats: int = 1
    device: str = "cpu"  # torch reference and HF generate
    vocab_size: int = 4096
    id_length: int = 4
    codes: int = 256
    n_items: int = 12000
    seed: int = 0
    exporter: str = "auto"
    form: str = "fused"  # graph form of the exported engines (earn_export.export.graph_modules.FORMS)
    quantize: str | None = None  # weight-only int8/int4 engines (ONNX Runtime CPU)
    vocab: str = "items"  # exported head: "items" (identifier tokens only) or "full"
    out: str = "results/bench"
    reuse_engines: bool = False
    ort_threads: int = 0  # ORT intra-op threads (0: ORT's default, one per physical core)
    torch_threads: int | None = None  # torch.set_num_threads (None: leave torch's default)

    def validate(self) -> None:
        bad = set(self.backends) - {"ort", "torch", "hf"}
        if bad:
            raise ValueError(f"unknown backends {sorted(bad)}; choose from ort, torch, hf")
        if min(self.repeats, self.hf_repeats, self.torch_repeats) < 1 or min(self.warmup, self.torch_warmup) < 0:
            raise ValueError("need repeats, torch_repeats, hf_repeats >= 1 and warmup, torch_warmup >= 0")
        if min(self.prompt_lens) < 3:
            raise ValueError("prompt lengths must be >= 3 (two registers + one word)")
        if self.device not in ("cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise ValueError(f"device must be cpu or cuda[:i], got {self.device!r}")


def machine_info(cfg: BenchConfig) -> dict:
    import onnxruntime as ort
    import torch
    import transformers

    from ..runtime.machine import cpu_model

    mem = None
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
    info = {
        "platform": platform.platform(), "python": platform.python_version(), "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_bytes": mem,
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "onnxruntime": ort.__version__, "ort_providers": ort.get_available_providers(),
        "ort_intra_op_threads": cfg.ort_threads or "default (physical cores)",
        "transformers": transformers.__version__, "numpy": np.__version__,
        "device": cfg.device,
        "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    if cfg.device != "cpu" and torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(torch.device(cfg.device))
    return info


def busy_warning(info: dict) -> str | None:
    """A warning when other processes competed for the CPUs: PyTorch's OpenMP threads (torch and HF columns)
    slow down far more than ONNX Runtime when a core is taken away, so EARN/HF is then overstated."""
    cores = info.get("cpu_affinity") or info.get("cpu_count") or 1
    loads = [x[0] for x in (info.get("loadavg_start"), info.get("loadavg_end")) if x]
    # our own process accounts for about one runnable thread per core while it runs
    if loads and max(loads) > cores + 0.5:
        return (f"machine busy: 1-min load average up to {max(loads):.1f} on {cores} CPUs (this benchmark alone "
                f"accounts for about {cores}); other processes competed for the CPUs. Ratios measured in this run "
                "still compare like with like for ORT EARN vs dense; PyTorch and HF timings are inflated by "
                "OpenMP thread preemption, so EARN/HF is overstated. Re-run on a quiet machine.")
    return None


def _timed(fn, times: dict, key: str):
    def call(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            times[key] += time.perf_counter() - t
    return call


class TimedBackend:
    """SearchBackend wrapper: time in ``prefill``/``decode`` (and in the ORT graphs), last search state kept."""

    def __init__(self, inner, kind: str):
        self.inner = inner
        self.kind = kind  # "ort" | "torch"
        self.out_token_ids = inner.out_token_ids
        self.times: dict = defaultdict(float)
        self.last_state = None
        if kind == "ort":  # every Run of the two ONNX Runtime sessions, timed on the session objects themselves
            for session, key in ((inner.prefill_session, "prefill_graph"), (inner.decode_session, "decode_graph")):
                session.run = _timed(session.run, self.times, key)
                session.run_with_ort_values = _timed(session.run_with_ort_values, self.times, key)

    def reset(self) -> None:
        self.times.clear()
        self.last_state = None

    def prefill(self, input_ids, attention_mask):
        out = _timed(self.inner.prefill, self.times, "prefill")(input_ids, attention_mask)
        self.last_state = out[1]
        return out

    def decode(self, state, tokens, parents, step):
        out = _timed(self.inner.decode, self.times, "decode")(state, tokens, parents, step)
        self.times["decode_calls"] += 1
        self.last_state = out[1]
        return out

    def kv_bytes(self) -> dict:
        """Bytes of the cache tensors held after the last decode: shared prefix KV + per-beam generated KV."""
        st = self.last_state
        if st is None:
            return {}
        if self.kind == "ort":
            prefix = int(sum(v.numpy().nbytes for v in st.past))
            gen = int(sum(g.nbytes for g in (st.generated or [])))
        else:
            prefix = int(st.prefix.nbytes())
            gen = int(st.generated.nbytes()) if st.generated is not None else 0
        return {"prefix_bytes": prefix, "generated_bytes": gen, "total_bytes": prefix + gen}


def _run_search(tb: TimedBackend, trie, ids, mask, beam: int):
    from ..search.beam import constrained_beam_search as search

    tb.reset()
    gc.collect()
    t = time.perf_counter()
    res = search(tb, trie, ids, mask, beam)
    total = time.perf_counter() - t
    tm = tb.times  # a defaultdict: 0.0 for what did not run
    pre, dec = tm["prefill"], tm["decode"]
    rec = {"total_s": total, "prefill_s": pre, "decode_s": dec, "search_bookkeeping_s": total - pre - dec,
           "decode_calls": int(tm["decode_calls"])}
    if tb.kind == "ort":
        rec.update(prefill_graph_s=tm["prefill_graph"], decode_graph_s=tm["decode_graph"],
                   backend_overhead_s=pre + dec - tm["prefill_graph"] - tm["decode_graph"])
    return rec, res


def _hf_cache_bytes(out) -> int | None:
    """Bytes of the cache ``generate`` returned: a ``Cache`` with ``layers``, or legacy (key, value) pairs."""
    cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
    if cache is None:
        return None
    layers = getattr(cache, "layers", None)
    try:
        tensors = [t for layer in layers for t in (getattr(layer, "keys", None), getattr(layer, "values", None))] \
            if layers is not None else [t for kv in cache for t in kv]
    except TypeError:
        return None
    return sum(t.numel() * t.element_size() for t in tensors if hasattr(t, "numel"))


def hf_generate(hf, ids, mask, beam: int, id_length: int, walker, device: str) -> tuple[dict, np.ndarray, int | None]:
    """One ``generate`` call; returns (timing record, items [b, beam], cache bytes at the end)."""
    import torch

    sync = (lambda: torch.cuda.synchronize()) if device != "cpu" else (lambda: None)
    x = torch.as_tensor(ids, device=device)
    m = torch.as_tensor(mask, device=device)
    walker.prompt_len = x.shape[1]
    calls: list[float] = []  # forward hooks: the time of each forward call (the first one is the prefill)

    def start(*_):
        sync()
        calls.append(-time.perf_counter())

    def stop(*_):
        sync()
        calls[-1] += time.perf_counter()

    hooks = [hf.register_forward_pre_hook(start), hf.register_forward_hook(stop)]
    gc.collect()
    try:
        sync()
        t = time.perf_counter()
        out = hf.generate(input_ids=x, attention_mask=m, num_beams=beam, num_return_sequences=beam,
                          max_new_tokens=id_length, min_new_tokens=id_length, do_sample=False,
                          early_stopping=True, length_penalty=0.0, prefix_allowed_tokens_fn=walker,
                          pad_token_id=0, return_dict_in_generate=True, output_scores=False)
        sync()
        total = time.perf_counter() - t
    finally:
        for h in hooks:
            h.remove()
    seqs = out.sequences[:, x.shape[1]:].cpu().numpy()
    items = np.array([walker.item_of(s) for s in seqs], np.int64).reshape(len(ids), beam)
    rec = {"total_s": total, "prefill_s": calls[0] if calls else 0.0, "decode_s": float(sum(calls[1:])),
           "search_bookkeeping_s": total - float(sum(calls)), "decode_calls": max(len(calls) - 1, 0)}
    return rec, items, _hf_cache_bytes(out)


def load_hf_model(ckpt_dir, device: str):
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf = AutoModelForCausalLM.from_pretrained(str(ckpt_dir), dtype=torch.float32)
    return hf.to(device).eval()


def flop_model(shape: dict, prompt_len: int, beam: int, id_length: int, vocab_out: int, hf_vocab: int) -> dict:
    """Matmul FLOPs per user of one recommendation (the EARN paper's Eq. 8): 2·params per row and layer,
    4·Hq·D per (query, key) pair; dense is k = N; HF copies the prompt per beam and uses the full vocabulary."""
    h, f = shape["hidden_size"], shape["intermediate_size"]
    hq, hkv, d = shape["num_attention_heads"], shape["n_kv_heads"], shape["head_dim"]
    n, k, r = shape["num_layers"], shape["split_layer"], shape["n_registers"]
    lin = 2 * (h * hq * d + 2 * h * hkv * d + hq * d * h + 3 * h * f)
    att = 4 * hq * d
    steps = id_length - 1

    def causal(p):
        return p * (p + 1) / 2

    def pipeline(kk, head_rows_vocab):
        pre = kk * (prompt_len * lin + att * causal(prompt_len)) + (n - kk) * (r * lin + att * causal(r))
        pre += 2 * h * head_rows_vocab
        dec = sum(beam * (n * lin + att * (kk * (prompt_len + t) + (n - kk) * (r + t)) + 2 * h * head_rows_vocab)
                  for t in range(1, steps + 1))
        return pre, dec

    e_pre, e_dec = pipeline(k, vocab_out)
    d_pre, d_dec = pipeline(n, vocab_out)
    hf_pre = beam * n * (prompt_len * lin + att * causal(prompt_len)) + beam * 2 * h * hf_vocab
    hf_dec = sum(beam * (n * (lin + att * (prompt_len + t)) + 2 * h * hf_vocab) for t in range(1, steps + 1))
    return {
        "earn": {"prefill": e_pre, "decode": e_dec, "total": e_pre + e_dec},
        "dense": {"prefill": d_pre, "decode": d_dec, "total": d_pre + d_dec},
        "hf": {"prefill": hf_pre, "decode": hf_dec, "total": hf_pre + hf_dec},
        "speedup_dense_over_earn": (d_pre + d_dec) / (e_pre + e_dec),
        "speedup_hf_over_earn": (hf_pre + hf_dec) / (e_pre + e_dec),
        "decode_share_earn": e_dec / (e_pre + e_dec),
    }


def _stats(runs: list[dict], warmup: int, users: int, beam: int, id_length: int) -> dict:
    med = statistics.median(r["total_s"] for r in runs)
    split = {key: statistics.median(r[key] for r in runs) for key in runs[0] if key.endswith("_s") and key != "total_s"}
    return {
        "batch": users, "repeats": len(runs), "warmup": warmup,
        "median_s": med, "min_s": min(r["total_s"] for r in runs), "max_s": max(r["total_s"] for r in runs),
        "runs_s": [r["total_s"] for r in runs],
        "per_user_s": med / users, "users_per_s": users / med,
        "generated_tokens_per_s": users * beam * id_length / med,
        "split": split, "decode_calls": runs[0].get("decode_calls"),
    }


def _export_pair(setup, cfg: BenchConfig, engines_dir: Path, say) -> dict:
    from ..export import export_onnx

    key = {"shape": setup.shape, "seed": cfg.seed, "vocab": cfg.vocab, "exporter": cfg.exporter, "form": cfg.form,
           "quantize": cfg.quantize, "n_items": cfg.n_items, "codes": cfg.codes, "id_length": cfg.id_length,
           "schema": SCHEMA_VERSION}  # what the engines in OUT/engines were built for
    key_file = engines_dir / "bench_key.json"
    if cfg.reuse_engines and key_file.is_file() and json.loads(key_file.read_text()) == key and all(
            (engines_dir / n / "manifest.json").is_file() for n in ("earn", "dense")):
        say("reusing exported engines")
        return {"earn": 0.0, "dense": 0.0, "reused": True}
    items = setup.item_token_ids if cfg.vocab == "items" else None
    times = {}
    for name, model in (("earn", setup.earn_model), ("dense", setup.dense_model)):
        say(f"exporting {name} ({cfg.exporter})")
        t = time.perf_counter()
        export_onnx(model, engines_dir / name, vocab=cfg.vocab, trie=setup.trie, item_token_ids=items,
                    exporter=cfg.exporter, form=cfg.form, quantize=cfg.quantize)
        times[name] = time.perf_counter() - t
    key_file.write_text(json.dumps(key, indent=1))
    return {**times, "reused": False}


def _ort_backend(engine_dir, cfg: BenchConfig):
    import onnxruntime as ort

    from ..runtime.backends import OrtBackend

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = cfg.ort_threads  # 0: ONNX Runtime's default
    return OrtBackend(engine_dir, providers=["CPUExecutionProvider"] if cfg.device == "cpu" else None,
                      session_options=opts)


def run_bench(cfg: BenchConfig, progress: bool = True, log=print) -> dict:
    """Run the benchmark; writes ``bench.json``, ``bench.md`` and ``speedup.png`` under ``cfg.out``."""
    import torch
    from tqdm.auto import tqdm

    from ..model import KVShape, kv_report
    from ..runtime.backends import TorchBackend
    from . import report
    from .synthetic import TrieWalker, build_setup

    cfg.validate()
    t_start = time.perf_counter()
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    say = (lambda msg: log(f"[bench {time.perf_counter() - t_start:6.1f}s] {msg}")) if log else (lambda msg: None)
    info = machine_info(cfg)
    say(f"{info['cpu_count']} CPUs, torch {info['torch']} ({info['torch_threads']} threads), "
        f"onnxruntime {info['onnxruntime']}, load average {info['loadavg_start']}")

    t = time.perf_counter()
    setup = build_setup(cfg.preset, cfg.split_layer, cfg.vocab_size, cfg.id_length, cfg.codes, cfg.n_items,
                        cfg.seed, max(cfg.prompt_lens), cfg.overrides)
    shape = setup.shape
    n, k = shape["num_layers"], shape["split_layer"]
    build_s = time.perf_counter() - t
    say(f"model {shape['hidden_size']}h x {n} layers (k={k}), {shape['parameters'] / 1e6:.1f}M params, "
        f"{len(setup.paths)} items; built in {build_s:.1f}s")
    engines_dir = out / "engines"
    export_s = _export_pair(setup, cfg, engines_dir, say)

    device = cfg.device
    backends: dict[str, TimedBackend] = {}
    if "ort" in cfg.backends:
        for name in ("earn", "dense"):
            backends[f"ort_{name}"] = TimedBackend(_ort_backend(engines_dir / name, cfg), "ort")
    hf = walker = None
    hf_load_s = 0.0
    if "hf" in cfg.backends:
        t = time.perf_counter()
        hf_dir = out / "hf_dense"
        setup.dense_model.save_pretrained(hf_dir)  # same weights, read back by AutoModelForCausalLM
        hf = load_hf_model(hf_dir, device)
        walker = TrieWalker(setup.trie, 0)
        # warm-up: one short generate call (lazy init of generation config, kernels, caches)
        ids, mask = setup.prompts(16, 1, seed=cfg.seed)
        hf_generate(hf, ids, mask, max(cfg.beams), cfg.id_length, walker, device)
        hf_load_s = time.perf_counter() - t

    head = setup.item_token_ids if cfg.vocab == "items" else None
    if "torch" in cfg.backends:
        if device != "cpu":
            setup.earn_model.to(device)  # the dense model shares these parameters
        for name, model in (("torch_earn", setup.earn_model), ("torch_dense", setup.dense_model)):
            backends[name] = TimedBackend(TorchBackend(model, head, device=torch.device(device)), "torch")

    settings = []
    combos = [(p, b, bm) for p in cfg.prompt_lens for b in cfg.batch_sizes for bm in cfg.beams]
    run_hf = hf is not None

    def plan(name):  # (warm-up runs, timed runs) of a job
        if name.startswith("torch"):
            return cfg.torch_warmup, cfg.torch_repeats
        if name.endswith("@hf"):
            return 0, cfg.repeats  # same sessions as the batch-size jobs, already warm
        return cfg.warmup, cfg.repeats

    def setting_jobs(b):  # (timed jobs, the HF batch) of one setting
        hb = min(cfg.hf_batch, b) if run_hf else None
        # ORT again at the HF batch, per-user times compared with HF's
        extra = ["ort_earn@hf", "ort_dense@hf"] if run_hf and hb != b and "ort" in cfg.backends else []
        return [*backends, *extra], hb

    n_jobs = sum(sum(plan(name)) for _, b, _ in combos for name in setting_jobs(b)[0])
    n_jobs += len(combos) * cfg.hf_repeats if run_hf else 0
    bar = tqdm(total=n_jobs, desc="bench", unit="run", disable=not progress, dynamic_ncols=True)
    kv_shape = KVShape(n, shape["n_kv_heads"], shape["head_dim"], 4)
    vocab_out = len(setup.item_token_ids) if cfg.vocab == "items" else shape["vocab_size"]

    for p, b, bm in combos:
        bar.set_postfix_str(f"P={p} B={b} beam={bm}")
        ids, mask = setup.prompts(p, b, seed=cfg.seed)
        names, hb = setting_jobs(b)
        users = {name: hb if name.endswith("@hf") else b for name in names}  # per job; hf_dense: hb
        jobs = {name: (backends[name.removesuffix("@hf")], ids[:u], mask[:u]) for name, u in users.items()}
        records: dict[str, list] = {name: [] for name in jobs}
        results: dict[str, object] = {}
        kv_measured: dict[str, dict] = {}
        for name, (tb, x, m) in jobs.items():
            for _ in range(plan(name)[0]):
                _run_search(tb, setup.trie, x, m, bm)
                bar.update(1)
        for rep in range(max(plan(name)[1] for name in jobs)):  # round-robin: load changes hit every job alike
            for name, (tb, x, m) in jobs.items():
                if rep >= plan(name)[1]:
                    continue
                rec, res = _run_search(tb, setup.trie, x, m, bm)
                records[name].append(rec)
                results[name] = res
                if len(x) == b:
                    kv_measured[name] = tb.kv_bytes()
                bar.update(1)
        # ORT jobs at the HF batch ran `repeats` times above; HF itself runs hf_repeats times
        hf_items = hf_kv = None
        for _ in range(cfg.hf_repeats if run_hf else 0):
            rec, hf_items, hf_kv = hf_generate(hf, ids[:hb], mask[:hb], bm, cfg.id_length, walker, device)
            records.setdefault("hf_dense", []).append(rec)
            bar.update(1)
        users["hf_dense"] = hb
        runs = {name: _stats(recs, 0 if name == "hf_dense" else plan(name)[0], users[name], bm, cfg.id_length)
                for name, recs in records.items()}
        formula = kv_report(kv_shape, batch=b, beam=bm, prompt_len=p, steps=cfg.id_length - 1, split_layer=k,
                            n_registers=shape["n_registers"])
        if hf_kv is not None:
            kv_measured["hf_dense"] = {"total_bytes": int(hf_kv), "batch": hb}
        hf_formula = kv_report(kv_shape, batch=hb, beam=bm, prompt_len=p, steps=cfg.id_length - 1, split_layer=k,
                               n_registers=shape["n_registers"])["hf_beam_bytes"] if run_hf else None
        expected = {"earn": formula["earn_bytes"], "dense": formula["dense_bytes"]}
        agree = {name: meas["total_bytes"] == (hf_formula if name == "hf_dense" else expected[name.split("_")[-1]])
                 for name, meas in kv_measured.items()}
        bound = n / k
        speedup, fraction = {}, {}
        for kind in ("ort", "torch"):
            if f"{kind}_earn" in runs and f"{kind}_dense" in runs:
                speedup[kind] = runs[f"{kind}_dense"]["median_s"] / runs[f"{kind}_earn"]["median_s"]
                fraction[kind] = speedup[kind] / bound
        if "hf_dense" in runs and "ort" in cfg.backends:
            hf_user = runs["hf_dense"]["per_user_s"]  # against ORT at the HF batch where it ran there
            speedup["ort_earn_vs_hf"] = hf_user / runs.get("ort_earn@hf", runs["ort_earn"])["per_user_s"]
            speedup["ort_dense_vs_hf"] = hf_user / runs.get("ort_dense@hf", runs["ort_dense"])["per_user_s"]
            speedup["ort_earn_vs_hf_at_batch"] = hf_user / runs["ort_earn"]["per_user_s"]
        if "hf_dense" in runs and "torch" in cfg.backends:
            speedup["torch_dense_vs_hf"] = runs["hf_dense"]["per_user_s"] / runs["torch_dense"]["per_user_s"]
        checks = {}
        for model in ("dense", "earn"):
            if f"ort_{model}" in results and f"torch_{model}" in results:
                a, c = (np.asarray(results[f"{kind}_{model}"].items) for kind in ("ort", "torch"))
                if model == "dense":
                    checks["dense_ort_items_equal_torch"] = bool(np.array_equal(a, c))
                checks[f"{model}_ort_torch_item_agreement"] = float((a == c).mean())
        if hf_items is not None:
            checks["hf_valid_item_fraction"] = float((hf_items >= 0).mean())
        for name, res in results.items():
            if name in ("ort_earn", "ort_dense", "torch_earn", "torch_dense"):
                checks[f"{name}_valid_item_fraction"] = float((np.asarray(res.items) >= 0).mean())
        settings.append({
            "prompt_len": p, "batch": b, "beam": bm, "id_length": cfg.id_length, "hf_batch": hb,
            "runs": runs, "speedup": speedup, "bound_N_over_k": bound, "fraction_of_bound": fraction,
            "flop_model": flop_model(shape, p, bm, cfg.id_length, vocab_out, shape["vocab_size"]),
            "kv": {"formula": formula, "hf_formula_at_hf_batch": hf_formula, "measured": kv_measured,
                   "measured_equals_formula": agree},
            "checks": checks,
        })
    bar.close()

    info["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    info["busy_warning"] = busy_warning(info)
    if info["busy_warning"]:
        say("WARNING: " + info["busy_warning"])
    result = {
        "schema_version": SCHEMA_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "config": asdict(cfg),
        "machine": info, "model": shape,
        "catalog": {"n_items": len(setup.paths), "id_length": cfg.id_length, "codes_per_level": cfg.codes,
                    "trie_nodes": int(len(np.asarray(setup.trie.leaf_item))), "vocab_out": vocab_out},
        "timings": {"build_s": build_s, "export_s": export_s, "hf_load_and_warmup_s": hf_load_s},
        "settings": settings,
    }
    result["timings"]["total_s"] = time.perf_counter() - t_start
    report.write_all(result, out)
    say(f"done in {result['timings']['total_s']:.0f}s; wrote {out / 'bench.json'}, {out / 'bench.md'}, "
        f"{out / 'speedup.png'}")
    return result
