"""The item-identifier trie of an engine directory: one int64 ``.npy`` per CSR array of ``earn_export.data.Trie``
(``trie.offsets.npy`` ... ``trie.depth.npy``, depth 0-d), read as-is by the Python and the C++ runtime (no zip
reader needed; checkpoints keep the same arrays in one ``trie.npz``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..data.catalog import Trie
from ..data.errors import DataError
from ..errors import hint
from .manifest import EngineDirError


def save_trie_arrays(trie: Trie, directory, prefix: str = "trie") -> list[str]:
    """Write ``{prefix}.{key}.npy`` for every CSR array into ``directory``; returns the file names (for the
    manifest's sha256)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for key in Trie.KEYS:
        value = np.int64(trie.depth) if key == "depth" else getattr(trie, key)
        np.save(directory / f"{prefix}.{key}.npy", np.asarray(value, dtype=np.int64))
    return [f"{prefix}.{key}.npy" for key in Trie.KEYS]


def load_trie_arrays(directory, prefix: str = "trie") -> Trie:
    directory = Path(directory)
    arrays = {}
    for key in Trie.KEYS:
        path = directory / f"{prefix}.{key}.npy"
        if not path.is_file():
            raise DataError(f"{path}: missing trie array; re-export the engine (save_trie_arrays writes all "
                            f"{len(Trie.KEYS)} arrays)")
        try:
            arrays[key] = np.load(path, allow_pickle=False)
        except Exception as e:  # noqa: BLE001 - truncated or foreign file
            raise DataError(f"{path}: cannot read the trie array ({e}); re-export the engine") from e
    return Trie.from_arrays(arrays, source=f"{directory}/{prefix}.*.npy")


def engine_trie(engine_dir, manifest: dict) -> Trie:
    """The trie of an engine directory (named by its manifest), or an EngineDirError when it has none."""
    if not manifest.get("trie"):
        raise EngineDirError(f"{engine_dir}: the engine has no trie — re-export with a trie ("
                             + hint("export_onnx(..., trie=...) or ", "")
                             + "a checkpoint with items.json / trie.npz)")
    return load_trie_arrays(engine_dir, manifest["trie"]["prefix"])


def resolve_trie(trie, ckpt_dir: Path | None = None) -> Trie | None:
    """The ``Trie`` to export or search with: a Trie, a ``trie.npz`` path or engine dir, a dict of CSR arrays, or
    None (the checkpoint's trie.npz, else one built from its item catalog). None when there is none."""
    if trie is None and ckpt_dir is not None and (ckpt_dir / "trie.npz").is_file():
        trie = ckpt_dir / "trie.npz"
    if trie is None and ckpt_dir is not None and (ckpt_dir / "items.json").is_file():
        from ..data.catalog import ItemCatalog

        return ItemCatalog.load(ckpt_dir).trie()  # with the tokenizer saved beside items.json
    if trie is None or isinstance(trie, Trie):
        return trie
    if isinstance(trie, (str, os.PathLike)):
        return load_trie_arrays(trie) if Path(trie).is_dir() else Trie.load(trie)
    if isinstance(trie, dict):
        return Trie.from_arrays(trie)
    raise DataError(f"trie must be a Trie, a trie.npz path or a dict of CSR arrays, got {type(trie).__name__}")

