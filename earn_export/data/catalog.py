"""Item catalog (item id -> identifier code strings) and the CSR trie of valid identifiers.

The catalog speaks code *strings* (``<a_47>``, as data files hold them), the trie *token ids* of one tokenizer
(what beam search needs); ``ItemCatalog.trie(tokenizer)`` is the one bridge. Identifiers must be unique (one
leaf, one item), so collisions are refused unless ``dedupe=True`` re-assigns their last level (the Beauty
LC-Rec index has 9 colliding identifiers). Trie layout: docs/CONTRACTS.md "Trie (CSR)".
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from .errors import DataError, read_json

FORMAT_VERSION = 1
_CODE_RE = re.compile(r"^<([A-Za-z]+)_(\d+)>$")


def code_sort_key(code: str):
    """Natural order for code strings: ``<a_2>`` before ``<a_10>``, level letters grouped."""
    m = _CODE_RE.match(code)
    return (0, m.group(1), int(m.group(2)), "") if m else (1, "", 0, code)


# ------------------------------------------------------------------------------------------------ index I/O
def read_index(path) -> dict[int, list[str]]:
    """A raw semantic-ID index ``{"0": ["<a_47>", "<b_103>", ...], ...}`` (Beauty LC-Rec format), shape-checked only."""
    path = Path(path)
    try:
        empty = not path.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise DataError(f"{path}: cannot read the semantic-ID index ({e}); pass index= with an existing .json file")
    if empty:
        raise DataError(f"{path}: the semantic-ID index is empty; it must map item ids to code lists, "
                        'e.g. {"0": ["<a_47>", "<b_103>", "<c_234>", "<d_99>"]}')
    return _codes_from_json(read_json(path, "fix the semantic-ID index"), path)


def _codes_from_json(raw, path) -> dict[int, list[str]]:
    """Item codes of a parsed ``items.json`` (this package's format, version-checked) or raw index."""
    if isinstance(raw, dict) and "items" in raw and "id_length" in raw:
        if raw.get("format_version") != FORMAT_VERSION:
            raise DataError(f"{path}: format_version {raw.get('format_version')!r} is not supported "
                            f"(expected {FORMAT_VERSION}); re-create it with ItemCatalog.save")
        codes = _check_codes(raw["items"], str(path))
        if len(next(iter(codes.values()))) != raw["id_length"]:
            raise DataError(f"{path}: id_length {raw['id_length']} does not match the identifiers' length")
        return codes
    return _check_codes(raw, str(path))


def _check_codes(raw, source: str) -> dict[int, list[str]]:
    if not isinstance(raw, dict) or not raw:
        raise DataError(f"{source}: expected a non-empty JSON object item_id -> list of code strings, "
                        f"got {type(raw).__name__}")
    codes: dict[int, list[str]] = {}
    length = None
    for key, value in raw.items():
        try:
            item = int(key)
        except (TypeError, ValueError):
            raise DataError(f"{source}: item id {key!r} is not an integer; keys must be item ids 0, 1, 2, ...")
        if item < 0:
            raise DataError(f"{source}: item id {item} is negative; item ids start at 0")
        if item in codes:
            raise DataError(f"{source}: item {item} appears twice (keys {key!r}); keep one entry per item")
        if not isinstance(value, (list, tuple)) or not value or not all(isinstance(c, str) and c for c in value):
            raise DataError(f"{source}: item {item}: expected a non-empty list of code strings like "
                            f'["<a_47>", "<b_103>"], got {value!r}')
        if length is None:
            length = len(value)
        elif len(value) != length:
            raise DataError(f"{source}: item {item} has {len(value)} codes but others have {length}; all "
                            "identifiers must have the same length (one code per level)")
        codes[item] = list(value)
    return dict(sorted(codes.items()))


def find_duplicates(codes: dict[int, list[str]]) -> list[list[int]]:
    """Groups (sorted item ids) of items that share one identifier; empty when all are unique."""
    groups: dict[tuple, list[int]] = {}
    for item, c in codes.items():
        groups.setdefault(tuple(c), []).append(item)
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)


