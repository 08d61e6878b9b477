"""PNG figures of an analysis: Fig.-2-style attention maps, per-layer metric curves (several checkpoints side by
side), and the per-layer attention mass that flows to the registers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .metrics import GROUPS

_GROUP_COLORS = {"bos": "#7f7f7f", "prefix_register": "#d62728", "instruction": "#1f77b4", "history": "#2ca02c",
                 "suffix_register": "#ff7f0e", "target": "#8c564b", "text": "#9467bd"}
_STYLES = ["-", "--", ":", "-."]


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (also for the bench's speedup.png)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(plt, fig, path) -> Path:
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _layer_axis(ax, n_layers: int, splits: list[int]) -> None:
    ax.set_xticks(range(n_layers))
    ax.set_xlabel("layer")
    for k in sorted(set(splits)):
        if 0 < k < n_layers:
            ax.axvline(k - 0.5, color="grey", lw=0.8, ls="--")
    ax.grid(alpha=0.3)


def attention_maps(path, maps: dict, groups: list[int], heads: list[int], title: str, split_layer: int,
                   num_layers: int) -> Path:
    """One panel per kept layer: the attention of one sequence (mean over ``heads``), log colour scale, with the
    token groups drawn as a colour bar along both axes."""
    from matplotlib.colors import LogNorm

    plt = pyplot()
    layers = sorted(maps)
    cols = min(4, len(layers))
    rows = int(np.ceil(len(layers) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols + 1.2, 3.4 * rows + 0.9), squeeze=False,
                             layout="constrained")
    g = np.asarray(groups)
    for ax in axes.flat[len(layers):]:
        ax.axis("off")
    im = None
    for ax, layer in zip(axes.flat, layers):
        a = maps[layer][heads].mean(axis=0)
        n = a.shape[0]
        shown = np.where(np.tril(np.ones((n, n), dtype=bool)), np.maximum(a, 1e-4), np.nan)
        im = ax.imshow(shown, norm=LogNorm(vmin=1e-4, vmax=1.0), cmap="viridis", interpolation="nearest")
        side = "< k" if layer < split_layer else ">= k"
        ax.set_title(f"layer {layer} ({side})" if split_layer < num_layers else f"layer {layer}", fontsize=9)
        ax.set_xlabel("key position", fontsize=8)
        ax.set_ylabel("query position", fontsize=8)
        ax.tick_params(labelsize=7)
        for gi, name in enumerate(GROUPS):  # group strip under the map
            pos = np.flatnonzero(g == gi)
            if len(pos):
                ax.scatter(pos, np.full(len(pos), n + 1.5), s=4, marker="s", color=_GROUP_COLORS[name],
                           label=name, clip_on=False)
        ax.set_ylim(n + 2.5, -0.5)
    handles = [plt.Line2D([], [], marker="s", ls="", color=_GROUP_COLORS[GROUPS[gi]], label=GROUPS[gi])
               for gi in sorted(set(g.tolist())) if gi >= 0]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
    head_txt = "all heads (mean)" if len(heads) > 1 else f"head {heads[0]}"
    fig.suptitle(f"{title}: attention of one median-length sequence, {head_txt}", fontsize=10)
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="attention probability (log)")
    return save_figure(plt, fig, path)


_CURVES = [("sparsity", "all", "Sparsity (share of keys with p > 0.05)"),
           ("sink_head", "all", "Sink_head (mass on first 3 keys)"),
           ("sink_tail", "all", "Sink_tail (mass on last 3 keys)"),
           ("entropy", "all", "attention entropy (nats)"),
           ("topk_mass", "all", "top-k attention mass"),
           ("mass_history", "last", "last row -> history tokens")]


def metric_curves(path, series: list[dict], num_layers: int) -> Path:
    """``series``: {label, summary (corpus_summary), k}. One panel per metric, one line per series."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for ax, (metric, qset, title) in zip(axes.flat, _CURVES):
        for i, s in enumerate(series):
            y = [np.nan if v is None else v for v in s["summary"]["query_sets"][qset]["per_layer"][metric]]
            ax.plot(range(len(y)), y, _STYLES[i % len(_STYLES)], marker="o", ms=4, label=s["label"])
        ax.set_title(title + ("" if qset == "all" else " (suffix-register row)"), fontsize=9)
        _layer_axis(ax, num_layers, [s["k"] for s in series])
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("attention per layer, all query rows (dashed line: split layer k)", fontsize=10)
    fig.tight_layout()
    return save_figure(plt, fig, path)


def register_mass(path, series: list[dict], num_layers: int) -> Path:
    """Per layer: mass the suffix-register row sends to each prompt group, and the mass all rows send to the
    prefix register (the head sink)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for i, s in enumerate(series):
        ls = _STYLES[i % len(_STYLES)]
        last = s["summary"]["query_sets"]["last"]["per_layer"]
        allr = s["summary"]["query_sets"]["all"]["per_layer"]
        for g in ("prefix_register", "suffix_register", "history", "instruction"):
            y = [np.nan if v is None else v for v in last[f"mass_{g}"]]
            axes[0].plot(range(len(y)), y, ls, marker="o", ms=4, color=_GROUP_COLORS[g], label=f"{s['label']}: {g}")
        reg = [np.nan if a is None else a + (b or 0.0) for a, b in zip(allr["mass_prefix_register"],
                                                                        allr["mass_suffix_register"])]
        axes[1].plot(range(len(reg)), reg, ls, marker="o", ms=4, label=s["label"])
    axes[0].set_title("suffix-register row: attention mass per token group", fontsize=9)
    axes[1].set_title("all rows: attention mass on the register tokens", fontsize=9)
    for ax in axes:
        _layer_axis(ax, num_layers, [s["k"] for s in series])
        ax.set_ylim(-0.02, 1.02)
    axes[0].legend(fontsize=7, ncol=2)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return save_figure(plt, fig, path)
