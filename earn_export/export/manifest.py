"""``manifest.json`` of an engine directory: what was exported, how, and the sha256 of every file.

Loaders call :func:`load_manifest`, which refuses (with the problem and the fix in the message) a missing or
partial directory, a manifest written by another format version, and files whose sha256 differs from the one
recorded at export.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..errors import UserError

FORMAT_VERSION = 2  # 2: trie as .npy arrays, prompt pieces (no tokenizer at run time)
MANIFEST = "manifest.json"


class EngineDirError(RuntimeError, UserError):
    """An engine directory that cannot be used as it is; the message names the problem and the fix."""


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_manifest(out_dir: Path, manifest: dict, files: list[str]) -> dict:
    """Add ``sha256`` (file name -> digest) for ``files`` (relative to out_dir) and write manifest.json."""
    out_dir = Path(out_dir)
    manifest = dict(manifest)
    manifest["sha256"] = {name: sha256_file(out_dir / name) for name in sorted(set(files))}
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return manifest


def load_manifest(engine_dir, verify: bool = True) -> dict:
    """Read and check an engine directory's manifest. ``verify`` also re-hashes every listed file."""
    engine_dir = Path(engine_dir)
    fix = f"re-export it: `earn-export export CKPT --out {engine_dir}`"
    if not engine_dir.is_dir():
        raise EngineDirError(f"engine directory {engine_dir} does not exist — {fix}")
    path = engine_dir / MANIFEST
    if not path.is_file():
        raise EngineDirError(f"{engine_dir}: no {MANIFEST} (not an engine directory, or an interrupted export) — {fix}")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise EngineDirError(f"{path}: not valid JSON ({exc}) — {fix}") from exc
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise EngineDirError(
            f"{path}: manifest format_version {version!r} is not supported by this earn-export (expects "
            f"{FORMAT_VERSION}) — re-export with this version (`earn-export export CKPT --out {engine_dir}`) or "
            "install the earn-export version that wrote it."
        )
    hashes = manifest.get("sha256") or {}
    missing = [name for name in hashes if not (engine_dir / name).is_file()]
    if missing:
        raise EngineDirError(f"{engine_dir}: missing files {missing} listed in {MANIFEST} (partial copy?) — "
                             f"copy the whole directory again or {fix}")
    if verify:
        bad = [name for name, digest in hashes.items() if sha256_file(engine_dir / name) != digest]
        if bad:
            raise EngineDirError(
                f"{engine_dir}: sha256 mismatch for {bad}: the files changed after export (corrupt or partial copy, "
                f"or edited by hand) — copy them again or {fix}"
            )
    return manifest
