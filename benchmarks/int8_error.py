"""Where int8 loses ranking accuracy: the int8 engine's arithmetic emulated in torch, one factor at a time.

Each setting rounds the checkpoint's projections (q/k/v/o, gate/up/down; the LM head stays fp32, as in the engines)
the way `export --quantize int8` does, or a variant of it, and reports the top-20 overlap of the trie-constrained
beam search (beam 20) with the unquantized torch model on the same test users:

- ``w8``: weights only, s8 symmetric with one scale per output channel (what ``quantize_dynamic`` writes);
- ``w8a8-tensor``: and activations u8 with one scale and zero point per call, as ONNX Runtime's
  ``DynamicQuantizeLinear`` computes them (the ``int8`` engines);
- ``w8a8-token``: activations s8 with one scale per row (token) instead;
- ``...@ALPHA``: after SmoothQuant with that alpha (earn_export.export.smoothquant, as the export calibrates it);
- ``bf16``: the whole model in bfloat16, for scale.

So a gap to a target can be assigned to the weights or to the activations before any graph is rewritten.

    python benchmarks/int8_error.py engines/dense-fp32 --users 100   # the checkpoint: the engine's source
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

DEFAULT_SETTINGS = "bf16,w8,w8a8-tensor,w8a8-token,w8@0.5,w8a8-tensor@0.5,w8a8-token@0.5"


class FakeInt8Linear(torch.nn.Module):
    """``linear`` with its weight rounded to s8 per output channel and, with ``act``, its input rounded per call
    (``"tensor"``: u8 with zero point, DynamicQuantizeLinear's formula) or per row (``"token"``: s8 symmetric)."""

    def __init__(self, linear: torch.nn.Linear, act: str | None):
        super().__init__()
        w = linear.weight.detach()
        scale = w.abs().amax(1, keepdim=True).clamp(min=1e-12) / 127
        self.weight = (w / scale).round().clamp(-127, 127) * scale
        self.bias, self.act = linear.bias, act

    def forward(self, x):
        if self.act == "tensor":
            lo, hi = x.min().clamp(max=0), x.max().clamp(min=0)
            scale = ((hi - lo) / 255).clamp(min=1e-12)
            zp = (-lo / scale).round().clamp(0, 255)
            x = (((x / scale).round() + zp).clamp(0, 255) - zp) * scale
        elif self.act == "token":
            scale = x.abs().amax(-1, keepdim=True).clamp(min=1e-12) / 127
            x = (x / scale).round().clamp(-127, 127) * scale
        return torch.nn.functional.linear(x, self.weight, self.bias)


def quantized_copy(checkpoint, setting: str):
    """The checkpoint's model with ``setting`` applied (see the module docstring)."""
    from earn_export.engine.trie_files import resolve_trie
    from earn_export.export.onnx_export import _prompt_pieces
    from earn_export.export.smoothquant import calibration_batch, smooth_model
    from earn_export.model import load_pretrained

    model = load_pretrained(checkpoint).eval().requires_grad_(False)
    if setting == "bf16":
        return model.to(torch.bfloat16)
    name, _, alpha = setting.partition("@")
    acts = {"w8": None, "w8a8-tensor": "tensor", "w8a8-token": "token"}
    if name not in acts:
        raise SystemExit(f"int8_error: unknown setting {setting!r}; use bf16, w8, w8a8-tensor or w8a8-token, "
                         "each optionally @ALPHA (SmoothQuant)")
    if alpha:
        trie = resolve_trie(None, Path(checkpoint))
        smooth_model(model, *calibration_batch(_prompt_pieces(Path(checkpoint), model, trie), trie.item_paths()),
                     alpha=float(alpha))
    for layer in model.model.layers:
        for block, names in ((layer.self_attn, ("q_proj", "k_proj", "v_proj", "o_proj")),
                             (layer.mlp, ("gate_proj", "up_proj", "down_proj"))):
            for n in names:
                setattr(block, n, FakeInt8Linear(getattr(block, n), acts[name]))
    return model


def main(argv=None):
    p = argparse.ArgumentParser(prog="python benchmarks/int8_error.py", description=__doc__.splitlines()[0])
    p.add_argument("engine", help="an fp32 engine of the checkpoint (its trie, prompts and item head are used)")
    p.add_argument("--checkpoint", default=None, help="default: the engine's source checkpoint")
    p.add_argument("--data", default=None, help="data dir (default: the checkpoint's data.json)")
    p.add_argument("--users", type=int, default=100, help="first N test users")
    p.add_argument("--settings", default=DEFAULT_SETTINGS, help="comma-separated, see the docstring")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from earn_export.data.data_spec import DataSpec
    from earn_export.data.sequences import eval_examples
    from earn_export.engine.manifest import load_manifest
    from earn_export.model import load_pretrained
    from earn_export.runtime.backends import TorchBackend
    from earn_export.runtime.recommender import Recommender
    from earn_export.search.metrics import topk_overlap

    manifest = load_manifest(args.engine)
    ckpt = args.checkpoint or manifest.get("source_checkpoint")
    if not ckpt or not Path(ckpt).is_dir():
        raise SystemExit(f"int8_error: the engine's source checkpoint {ckpt!r} is not there; pass --checkpoint DIR")
    spec = DataSpec.from_args(data=args.data) if args.data else DataSpec.load_from(ckpt)
    ex = eval_examples(spec.load(), "test", max_history=20)
    histories = [list(map(int, h)) for h in ex.histories[:args.users]]

    def top20(model) -> np.ndarray:
        backend = TorchBackend(model, head_token_ids=manifest["vocab"]["vocab_out_token_ids"])
        rec = Recommender.from_engine(args.engine, manifest, backend, batch_size=4)  # batch 4, as deployed
        with torch.no_grad():
            return rec.recommend(histories, top_k=20, beam=20).items

    ref = top20(load_pretrained(ckpt).eval())
    rows = []
    for setting in args.settings.split(","):
        t0 = time.perf_counter()
        got = top20(quantized_copy(ckpt, setting))
        overlap = float(topk_overlap(got, ref).mean())
        rows.append({"setting": setting, "overlap": overlap, "users": len(histories),
                     "seconds": time.perf_counter() - t0})
        print(f"{setting:20s} top-20 overlap vs fp32 {overlap:.4f}  ({rows[-1]['seconds']:.0f} s)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
