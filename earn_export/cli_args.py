"""Argument types and cross-checks shared by the ``earn-export`` sub-commands (standard library only).

Why here: every argument must be checked while parsing, before any heavy import or data loading, with one
message that names the flag and the fix. argparse ``type=`` functions run at parse time; checks that involve two
flags or a file (``--top-k`` against ``--beam``, ``--split-layer`` against the model's depth in ``config.json``)
raise :class:`~earn_export.errors.UsageError` from the start of the command, before its heavy imports.
"""

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
    """An integer >= 0."""
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


def existing_path(text) -> str:
    """A file or directory that exists (an HF checkpoint dir or a ``.gguf`` file)."""
    if not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"{text} does not exist")
    return text


def split_layer(text) -> str | int:
    """``auto``, ``dense``, ``analyze`` or an integer k >= 1 (checked against the model's depth by
    :func:`check_split_layer`)."""
    if text in ("auto", "dense", "analyze"):
        return text
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected 'auto', 'dense', 'analyze' or an integer k >= 1, got {text!r}")


THREADS_HELP = ("CPU threads of torch (default: one per core). Runs with the same count are bit-identical on one "
                "machine, whatever its load; another count changes the float summation order, hence the last digits")


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


# ------------------------------------------------------------------------------------------------ cross-checks
def check_top_k_beam(top_k: int, beam: int, top_k_flag: str = "--top-k", beam_flag: str = "--beam") -> None:
    """The search returns at most ``beam`` items per user."""
    if top_k > beam:
        raise UsageError(f"{top_k_flag} {top_k} is larger than {beam_flag} {beam}, and the search returns at most "
                         f"{beam_flag} items per user — lower {top_k_flag} or raise {beam_flag} to at least {top_k}")


def model_depth(model_dir=None, preset: str | None = None) -> int | None:
    """Decoder layers of an HF checkpoint (``config.json``'s ``num_hidden_layers``) or a named preset; read with
    ``json`` only. None when it cannot be read here (the model loader then reports the problem)."""
    if model_dir is not None:
        try:
            cfg = json.loads((Path(model_dir) / "config.json").read_text())
        except (OSError, ValueError):
            return None
        cfg = cfg.get("text_config", cfg) if isinstance(cfg, dict) else {}
        n = cfg.get("num_hidden_layers")
        return n if isinstance(n, int) else None
    if preset is not None:
        from .model.presets import PRESETS  # a plain dict: no heavy imports

        spec = PRESETS.get(preset)
        return None if spec is None else spec["num_hidden_layers"]
    return None


def check_split_layer(k, depth: int | None, model_flag: str) -> None:
    """EARN's split k must be a layer of the model: 1 <= k <= N (k = N is the dense baseline)."""
    if isinstance(k, int) and depth is not None and not 1 <= k <= depth:
        raise UsageError(f"--split-layer {k} is outside the model's {depth} layers ({model_flag}) — pass an integer "
                         f"in 1..{depth}, 'auto' (about N/4), 'dense' or 'analyze'")