def dedupe_codes(codes: dict[int, list[str]]) -> tuple[dict[int, list[str]], int]:
    """Make identifiers unique: the lowest item id of a colliding group keeps its identifier, the others get the
    smallest unused last-level code under the same L-1 prefix (the semantic part). Returns (codes, n_reassigned)."""
    out = {i: list(c) for i, c in codes.items()}
    used: dict[tuple, set[str]] = {}
    for c in out.values():
        used.setdefault(tuple(c[:-1]), set()).add(c[-1])
    n = 0
    for group in find_duplicates(codes):
        for item in group[1:]:
            last = out[item][-1]
            m = _CODE_RE.match(last)
            if not m:
                raise DataError(f"items {group} share the identifier {''.join(out[item])} and its last code "
                                f"{last!r} is not of the form <x_j>, so it cannot be re-assigned automatically; "
                                "give these items distinct identifiers in the index")
            prefix = tuple(out[item][:-1])
            j = 0
            while f"<{m.group(1)}_{j}>" in used[prefix]:
                j += 1
            new = f"<{m.group(1)}_{j}>"
            used[prefix].add(new)
            out[item][-1] = new
            n += 1
    return out, n


# ------------------------------------------------------------------------------------------------ catalog
class ItemCatalog:
    """Item id -> identifier code strings, all of one length ``id_length``; identifiers are unique."""

    def __init__(self, codes: dict[int, list[str]], source: str = "catalog"):
        codes = _check_codes({int(k): list(v) for k, v in dict(codes).items()}, source)
        dups = find_duplicates(codes)
        if dups:
            show = "; ".join(f"items {g} share {''.join(codes[g[0]])}" for g in dups[:3])
            raise DataError(f"{source}: {len(dups)} identifiers are shared by several items ({show}"
                            f"{'; ...' if len(dups) > 3 else ''}); the trie cannot tell them apart. Load the "
                            "index with ItemCatalog.from_index(path, dedupe=True) (re-assigns the last level), "
                            "or build IDs with semantic_ids.build_semantic_ids (adds a collision level)")
        self.codes: dict[int, list[str]] = codes
        self.id_length: int = len(next(iter(codes.values())))
        self.reassigned = 0  # identifiers changed by dedupe (from_index / load with dedupe=True)
        self.directory: Path | None = None  # set by load(): where to find the tokenizer for trie()

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, item) -> list[str]:
        return self.codes[int(item)]

    def items(self) -> list[int]:
        return list(self.codes)

    def identifier(self, item) -> str:
        """The identifier as text, e.g. ``<a_47><b_103><c_234><d_99>``."""
        return "".join(self.codes[int(item)])

    def code_tokens(self) -> list[str]:
        """Unique code strings, naturally sorted (``<a_0>``, ``<a_1>``, ..., ``<b_0>``, ...)."""
        return sorted({c for cs in self.codes.values() for c in cs}, key=code_sort_key)

    def save(self, directory) -> Path:
        Path(directory).mkdir(parents=True, exist_ok=True)
        path = Path(directory) / "items.json"
        doc = {"format_version": FORMAT_VERSION, "id_length": self.id_length,
               "items": {str(i): c for i, c in self.codes.items()}}
        path.write_text(json.dumps(doc), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path, dedupe: bool = False) -> "ItemCatalog":
        """``items.json`` or a raw index ``{"0": [...], ...}`` (the file, or a directory holding ``items.json``)."""
        path = Path(path)
        if path.is_dir():
            if not (path / "items.json").is_file():
                jsons = sorted(p.name for p in path.glob("*.json"))
                raise DataError(f"{path}: no items.json (json files here: {jsons}); pass the index file itself")
            path = path / "items.json"
        if not path.is_file():
            raise DataError(f"{path}: no such item catalog; expected items.json or a semantic-ID index .json")
        codes = _codes_from_json(read_json(path, "fix or re-create the file"), path)
        cat = cls.from_index(codes, dedupe=dedupe, source=str(path))
        cat.directory = path.parent
        return cat

    @classmethod
    def from_index(cls, index, dedupe: bool = False, source: str | None = None) -> "ItemCatalog":
        """From a raw index (path or dict); ``dedupe=True`` re-assigns collisions, counted in ``.reassigned``."""
        if isinstance(index, (str, Path)):
            source = source or str(index)
            codes = read_index(index)
        else:
            source = source or "index"
            codes = _check_codes({int(k): v for k, v in dict(index).items()}, source)
        codes, n = dedupe_codes(codes) if dedupe else (codes, 0)
        cat = cls(codes, source=source)
        cat.reassigned = n
        return cat

    def token_paths(self, tokenizer) -> dict[int, list[int]]:
        """item -> token ids of its codes in ``tokenizer``; every code must be one known token."""
        ids = _token_ids(tokenizer, self.code_tokens(), "identifier code")
        return {i: [ids[c] for c in cs] for i, cs in self.codes.items()}

    def trie(self, tokenizer=None) -> "Trie":
        """The CSR trie over token ids. ``tokenizer`` None: the tokenizer saved beside ``items.json``."""
        if tokenizer is None:
            if self.directory is None:
                raise DataError("ItemCatalog.trie() needs a tokenizer (code strings -> token ids); pass one")
            from transformers import AutoTokenizer

            try:
                tokenizer = AutoTokenizer.from_pretrained(str(self.directory))
            except Exception as e:  # noqa: BLE001 - any loading failure means the same thing here
                raise DataError(f"{self.directory}: no loadable tokenizer beside items.json ({e}); pass tokenizer=")
        return Trie.build(self.token_paths(tokenizer))


