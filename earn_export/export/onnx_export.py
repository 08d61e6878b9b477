"""Export an EARN (or dense) checkpoint to two ONNX graphs: ``prefill.onnx`` and ``decode.onnx``.

Graph I/O follows DESIGN.md §4 exactly (names after optimum / onnxruntime-genai): prefill
``(input_ids, attention_mask) -> (logits, present.{l}.key/value)``; decode ``(input_ids, position_ids,
attention_mask, past_key_values.{l}.*, generated.{l}.*) -> (logits, generated_present.{l}.*)``. ``logits`` are
a log-softmax over ``vocab_out`` computed in fp32 (manifest: ``"logits": "log_softmax"``).

Exporter choice. ``torch.onnx.export(dynamo=True)`` is tried first (``exporter="auto"``, the default) and
the TorchScript exporter (``dynamo=False`` + ``dynamic_axes``) is the fallback, also selectable with
``exporter="torchscript"``. With torch 2.13 both produce equal graphs (parity to ~5e-7 on fp32 log-probs)
once the model core avoids two ops: ``torch.isin`` (TorchScript: unsupported; dynamo: decomposed to
``searchsorted``, untranslatable) and ``take_along_dim`` (TorchScript: unsupported; dynamo: its broadcast
silently specialised batch and prompt_len to the sample sizes — a graph that only accepted the export shape).
The dynamo path is the maintained one (TorchScript export is deprecated since torch 2.9) but takes ~10x
longer (seconds on a tiny model, minutes on a 1B one); the TorchScript path is kept because it is fast and
mature, and tests use it for most graphs plus one dynamo export. The exporter used is recorded in the manifest.

Dynamic axes: ``batch``, ``prompt_len``, ``beam`` and ``t`` (generated tokens held per beam). Samples use
distinct sizes >= 2 on every dynamic axis so no axis is specialised. ``t`` is 0 at the first decode call:
ONNX Runtime runs empty tensors; TensorRT optimisation profiles commonly need every min >= 1, so a TensorRT
build may reject t min 0; the note under ``notes.tensorrt`` in the manifest says how to build around it (two
profiles, t = 0 and t >= 1, or the first decode step on ONNX Runtime).

fp16: weights and KV in fp16; RMSNorm statistics, attention softmax (with finite fp32 mask values) and the
log-softmax stay in fp32 inside the model code, and logits are output as fp32.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from .manifest import FORMAT_VERSION, MANIFEST, write_manifest
from .wrappers import DecodeGraph, PrefillGraph, kv_names

DEFAULT_OPSET = 18
EXTERNAL_DATA_THRESHOLD = int(1.5e9)
EXPORTERS = ("auto", "dynamo", "torchscript")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".data", ".plan", ".npz")
SKIP_FILES = {"trainer_state.json", "training_args.bin", "optimizer.pt", "scheduler.pt", MANIFEST}
AUX_MAX_BYTES = 64 << 20
# sample sizes for tracing: distinct, all >= 2 (0/1 get specialised by torch.export)
SAMPLE = {"batch": 2, "beam": 5, "prompt_len": 9, "t": 3}


class ExportError(RuntimeError):
    pass


def _load_model(model_or_ckpt, fp16: bool):
    from ..model import EarnForCausalLM, load_pretrained

    dtype = torch.float16 if fp16 else torch.float32
    ckpt_dir = None
    if isinstance(model_or_ckpt, EarnForCausalLM):
        model = copy.deepcopy(model_or_ckpt).to(dtype)
    else:
        ckpt_dir = Path(model_or_ckpt)
        model = load_pretrained(ckpt_dir, dtype=dtype)
    return model.eval().requires_grad_(False), ckpt_dir


def _sample_prompt(model, batch: int, prompt_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompts [reg_p.., body.., reg_s..] of distinct lengths, valid for the register check."""
    earn = model.earn
    pre = list(earn.prefix_token_ids) if earn else []
    suf = list(earn.suffix_token_ids) if earn else []
    regs = set(pre + suf)
    body_tok = next(t for t in range(model.config.vocab_size) if t not in regs)
    ids = torch.full((batch, prompt_len), body_tok, dtype=torch.long)
    mask = torch.zeros(batch, prompt_len, dtype=torch.long)
    for i in range(batch):
        n = prompt_len - i  # row 0 full, later rows left-padded
        row = pre + [body_tok] * (n - len(pre) - len(suf)) + suf
        ids[i, prompt_len - n:] = torch.tensor(row)
        mask[i, prompt_len - n:] = 1
    return ids, mask


