"""``python benchmarks/attention_op.py``: EARN decode with the ``earn::CompactedAttention`` custom op against the
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

    from earn_export.export import export_onnx
    from earn_export.ops import libraries
    from earn_export.bench.harness import TimedBackend, _ort_backend, _run_search, busy_warning, machine_info
    from earn_export.bench.synthetic import build_setup

    if libraries.ort_ops_library() is None:
        raise ValueError(f"the ONNX Runtime custom-op library is not built: {libraries.BUILD_HINT}")
    t0 = time.perf_counter()
    say = (lambda msg: log(f"[attention_op {time.perf_counter() - t0:6.1f}s] {msg}")) if log else (lambda m: None)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    info = machine_info(cfg)
    setup = build_setup(cfg.preset, cfg.split_layer, cfg.vocab_size, cfg.id_length, cfg.codes, cfg.n_items,
                        cfg.seed, max(cfg.prompt_lens), cfg.overrides)
    shape = setup.shape
    say(f"model {shape['hidden_size']}h x {shape['num_layers']} layers (k={shape['split_layer']}), "
        f"{shape['num_attention_heads']}:{shape['n_kv_heads']} heads, head_dim {shape['head_dim']}")
    items = setup.item_token_ids if cfg.vocab == "items" else None
    backends, engine_dirs = {}, {}
    key = json.dumps({"shape": shape, "seed": cfg.seed, "vocab": cfg.vocab, "exporter": cfg.exporter,
                      "n_items": cfg.n_items, "codes": cfg.codes, "id_length": cfg.id_length}, sort_keys=True)
    for mode in ("onnx", "plugin"):
        d = out / "engines" / f"earn-{mode}"
        engine_dirs[mode] = d
        if cfg.reuse_engines and (d / "bench_key.json").is_file() and (d / "bench_key.json").read_text() == key:
            say(f"reusing the --attention {mode} engine")
        else:
            say(f"exporting EARN with --attention {mode}")
            export_onnx(setup.earn_model, d, vocab=cfg.vocab, trie=setup.trie, item_token_ids=items,
                        exporter=cfg.exporter, attention=mode)
            (d / "bench_key.json").write_text(key)
        backends[mode] = TimedBackend(_ort_backend(d, cfg), "ort")

    combos = [(p, b, bm) for p in cfg.prompt_lens for b in cfg.batch_sizes for bm in cfg.beams]
    bar = tqdm(total=len(combos) * 2 * (cfg.warmup + cfg.repeats), desc="attention_op", unit="run",
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
    say("decode graph alone: 1 thread, CPU time per call")
    decode_rows = decode_cpu(engine_dirs, setup, cfg.prompt_lens, cfg.batch_sizes[0], cfg.beams[0])
    say("op alone: one early layer's attention, plain subgraph vs the custom op (1 thread, CPU time)")
    op_rows = op_micro(shape, cfg.prompt_lens, cfg.batch_sizes[0], cfg.beams[0], out / "op")
    info["loadavg_end"] = __import__("os").getloadavg()
    result = {"kind": "benchmarks/attention_op.py", "model": shape, "machine": info,
              "ort_ops": str(libraries.ort_ops_library()),
              "ort_ops_kernel": libraries.ort_ops_info(libraries.ort_ops_library()).get("kernel"),
              "config": {"preset": cfg.preset, "warmup": cfg.warmup, "repeats": cfg.repeats,
                         "exporter": cfg.exporter, "vocab": cfg.vocab, "ort_threads": cfg.ort_threads or "default"},
              "rows": rows, "decode_rows": decode_rows, "op_rows": op_rows, "busy_warning": busy_warning(info), "wall_s": time.perf_counter() - t0}
    (out / "attention.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "attention.md").write_text(markdown(result) + "\n")
    return result


def decode_cpu(engine_dirs: dict, setup, prompt_lens, batch: int, beam: int, repeats: int = 7,
               calls: int = 5) -> list[dict]:
    """One decode call (the first: each beam's first identifier token) of both engines on one ONNX Runtime thread,
    timed as thread CPU time: the decode-time ratio, little affected by other processes on a busy machine."""
    import numpy as np
    import onnxruntime as ort

    from earn_export.runtime.backends import OrtBackend

    def backend(d):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        return OrtBackend(d, providers=["CPUExecutionProvider"], session_options=opts, verify=False)

    bes = {m: backend(d) for m, d in engine_dirs.items()}
    first = np.asarray(setup.trie.tokens[setup.trie.offsets[0]:setup.trie.offsets[1]], dtype=np.int64)
    rows = []
    for p in prompt_lens:
        ids, mask = setup.prompts(p, batch, seed=0)
        tokens = np.resize(first, (batch, beam)).astype(np.int64)
        parents = np.zeros((batch, beam), np.int64)
        states = {m: be.prefill(ids, mask)[1] for m, be in bes.items()}
        outs = {m: be.decode(states[m], tokens, parents, 1)[0] for m, be in bes.items()}
        cpu = {m: [] for m in bes}
        for _ in range(repeats):
            for m, be in bes.items():
                c = time.thread_time()
                for _ in range(calls):
                    be.decode(states[m], tokens, parents, 1)
                cpu[m].append((time.thread_time() - c) / calls)
        best = {m: min(v) for m, v in cpu.items()}
        rows.append({"prompt_len": p, "batch": batch, "beam": beam, "cpu_s": best,
                     "ratio_plain_over_plugin": best["onnx"] / best["plugin"],
                     "max_abs_logprob_diff": float(np.abs(outs["onnx"] - outs["plugin"]).max())})
    return rows


def op_micro(shape: dict, prompt_lens, batch: int, beam: int, out_dir: Path, id_length: int = 4,
             repeats: int = 7, calls: int = 20) -> list[dict]:
    """The attention of one layer < k alone: the plain graph's ops (the reference traced by the TorchScript exporter)
    vs one custom-op node, one ONNX Runtime thread, thread CPU time per call (little affected by other processes:
    the decode-graph figures above are wall time). Inputs: the decode query of ``beam`` beams x ``batch`` users,
    the shared prompt KV of ``prompt_len`` rows, ``id_length - 1`` generated tokens per beam."""
    import warnings

    import numpy as np
    import onnxruntime as ort
    import torch

    from earn_export.ops import libraries
    from earn_export.ops.compacted_attention import compacted_attention, emit_op
    from earn_export.ops.onnx_emit import exporter_kwargs

    hq, hkv, d = shape["num_attention_heads"], shape["n_kv_heads"], shape["head_dim"]
    t = id_length - 1
    names = ["query", "shared_key", "shared_value", "key_bias", "gen_key", "gen_value"]

    class Layer(torch.nn.Module):
        def forward(self, q, sk, sv, kb, gk, gv):
            return compacted_attention(q, sk, sv, kb, gk, gv, hq, hkv, d, d ** -0.5)

    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for p in prompt_lens:
        g = torch.Generator().manual_seed(p)
        x = (torch.randn(batch, beam, hq, 1, d, generator=g), torch.randn(batch, hkv, p, d, generator=g),
             torch.randn(batch, hkv, p, d, generator=g), torch.zeros(batch, p),
             torch.randn(batch, beam, hkv, t, d, generator=g), torch.randn(batch, beam, hkv, t, d, generator=g))
        paths = {m: out_dir / f"attention-{m}-{p}.onnx" for m in ("onnx", "plugin")}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(Layer(), x, str(paths["onnx"]), dynamo=False, input_names=names, output_names=["out"],
                              opset_version=18)
            with emit_op():
                torch.onnx.export(Layer(), x, str(paths["plugin"]), dynamo=False, input_names=names,
                                  output_names=["out"], opset_version=18, **exporter_kwargs("torchscript"))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.register_custom_ops_library(str(libraries.ort_ops_library()))
        sessions = {m: ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
                    for m, path in paths.items()}
        feeds = {n: v.numpy() for n, v in zip(names, x)}
        outs = {m: s.run(None, feeds)[0] for m, s in sessions.items()}
        cpu = {m: [] for m in sessions}
        for _ in range(repeats):
            for m, s in sessions.items():
                c = time.thread_time()
                for _ in range(calls):
                    s.run(None, feeds)
                cpu[m].append((time.thread_time() - c) / calls)
        best = {m: min(v) for m, v in cpu.items()}
        rows.append({"prompt_len": p, "batch": batch, "beam": beam, "heads": [hq, hkv, d],
                     "cpu_s": best, "ratio_plain_over_plugin": best["onnx"] / best["plugin"],
                     "max_abs_diff": float(np.abs(outs["onnx"].reshape(outs["plugin"].shape) - outs["plugin"]).max())})
    return rows


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
    if result.get("decode_rows"):
        lines += ["", "One decode call (all 16 layers, LM head), 1 ONNX Runtime thread, thread CPU time per call, best "
                  "of 7 x 5 (little affected by other processes):", "",
                  "| prompt | batch x beam | plain graph ms | plugin graph ms | **plain / plugin** | max abs log-prob diff |",
                  "|---:|---:|---:|---:|---:|---:|"]
        for r in result["decode_rows"]:
            lines.append(f"| {r['prompt_len']} | {r['batch']} x {r['beam']} | {1000 * r['cpu_s']['onnx']:.1f} | "
                         f"{1000 * r['cpu_s']['plugin']:.1f} | **{r['ratio_plain_over_plugin']:.2f}x** | "
                         f"{r['max_abs_logprob_diff']:.1e} |")
    if result.get("op_rows"):
        lines += ["", "The op alone (one layer < k, 1 ONNX Runtime thread, thread CPU time per call, best of 7 x 20):", "",
                  "| prompt | batch x beam | heads (Hq:Hkv, D) | plain ops ms | custom op ms | **plain / op** | max abs diff |",
                  "|---:|---:|---|---:|---:|---:|---:|"]
        for r in result["op_rows"]:
            hq, hkv, d = r["heads"]
            lines.append(f"| {r['prompt_len']} | {r['batch']} x {r['beam']} | {hq}:{hkv}, {d} | "
                         f"{1000 * r['cpu_s']['onnx']:.2f} | {1000 * r['cpu_s']['plugin']:.2f} | "
                         f"**{r['ratio_plain_over_plugin']:.2f}x** | {r['max_abs_diff']:.1e} |")
    if result.get("busy_warning"):
        lines += ["", f"Note: {result['busy_warning']}"]
    return "\n".join(lines)


def main(argv=None) -> int:
    from earn_export.bench.cli import add_bench_options, config_from_args
    from earn_export.cli import Parser

    p = Parser(prog="python benchmarks/attention_op.py", description=__doc__.splitlines()[0])
    add_bench_options(p)
    p.set_defaults(out="results/attention-op")
    args = p.parse_args(argv)
    result = run_attention_bench(config_from_args(args), progress=not args.quiet)
    print()
    print(markdown(result))
    return 0


if __name__ == "__main__":
    from earn_export.cli import run_script

    raise SystemExit(run_script(main))
