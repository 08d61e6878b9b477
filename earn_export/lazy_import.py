"""The one way a package exposes names without importing them: a PEP 562 module ``__getattr__``.

Why: ``earn-export --help`` and the ONNX Runtime path must not import torch, transformers or onnxruntime, yet
``from earn_export.runtime import Recommender`` should work. A package lists ``name -> submodule`` and sets
``__getattr__ = lazy_attributes(__name__, names)``; the submodule is imported on first access.
"""

from __future__ import annotations

import importlib


def lazy_attributes(package: str, names: dict[str, str]):
    """A module ``__getattr__`` returning ``names[attr]``'s attribute ``attr`` (a module relative to ``package``,
    e.g. ``".backends"``), imported on first use."""

    def __getattr__(name: str):
        if name in names:
            return getattr(importlib.import_module(names[name], package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