def _resolve_trie(trie, ckpt_dir: Path | None, out_dir: Path) -> Path | None:
    """Write trie.npz into out_dir from a Trie object, a path, a dict of arrays or the checkpoint's trie."""
    dst = out_dir / "trie.npz"
    if trie is None and ckpt_dir is not None and (ckpt_dir / "trie.npz").is_file():
        trie = ckpt_dir / "trie.npz"
    if trie is None and ckpt_dir is not None:
        trie = _trie_from_catalog(ckpt_dir)
    if trie is None:
        return None
    if isinstance(trie, (str, os.PathLike)):
        if Path(trie).resolve() != dst.resolve():
            shutil.copyfile(trie, dst)
    elif isinstance(trie, dict):
        np.savez(dst, **{k: np.asarray(v) for k, v in trie.items()})
    elif hasattr(trie, "save"):
        trie.save(dst)
    else:
        raise ExportError(f"trie must be a Trie, a trie.npz path or a dict of CSR arrays, got {type(trie).__name__}")
    if not dst.is_file():  # np.savez-style savers may append .npz
        raise ExportError(f"writing the trie did not produce {dst}")
    return dst


def _trie_from_catalog(ckpt_dir: Path):
    """The trie of a checkpoint that has an item catalog (items.json) and a tokenizer but no trie.npz."""
    if not (ckpt_dir / "items.json").is_file():
        return None
    from transformers import AutoTokenizer

    from ..data.catalog import ItemCatalog

    return ItemCatalog.load(ckpt_dir).trie(AutoTokenizer.from_pretrained(str(ckpt_dir)))


def _copy_aux_files(ckpt_dir: Path | None, out_dir: Path) -> list[str]:
    """Tokenizer files, earn.json, config.json, items/catalog files: every small non-weight file of the ckpt."""
    if ckpt_dir is None:
        return []
    copied = []
    for src in sorted(ckpt_dir.iterdir()):
        if not src.is_file() or src.name in SKIP_FILES or src.name.endswith(WEIGHT_SUFFIXES):
            continue
        if src.name.startswith((".", "rng_state")) or src.stat().st_size > AUX_MAX_BYTES:
            continue
        shutil.copyfile(src, out_dir / src.name)
        copied.append(src.name)
    return copied


def _export_graph(module, args, path: Path, names_in, names_out, dynamic_axes: dict, dynamo_shapes,
                  opset: int, exporter: str, custom_ops=None) -> str:
    """Export one graph with the chosen exporter; returns the exporter actually used. ``custom_ops``:
    ``which -> extra torch.onnx.export kwargs`` for graphs with custom-op nodes (earn_export.ops.onnx_emit)."""
    errors = []
    order = ["dynamo", "torchscript"] if exporter == "auto" else [exporter]
    for which in order:
        extra = custom_ops(which) if custom_ops else {}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if which == "dynamo":
                    # its op registry logs one warning per torchvision op when torchvision is absent (not needed)
                    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
                    torch.onnx.export(module, args, str(path), dynamo=True, input_names=names_in,
                                      output_names=names_out, dynamic_shapes=dynamo_shapes,
                                      opset_version=opset, verbose=False, **extra)
                else:
                    torch.onnx.export(module, args, str(path), dynamo=False, input_names=names_in,
                                      output_names=names_out, dynamic_axes=dynamic_axes, opset_version=opset,
                                      do_constant_folding=True, **extra)
            return which
        except Exception as exc:  # noqa: BLE001 - report both exporters' errors below
            errors.append(f"{which}: {type(exc).__name__}: {str(exc)[:2000]}")
            if exporter == "auto":
                warnings.warn(f"torch.onnx dynamo export of {path.name} failed ({type(exc).__name__}); "
                              "falling back to the TorchScript exporter")
    raise ExportError(f"exporting {path.name} failed:\n" + "\n".join(errors))


