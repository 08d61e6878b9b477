"""The catalog's original item ids (and titles): ``item_ids.json`` in a checkpoint and in its engine directory.

Training remaps a user's own ids (``sku-528``) to catalog indices 0..n-1; the map lets the runtimes speak the
original ids again. Format: docs/own-ids.md. ``id_type`` is ``"int"`` when every id is the canonical
spelling of an integer (then ``7`` and ``"7"`` name the same item). :func:`load_id_map` refuses, naming the
file, a map that is not JSON, lacks a field, is partial, repeats or mixes ids, or does not cover the catalog.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from ..errors import check_choice
from .errors import DataError

ID_MAP_FILE = "item_ids.json"
FORMAT = "earn-item-ids"
VERSION = 1
_CANONICAL_INT = re.compile(r"0|-?[1-9][0-9]*")  # the spellings str(int) gives, so "7" and 7 name one item


class IdMapError(DataError):
    """An ``item_ids.json`` that cannot be used; the message names the file, the problem and the fix."""


class ItemIdMap:
    """Original item id <-> catalog index, plus optional titles (module doc)."""

    def __init__(self, ids: list, titles: dict[int, str] | None = None, id_type: str | None = None):
        spellings = [str(i) for i in ids]
        if id_type is None:
            id_type = "int" if spellings and all(_CANONICAL_INT.fullmatch(s) for s in spellings) else "str"
        check_choice("id_type", id_type, ("int", "str"), IdMapError)
        self.id_type = id_type
        self.ids = [int(s) for s in spellings] if id_type == "int" else spellings
        self.titles = {int(k): str(v) for k, v in (titles or {}).items()}
        self.index = {s: n for n, s in enumerate(spellings)}
        if len(self.index) != len(spellings):
            dup = [s for s, count in Counter(spellings).items() if count > 1]
            raise IdMapError(f"item id map: original ids {dup[:5]} appear more than once; every catalog item needs "
                             "its own id")

    def __len__(self) -> int:
        return len(self.ids)

    def lookup(self, original) -> int | None:
        """Catalog index of an original id (int or str), None when the catalog has no such item."""
        if isinstance(original, bool):
            return None
        if isinstance(original, float) and original.is_integer():
            original = int(original)
        return self.index.get(str(original).strip() if isinstance(original, str) else str(original))

    def original(self, index: int):
        return self.ids[int(index)]

    def title(self, index: int) -> str | None:
        return self.titles.get(int(index))

    def save(self, directory) -> Path:
        doc = {"format": FORMAT, "version": VERSION, "n_items": len(self.ids), "id_type": self.id_type, "ids": self.ids}
        if self.titles:
            doc["titles"] = {str(k): v for k, v in sorted(self.titles.items())}
        path = Path(directory) / ID_MAP_FILE
        path.write_text(json.dumps(doc, ensure_ascii=False) + "\n", encoding="utf-8")
        return path


def load_id_map(directory, n_items: int | None = None, required: bool = False) -> ItemIdMap | None:
    """``directory/item_ids.json`` checked in full (module doc); None when absent and not ``required``.
    ``n_items``: the number of items of the catalog the map must cover (the engine's trie), when known."""
    path = Path(directory) / ID_MAP_FILE
    fix = "re-export the engine from its checkpoint (`earn-export export CKPT --out DIR`), or retrain it"
    if not path.is_file():
        if required:
            raise IdMapError(f"{path}: missing — the engine's manifest lists an item id map; copy the file again or "
                             f"{fix}")
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise IdMapError(f"{path}: not valid JSON ({exc}) — {fix}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise IdMapError(f"{path}: not an item id map (format {FORMAT!r} expected) — {fix}")
    if doc.get("version") != VERSION:
        raise IdMapError(f"{path}: id map version {doc.get('version')!r}, this earn-export reads {VERSION} — {fix}")
    missing = [k for k in ("n_items", "id_type", "ids") if k not in doc]
    if missing:
        raise IdMapError(f"{path}: fields {missing} missing (partial file) — {fix}")
    ids, n, id_type = doc["ids"], doc["n_items"], doc["id_type"]
    if not isinstance(ids, list) or not isinstance(n, int) or len(ids) != n:
        raise IdMapError(f"{path}: partial map, {len(ids) if isinstance(ids, list) else 'no'} ids for n_items={n!r} "
                         f"— {fix}")
    want = int if id_type == "int" else str
    bad = [i for i in ids if not isinstance(i, want) or isinstance(i, bool) or (want is str and not i.strip())]
    if id_type not in ("int", "str") or bad:
        raise IdMapError(f"{path}: id_type {id_type!r} but ids such as {bad[:3]} are not of that type — {fix}")
    if n_items is not None and n != n_items:
        raise IdMapError(f"{path}: {n} ids for a catalog of {n_items} items (a map of another catalog, or partial) "
                         f"— {fix}")
    titles = doc.get("titles") or {}
    if not isinstance(titles, dict) or any(not str(k).isdigit() or int(k) >= n for k in titles):
        raise IdMapError(f"{path}: titles must map catalog indices 0..{n - 1} to text — {fix}")
    try:
        return ItemIdMap(ids, titles=titles, id_type=id_type)
    except IdMapError as exc:
        raise IdMapError(f"{path}: {exc} — {fix}") from None


def write_data_files(ckpt_dir, data, log: dict) -> None:
    """Checkpoint side of the loaded data: ``item_ids.json`` (when it has original ids), and what it held after
    loading (users, items, interactions kept per split, skipped counts) in ``data.json`` (``stats``; for non-synthetic
    data ``n_users``/``n_items`` become the counts kept) and in ``log`` (``data_stats``, ``data``)."""
    ckpt_dir = Path(ckpt_dir)
    if data.item_names:
        if len(data.item_names) != data.num_items:
            raise IdMapError(f"{data.source}: {len(data.item_names)} original item ids for {data.num_items} "
                             "catalog items")
        ItemIdMap(list(data.item_names), titles=data.titles).save(ckpt_dir)
    st = data.stats()
    stats = {"users": st["users"], "items": st["items"],
             "interactions_kept": sum(st[f"{s}_interactions"] for s in ("train", "valid", "test")),
             **{k: v for k, v in st.items() if k not in ("users", "items")},
             "skipped": dict(data.skipped), "original_ids": bool(data.item_names)}
    path = ckpt_dir / "data.json"
    spec = json.loads(path.read_text()) if path.is_file() else {}
    if spec.get("kind") not in (None, "synthetic"):
        spec.update(n_users=stats["users"], n_items=stats["items"])
    spec["stats"] = stats
    path.write_text(json.dumps(spec, indent=2) + "\n")
    log["data_stats"] = stats
    if isinstance(log.get("data"), dict):
        log["data"] = {k: v for k, v in spec.items() if k != "stats"}


def manifest_entry(engine_dir, trie) -> dict | None:
    """``manifest["id_map"]`` for an engine dir holding a (copied) ``item_ids.json``: checked against the trie at
    export, so a map of another catalog is refused there and not at the first request."""
    if trie is None:
        return None
    id_map = load_id_map(engine_dir, n_items=int(trie.leaf_item.max(initial=-1)) + 1)  # item ids are 0..n-1
    if id_map is None:
        return None
    return {"file": ID_MAP_FILE, "n_items": len(id_map), "id_type": id_map.id_type, "titles": bool(id_map.titles)}


def engine_id_map(engine_dir, manifest: dict, n_items: int | None = None) -> ItemIdMap | None:
    """The id map an engine's manifest names (refused by name when missing or not matching), else None."""
    entry = manifest.get("id_map")
    if not entry:
        return None
    if entry.get("file") != ID_MAP_FILE:
        raise IdMapError(f"{engine_dir}: manifest id_map names {entry.get('file')!r}, expected {ID_MAP_FILE!r} — "
                         "re-export the engine")
    return load_id_map(engine_dir, n_items=n_items if n_items is not None else entry.get("n_items"), required=True)