def _token_ids(tokenizer, strings, what: str) -> dict[str, int]:
    """string -> id for tokens that must exist as single tokens in the vocabulary (not mapped to unk)."""
    strings = list(strings)
    ids = tokenizer.convert_tokens_to_ids(strings)
    unk = getattr(tokenizer, "unk_token_id", None)
    unk_str = getattr(tokenizer, "unk_token", None)
    missing = [s for s, i in zip(strings, ids) if i is None or (unk is not None and i == unk and s != unk_str)]
    if missing:
        raise DataError(f"{len(missing)} {what} tokens are not in the tokenizer's vocabulary (e.g. {missing[:5]}); "
                        "add them with earn_export.data.tokenizer.extend_tokenizer(tok, codes, registers) or build "
                        "the tokenizer with build_tokenizer(words, catalog.code_tokens(), registers)")
    return {s: int(i) for s, i in zip(strings, ids)}


# ------------------------------------------------------------------------------------------------ trie
class Trie:
    """CSR trie of item identifiers over token ids (docs/CONTRACTS.md "Trie (CSR)")."""

    KEYS = ("offsets", "tokens", "children", "leaf_item", "depth")

    def __init__(self, offsets, tokens, children, leaf_item, depth: int, source: str = "trie"):
        self.offsets, self.tokens, self.children, self.leaf_item = (
            np.ascontiguousarray(a, dtype=np.int64) for a in (offsets, tokens, children, leaf_item))
        self.depth = int(depth)
        self._padded = None
        self._validate(source)

    @property
    def n_nodes(self) -> int:
        return len(self.leaf_item)

    @property
    def n_items(self) -> int:
        return int((self.leaf_item >= 0).sum())

    @classmethod
    def build(cls, paths: dict[int, list[int]]) -> "Trie":
        """From item -> token-id path. Refuses empty input, ragged lengths, negative ids and duplicates."""
        if not paths:
            raise DataError("cannot build a trie from zero items; the catalog is empty")
        items = np.array([int(i) for i in paths], dtype=np.int64)
        lengths = {len(p) for p in paths.values()}
        if len(lengths) != 1 or 0 in lengths:
            raise DataError(f"identifier token paths have lengths {sorted(lengths)}; all must have one length >= 1")
        if (items < 0).any():
            raise DataError(f"negative item ids {items[items < 0][:5].tolist()}; item ids start at 0")
        if len(np.unique(items)) != len(items):
            raise DataError("an item id appears twice in the trie paths")
        P = np.array([list(p) for p in paths.values()], dtype=np.int64)
        if (P < 0).any():
            raise DataError("negative token ids in identifier paths (a code missing from the vocabulary?)")
        n, L = P.shape
        order = np.lexsort(P.T[::-1])  # lexicographic by level 0, then 1, ...
        P, items = P[order], items[order]
        new = np.arange(n) == 0  # row starts a new prefix of the current depth (row 0 always does)
        node_of = np.zeros(n, dtype=np.int64)  # node id of each row's prefix at the previous depth (root: 0)
        next_id = 1
        parents, toks = [], []
        for d in range(L):
            new[1:] |= P[1:, d] != P[:-1, d]
            starts = np.flatnonzero(new)
            ids = next_id + np.arange(len(starts))
            parents.append(node_of[starts])
            toks.append(P[starts, d])
            node_of = ids[np.cumsum(new) - 1]
            next_id += len(starts)
        leaf_rows = starts  # the rows that start a depth-L node: one per item when identifiers are unique
        if len(leaf_rows) != n:
            dup = np.flatnonzero(~new)
            a, b = int(items[dup[0] - 1]), int(items[dup[0]])
            raise DataError(f"{n - len(leaf_rows)} items share an identifier with another item (e.g. items {a} and "
                            f"{b}: tokens {P[dup[0]].tolist()}); make identifiers unique first "
                            "(ItemCatalog.from_index(..., dedupe=True) or build_semantic_ids)")
        n_nodes = next_id
        # BFS numbering: edge e leads to node e + 1; parents are non-decreasing, tokens sorted within a parent
        counts = np.bincount(np.concatenate(parents), minlength=n_nodes)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        children = np.arange(1, n_nodes, dtype=np.int64)
        leaf_item = np.full(n_nodes, -1, dtype=np.int64)
        leaf_item[n_nodes - n:] = items[leaf_rows]
        return cls(offsets, np.concatenate(toks), children, leaf_item, L, source="Trie.build")

    def save(self, path) -> Path:
        """Write the npz (keys offsets, tokens, children, leaf_item, depth) exactly at ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            np.savez(f, offsets=self.offsets, tokens=self.tokens, children=self.children,
                     leaf_item=self.leaf_item, depth=np.int64(self.depth))
        return path

    @classmethod
    def from_arrays(cls, arrays: dict, source: str = "trie arrays") -> "Trie":
        """From the CSR arrays by name (``KEYS``; ``depth`` 0-d or 1-element)."""
        a = {k: np.asarray(arrays[k]) for k in cls.KEYS}
        depth = int(a["depth"].reshape(-1)[0])
        return cls(a["offsets"], a["tokens"], a["children"], a["leaf_item"], depth, source=source)

    @classmethod
    def load(cls, path) -> "Trie":
        """From a ``trie.npz`` file (checkpoints; engines hold ``trie.*.npy``: ``earn_export.engine.trie_files``)."""
        path = Path(path)
        if path.is_dir():
            raise DataError(f"{path} is a directory: an engine's trie.*.npy arrays are read by "
                            "earn_export.engine.trie_files.load_trie_arrays")
        if not path.is_file():
            raise DataError(f"{path}: no such trie file; build it with ItemCatalog.trie(tokenizer).save(path)")
        try:
            with np.load(path) as z:
                arrays = {k: z[k] for k in cls.KEYS if k in z.files}
                files = z.files
        except Exception as e:  # noqa: BLE001 - corrupt zip / pickle etc.
            raise DataError(f"{path}: cannot read the trie ({e}); re-create it with Trie.save")
        missing = [k for k in cls.KEYS if k not in arrays]
        if missing:
            raise DataError(f"{path}: trie file lacks arrays {missing} (has {files}); re-create it with Trie.save")
        return cls.from_arrays(arrays, source=str(path))

    def _validate(self, source: str):
        """A real tree of depth L from node 0: one parent per node, sorted unique tokens per node, leaves
        exactly at depth L with an item each, and no dead end (a childless node above depth L)."""
        o, t, c, leaf, L = self.offsets, self.tokens, self.children, self.leaf_item, self.depth
        n = len(leaf)

        def bad(msg):
            raise DataError(f"{source}: invalid trie: {msg}; rebuild it with Trie.build / ItemCatalog.trie")

        if L < 1 or n < 1 or len(o) != n + 1 or o[0] != 0 or o[-1] != len(t) or len(c) != len(t):
            bad(f"inconsistent array sizes (offsets {len(o)}, nodes {n}, tokens {len(t)}, children {len(c)}, "
                f"depth {L})")
        if (np.diff(o) < 0).any():
            bad("offsets decrease")
        if len(c) and (c.min() < 1 or c.max() >= n):
            bad("a child index is out of range or points at the root")
        if not np.array_equal(np.bincount(c, minlength=n), np.r_[0, np.ones(n - 1, dtype=np.int64)]):
            bad("a node has zero or several parents")
        owner = np.repeat(np.arange(n), np.diff(o))
        if len(t) > 1 and ((owner[1:] == owner[:-1]) & (t[1:] <= t[:-1])).any():
            bad("tokens are not strictly increasing within a node")
        if len(t) and t.min() < 0:
            bad("negative token id")
        depth = np.full(n, -1, dtype=np.int64)
        depth[0] = 0
        for d in range(L):
            e = np.flatnonzero(depth[owner] == d)
            depth[c[e]] = d + 1
        if (depth < 0).any():
            bad("some nodes are not reachable from the root within depth L (or lie deeper)")
        fanout = np.diff(o)
        if (fanout[depth == L] > 0).any():
            bad("a depth-L node has children")
        if ((fanout == 0) & (depth < L)).any():
            bad("a node above depth L has no children (dead end)")
        is_leaf = depth == L
        if (leaf[is_leaf] < 0).any() or (leaf[~is_leaf] >= 0).any():
            bad("leaf_item must be an item id exactly at depth-L nodes and -1 elsewhere")
        if len(np.unique(leaf[is_leaf])) != int(is_leaf.sum()):
            bad("an item appears at several leaves")

    def padded_children(self) -> tuple[np.ndarray, np.ndarray]:
        """(child_tokens [n_nodes, C], child_nodes [n_nodes, C]), -1 padded, C = max fan-out."""
        if self._padded is None:
            fan = np.diff(self.offsets)
            C = max(int(fan.max(initial=0)), 1)
            owner = np.repeat(np.arange(self.n_nodes), fan)
            col = np.arange(len(self.tokens)) - self.offsets[owner]
            ct = np.full((self.n_nodes, C), -1, dtype=np.int64)
            cn = np.full((self.n_nodes, C), -1, dtype=np.int64)
            ct[owner, col] = self.tokens
            cn[owner, col] = self.children
            self._padded = (ct, cn)
        return self._padded

    def item_paths(self) -> dict[int, list[int]]:
        """item id -> its identifier token ids (sorted by item id)."""
        parent = np.zeros(self.n_nodes, dtype=np.int64)
        in_tok = np.full(self.n_nodes, -1, dtype=np.int64)
        owner = np.repeat(np.arange(self.n_nodes), np.diff(self.offsets))
        parent[self.children] = owner
        in_tok[self.children] = self.tokens
        leaves = np.flatnonzero(self.leaf_item >= 0)
        out = np.zeros((len(leaves), self.depth), dtype=np.int64)
        node = leaves
        for d in range(self.depth - 1, -1, -1):
            out[:, d] = in_tok[node]
            node = parent[node]
        items = self.leaf_item[leaves]
        order = np.argsort(items)
        return {int(items[k]): out[k].tolist() for k in order}