def _finalize(tmp_path: Path, out_dir: Path, name: str, external_threshold: int, metadata: dict) -> list[str]:
    """Load the exported graph, stamp metadata, check, and save (with external data above the threshold)."""
    import onnx

    model = onnx.load(str(tmp_path), load_external_data=True)
    del model.metadata_props[:]
    for k, v in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, str(v)
    size = sum(len(t.raw_data) for t in model.graph.initializer)
    dst = out_dir / name
    data_name = f"{name}.data"
    for stale in (dst, out_dir / data_name):
        if stale.exists():
            stale.unlink()
    if size > external_threshold:
        onnx.save_model(model, str(dst), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_name, size_threshold=1024)
        os.chmod(out_dir / data_name, 0o644)  # onnx creates it 0600; engine dirs are copied and shared
        onnx.checker.check_model(str(dst))
        return [name, data_name]
    onnx.checker.check_model(model)
    onnx.save_model(model, str(dst))
    return [name]


def _io_spec(model, graph: str, vocab_out: int, kv_dtype: str) -> dict:
    n, k = model.num_layers, model.split_layer
    hkv, d = model.n_kv_heads, model.head_dim
    r = model.earn.n_registers if model.earn else 0
    shared = lambda l: ["batch", hkv, "prompt_len" if l < k else r, d]  # noqa: E731
    if graph == "prefill":
        inputs = [{"name": "input_ids", "dtype": "int64", "shape": ["batch", "prompt_len"]},
                  {"name": "attention_mask", "dtype": "int64", "shape": ["batch", "prompt_len"]}]
        outputs = [{"name": "logits", "dtype": "float32", "shape": ["batch", vocab_out]}]
        outputs += [{"name": nm, "dtype": kv_dtype, "shape": shared(int(nm.split(".")[1]))}
                    for nm in kv_names("present", n)]
        return {"inputs": inputs, "outputs": outputs}
    inputs = [{"name": "input_ids", "dtype": "int64", "shape": ["batch", "beam", 1]},
              {"name": "position_ids", "dtype": "int64", "shape": ["batch", "beam", 1]},
              {"name": "attention_mask", "dtype": "int64", "shape": ["batch", "prompt_len"]}]
    inputs += [{"name": nm, "dtype": kv_dtype, "shape": shared(int(nm.split(".")[1]))}
               for nm in kv_names("past_key_values", n)]
    inputs += [{"name": nm, "dtype": kv_dtype, "shape": ["batch", "beam", hkv, "t", d]}
               for nm in kv_names("generated", n)]
    outputs = [{"name": "logits", "dtype": "float32", "shape": ["batch", "beam", vocab_out]}]
    outputs += [{"name": nm, "dtype": kv_dtype, "shape": ["batch", "beam", hkv, "t+1", d]}
                for nm in kv_names("generated_present", n)]
    return {"inputs": inputs, "outputs": outputs}


def _dynamic_axes(spec: dict) -> dict:
    """TorchScript ``dynamic_axes`` from an I/O spec (string dims are dynamic)."""
    axes = {}
    for io in spec["inputs"] + spec["outputs"]:
        dyn = {i: (s.replace("+", "_plus_") if isinstance(s, str) else s)
               for i, s in enumerate(io["shape"]) if isinstance(s, str)}
        if dyn:
            axes[io["name"]] = dyn
    return axes


def _dynamo_shapes(spec: dict, n_layers: int, graph: str):
    from torch.export import Dim

    dims = {"batch": Dim("batch", min=1), "prompt_len": Dim("prompt_len", min=1), "beam": Dim("beam", min=1),
            "t": Dim("t", min=0)}
    per_input = [{i: dims[s] for i, s in enumerate(io["shape"]) if isinstance(s, str)} for io in spec["inputs"]]
    if graph == "prefill":
        return tuple(per_input)
    return (per_input[0], per_input[1], per_input[2], tuple(per_input[3:]))


def _versions() -> dict:
    import onnx
    import transformers

    out = {"torch": torch.__version__, "onnx": onnx.__version__, "transformers": transformers.__version__}
    try:
        import onnxruntime

        out["onnxruntime"] = onnxruntime.__version__
    except Exception:  # pragma: no cover - onnxruntime is a dependency
        out["onnxruntime"] = None
    try:
        import onnxscript

        out["onnxscript"] = onnxscript.__version__
    except Exception:
        out["onnxscript"] = None
    from .. import __version__ as ee_version

    out["earn_export"] = ee_version
    return out


