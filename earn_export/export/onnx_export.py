"""Export an EARN (or dense) checkpoint to two ONNX graphs: ``prefill.onnx`` and ``decode.onnx`` (I/O: docs/design.md §4).

Exporter: dynamo first (``exporter="auto"``; the maintained path, ~10x slower), TorchScript as fallback or on
request (fast; tests use it for most graphs). Both give equal graphs because the model core avoids
``torch.isin`` and ``take_along_dim`` (unsupported, or silently specialised to the sample shapes).
Samples use distinct sizes >= 2 on every dynamic axis (batch, prompt_len, beam, t) so none is specialised;
``t`` is 0 at the first decode, which TensorRT profiles may reject (``notes.tensorrt`` in the manifest).
fp16: weights and KV in fp16, norms, softmax and log-softmax in fp32.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import shutil
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_output
from ..data.id_map import manifest_entry as id_map_entry
from ..engine.manifest import FORMAT_VERSION, MANIFEST, write_manifest
from ..engine.trie_files import resolve_trie, save_trie_arrays
from ..errors import check_choice, hint
from ..ops.compacted_attention import emit_op
from . import attention_mode
from .errors import ExportError
from .weights import MIN_EXTERNAL_BYTES, WEIGHTS_FILE, SharedWeights
from .graph_modules import FORMS, DecodeGraph, PrefillGraph, export_view, kv_names

DEFAULT_OPSET = 18  # the reference form; the fused form needs 23
FUSED_OPSET = 23
# where the opset-23 ops of the fused form are implemented (checked against release notes / operator docs);
# this machine verifies ONNX Runtime 1.32 on CPU only
FUSED_RUNTIMES = {"onnxruntime": ">= 1.23 (Attention-23 CPU kernel; RMSNormalization-23, RotaryEmbedding-23)",
                  "tensorrt": ">= 10.15 (ONNX parser: RotaryEmbedding via IRotaryEmbeddingLayer, Attention, "
                              "RMSNormalization); unverified here"}
EXPORTERS = ("auto", "dynamo", "torchscript")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".data", ".plan", ".npz")
SKIP_FILES = {"trainer_state.json", "training_args.bin", "optimizer.pt", "scheduler.pt", MANIFEST}
AUX_MAX_BYTES = 64 << 20
# sample sizes for tracing: distinct, all >= 2 (0/1 get specialised by torch.export)
SAMPLE = {"batch": 2, "beam": 5, "prompt_len": 9, "t": 3}


def _load_model(model_or_ckpt, fp16: bool):
    from ..model import EarnForCausalLM, load_pretrained

    dtype = torch.float16 if fp16 else torch.float32
    if isinstance(model_or_ckpt, EarnForCausalLM):
        return copy.deepcopy(model_or_ckpt).to(dtype).eval().requires_grad_(False), None
    ckpt_dir = Path(model_or_ckpt)
    return load_pretrained(ckpt_dir, dtype=dtype).eval().requires_grad_(False), ckpt_dir


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


def _prompt_pieces(ckpt_dir: Path | None, model, trie, template: bool = True):
    """Prompt pieces for a tokenizer-free runtime: from ``prompt.json`` when its rows are concatenations of
    pieces, the TIGER layout for a bare model (or with ``template`` False), None for a context-dependent
    tokenizer."""
    from ..engine.prompt_pieces import PromptPieces

    paths = trie.item_paths()
    if template and ckpt_dir is not None and (ckpt_dir / "prompt.json").is_file():
        from ..data.prompts import PromptBuilder

        builder = PromptBuilder.load(ckpt_dir)
        pieces = PromptPieces.from_builder(builder)
        if pieces is None:
            return None
        missing = sorted(set(paths) - set(builder.item_ids))[:5]
        if missing:
            raise ExportError(f"trie items {missing} have no entry in the checkpoint's item catalog (items.json); "
                              "export with the catalog the trie was built from")
    else:
        earn = model.earn
        pieces = PromptPieces.from_item_paths(
            paths, prefix=list(earn.prefix_token_ids) if earn else [],
            suffix=list(earn.suffix_token_ids) if earn else [],
            max_history=(earn.max_history if earn else None) or 20,
            register_token_ids=earn.register_token_ids if earn else [])
    return pieces


def _write_prompt(pieces, out_dir: Path) -> tuple[dict, list[str]]:
    """The prompt's manifest entry and files: the pieces, or the tokenizer's ``prompt.json`` (copied with aux)."""
    from ..engine.prompt_pieces import PIECES_FILE

    if pieces is None:
        return {"format": "tokenizer", "file": "prompt.json"}, []
    return {"format": "pieces", "file": PIECES_FILE}, pieces.save(out_dir)


def _copy_aux_files(ckpt_dir: Path | None, out_dir: Path) -> list[str]:
    """Tokenizer files, earn.json, config.json, items/catalog files: every small non-weight file of the ckpt."""
    if ckpt_dir is None:
        return []
    copied = []
    for src in sorted(ckpt_dir.iterdir()):
        if (not src.is_file() or src.name in SKIP_FILES or src.name.endswith(WEIGHT_SUFFIXES)
                or src.name.startswith((".", "rng_state")) or src.stat().st_size > AUX_MAX_BYTES):
            continue
        shutil.copyfile(src, out_dir / src.name)
        copied.append(src.name)
    return copied


def _export_graph(module, args, tmp_dir: Path, graph: str, spec: dict, opset: int, exporter: str, custom_ops=None):
    """Export one graph; returns (``onnx_ir.Model``, exporter used). dynamo keeps the torch parameters as
    initializers (no copy); TorchScript output is loaded back lazily from ``tmp_dir``."""
    import onnx_ir as ir

    name = f"{graph}.onnx"
    names_in, names_out = [io["name"] for io in spec["inputs"]], [io["name"] for io in spec["outputs"]]
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
                    program = torch.onnx.export(module, args, None, dynamo=True, input_names=names_in,
                                                output_names=names_out, dynamic_shapes=_dynamo_shapes(spec, graph),
                                                opset_version=opset, verbose=False, **extra)
                    return program.model, which
                path = Path(tmp_dir) / name
                torch.onnx.export(module, args, str(path), dynamo=False, input_names=names_in,
                                  output_names=names_out, dynamic_axes=_dynamic_axes(spec), opset_version=opset,
                                  do_constant_folding=True, **extra)
                return ir.load(str(path)), which
        except Exception as exc:  # noqa: BLE001 - report both exporters' errors below
            errors.append(f"{which}: {type(exc).__name__}: {str(exc)[:2000]}")
            if exporter == "auto":
                warnings.warn(f"torch.onnx dynamo export of {name} failed ({type(exc).__name__}); "
                              "falling back to the TorchScript exporter")
    raise ExportError(f"exporting {name} failed:\n" + "\n".join(errors))


def _finalize(model, out_dir: Path, name: str, weights: SharedWeights, metadata: dict, progress=None) -> str:
    """Stamp metadata, move the weights into the shared file, save the graph and check it."""
    import onnx
    import onnx_ir as ir

    if hasattr(progress, "start_bytes"):
        progress.start_bytes(sum(v.const_value.nbytes for v in model.graph.initializers.values()
                                 if v.const_value is not None and v.const_value.nbytes >= MIN_EXTERNAL_BYTES))
    model.metadata_props.clear()
    model.metadata_props.update({k: str(v) for k, v in metadata.items()})
    weights.add_graph(model, name.removesuffix(".onnx"))
    dst = out_dir / name
    dst.unlink(missing_ok=True)
    ir.save(model, str(dst))  # tensors already external keep their location/offset/length
    onnx.checker.check_model(str(dst))
    return name


def _io_spec(model, graph: str, vocab_out: int, kv_dtype: str) -> dict:
    n, k = model.num_layers, model.split_layer
    hkv, d = model.n_kv_heads, model.head_dim
    r = model.earn.n_registers if model.earn else 0

    def io(name, shape, dtype=kv_dtype):
        return {"name": name, "dtype": dtype, "shape": shape}

    def shared(prefix):  # per-user KV: the prompt's rows below layer k, the registers' from k on
        return [io(nm, ["batch", hkv, "prompt_len" if int(nm.split(".")[1]) < k else r, d])
                for nm in kv_names(prefix, n)]

    mask = io("attention_mask", ["batch", "prompt_len"], "int64")
    if graph == "prefill":
        return {"inputs": [io("input_ids", ["batch", "prompt_len"], "int64"), mask],
                "outputs": [io("logits", ["batch", vocab_out], "float32"), *shared("present")]}
    step = ["batch", "beam", 1]
    return {"inputs": [io("input_ids", step, "int64"), io("position_ids", step, "int64"), mask,
                       *shared("past_key_values"),
                       *[io(nm, ["batch", "beam", hkv, "t", d]) for nm in kv_names("generated", n)]],
            "outputs": [io("logits", ["batch", "beam", vocab_out], "float32"),
                        *[io(nm, ["batch", "beam", hkv, "t+1", d]) for nm in kv_names("generated_present", n)]]}


def _dynamic_axes(spec: dict) -> dict:
    """TorchScript ``dynamic_axes`` from an I/O spec (string dims are dynamic)."""
    return {io["name"]: {i: s.replace("+", "_plus_") for i, s in enumerate(io["shape"]) if isinstance(s, str)}
            for io in spec["inputs"] + spec["outputs"] if any(isinstance(s, str) for s in io["shape"])}


def _dynamo_shapes(spec: dict, graph: str):
    from torch.export import Dim

    dims = {name: Dim(name, min=0 if name == "t" else 1) for name in ("batch", "prompt_len", "beam", "t")}
    per_input = [{i: dims[s] for i, s in enumerate(io["shape"]) if isinstance(s, str)} for io in spec["inputs"]]
    return tuple(per_input) if graph == "prefill" else (*per_input[:3], tuple(per_input[3:]))  # decode: *kv


def _versions() -> dict:
    import importlib

    from .. import __version__ as ee_version

    out = {}
    for name in ("torch", "onnx", "transformers", "onnxruntime", "onnxscript"):
        try:
            out[name] = importlib.import_module(name).__version__
        except Exception:  # noqa: BLE001 - recorded as unknown
            out[name] = None
    return {**out, "earn_export": ee_version}


def _op_counts(model) -> dict:
    return dict(sorted(Counter(node.op_type for node in model.graph).items()))


def _check_form(counts: dict, form: str, graph: str, n_layers: int, qk_norm: bool = False) -> None:
    """The fused form must really be fused: every norm (with ``qk_norm``, Q's and K's too), RoPE and (prefill)
    attention as one standard op."""
    if form != "fused":
        return
    want = {"RMSNormalization": (4 if qk_norm else 2) * n_layers + 1, "RotaryEmbedding": 2 * n_layers}
    if graph == "prefill":
        want["Attention"] = n_layers
    got = {op: counts.get(op, 0) for op in want}
    if got != want:
        raise ExportError(f"{graph}.onnx: the fused form expected {want} but the exporter produced {got}; export "
                          "with --form reference (the model's own ops) and report this")


@atomic_output("out_dir", "engine", protect=("model_or_ckpt_dir",))
def export_onnx(model_or_ckpt_dir, out_dir, vocab: str = "items", fp16: bool = False, opset: int | None = None,
                item_token_ids=None, trie=None, exporter: str = "auto", progress=None, form: str | None = None,
                quantize: str | None = None, ort_optimize: bool = False, attention: str = "onnx",
                smoothquant: float | None = None) -> dict:
    """Export prefill.onnx + decode.onnx + manifest.json, the trie's ``.npy`` arrays, the prompt pieces and the
    checkpoint's small files into ``out_dir`` (atomically: a failed export leaves the previous one).

    ``model_or_ckpt_dir``: an ``EarnForCausalLM`` (not modified) or a checkpoint directory; ``vocab``: ``"items"``
    (head sliced to ``item_token_ids``, default the trie's tokens) or ``"full"``; ``trie``: Trie, trie.npz, CSR
    dict or None (the checkpoint's); ``form``: ``"fused"`` or ``"reference"`` (:mod:`.graph_modules`);
    ``quantize``: None, ``"int8"``, ``"int8-nbits"``, ``"int4"`` (:mod:`.quantize`); ``smoothquant``: alpha of
    :mod:`.smoothquant` applied before ``int8`` (None: 0.5 when a catalog is there to calibrate on; 0: off);
    ``ort_optimize``
    (:mod:`.ort_optimize`); ``progress``: ``callable(message)`` or :class:`.progress.StageBars`; ``attention``:
    ``"onnx"`` or ``"plugin"`` (:mod:`.attention_mode`). Returns the manifest.
    """
    from ..model.architectures import architecture
    from ..ops.onnx_emit import exporter_kwargs
    from .quantize import QUANT_MODES, quantize_ir
    from .quantize import manifest_entry as quant_entry

    check_choice("attention", attention, attention_mode.MODES)
    if attention == "plugin" and ort_optimize:
        raise ExportError("--ort-optimize saves ONNX Runtime's optimised copy of the standard-op graphs; with "
                          "--attention plugin the decode graph holds earn::CompactedAttention nodes: drop one of the "
                          "two options")
    check_choice("vocab", vocab, ("items", "full"))
    check_choice("exporter", exporter, EXPORTERS)
    if quantize is not None:
        check_choice("quantize", quantize, QUANT_MODES)
        if fp16:
            raise ExportError("--quantize applies to fp32 engines (int8/int4 projections with fp32 norms, "
                              "attention and head for ONNX Runtime CPU); drop --fp16")
    if form is None:
        form = "reference" if exporter == "torchscript" else "fused"
    check_choice("form", form, FORMS)
    if opset is None:
        opset = FUSED_OPSET if form == "fused" else DEFAULT_OPSET
    if form == "fused":
        if exporter == "torchscript":
            raise ExportError("the fused form (opset 23) needs the dynamo exporter; pass --exporter dynamo, or "
                              "--form reference to export the model's own ops with TorchScript")
        if opset < FUSED_OPSET:
            raise ExportError(f"the fused form needs opset >= {FUSED_OPSET} (RMSNormalization, RotaryEmbedding, "
                              f"Attention), got --opset {opset}; raise it or pass --form reference")
        exporter = "dynamo"
    say = progress or (lambda msg: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST).unlink(missing_ok=True)  # a half-rewritten dir must not look valid
    say("loading checkpoint")
    model, ckpt_dir = _load_model(model_or_ckpt_dir, fp16)
    aux = _copy_aux_files(ckpt_dir, out_dir)
    trie = resolve_trie(trie, ckpt_dir)
    pieces = _prompt_pieces(ckpt_dir, model, trie) if trie is not None else None
    smoothing = None
    if smoothquant and quantize != "int8":
        raise ExportError(f"smoothquant={smoothquant} applies to quantize='int8' only; drop it or quantize to int8")
    if quantize == "int8" and smoothquant is None:
        from .smoothquant import DEFAULT_ALPHA

        smoothquant = DEFAULT_ALPHA if trie is not None else 0
        if trie is None:
            say("SmoothQuant skipped: no item catalog to calibrate on (int8 with per-tensor activation scales only)")
    if smoothquant:
        from .smoothquant import calibration_batch, smooth_model

        if trie is None:
            raise ExportError("--smoothquant calibrates on prompts of catalog items and this export has no catalog; "
                              "pass the trie, or --smoothquant 0")
        say(f"SmoothQuant (alpha {smoothquant}): calibrating on catalog prompts")
        cal = pieces or _prompt_pieces(ckpt_dir, model, trie, template=False)  # tokenizer prompts: the TIGER rows
        smoothing = smooth_model(model, *calibration_batch(cal, trie.item_paths()), alpha=smoothquant)

    if vocab == "items":
        if item_token_ids is None:
            if trie is None:
                raise ExportError("vocab='items' needs the identifier tokens, and the checkpoint has no trie.npz or "
                                  "items.json — " + hint("pass item_token_ids= or a trie (trie=...), or vocab='full'",
                                                         "pass --vocab full, or export a checkpoint written by "
                                                         "`earn-export train` (it holds the item catalog)"))
            item_token_ids = np.unique(trie.tokens)
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
    view = export_view(model, head_ids, form)  # one view for both graphs: the packed QKV weights exist once
    prefill = PrefillGraph(view=view).eval()
    decode = DecodeGraph(view=view).eval()

    b, nb, p, t = SAMPLE["batch"], SAMPLE["beam"], SAMPLE["prompt_len"], SAMPLE["t"]
    r = model.earn.n_registers if model.earn else 0
    p = max(p, r + 3)
    ids, mask = _sample_prompt(model, b, p)
    with torch.no_grad():
        out = prefill(ids, mask)
    g = torch.Generator().manual_seed(0)
    hkv, d = model.n_kv_heads, model.head_dim
    gen = [torch.randn(b, nb, hkv, t, d, generator=g).to(getattr(torch, kv_dtype)) for _ in range(2 * n)]
    tok = torch.randint(0, model.config.vocab_size, (b, nb, 1), generator=g)
    pos = (mask.sum(-1) + t)[:, None, None].expand(b, nb, 1).contiguous()
    decode_args = (tok, pos, mask, *out[1:], *gen)

    meta = {"earn_export.format_version": FORMAT_VERSION, "earn_export.vocab": vocab}
    written, used, op_counts, quant_infos = [], {}, {}, {}
    for g in ("prefill", "decode"):
        (out_dir / f"{g}.onnx.data").unlink(missing_ok=True)  # per-graph weight files of an earlier export
    weights = SharedWeights(out_dir, progress=getattr(progress, "advance", None))
    try:
        with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
            for graph, module, args in (("prefill", prefill, (ids, mask)), ("decode", decode, decode_args)):
                say(f"tracing {graph}.onnx ({'dynamo' if exporter != 'torchscript' else 'TorchScript'})")
                plugin = attention == "plugin" and graph == "decode"
                with emit_op() if plugin else contextlib.nullcontext():  # plugin: one opaque node per layer
                    graph_ir, used[graph] = _export_graph(module, args, Path(tmp), graph, specs[graph], opset,
                                                          exporter, exporter_kwargs if plugin else None)
                if plugin:
                    attention_mode.finish_graph(graph_ir, specs[graph], n, f"{graph}.onnx")
                _check_form(_op_counts(graph_ir), form, graph, n, architecture(model.config).qk_norm)
                if quantize is not None:
                    say(f"quantizing {graph}.onnx ({quantize})")
                    graph_ir, quant_infos[graph] = quantize_ir(graph_ir, quantize, tmp, graph)
                op_counts[graph] = _op_counts(graph_ir)
                say(f"writing {graph}.onnx + weights")
                written.append(_finalize(graph_ir, out_dir, f"{graph}.onnx", weights, meta, progress))
                del graph_ir
        weights_entry = weights.close()
    except BaseException:
        weights.abort()
        raise
    ort_graphs = {}
    if ort_optimize:
        from .ort_optimize import optimize_engine

        say("ONNX Runtime offline optimisation (CPU)")
        ort_graphs, weights_entry = optimize_engine(out_dir, progress=getattr(progress, "advance", None))
        written += [e["file"] for e in ort_graphs.values()]

    trie_files, prompt, prompt_files = [], None, []
    if trie is not None:
        trie_files = save_trie_arrays(trie, out_dir)
        prompt, prompt_files = _write_prompt(pieces, out_dir)
    earn = model.earn
    cfg = model.config.to_dict()
    manifest = {
        "format_version": FORMAT_VERSION,
        "kind": "earn-export engine",
        "model": {
            "model_type": model.config.model_type,
            "architecture": architecture(model.config).family,
            "num_layers": n, "split_layer": k, "dense": k == n,
            "n_kv_heads": hkv, "head_dim": d, "hidden_size": model.config.hidden_size,
            "vocab_size": model.config.vocab_size, "n_registers": r,
            "n_prefix": earn.n_prefix if earn else 0, "n_suffix": earn.n_suffix if earn else 0,
            **{key: list(getattr(earn, key, [])) for key in ("prefix_token_ids", "suffix_token_ids",
                                                             "register_token_ids")},
            **{key: getattr(earn, key, None) for key in ("paradigm", "id_length", "max_history")},
        },
        "hf_config": json.loads(json.dumps(cfg, default=str)),
        "earn_config": (json.loads(json.dumps(earn.__dict__, default=str)) if earn else None),
        "vocab": {"mode": vocab, "vocab_out": vocab_out, "vocab_out_token_ids": head_ids},
        "logits": "log_softmax", "dtype": kv_dtype, "logits_dtype": "float32",
        "opset": opset,
        "form": {"name": form, "opset": opset,
                 "standard_ops": ["RMSNormalization", "RotaryEmbedding", "Attention (prefill)", "packed QKV MatMul"]
                 if form == "fused" else [],
                 "runtimes": FUSED_RUNTIMES if form == "fused" else {"onnxruntime": ">= 1.17", "tensorrt": ">= 10"},
                 "fallback": "export with --form reference for runtimes without the opset-23 ops"
                 if form == "fused" else None},
        "exporter": used,
        "attention": attention_mode.manifest_entry(attention),
        "graphs": {
            g: {"file": f"{g}.onnx", "nodes": sum(op_counts[g].values()), "op_types": op_counts[g],
                "ort_optimized": ort_graphs.get(g), "external_data": WEIGHTS_FILE,
                **specs[g]}
            for g in ("prefill", "decode")
        },
        "dynamic_axes": {
            "batch": "users per call", "prompt_len": "left-padded prompt length (registers included)",
            "beam": "beams per user", "t": "generated tokens held per beam (0 at the first decode call, up to L-1)",
        },
        "weights": weights_entry,
        "quantization": quant_entry(quant_infos) | {"smoothquant": smoothing} if quant_infos else None,
        "trie": {"format": "npy", "prefix": "trie", "depth": trie.depth} if trie is not None else None,
        "prompt": prompt,
        "id_map": id_map_entry(out_dir, trie),  # item_ids.json (copied with aux): original item ids
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
    files = written + [WEIGHTS_FILE] + aux + trie_files + prompt_files
    say("hashing files, writing manifest.json")
    return write_manifest(out_dir, manifest, files, known={WEIGHTS_FILE: weights_entry["sha256"]})
