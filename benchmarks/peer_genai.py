"""``python benchmarks/peer_genai.py``: our engines against onnxruntime-genai on the same dense weights.

onnxruntime-genai (optional extra ``genai``) is the tool a user would pick to run a Llama/Qwen2 model on ONNX
Runtime. This benchmark saves the bench's random-weight dense model as a Hugging Face checkpoint, builds the
onnxruntime-genai model from it with its own builder (``onnxruntime_genai.models.builder``, fp32, CPU), and
times, interleaved round-robin in one process so machine load hits every job alike:

- **per forward pass (prefill)**: our dense ``prefill.onnx`` vs onnxruntime-genai's model on the same
  ``[batch, P]`` prompts (its ``Generator.append_tokens``, greedy search), P = each ``--prompt-lens`` value;
- **end to end, beam 20, batch 1**: our EARN and dense pipelines (prefill, L-1 decode calls, trie-constrained
  beam search) vs onnxruntime-genai's beam search (``num_beams = num_return_sequences = beam``, L new tokens;
  it cannot constrain to the trie, so it does less work per step than ours).

Ratios are theirs / ours: above 1 means our graph or pipeline is faster.
"""

from __future__ import annotations

import gc
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _genai():
    try:
        import onnxruntime_genai as og
    except ImportError as exc:  # optional extra
        from earn_export.errors import UsageError

        raise UsageError(f"benchmarks/peer_genai.py needs onnxruntime-genai ({exc}) — pip install "
                         "'earn-export[genai]'") from exc
    return og


def build_genai_model(model, out: Path, say=print) -> Path:
    """Save ``model`` (dense) as a HF checkpoint with a word-level tokenizer and run the onnxruntime-genai builder."""
    from earn_export.data.tokenizer import build_tokenizer
    from earn_export.model.checkpoint import save_pretrained

    ckpt, dst = out / "hf-dense", out / "genai-fp32"
    if (dst / "genai_config.json").is_file():
        return dst
    save_pretrained(model, ckpt)
    vocab = model.config.vocab_size
    # the builder saves a tokenizer beside the model; token strings do not matter, ids are fed directly
    build_tokenizer([f"w{i}" for i in range(vocab - 4)], [], ["<reg_p>", "<reg_s>"]).save_pretrained(str(ckpt))
    say("building the onnxruntime-genai model (its builder, fp32, cpu)")
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-m", "earn-bench-dense", "-i", str(ckpt),
           "-o", str(dst), "-p", "fp32", "-e", "cpu", "-c", str(out / "genai-cache")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"onnxruntime-genai builder failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
    return dst


def _node_count(path: Path) -> int:
    import onnx

    return len(onnx.load(str(path), load_external_data=False).graph.node)


