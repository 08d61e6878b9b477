"""``python benchmarks/op_profile.py``: where the time of one exported search goes — ONNX Runtime's node
profiler, grouped by what each node does.

It takes the options of ``earn-export bench`` and profiles the same random-weight EARN and dense engines
(``--reuse-engines`` reuses those of a bench run with the same ``--out``): one search per prompt length at the
first batch size and beam, after two warm-up searches. Writes ``profile.json`` and ``profile.md`` under ``--out``.

``onnxruntime.SessionOptions.enable_profiling`` writes a Chrome-trace JSON per session with one ``Node`` event
per kernel run (``<node name>_kernel_time``, ``args.op_name``) and one ``model_run`` event per ``Run``. Node
names keep the torch module scope of the exported graph (``/core/layers.3/mlp/gate_proj/MatMul`` in prefill,
``/mlp/gate_proj_3/MatMul`` in decode; ORT's fusions append ``/SimplifiedLayerNormFusion/`` etc.), which is
enough to attribute every kernel to a part of the model.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

# first match wins
GROUPS = (
    ("lm_head", re.compile(r"lm_head")),
    ("mlp", re.compile(r"/mlp|gate_proj|up_proj|down_proj")),
    ("attn_proj", re.compile(r"[qkvo]_proj")),
    ("norm", re.compile(r"layernorm|/norm/")),
    ("embedding", re.compile(r"embed_tokens")),
    ("log_softmax", re.compile(r"LogSoftmax")),
    ("attn_core", re.compile(r"self_attn/")),  # prefill: everything else under self_attn (scores, mask, softmax, RoPE)
)
ATTN_OPS = {"MatMul", "FusedMatMul", "Softmax"}
GROUP_LABELS = {
    "attn_proj": "attention projections (q/k/v/o)",
    "attn_core": "attention core (QK^T, mask add, softmax, PV; prefill also RoPE)",
    "mlp": "MLP (gate/up/down + SiLU)",
    "lm_head": "LM head",
    "norm": "RMSNorm",
    "embedding": "embedding",
    "log_softmax": "log-softmax",
    "other": "other (RoPE, reshapes, KV concat, casts, masks)",
}
LAYER = re.compile(r"layers\.(\d+)/")


def classify(node_name: str, op_type: str) -> str:
    for group, pat in GROUPS:
        if pat.search(node_name):
            return group
    if op_type in ATTN_OPS:
        return "attn_core"  # MatMuls without a weight: QK^T and PV (prefill: under self_attn; decode: top level)
    if op_type == "LogSoftmax":
        return "log_softmax"
    return "other"


def parse_profile(path, skip_runs: int = 0) -> dict:
    """Aggregate one session's profile, ignoring node events of its first ``skip_runs`` runs (warm-up).

    Returns ``{"runs", "run_ms", "kernel_ms", "by_group": {group: ms}, "by_op": {op: ms}, "by_layer_group":
    {"early"|"late"|"none": ms}}`` (times summed over the kept runs).
    """
    events = json.loads(Path(path).read_text())
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])
    kept = runs[skip_runs:]
    if not kept:
        return {"runs": 0, "run_ms": 0.0, "kernel_ms": 0.0, "by_group": {}, "by_op": {}, "by_layer": {}}
    start = kept[0]["ts"]
    by_group: dict[str, float] = defaultdict(float)
    by_op: dict[str, float] = defaultdict(float)
    by_layer: dict[int, float] = defaultdict(float)
    kernel = 0.0
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time") or e["ts"] < start:
            continue
        name = e["name"][: -len("_kernel_time")]
        op = e.get("args", {}).get("op_name", "?")
        ms = e["dur"] / 1000.0
        kernel += ms
        by_group[classify(name, op)] += ms
        by_op[op] += ms
        m = LAYER.search(name)
        if m:
            by_layer[int(m.group(1))] += ms
    return {
        "runs": len(kept),
        "run_ms": sum(r["dur"] for r in kept) / 1000.0,
        "kernel_ms": kernel,
        "by_group": dict(sorted(by_group.items(), key=lambda kv: -kv[1])),
        "by_op": dict(sorted(by_op.items(), key=lambda kv: -kv[1])[:12]),
        "by_layer": {str(k): v for k, v in sorted(by_layer.items())},
    }


def profile_search(engine_dir, trie, input_ids, attention_mask, beam: int, work_dir, search_fn,
                   session_options=None, warmup: int = 2) -> dict:
    """Run ``search_fn(backend, trie, ids, mask, beam)`` ``warmup`` + 1 times on a profiling ORT backend and
    report the last run.

    Profiling sessions are separate from the timed ones (profiling slows kernels down a little), so the timed
    numbers stay clean; the profile gives the *shares* of the graph time. A fresh session's memory arena is
    still growing during its first two runs (large attention buffers then cost 5-10x more), hence 2 warm-ups.
    """
    import onnxruntime as ort

    from earn_export.runtime.backends import OrtBackend

    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    opts = session_options or ort.SessionOptions()
    opts.enable_profiling = True
    opts.profile_file_prefix = str(work_dir / Path(engine_dir).name)
    be = OrtBackend(engine_dir, session_options=opts, verify=False)
    decode_runs_per_search = int(trie.depth) - 1
    for _ in range(warmup + 1):
        search_fn(be, trie, input_ids, attention_mask, beam)
    prefill = parse_profile(be.prefill_session.end_profiling(), skip_runs=warmup)
    decode = parse_profile(be.decode_session.end_profiling(), skip_runs=warmup * decode_runs_per_search)
    total = prefill["kernel_ms"] + decode["kernel_ms"]
    groups: dict[str, float] = defaultdict(float)
    for part in (prefill, decode):
        for g, ms in part["by_group"].items():
            groups[g] += ms
    return {
        "prefill": prefill,
        "decode": decode,
        "kernel_ms": total,
        "share_by_group": {g: (ms / total if total else 0.0) for g, ms in sorted(groups.items(), key=lambda kv: -kv[1])},
    }


def markdown(profiles: dict) -> str:
    """Share of kernel time per part of the model (columns: ``earn_P128``, ``dense_P128``, ...)."""
    names = list(profiles)
    groups = []
    for prof in profiles.values():
        for g in prof["share_by_group"]:
            if g not in groups:
                groups.append(g)
    lines = ["**ORT kernel time by part of the model** (onnxruntime profiler, one search at the first batch/beam; "
             "share of kernel time, prefill + decode)", "",
             "| part | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for g in groups:
        cells = [f"{100 * profiles[nm]['share_by_group'].get(g, 0.0):.1f}%" for nm in names]
        lines.append(f"| {GROUP_LABELS.get(g, g)} | " + " | ".join(cells) + " |")
    cells = [f"{profiles[nm]['prefill']['kernel_ms']:.0f} / {profiles[nm]['decode']['kernel_ms']:.0f}" for nm in names]
    lines.append("| kernel ms prefill / decode | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_profiles(cfg, progress: bool = True, log=print) -> dict:
    """Export (or reuse) the bench's engine pair and profile one search per prompt length of ``cfg``."""
    from tqdm.auto import tqdm

    from earn_export.bench.harness import _export_pair
    from earn_export.bench.synthetic import build_setup
    from earn_export.search.beam import constrained_beam_search

    out = Path(cfg.out)
    say = log or (lambda msg: None)
    setup = build_setup(cfg.preset, cfg.split_layer, cfg.vocab_size, cfg.id_length, cfg.codes, cfg.n_items,
                        cfg.seed, max(cfg.prompt_lens), cfg.overrides)
    _export_pair(setup, cfg, out / "engines", say)
    profiles = {}
    b0, bm0 = cfg.batch_sizes[0], cfg.beams[0]
    for p in tqdm(cfg.prompt_lens, desc="profile", disable=not progress):
        ids, mask = setup.prompts(p, b0, seed=cfg.seed)
        for name in ("earn", "dense"):
            profiles[f"{name}_P{p}"] = profile_search(out / "engines" / name, setup.trie, ids, mask, bm0,
                                                      out / "profiles", constrained_beam_search)
    (out / "profile.json").write_text(json.dumps(profiles, indent=1) + "\n")
    (out / "profile.md").write_text(markdown(profiles))
    return profiles


def main(argv=None) -> int:
    from earn_export.bench.cli import add_bench_options, config_from_args
    from earn_export.cli import Parser

    p = Parser(prog="python benchmarks/op_profile.py", description=__doc__.splitlines()[0])
    add_bench_options(p)
    args = p.parse_args(argv)
    profiles = run_profiles(config_from_args(args), progress=not args.quiet)
    print(markdown(profiles))
    return 0


if __name__ == "__main__":
    from earn_export.cli import run_script

    raise SystemExit(run_script(main))
