"""Benchmark outputs: ``bench.json`` (everything), ``bench.md`` (tables) and ``speedup.png`` (speedup vs prompt length)."""

from __future__ import annotations

import json
from pathlib import Path

MB = 1024 * 1024


def _f(x, nd=2, suffix=""):
    return "–" if x is None else f"{x:.{nd}f}{suffix}"


def _ms(x):
    return "–" if x is None else f"{1000 * x:.0f}"


def markdown(result: dict) -> str:
    """The result tables (speed, vs HF, time split, KV bytes) as GitHub markdown."""
    m, mach, cfg = result["model"], result["machine"], result["config"]
    n, k = m["num_layers"], m["split_layer"]
    lines = [
        f"Model: random-weight Llama, hidden {m['hidden_size']}, {n} layers, {m['num_attention_heads']} heads "
        f"({m['n_kv_heads']} KV), FFN {m['intermediate_size']}, vocab {m['vocab_size']}, EARN k = {k}, "
        f"R = {m['n_registers']} registers, N/k = {n / k:g}. Catalog: {result['catalog']['n_items']} items, "
        f"{result['catalog']['id_length']}-token identifiers, output head = {result['catalog']['vocab_out']} tokens "
        f"(`--vocab {cfg['vocab']}`). Machine: {mach['cpu_count']} CPUs ({mach['cpu_model']}), torch "
        f"{mach['torch']} with {mach['torch_threads']} threads, onnxruntime {mach['onnxruntime']}, device "
        f"`{mach['device']}`, load average {_load(mach.get('loadavg_start'))} at start / "
        f"{_load(mach.get('loadavg_end'))} at end. ORT: median of {cfg['repeats']} runs after {cfg['warmup']} warm-up; "
        f"PyTorch: median of {cfg.get('torch_repeats', cfg['repeats'])} after {cfg.get('torch_warmup', cfg['warmup'])}; "
        f"HF: {cfg['hf_repeats']} run(s) after one short warm-up call. Total bench time "
        f"{result['timings']['total_s']:.0f} s (exports {_export_s(result)} s)."]
    if mach.get("busy_warning"):
        lines += ["", f"> **Warning:** {mach['busy_warning']}"]
    lines += ["", "**Speed: EARN vs dense (same shape, same weights), end-to-end recommendation**", "",
              "| prompt | batch | beam | EARN ORT s | dense ORT s | **EARN/dense ORT** | EARN/dense torch | "
              "N/k | ORT fraction of N/k | FLOP-model speedup | EARN ORT users/s | EARN ORT tokens/s |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in result["settings"]:
        e, d = s["runs"].get("ort_earn"), s["runs"].get("ort_dense")
        sp = s["speedup"]
        lines.append(
            f"| {s['prompt_len']} | {s['batch']} | {s['beam']} | {_f(e and e['median_s'], 3)} | "
            f"{_f(d and d['median_s'], 3)} | **{_f(sp.get('ort'), 2, '×')}** | {_f(sp.get('torch'), 2, '×')} | "
            f"{s['bound_N_over_k']:g} | {_f(s['fraction_of_bound'].get('ort'), 2)} | "
            f"{_f(s['flop_model']['speedup_dense_over_earn'], 2, '×')} | {_f(e and e['users_per_s'], 2)} | "
            f"{_f(e and e['generated_tokens_per_s'], 0)} |")
    if any("hf_dense" in s["runs"] for s in result["settings"]):
        lines += ["", "**Against Hugging Face `generate(num_beams, prefix_allowed_tokens_fn=trie)` on the dense model** "
                  "(per user, ORT timed at the HF batch size)", "",
                  "| prompt | HF batch | HF s/user | HF prefill / decode / rest s | EARN ORT s/user | dense ORT s/user | "
                  "**EARN ORT vs HF** | dense ORT vs HF | dense torch vs HF | FLOP ratio HF/EARN |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for s in result["settings"]:
            h = s["runs"].get("hf_dense")
            if not h:
                continue
            e = s["runs"].get("ort_earn@hf") or s["runs"].get("ort_earn")
            d = s["runs"].get("ort_dense@hf") or s["runs"].get("ort_dense")
            sp, sl = s["speedup"], h["split"]
            lines.append(
                f"| {s['prompt_len']} | {s['hf_batch']} | {_f(h['per_user_s'], 2)} | "
                f"{_f(sl.get('prefill_s'), 2)} / {_f(sl.get('decode_s'), 2)} / {_f(sl.get('search_bookkeeping_s'), 2)} | "
                f"{_f(e and e['per_user_s'], 3)} | {_f(d and d['per_user_s'], 3)} | "
                f"**{_f(sp.get('ort_earn_vs_hf'), 1, '×')}** | {_f(sp.get('ort_dense_vs_hf'), 1, '×')} | "
                f"{_f(sp.get('torch_dense_vs_hf'), 1, '×')} | {_f(s['flop_model']['speedup_hf_over_earn'], 1, '×')} |")
    lines += ["", "**Where the time goes (ORT, ms per batch, medians)**: prefill graph, decode graphs (all L-1 calls), "
              "backend overhead (KV reorder by beam parents, numpy/OrtValue copies), search bookkeeping (trie mask, "
              "top-k over beam × children, paths)", "",
              "| prompt | batch | model | total | prefill graph | decode graphs | backend overhead | search bookkeeping |",
              "|---:|---:|---|---:|---:|---:|---:|---:|"]
    for s in result["settings"]:
        for name in ("ort_earn", "ort_dense"):
            r = s["runs"].get(name)
            if not r:
                continue
            sl = r["split"]
            lines.append(
                f"| {s['prompt_len']} | {s['batch']} | {name[4:]} | {_ms(r['median_s'])} | {_ms(sl.get('prefill_graph_s'))} | "
                f"{_ms(sl.get('decode_graph_s'))} | {_ms(sl.get('backend_overhead_s'))} | "
                f"{_ms(sl.get('search_bookkeeping_s'))} |")
    lines += ["", "**KV cache bytes** (whole batch, after the last decode step; measured = sum of `nbytes` of the cache "
              "tensors, formula = `kv_cache_bytes.kv_report`)", "",
              "| prompt | batch | beam | EARN measured MB | EARN formula MB | dense measured MB | dense formula MB | "
              "HF beam formula MB | EARN reduction vs dense | vs HF | measured = formula |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for s in result["settings"]:
        kv = s["kv"]
        f, meas = kv["formula"], kv["measured"]
        em = (meas.get("ort_earn") or meas.get("torch_earn") or {}).get("total_bytes")
        dm = (meas.get("ort_dense") or meas.get("torch_dense") or {}).get("total_bytes")
        ok = kv["measured_equals_formula"]
        lines.append(
            f"| {s['prompt_len']} | {s['batch']} | {s['beam']} | {_f(em and em / MB, 2)} | {f['earn_bytes'] / MB:.2f} | "
            f"{_f(dm and dm / MB, 2)} | {f['dense_bytes'] / MB:.2f} | {f['hf_beam_bytes'] / MB:.2f} | "
            f"{100 * f['reduction_vs_dense']:.1f}% | {100 * f['reduction_vs_hf']:.1f}% | "
            f"{'yes' if ok and all(ok.values()) else ('no: ' + str(ok) if ok else '–')} |")
    return "\n".join(lines) + "\n"


def _load(x):
    return "?" if not x else "/".join(f"{v:.1f}" for v in x)


def _export_s(result):
    ex = result["timings"]["export_s"]
    return "0 (reused)" if ex.get("reused") else f"{sum(v for k, v in ex.items() if k != 'reused'):.0f}"


def plot(result: dict, path) -> Path:
    """speedup.png: left, EARN/dense per backend with N/k and the FLOP model; right, speedups over HF generate."""
    from ..analysis.plots import pyplot, save_figure

    plt = pyplot()
    settings = result["settings"]
    groups: dict[tuple, list] = {}
    for s in settings:
        groups.setdefault((s["batch"], s["beam"]), []).append(s)
    multi = len(groups) > 1
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.6))
    for (b, bm), ss in groups.items():
        ss = sorted(ss, key=lambda s: s["prompt_len"])
        xs = [s["prompt_len"] for s in ss]
        tag = f" (batch {b}, beam {bm})" if multi else ""
        for kind, style in (("ort", "o-"), ("torch", "s-")):
            ys = [s["speedup"].get(kind) for s in ss]
            if any(y is not None for y in ys):
                ax1.plot(xs, [y if y is not None else float("nan") for y in ys], style,
                         label=f"{'ONNX Runtime' if kind == 'ort' else 'PyTorch'} EARN/dense{tag}")
        ax1.plot(xs, [s["flop_model"]["speedup_dense_over_earn"] for s in ss], ":", color="gray",
                 label=f"FLOP model{tag}")
        for key, style, label in (("ort_earn_vs_hf", "o-", "EARN ORT vs HF generate"),
                                  ("ort_dense_vs_hf", "^-", "dense ORT vs HF generate"),
                                  ("torch_dense_vs_hf", "s-", "dense PyTorch vs HF generate")):
            pts = [(s["prompt_len"], s["speedup"][key]) for s in ss if key in s["speedup"]]
            if pts:
                ax2.plot(*zip(*pts), style, label=label + tag)
    bound = settings[0]["bound_N_over_k"] if settings else None
    if bound:
        ax1.axhline(bound, ls="--", color="k", lw=1, label=f"bound N/k = {bound:g}")
        ax1.axhline(0.6 * bound, ls="--", color="tab:red", lw=0.8, label=f"target 0.6·N/k = {0.6 * bound:g}")
    ax1.axhline(1.0, color="gray", lw=0.5)
    ax1.set_ylim(bottom=0)
    ax2.axhline(10.0, ls="--", color="tab:red", lw=0.8, label="target 10×")
    ax2.set_yscale("log")
    for ax, ylabel, title in ((ax1, "speedup (dense time / EARN time)", "EARN over dense, end-to-end"),
                              (ax2, "speedup over HF generate (per user)", "over HF generate (dense, constrained beam search)")):
        ax.set(xlabel="prompt length (tokens)", ylabel=ylabel, title=title)
        ax.legend(fontsize=8)
    m = result["model"]
    fig.suptitle(f"{m['hidden_size']}h × {m['num_layers']} layers, k = {m['split_layer']}, "
                 f"{result['machine']['cpu_count']} CPUs, device {result['machine']['device']}", fontsize=10)
    fig.tight_layout()
    return save_figure(plt, fig, path)


def write_all(result: dict, out: Path) -> None:
    (out / "bench.json").write_text(json.dumps(result, indent=1, default=_json_default) + "\n")
    (out / "bench.md").write_text(markdown(result))
    plot(result, out / "speedup.png")


def _json_default(o):
    import numpy as np

    if isinstance(o, (np.generic, np.ndarray)):
        return o.tolist()
    return list(o) if isinstance(o, tuple) else str(o)