def run_peer_genai(cfg, say=print) -> dict:
    """Build, export, time (see the module doc); returns the result dict (also written to OUT/peer_genai.json)."""
    import onnxruntime as ort

    from earn_export.search.beam import constrained_beam_search
    from earn_export.bench.harness import _export_pair, machine_info
    from earn_export.bench.synthetic import build_setup

    og = _genai()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    say("building the random-weight model pair")
    setup = build_setup(cfg.preset, cfg.split_layer, cfg.vocab_size, cfg.id_length, cfg.codes, cfg.n_items,
                        cfg.seed, max(cfg.prompt_lens), cfg.overrides)
    engines = out / "engines"
    export_s = _export_pair(setup, cfg, engines, say)
    genai_dir = build_genai_model(setup.dense_model, out, say)

    so = ort.SessionOptions()
    if cfg.ort_threads:
        so.intra_op_num_threads = cfg.ort_threads
    from earn_export.runtime.backends import OrtBackend

    ours = {name: OrtBackend(engines / name, session_options=so, providers=["CPUExecutionProvider"])
            for name in ("earn", "dense")}
    gm = og.Model(str(genai_dir))
    beam, steps = cfg.beams[0], cfg.id_length

    def ours_prefill(ids, mask):
        ours["dense"].prefill(ids, mask)

    def genai_run(ids, beams, new_tokens):
        params = og.GeneratorParams(gm)
        params.set_search_options(max_length=ids.shape[1] + new_tokens, min_length=ids.shape[1] + new_tokens,
                                  batch_size=ids.shape[0], num_beams=beams, num_return_sequences=beams,
                                  do_sample=False, early_stopping=False)
        gen = og.Generator(gm, params)
        gen.append_tokens(ids.astype(np.int32))
        for _ in range(new_tokens - 1 if beams == 1 else new_tokens):
            if gen.is_done():
                break
            gen.generate_next_token()
        return gen

    def genai_prefill(ids, mask):
        params = og.GeneratorParams(gm)
        params.set_search_options(max_length=ids.shape[1] + 1, batch_size=ids.shape[0], do_sample=False)
        og.Generator(gm, params).append_tokens(ids.astype(np.int32))

    rows = []
    for p in cfg.prompt_lens:
        b = cfg.batch_sizes[0]
        ids, mask = setup.prompts(p, b, seed=cfg.seed)
        ids1, mask1 = ids[:1], mask[:1]
        jobs = {
            "prefill_ours_dense": lambda: ours_prefill(ids, mask),
            "prefill_genai": lambda: genai_prefill(ids, mask),
            "e2e_ours_earn": lambda: constrained_beam_search(ours["earn"], setup.trie, ids1, mask1, beam),
            "e2e_ours_dense": lambda: constrained_beam_search(ours["dense"], setup.trie, ids1, mask1, beam),
            "e2e_genai_beam": lambda: genai_run(ids1, beam, steps),
        }
        for _ in range(cfg.warmup):
            for fn in jobs.values():
                fn()
        times = {k: [] for k in jobs}
        for _ in range(cfg.repeats):
            for k, fn in jobs.items():  # interleaved
                gc.collect()
                t = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t)
        med = {k: statistics.median(v) for k, v in times.items()}
        row = {"prompt_len": p, "batch_prefill": b, "beam": beam, "median_s": med, "runs_s": times,
               "prefill_genai_over_ours": med["prefill_genai"] / med["prefill_ours_dense"],
               "e2e_genai_over_ours_earn": med["e2e_genai_beam"] / med["e2e_ours_earn"],
               "e2e_genai_over_ours_dense": med["e2e_genai_beam"] / med["e2e_ours_dense"],
               "e2e_dense_over_earn": med["e2e_ours_dense"] / med["e2e_ours_earn"]}
        rows.append(row)
        say(json.dumps({k: v for k, v in row.items() if k != "runs_s"}), flush=True)
    man = json.loads((engines / "dense" / "manifest.json").read_text())
    result = {
        "machine": machine_info(cfg), "shape": setup.shape, "form": cfg.form, "export_s": export_s,
        "onnxruntime_genai": og.__version__,
        "nodes": {"ours_dense_prefill": man["graphs"]["prefill"]["nodes"],
                  "ours_dense_decode": man["graphs"]["decode"]["nodes"],
                  "genai_model": _node_count(genai_dir / "model.onnx")},
        "rows": rows,
    }
    (out / "peer_genai.json").write_text(json.dumps(result, indent=1, default=str))
    return result


def markdown(result: dict) -> str:
    n = result["nodes"]
    lines = [f"onnxruntime-genai {result['onnxruntime_genai']} vs earn-export ({result['form']} form); nodes: ours "
             f"dense prefill {n['ours_dense_prefill']}, decode {n['ours_dense_decode']}; genai model "
             f"{n['genai_model']}",
             "",
             "| prompt | prefill ms ours (dense) / genai | **genai / ours (prefill)** | e2e beam s: ours EARN / "
             "ours dense / genai | genai / ours EARN | genai / ours dense |",
             "|---:|---|---:|---|---:|---:|"]
    for r in result["rows"]:
        m = r["median_s"]
        lines.append(f"| {r['prompt_len']} | {1e3 * m['prefill_ours_dense']:.1f} / {1e3 * m['prefill_genai']:.1f} | "
                     f"**{r['prefill_genai_over_ours']:.2f}×** | {m['e2e_ours_earn']:.3f} / {m['e2e_ours_dense']:.3f}"
                     f" / {m['e2e_genai_beam']:.3f} | {r['e2e_genai_over_ours_earn']:.1f}× | "
                     f"{r['e2e_genai_over_ours_dense']:.1f}× |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from earn_export.bench.cli import add_bench_options, config_from_args
    from earn_export.cli import Parser

    p = Parser(prog="python benchmarks/peer_genai.py", description=__doc__.splitlines()[0])
    add_bench_options(p)
    p.set_defaults(out="results/peer-genai")
    cfg = config_from_args(p.parse_args(argv))
    result = run_peer_genai(cfg)
    print()
    print(markdown(result))
    return 0


if __name__ == "__main__":
    from earn_export.cli import run_script

    raise SystemExit(run_script(main))
