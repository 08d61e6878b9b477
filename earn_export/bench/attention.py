"""``earn-export bench --attention plugin``: EARN decode with the ``earn::CompactedAttention`` custom op against the
plain decode graph, on ONNX Runtime CPU.

The same random-weight EARN model (the benchmark preset) is exported twice, ``--attention onnx`` and
``--attention plugin`` (TorchScript exporter), and both engines run the whole trie-constrained beam search on the
same prompts. Reported per setting: the median time inside the decode graph's ``Run`` (the L-1 decode calls of
one search), the end-to-end search time, the ratio plain / plugin (> 1: the custom op is faster), and whether both
engines returned the same items. Jobs alternate round-robin so a change in machine load hits both alike.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path


def run_attention_bench(cfg, progress: bool = True, log=print) -> dict:
    """Writes ``attention.json`` and ``attention.md`` under ``cfg.out``; returns the result."""
    import numpy as np
    from tqdm.auto import tqdm

    from ..export import export_onnx
    from ..ops import libraries
    from .harness import TimedBackend, _ort_backend, _run_search, busy_warning, machine_info
    from .synthetic import build_setup

    if libraries.ort_ops_library() is None:
        raise ValueError(f"the ONNX Runtime custom-op library is not built: {libraries.BUILD_HINT}")
    t0 = time.perf_counter()
    say = (lambda msg: log(f"[bench --attention {time.perf_counter() - t0:6.1f}s] {msg}")) if log else (lambda m: None)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    info = machine_info(cfg)
    setup = build_setup(cfg.preset, cfg.split_layer, cfg.vocab_size, cfg.id_length, cfg.codes, cfg.n_items,
                        cfg.seed, max(cfg.prompt_lens), cfg.overrides)
    shape = setup.shape
    say(f"model {shape['hidden_size']}h x {shape['num_layers']} layers (k={shape['split_layer']}), "
        f"{shape['num_attention_heads']}:{shape['n_kv_heads']} heads, head_dim {shape['head_dim']}")
    items = setup.item_token_ids if cfg.vocab == "items" else None
    backends = {}
    for mode in ("onnx", "plugin"):
        d = out / "engines" / f"earn-{mode}"
        say(f"exporting EARN with --attention {mode}")
        export_onnx(setup.earn_model, d, vocab=cfg.vocab, trie=setup.trie, item_token_ids=items,
                    exporter=cfg.exporter, attention=mode)
        backends[mode] = TimedBackend(_ort_backend(d, cfg), "ort")

    combos = [(p, b, bm) for p in cfg.prompt_lens for b in cfg.batch_sizes for bm in cfg.beams]
    bar = tqdm(total=len(combos) * 2 * (cfg.warmup + cfg.repeats), desc="bench --attention", unit="run",
               disable=not progress)
    rows = []
    for p, b, bm in combos:
        ids, mask = setup.prompts(p, b, seed=cfg.seed)
        recs = {mode: [] for mode in backends}
        results = {}
        for mode, tb in backends.items():
            for _ in range(cfg.warmup):
                _run_search(tb, setup.trie, ids, mask, bm)
                bar.update(1)
        for _ in range(cfg.repeats):
            for mode, tb in backends.items():
                rec, res = _run_search(tb, setup.trie, ids, mask, bm)
                recs[mode].append(rec)
                results[mode] = res
                bar.update(1)
        med = {mode: {k: statistics.median(r[k] for r in rs) for k in ("decode_graph_s", "total_s")}
               for mode, rs in recs.items()}
        rows.append({
            "prompt_len": p, "batch": b, "beam": bm, "decode_calls": recs["onnx"][0]["decode_calls"],
            "decode_graph_s": {m: v["decode_graph_s"] for m, v in med.items()},
            "total_s": {m: v["total_s"] for m, v in med.items()},
            "decode_runs_s": {m: [r["decode_graph_s"] for r in rs] for m, rs in recs.items()},
            "decode_ratio_plain_over_plugin": med["onnx"]["decode_graph_s"] / med["plugin"]["decode_graph_s"],
            "total_ratio_plain_over_plugin": med["onnx"]["total_s"] / med["plugin"]["total_s"],
            "same_items": bool(np.array_equal(results["onnx"].items, results["plugin"].items)),
        })
    bar.close()
    info["loadavg_end"] = __import__("os").getloadavg()
    result = {"kind": "earn-export bench --attention plugin", "model": shape, "machine": info,
              "ort_ops": str(libraries.ort_ops_library()),
              "ort_ops_kernel": libraries.ort_ops_info(libraries.ort_ops_library()).get("kernel"),
              "config": {"preset": cfg.preset, "warmup": cfg.warmup, "repeats": cfg.repeats,
                         "exporter": cfg.exporter, "vocab": cfg.vocab, "ort_threads": cfg.ort_threads or "default"},
              "rows": rows, "busy_warning": busy_warning(info), "wall_s": time.perf_counter() - t0}
    (out / "attention.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "attention.md").write_text(markdown(result) + "\n")
    return result


def markdown(result: dict) -> str:
    m, mach = result["model"], result["machine"]
    lines = [
        f"EARN decode on ONNX Runtime CPU: plain graph (`--attention onnx`) vs one `earn::CompactedAttention` node "
        f"per layer (`--attention plugin`, {result['ort_ops_kernel']} kernel). Model: random-weight Llama, hidden "
        f"{m['hidden_size']}, {m['num_layers']} layers, {m['num_attention_heads']}:{m['n_kv_heads']} heads, head_dim "
        f"{m['head_dim']}, k = {m['split_layer']}. Machine: {mach['cpu_count']} CPUs ({mach['cpu_model']}), "
        f"onnxruntime {mach['onnxruntime']}; median of {result['config']['repeats']} interleaved runs.",
        "",
        "| prompt | batch | beam | decode graph ms, plain | decode graph ms, plugin | **plain / plugin** "
        "| search ms, plain / plugin | same items |",
        "|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for r in result["rows"]:
        d, t = r["decode_graph_s"], r["total_s"]
        lines.append(f"| {r['prompt_len']} | {r['batch']} | {r['beam']} | {1000 * d['onnx']:.1f} | "
                     f"{1000 * d['plugin']:.1f} | **{r['decode_ratio_plain_over_plugin']:.2f}x** | "
                     f"{1000 * t['onnx']:.0f} / {1000 * t['plugin']:.0f} | {'yes' if r['same_items'] else 'no'} |")
    if result.get("busy_warning"):
        lines += ["", f"Note: {result['busy_warning']}"]
    return "\n".join(lines)
