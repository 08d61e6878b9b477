"""Measure the architecture table's claims (docs/results/architectures.md): per family, the max |logit| difference
between earn-export's dense forward and transformers' own at the real model shape (random weights, few layers),
and for Qwen3 convert -> export (reference, fused, fused + custom attention op) -> check on N users.

Usage: python scripts/architecture_parity.py [--users 100] [--skip-engines]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the real-shape configs and offline BPE tokenizers the tests use

from model_configs import llama32_1b, mistral_7b, qwen3_06b, qwen25_05b  # noqa: E402

SHAPES = {
    "llama-3.2-1b (2 layers)": lambda: llama32_1b(layers=2),
    "qwen2.5-0.5b (2 layers)": lambda: qwen25_05b(layers=2),
    "qwen3-0.6b tied (2 layers)": lambda: qwen3_06b(layers=2),
    "qwen3-0.6b untied (2 layers)": lambda: qwen3_06b(layers=2, tie=False),
    "mistral-7b-v0.3 (1 layer)": lambda: mistral_7b(layers=1),
}


def logit_parity(make_cfg, tmp: Path) -> dict:
    from transformers import AutoModelForCausalLM

    from earn_export.model import load_pretrained

    cfg = make_cfg()
    torch.manual_seed(0)
    hf = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
    with torch.no_grad():  # non-trivial norm weights and biases, so a missed term shows up
        for name, p in hf.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    hf.save_pretrained(tmp)
    ours = load_pretrained(tmp).eval()
    g = torch.Generator().manual_seed(1)
    lens = [17, 11, 5]
    ids = torch.randint(0, cfg.vocab_size, (3, 17), generator=g)
    mask = torch.zeros(3, 17, dtype=torch.long)
    for i, n in enumerate(lens):
        mask[i, 17 - n:] = 1
    pos = (mask.cumsum(-1) - 1).clamp_min(0)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        got = ours(ids, mask, n_target=16, mode="dense")
    valid = mask.bool()
    return {"max_abs_logit_diff": float((ref - got)[valid].abs().max()), "logit_std": float(ref[valid].std())}


def qwen3_engines(users: int, root: Path) -> dict:
    from test_convert import DATA, _pretrained

    from earn_export.convert import convert
    from earn_export.export import export_onnx
    from earn_export.export.parity_check import check_engine

    src = _pretrained(root / "hf", (qwen3_06b, "qwen2", 512))
    ckpt = convert(src, root / "earn", DATA, split=1)
    out = {}
    for name, kw in (("reference fp32", {"exporter": "torchscript"}), ("fused fp32", {"form": "fused"}),
                     ("fused fp32 + custom attention op", {"form": "fused", "attention": "plugin"}),
                     ("fused fp16", {"form": "fused", "fp16": True})):
        eng = root / name.replace(" ", "_").replace("+", "")
        t = time.perf_counter()
        export_onnx(ckpt, eng, vocab="items", **kw)
        export_s = time.perf_counter() - t
        rep = check_engine(eng, ckpt, n=users, batch_size=25)
        out[name] = {k: rep[k] for k in ("users", "topk_identical_fraction", "topk_identical_up_to_ties_fraction",
                                         "topk_overlap_mean", "prefill_max_abs_diff", "decode_max_abs_diff")}
        out[name]["export_s"] = round(export_s, 1)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python benchmarks/architecture_parity.py",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--skip-engines", action="store_true")
    args = ap.parse_args(argv)
    res = {"logit_parity": {}, "qwen3_engines": None}
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in SHAPES.items():
            d = Path(tmp) / name.split()[0]
            res["logit_parity"][name] = logit_parity(make, d)
            print(name, res["logit_parity"][name], flush=True)
        if not args.skip_engines:
            res["qwen3_engines"] = qwen3_engines(args.users, Path(tmp) / "qwen3")
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
