"""``manifest.json`` of an engine directory: what was exported, how, and the sha256 of every file.

:func:`load_manifest` refuses, with the fix, a missing or partial directory, another format version and files
whose sha256 changed. Hashing gigabytes on every load is slow, so a successful check is remembered
(``.verified.json``, or the user cache for a read-only engine): ``verify="fast"`` re-hashes only files whose
(size, mtime, ctime, inode, device) changed; any write moves the ctime, which user code cannot set back.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

from ..errors import UserError

FORMAT_VERSION = 2  # 2: trie as .npy arrays, prompt pieces (no tokenizer at run time)
MANIFEST = "manifest.json"
STAMP = ".verified.json"
VERIFY_MODES = ("full", "fast", "off")


class EngineDirError(RuntimeError, UserError):
    """An engine directory that cannot be used as it is; the message names the problem and the fix."""


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_manifest(out_dir: Path, manifest: dict, files: list[str], known: dict | None = None) -> dict:
    """Add ``sha256`` (file name -> digest) for ``files`` (relative to out_dir) and write manifest.json.

    ``known``: digests already computed while writing (the shared weights file), not hashed again."""
    out_dir = Path(out_dir)
    manifest = dict(manifest)
    known = known or {}
    manifest["sha256"] = {name: known.get(name) or sha256_file(out_dir / name) for name in sorted(set(files))}
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return manifest


def runtime_files(manifest: dict) -> list[str]:
    """The engine's small files a runtime reads besides the graphs and their weights (trie arrays, prompt pieces,
    tokenizer/config files): what a copy of the engine needs when the graphs are served elsewhere (Triton BLS)."""
    graphs = (manifest.get("graphs") or {}).values()
    graph_files = {spec.get(key) for spec in graphs for key in ("file", "external_data")}
    return [name for name in sorted(manifest.get("sha256") or {})
            if name not in graph_files and not name.endswith((".data", ".onnx", ".ort"))]


def attention_mode(manifest: dict) -> str:
    """An engine's decode attention: ``"plugin"`` (``earn::CompactedAttention`` nodes, which need the compiled op
    library) or ``"onnx"`` (standard ops; also manifests written before the option existed)."""
    return (manifest.get("attention") or {}).get("mode", "onnx")


def _identity(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _stamp_paths(engine_dir: Path) -> list[Path]:
    """Where the verification record may live: the engine dir, then a per-directory file in the user cache."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "earn-export" / "verified"
    key = hashlib.sha256(str(engine_dir.resolve()).encode()).hexdigest()[:24]
    return [engine_dir / STAMP, cache / f"{key}.json"]


def _read_stamp(engine_dir: Path) -> dict:
    for path in _stamp_paths(engine_dir):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("engine_dir") == str(engine_dir.resolve()):
            return data.get("files") or {}
    return {}


def _write_stamp(engine_dir: Path, files: dict) -> None:
    """Record verified files (name -> sha256 + identity); silently skipped where nothing is writable."""
    body = json.dumps({"engine_dir": str(engine_dir.resolve()), "files": files}, indent=1)
    for path in _stamp_paths(engine_dir):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_text(body)
            os.replace(tmp, path)
            return
        except OSError:
            continue


def verify_files(engine_dir, hashes: dict, mode: str = "fast") -> dict:
    """Check ``hashes`` (name -> sha256) against the files; returns {name: "hashed" | "remembered" | "skipped"}.
    ``fast`` trusts only a file recorded with this digest and an unchanged identity."""
    engine_dir = Path(engine_dir)
    if mode == "off":
        return {name: "skipped" for name in hashes}
    stamp = _read_stamp(engine_dir) if mode == "fast" else {}
    how, bad, record = {}, [], {}
    for name, digest in hashes.items():
        path = engine_dir / name
        ident = _identity(path)
        seen = stamp.get(name)
        if seen and seen.get("sha256") == digest and seen.get("identity") == ident:
            how[name] = "remembered"
        elif sha256_file(path) == digest:
            how[name] = "hashed"
        else:
            bad.append(name)
            continue
        record[name] = {"sha256": digest, "identity": _identity(path)}
    if bad:
        fix = f"re-export it: `earn-export export CKPT --out {engine_dir}`"
        raise EngineDirError(
            f"{engine_dir}: sha256 mismatch for {bad}: the files changed after export (corrupt or partial copy, "
            f"or edited by hand) — copy them again or {fix}"
        )
    if any(v == "hashed" for v in how.values()):
        _write_stamp(engine_dir, record)
    return how


def load_manifest(engine_dir, verify="fast") -> dict:
    """Read and check an engine directory's manifest. ``verify``: ``"fast"`` (default), ``"full"``, ``"off"``
    (existence only, with a warning); ``True``/``False`` mean full/off."""
    engine_dir = Path(engine_dir)
    mode = "full" if verify is True else "off" if verify is False or verify is None else verify
    if mode not in VERIFY_MODES:
        raise ValueError(f"verify must be one of {VERIFY_MODES} (or True/False), got {verify!r}")
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
    if verify == "off":  # asked for by the user (--verify off); internal re-reads pass False and stay quiet
        warnings.warn(f"{engine_dir}: file checksums not verified (verify='off')", stacklevel=2)
    verify_files(engine_dir, hashes, mode)
    return manifest