def _trie_tokens(trie_path: Path) -> np.ndarray:
    with np.load(trie_path) as z:
        return np.unique(z["tokens"]).astype(np.int64)


def export_onnx(model_or_ckpt_dir, out_dir, vocab: str = "items", fp16: bool = False, opset: int = DEFAULT_OPSET,
                item_token_ids=None, trie=None, exporter: str = "auto",
                external_data_threshold: int = EXTERNAL_DATA_THRESHOLD, max_prompt_len: int | None = None,
                progress=None, attention: str = "onnx") -> dict:
    """Export prefill.onnx + decode.onnx + manifest.json (+ trie.npz and the checkpoint's small files).

    ``model_or_ckpt_dir``: an ``EarnForCausalLM`` (not modified) or a checkpoint directory.
    ``vocab``: ``"items"`` (LM head sliced to ``item_token_ids``, default: every token in the trie) or ``"full"``.
    ``trie``: Trie object (``.save``), trie.npz path, dict of CSR arrays, or None (checkpoint's trie.npz, or
    built from its item catalog by ``earn_export.data``). ``external_data_threshold``: bytes of weights above
    which graphs are saved with one external-data file each (``prefill.onnx.data``). ``progress``: callable
    ``(message)`` for CLI progress. ``attention``: ``"onnx"`` (decode attention as standard ops) or ``"plugin"``
    (one ``earn::CompactedAttention`` node per layer, earn_export.ops). Returns the manifest (also written to
    ``out_dir/manifest.json``).
    """
    from ..ops import attention_export

    attention_export.check_mode(attention)
    if vocab not in ("items", "full"):
        raise ValueError(f"vocab must be 'items' or 'full', got {vocab!r}")
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    say = progress or (lambda msg: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / MANIFEST).exists():
        (out_dir / MANIFEST).unlink()  # a half-rewritten dir must not look valid
    say("loading model")
    model, ckpt_dir = _load_model(model_or_ckpt_dir, fp16)
    aux = _copy_aux_files(ckpt_dir, out_dir)
    trie_path = _resolve_trie(trie, ckpt_dir, out_dir)

    if vocab == "items":
        if item_token_ids is None:
            if trie_path is None:
                raise ExportError("vocab='items' needs the identifier tokens: pass item_token_ids= or a trie "
                                  "(trie=..., or a checkpoint with trie.npz / items.json)")
            item_token_ids = _trie_tokens(trie_path)
        head_ids = [int(t) for t in np.asarray(item_token_ids).reshape(-1)]
        if len(set(head_ids)) != len(head_ids):
            raise ExportError("item_token_ids has duplicates")
        bad = [t for t in head_ids if not 0 <= t < model.config.vocab_size]
        if bad:
            raise ExportError(f"item_token_ids {bad[:5]} are outside the vocabulary (size {model.config.vocab_size})")
        vocab_out = len(head_ids)
    else:
        head_ids = None
        vocab_out = model.config.vocab_size

    n, k = model.num_layers, model.split_layer
    kv_dtype = "float16" if fp16 else "float32"
    specs = {g: _io_spec(model, g, vocab_out, kv_dtype) for g in ("prefill", "decode")}
    prefill = PrefillGraph(model, head_ids).eval()
    decode = DecodeGraph(model, head_ids).eval()

    b, nb, p, t = SAMPLE["batch"], SAMPLE["beam"], SAMPLE["prompt_len"], SAMPLE["t"]
    r = model.earn.n_registers if model.earn else 0
    p = max(p, r + 3)
    ids, mask = _sample_prompt(model, b, p)
    with torch.no_grad():
        out = prefill(ids, mask)
    present = list(out[1:])
    g = torch.Generator().manual_seed(0)
    hkv, d = model.n_kv_heads, model.head_dim
    dt = torch.float16 if fp16 else torch.float32
    gen = [torch.randn(b, nb, hkv, t, d, generator=g).to(dt) for _ in range(2 * n)]
    tok = torch.randint(0, model.config.vocab_size, (b, nb, 1), generator=g)
    pos = (mask.sum(-1) + t)[:, None, None].expand(b, nb, 1).contiguous()
    decode_args = (tok, pos, mask, *present, *gen)

    meta = {"earn_export.format_version": FORMAT_VERSION, "earn_export.vocab": vocab}
    written, used = [], {}
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        for graph, module, args in (("prefill", prefill, (ids, mask)), ("decode", decode, decode_args)):
            say(f"exporting {graph}.onnx")
            spec = specs[graph]
            tmp_path = Path(tmp) / f"{graph}.onnx"
            plugin = attention_export.uses_plugin(attention, graph)
            with attention_export.tracing(plugin):
                used[graph] = _export_graph(
                    module, args, tmp_path, [io["name"] for io in spec["inputs"]],
                    [io["name"] for io in spec["outputs"]], _dynamic_axes(spec), _dynamo_shapes(spec, n, graph),
                    opset, exporter, attention_export.exporter_kwargs if plugin else None)
            if plugin:
                attention_export.finish_graph(tmp_path, spec, n)
            say(f"saving {graph}.onnx")
            written += _finalize(tmp_path, out_dir, f"{graph}.onnx", external_data_threshold, meta)

    earn = model.earn
    cfg = model.config.to_dict()
    manifest = {
        "format_version": FORMAT_VERSION,
        "kind": "earn-export engine",
        "model": {
            "model_type": model.config.model_type,
            "num_layers": n, "split_layer": k, "dense": k == n,
            "n_kv_heads": hkv, "head_dim": d, "hidden_size": model.config.hidden_size,
            "vocab_size": model.config.vocab_size,
            "n_registers": r,
            "n_prefix": earn.n_prefix if earn else 0, "n_suffix": earn.n_suffix if earn else 0,
            "prefix_token_ids": list(earn.prefix_token_ids) if earn else [],
            "suffix_token_ids": list(earn.suffix_token_ids) if earn else [],
            "register_token_ids": earn.register_token_ids if earn else [],
            "paradigm": earn.paradigm if earn else None,
            "id_length": earn.id_length if earn else None,
            "max_history": earn.max_history if earn else None,
            "max_prompt_len": max_prompt_len,
        },
        "hf_config": json.loads(json.dumps(cfg, default=str)),
        "earn_config": (json.loads(json.dumps(earn.__dict__, default=str)) if earn else None),
        "vocab": {"mode": vocab, "vocab_out": vocab_out, "vocab_out_token_ids": head_ids},
        "logits": "log_softmax",
        "dtype": kv_dtype,
        "logits_dtype": "float32",
        "opset": opset,
        "exporter": used,
        "attention": attention_export.manifest_entry(attention),
        "graphs": {
            g: {"file": f"{g}.onnx",
                "external_data": f"{g}.onnx.data" if f"{g}.onnx.data" in written else None,
                **specs[g]}
            for g in ("prefill", "decode")
        },
        "dynamic_axes": {
            "batch": "users per call", "prompt_len": "left-padded prompt length (registers included)",
            "beam": "beams per user", "t": "generated tokens held per beam (0 at the first decode call, up to L-1)",
        },
        "trie": "trie.npz" if trie_path else None,
        "source_checkpoint": str(ckpt_dir.resolve()) if ckpt_dir is not None else None,
        "aux_files": aux,
        "versions": _versions(),
        "notes": {
            "tensorrt": "t (generated tokens per beam) is 0 at the first decode call. ONNX Runtime runs the empty "
                        "tensors; TensorRT profiles are commonly required to have min >= 1 on every dim. If the "
                        "TensorRT builder rejects t min 0, build decode with two optimisation profiles (t = 0 and "
                        "t in 1..L-1) or run the first decode step on ONNX Runtime. Unverified here (no TensorRT).",
            "kv_sharing": "past_key_values are per user (shared by all beams, never copied); generated.* are per "
                          "beam and reordered by the beam parents between calls.",
        },
    }
    files = written + aux + (["trie.npz"] if trie_path else [])
    say("writing manifest.json")
    return write_manifest(out_dir, manifest, files)
