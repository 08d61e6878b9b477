"""``earn-export analyze``: checkpoints -> attention.json, table4.md and PNG figures in one directory; several
checkpoints are analysed on the same prompts and drawn side by side."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

from .collect import Corpus, collect
from .groups import prompt_row_groups, text_rows
from .metrics import EPS, GROUPS, SINK_HEAD, SINK_TAIL, TOPK
from .split_rule import THRESHOLD, format_evidence, recommend_split
from .summary import corpus_summary, parse_heads, table4_markdown, table4_row


def prompt_corpus(prompts, histories, next_items=None) -> Corpus:
    """Prompts with their token groups; with ``next_items`` each is followed by that item's identifier tokens
    (teacher-forced, as in training), so the rows that predict the identifier are measured too."""
    rows, groups = zip(*(prompt_row_groups(prompts, h) for h in histories))
    targets = None if next_items is None else [list(prompts.item_ids[int(i)]) for i in next_items]
    return Corpus("prompts", list(rows), list(groups), targets=targets)


def sample_examples(data_spec, max_history: int, users: int | None, seed: int = 0, split: str = "test"):
    """(histories, next items) of a seeded sample of the users with items in ``split``: the history as the
    evaluation builds it and the user's first item of that split."""
    from ..data.sequences import eval_examples

    data = data_spec.load()
    ex = eval_examples(data, split, max_history=max_history)
    if not ex.histories:
        raise ValueError(f"the data has no users with {split} items; pass other data (--data/--interactions)")
    idx = np.arange(len(ex.histories))
    if users and users < len(idx):
        idx = np.sort(np.random.default_rng(seed).choice(len(idx), users, replace=False))
    target_split = data.split(split)
    return [ex.histories[i] for i in idx], [target_split[ex.users[i]][0] for i in idx]


def analyze_model(model, prompts, histories, next_items=None, text=None, heads="all", forward="dense",
                  batch_size=32, progress=True, threshold=THRESHOLD) -> dict:
    """Everything about one model: summaries per corpus, the maps (for plotting) and the split recommendation."""
    heads_l = parse_heads(heads, model.model.layers[0].self_attn.n_heads)
    out = {"num_layers": model.num_layers, "split_layer": model.split_layer,
           "num_heads": model.model.layers[0].self_attn.n_heads, "corpora": {}, "maps": {}}
    corpora = [prompt_corpus(prompts, histories, next_items)]
    if text is not None:
        rows, meta = text_rows(prompts.tokenizer, text)
        tc = Corpus("text", rows, [[GROUPS.index("text")] * len(r) for r in rows], meta=meta)
        if tc.meta["unknown_fraction"] > 0.3:
            print(f"warning: {tc.meta['unknown_fraction']:.0%} of the --text tokens are unknown to this checkpoint's "
                  "tokenizer (a word-level vocabulary of the prompt template and item codes): its text row measures "
                  "attention over <unk> tokens, not the paper's NLP contrast; use a checkpoint built on a pretrained "
                  "LLM's tokenizer (train --model HF_DIR) for that", file=sys.stderr)
        corpora.append(tc)
    for c in corpora:
        col = collect(model, c, pad_id=prompts.pad_id, batch_size=batch_size, forward=forward, progress=progress)
        out["corpora"][c.name] = corpus_summary(col, heads_l)
        out["maps"][c.name] = {"maps": col["maps"], "groups": col["map_groups"]}
    if forward == "dense" or model.split_layer == model.num_layers:
        h = out["corpora"]["prompts"]["query_sets"]["predict"]["per_layer"]["mass_history"]
        out["recommendation"] = recommend_split(h, threshold=threshold)
    out["heads"] = heads_l
    return out


def _labels(paths) -> list[str]:
    names, seen = [], {}
    for p in paths:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(p).resolve().name) or "model"
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return names


