"""A user's own interaction log (CSV/TSV ``user,item,timestamp[,title]``) -> :class:`SequentialData`.

Delimiter and header are sniffed; timestamps are numbers or ISO-8601 dates. In order: exact duplicate rows are dropped
(logging artefacts that inflate k-core counts), iterative k-core, ids remapped to 0..n-1, then a global-time split at
the ``split`` quantiles with ``t < t1`` / ``t1 <= t < t2`` / ``t >= t2``, so equal timestamps never straddle a boundary.
Everything dropped is counted in ``skipped``; malformed rows raise DataError with ``file:line``.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..errors import hint
from .errors import DataError
from .sequences import SequentialData

_NAMES = {
    "user": {"user", "user_id", "userid", "uid", "reviewerid", "customer_id", "visitorid"},
    "item": {"item", "item_id", "itemid", "iid", "asin", "product_id", "movie_id", "movieid", "track_id"},
    "timestamp": {"timestamp", "time", "ts", "unixreviewtime", "datetime", "date", "event_time"},
    "title": {"title", "name", "item_title", "item_name", "text"},
}


def _parse_time(s: str) -> float | None:
    """Seconds of a stripped number or ISO date (UTC unless it names a zone), None for anything else."""
    try:
        return float(s)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt.replace(tzinfo=dt.tzinfo or timezone.utc).timestamp()


def _sniff(lines: list[str], path) -> str:
    """The first of tab, comma, semicolon, pipe giving every sample row one count >= 3 of fields (quotes respected)."""
    sample = [ln for ln in lines if ln.strip()][:50]
    for sep in ("\t", ",", ";", "|"):
        counts = {len(r) for r in csv.reader(sample, delimiter=sep)}
        if len(counts) == 1 and min(counts) >= 3:
            return sep
    for sep in ("\t", ",", ";", "|"):  # ragged titles: accept a delimiter giving >= 3 fields everywhere
        if all(len(r) >= 3 for r in csv.reader(sample, delimiter=sep)):
            return sep
    raise DataError(f"{path}: cannot detect the delimiter (tried tab, comma, semicolon, pipe) — write rows "
                    "'user,item,timestamp[,title]' separated by one of them"
                    + hint(", or pass sep=", ""))


def global_time_split(timestamps: np.ndarray, split=(0.8, 0.1, 0.1)) -> np.ndarray:
    """Split index per interaction (0 train, 1 valid, 2 test) by global time quantiles (module doc, step 4)."""
    if len(split) != 3 or min(split) < 0 or sum(split) <= 0 or split[0] <= 0:
        raise DataError(f"split must be three non-negative fractions with train > 0, got {split}")
    ts = np.asarray(timestamps, dtype=np.float64)
    n = len(ts)
    out = np.zeros(n, dtype=np.int64)
    total = float(sum(split))
    srt = np.sort(ts, kind="stable")
    c1 = int(n * split[0] / total)
    c2 = int(n * (split[0] + split[1]) / total)
    if c1 < n:
        out[ts >= srt[c1]] = 1
    if c2 < n and split[2] > 0:
        out[ts >= srt[c2]] = 2
    return out


def _natural_order(names: list[str]) -> list[str]:
    try:
        return sorted(names, key=lambda x: (int(x), x))
    except ValueError:
        return sorted(names)


def load_interactions(path, k_core: int = 5, split=(0.8, 0.1, 0.1), sep: str | None = None) -> SequentialData:
    """Read, filter, remap and split a user's interaction file (module doc)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such interactions file; expected a CSV/TSV 'user,item,timestamp[,title]'")
    text = path.read_text(encoding="utf-8-sig")
    lines = text.splitlines()
    if not any(ln.strip() for ln in lines):
        raise DataError(f"{path}: the file is empty; write one interaction per row 'user,item,timestamp[,title]'")
    sep = sep or _sniff(lines, path)
    rows = list(csv.reader(io.StringIO(text), delimiter=sep))

    # header and column layout
    first_i = next(i for i, r in enumerate(rows) if any(f.strip() for f in r))
    first = [f.strip() for f in rows[first_i]]
    cols = {"user": 0, "item": 1, "timestamp": 2, "title": 3}
    start = first_i
    if len(first) < 3 or _parse_time(first[2]) is None:
        start = first_i + 1  # header
        named = {}
        for j, name in enumerate(first):
            for key in (k for k, syn in _NAMES.items() if name.lower() in syn):
                named.setdefault(key, j)  # the first column of that name
        if {"user", "item", "timestamp"} <= set(named):
            cols = {"title": None, **named}

    triples, titles = {}, {}  # (user, item, time) of each row in file order, an exact repeat once
    skipped: dict[str, int] = {}
    need = max(cols["user"], cols["item"], cols["timestamp"]) + 1
    tcol = cols.get("title")
    for lineno, r in enumerate(rows[start:], start + 1):
        if not any(f.strip() for f in r):
            continue
        if len(r) < need:
            raise DataError(f"{path}:{lineno}: {len(r)} fields, expected at least {need} "
                            f"(user{sep}item{sep}timestamp[{sep}title]); quote titles that contain the delimiter")
        u, i, t = r[cols["user"]].strip(), r[cols["item"]].strip(), r[cols["timestamp"]].strip()
        if not u or not i:
            raise DataError(f"{path}:{lineno}: empty user or item id; every row needs both")
        ts = _parse_time(t)
        if ts is None:
            raise DataError(f"{path}:{lineno}: timestamp {t!r} is neither a number nor an ISO date — "
                            "write Unix seconds or ISO dates (e.g. 1400112000 or 2014-05-15T00:00:00)")
        if (u, i, ts) in triples:
            skipped["duplicate_rows"] = skipped.get("duplicate_rows", 0) + 1
            continue
        triples[u, i, ts] = None
        if tcol is not None and tcol < len(r) and r[tcol].strip():
            titles[i] = " ".join(r[tcol].split())
    if not triples:
        raise DataError(f"{path}: no interaction rows after the header; write rows 'user,item,timestamp[,title]'")
    users, items, times = zip(*triples)

    # k-core, iterative
    u_names, u_idx = np.unique(np.array(users, dtype=object).astype(str), return_inverse=True)
    i_names, i_idx = np.unique(np.array(items, dtype=object).astype(str), return_inverse=True)
    ts = np.asarray(times, dtype=np.float64)
    keep = np.ones(len(ts), dtype=bool)
    n_users0, n_items0 = len(u_names), len(i_names)
    if k_core > 1:
        while True:
            uc = np.bincount(u_idx[keep], minlength=len(u_names))
            ic = np.bincount(i_idx[keep], minlength=len(i_names))
            drop = keep & ((uc[u_idx] < k_core) | (ic[i_idx] < k_core))
            if not drop.any():
                break
            keep &= ~drop
    if not keep.any():
        raise DataError(f"{path}: the {k_core}-core filter removed every interaction (users and items need >= "
                        f"{k_core} interactions each) — " + hint("lower k_core", "lower --k-core") + " or add data")
    skipped["kcore_interactions"] = int((~keep).sum())
    u_idx, i_idx, ts = u_idx[keep], i_idx[keep], ts[keep]
    order_in_file = np.flatnonzero(keep)

    # remap to 0.. in natural order of the original ids
    kept_u = _natural_order([str(x) for x in u_names[np.unique(u_idx)]])
    kept_i = _natural_order([str(x) for x in i_names[np.unique(i_idx)]])
    skipped["kcore_users"] = n_users0 - len(kept_u)
    skipped["kcore_items"] = n_items0 - len(kept_i)
    u_map = np.full(len(u_names), -1, dtype=np.int64)
    i_map = np.full(len(i_names), -1, dtype=np.int64)
    u_map[np.searchsorted(u_names, kept_u)] = np.arange(len(kept_u))
    i_map[np.searchsorted(i_names, kept_i)] = np.arange(len(kept_i))
    uu, ii = u_map[u_idx], i_map[i_idx]

    part = global_time_split(ts, split)
    order = np.lexsort((order_in_file, ts))  # time, then file order
    out = [{}, {}, {}]
    for k in order:
        for s in range(3):
            out[s].setdefault(int(uu[k]), [])
        out[part[k]][int(uu[k])].append(int(ii[k]))
    title_map = {int(n): titles[name] for n, name in enumerate(kept_i) if name in titles} if titles else None
    return SequentialData(train=out[0], valid=out[1], test=out[2], num_items=len(kept_i), titles=title_map,
                          semantic_ids=None, source=str(path), skipped=skipped, item_names=kept_i,
                          user_names=kept_u)
