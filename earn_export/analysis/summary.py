"""Turn collected statistics into plain numbers: per layer and head, per layer over the selected heads, and
the Table-4 summary (early = layers < k, latter = layers >= k), next to the paper's rows."""

from __future__ import annotations

import numpy as np

from .metrics import GROUPS, QUERY_SETS, ROW_METRICS, TOPK

# EARN paper (arXiv 2507.00715), Table 4 (averages over tasks, datasets and backbones; k not stated)
PAPER_TABLE4 = [
    {"model": "Llama", "task": "NLP", "sp_early": 0.064, "sp_latter": 0.026, "sink_head": 0.73, "sink_tail": 0.07},
    {"model": "Llama", "task": "LLMRec", "sp_early": 0.025, "sp_latter": 0.048, "sink_head": 0.56, "sink_tail": 0.09},
    {"model": "Qwen", "task": "NLP", "sp_early": 0.074, "sp_latter": 0.046, "sink_head": 0.30, "sink_tail": 0.15},
    {"model": "Qwen", "task": "LLMRec", "sp_early": 0.047, "sp_latter": 0.059, "sink_head": 0.30, "sink_tail": 0.24},
]


def parse_heads(spec, num_heads: int) -> list[int]:
    """``all`` or a comma list of head indices (``0`` = the paper's Fig. 2 head)."""
    if spec is None or str(spec).strip().lower() == "all":
        return list(range(num_heads))
    try:
        heads = sorted({int(x) for x in str(spec).split(",") if x.strip()})
    except ValueError:
        raise ValueError(f"--heads {spec!r}: give 'all' or head indices like 0 or 0,2") from None
    bad = [h for h in heads if not 0 <= h < num_heads]
    if not heads or bad:
        raise ValueError(f"--heads {spec!r}: heads {bad or spec} out of range; the model has {num_heads} heads "
                         f"(0..{num_heads - 1}) per layer")
    return heads


def _clean(x: np.ndarray) -> list:
    """NaN -> None so the JSON stays valid (a layer that saw no rows of a query set)."""
    return np.where(np.isfinite(x), x, None).tolist()


def corpus_summary(collected: dict, heads: list[int]) -> dict:
    """JSON-ready numbers of one corpus: ``per_head`` [L][H] and ``per_layer`` [L] (mean over ``heads``)."""
    stats = collected["stats"]
    means = stats.means()
    out = {"sequences": collected["sequences"], "mean_length": collected["mean_length"],
           "forward": collected["forward"], "heads": heads, **collected["meta"], "query_sets": {}}
    for q in QUERY_SETS:
        qd = {"rows_per_layer": stats.rows[q].tolist(), "per_layer": {}, "per_head": {}}
        for m, v in means[q].items():
            qd["per_head"][m] = _clean(v)
            with np.errstate(invalid="ignore"):
                qd["per_layer"][m] = _clean(v[:, heads].mean(axis=1))
        out["query_sets"][q] = qd
    return out


def _mean(vals):
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else None


def table4_row(summary: dict, k: int) -> dict:
    """Early (layers < k) / latter (layers >= k) means of the per-layer curves; sinks over all layers."""
    pl = summary["query_sets"]["all"]["per_layer"]
    row = {"k": k}
    for m in ROW_METRICS:
        row[f"{m}_early"] = _mean(pl[m][:k])
        row[f"{m}_latter"] = _mean(pl[m][k:])
        row[f"{m}_all"] = _mean(pl[m])
    for g in GROUPS:
        row[f"mass_{g}_latter"] = _mean(pl[f"mass_{g}"][k:])
    return row


def _decimals(x, nd=3):
    return "–" if x is None else f"{x:.{nd}f}"


def table4_markdown(entries: list[dict]) -> str:
    """``entries``: {label, task, row (table4_row)}. Paper rows appended for comparison."""
    head = ("| model | task | k | Sp_early | Sp_latter | Sink_head | Sink_tail | entropy early / latter (nats) "
            f"| top-{TOPK} mass early / latter |\n|---|---|---:|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for e in entries:
        r = e["row"]
        lines.append(f"| {e['label']} | {e['task']} | {r['k']} | {_decimals(r['sparsity_early'])} | "
                     f"{_decimals(r['sparsity_latter'])} | {_decimals(r['sink_head_all'], 2)} | "
                     f"{_decimals(r['sink_tail_all'], 2)} | "
                     f"{_decimals(r['entropy_early'], 2)} / {_decimals(r['entropy_latter'], 2)} | "
                     f"{_decimals(r['topk_mass_early'], 2)} / {_decimals(r['topk_mass_latter'], 2)} |")
    for p in PAPER_TABLE4:
        lines.append(f"| *paper: {p['model']}-7B* | *{p['task']}* | *?* | *{p['sp_early']:.3f}* | "
                     f"*{p['sp_latter']:.3f}* | *{p['sink_head']:.2f}* | *{p['sink_tail']:.2f}* | | |")
    return "\n".join(lines)