def analyze(checkpoints, out_dir, data_spec=None, users: int | None = 500, heads="all", text=None,
            forward="dense", batch_size: int = 32, split_layer: int | None = None, threshold: float = THRESHOLD,
            seed: int = 0, progress: bool = True) -> dict:
    """Analyse checkpoint dirs and write ``attention.json``, ``table4.md`` and the figures into ``out_dir``."""
    from ..data.data_spec import DataSpec
    from ..data.prompts import PromptBuilder
    from ..model import load_pretrained
    from ..model.config import ModelConfigError
    from . import plots

    checkpoints = [Path(c) for c in checkpoints]
    for c in checkpoints:
        if not (c / "prompt.json").is_file():
            raise ModelConfigError(f"{c}: not an earn-export checkpoint (no prompt.json) — pass a directory written "
                                   "by `earn-export train`")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for path, label in zip(checkpoints, _labels(checkpoints)):
        spec = data_spec or DataSpec.load_from(path) or DataSpec()
        model = load_pretrained(path)
        prompts = PromptBuilder.load(path)
        hist, nxt = sample_examples(spec, prompts.max_history, users, seed=seed)
        r = analyze_model(model, prompts, hist, nxt, text=text, heads=heads, forward=forward, batch_size=batch_size,
                          progress=progress, threshold=threshold)
        r.update(label=label, checkpoint=str(path), data=spec.kind if spec.kind == "synthetic" else spec.path)
        results.append(r)

    if split_layer is not None and not all(1 <= split_layer < r["num_layers"] for r in results):
        raise ValueError(f"--split-layer {split_layer}: the table's boundary k must satisfy 1 <= k < N "
                         f"(N = {sorted({r['num_layers'] for r in results})}); pass such a k or leave it out")
    earn_k = [r["split_layer"] for r in results if r["split_layer"] < r["num_layers"]]
    # a dense checkpoint's recommendation first (stable sort), else the first one
    recs = sorted((r for r in results if "recommendation" in r), key=lambda r: r["split_layer"] != r["num_layers"])
    rec = recs[0]["recommendation"] if recs else None
    table_k = split_layer or (earn_k[0] if earn_k else (rec["k"] if rec else None))
    entries = []
    for r in results:
        k = table_k if table_k and table_k < r["num_layers"] else max(1, r["num_layers"] // 4)
        r["table4"] = {}
        for name, summ in r["corpora"].items():
            row = table4_row(summ, k)
            r["table4"][name] = row
            task = "LLMRec" if name == "prompts" else "text"
            kind = "EARN" if r["split_layer"] < r["num_layers"] else "dense"
            entries.append({"label": f"{r['label']} ({kind}, k={r['split_layer']})", "task": task, "row": row})
    table = table4_markdown(entries)
    md = ["# Attention analysis (Table-4 style)", "",
          f"Sparsity = share of keys with p > {EPS}; Sink_head / Sink_tail = mass on the first / last 3 valid keys "
          "(mean over all layers); early = layers < k, latter = layers >= k (k in the third column); every metric "
          f"is the mean over all non-padding query rows of {users or 'all'} test prompts, forward = {forward}, "
          "heads = " + ",".join(str(h) for h in results[0]["heads"]) + ".", "",
          table, ""]
    for r in results:
        if "recommendation" in r:
            md += ["```", format_evidence(r["recommendation"], r["label"]), "```", ""]
    (out / "table4.md").write_text("\n".join(md))

    figures = []
    n_layers = max(r["num_layers"] for r in results)
    for r in results:
        for name, m in r["maps"].items():
            if m["maps"]:
                figures.append(plots.attention_maps(out / f"attention_map_{r['label']}_{name}.png", m["maps"],
                                                    m["groups"], r["heads"], f"{r['label']} ({name})",
                                                    r["split_layer"], r["num_layers"]))
    series = [{"label": f"{r['label']} ({name})" if name != "prompts" else r["label"], "summary": s,
               "k": r["split_layer"], "corpus": name} for r in results for name, s in r["corpora"].items()]
    figures.append(plots.metric_curves(out / "metrics_per_layer.png", series, n_layers))
    figures.append(plots.register_mass(out / "register_mass.png", [s for s in series if s["corpus"] == "prompts"],
                                       n_layers))

    doc = {"format_version": 1, "settings": {"eps": EPS, "sink_head": SINK_HEAD, "sink_tail": SINK_TAIL,
                                             "topk": TOPK, "forward": forward, "users": users, "seed": seed,
                                             "heads": heads, "table4_k": table_k, "threshold": threshold,
                                             "groups": list(GROUPS)},
           "checkpoints": [{k: v for k, v in r.items() if k != "maps"} for r in results],
           "recommendation": rec, "figures": [p.name for p in figures]}
    (out / "attention.json").write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    doc["table4_markdown"] = table
    return doc


def choose_split_layer(model, prompts, histories, next_items=None, progress: bool = True) -> dict:
    """``train --split-layer analyze``: the split rule on the dense forward of the model training starts from.

    Returns the recommendation (k, rule, per-layer evidence) plus the Table-4 row of that model (k = the result)."""
    r = analyze_model(model, prompts, histories, next_items, forward="dense", progress=progress)
    rec = dict(r["recommendation"])
    rec["table4"] = table4_row(r["corpora"]["prompts"], min(rec["k"], model.num_layers))
    rec["prompts"] = len(histories)
    return rec
