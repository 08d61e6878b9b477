"""User interaction sequences split by global time (the Beauty release format), and the examples built from them.

Item id base: the Beauty sequence files number items 1..12035, its index 0..12034 (aligned with offset 1,
consecutive items share their first code 10x more often than by chance). ``item_base="auto"`` subtracts 1 when
the files never use item 0 and do use item N; ``item_base=0|1`` forces it. ``SequentialData`` ids are 0-based.
Bad input that would corrupt the data if guessed around raises DataError naming ``file:line``; blank lines and
re-assigned identifier collisions are counted in ``skipped``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import check_choice, hint
from .errors import DataError

SPLITS = ("train", "valid", "test")


@dataclass
class SequentialData:
    """Chronological item sequences per user and split; item ids are 0..num_items-1."""

    train: dict[int, list[int]]
    valid: dict[int, list[int]]
    test: dict[int, list[int]]
    num_items: int
    titles: dict[int, str] | None = None
    semantic_ids: dict[int, list[str]] | None = None
    source: str = ""
    skipped: dict[str, int] = field(default_factory=dict)
    item_names: list[str] | None = None  # original item ids (load_interactions), index = item id
    user_names: list[str] | None = None  # original user ids (load_interactions), index = user id
    item_base: int = 0  # what was subtracted from the file's item ids (load_sequential)

    def split(self, name: str) -> dict[int, list[int]]:
        check_choice("split", name, SPLITS)
        return getattr(self, name)

    def stats(self) -> dict:
        """Counts for logs and checks: users, items, interactions per split, users with items per split."""
        out = {"users": len(set(self.train) | set(self.valid) | set(self.test)), "items": self.num_items}
        for s in SPLITS:
            d = self.split(s)
            out[f"{s}_interactions"] = sum(len(v) for v in d.values())
            out[f"{s}_users"] = sum(1 for v in d.values() if v)
        return out


@dataclass
class EvalExamples:
    """One row per evaluated user: the history (oldest first), the set of target items and the user."""

    users: list[int]
    histories: list[list[int]]
    targets: list

    def __len__(self):
        return len(self.users)


class TrainExamples(EvalExamples):
    """Next-item examples: ``histories[i]`` (oldest first, at most max_history) predicts the one item ``targets[i]``."""


def eval_examples(data: SequentialData, split: str, max_history: int = 20) -> EvalExamples:
    """The paper group's protocol: history = train (+ valid when ``split="test"``) items, last
    ``max_history``; targets = all of the user's items in ``split``; users without targets are left out.
    Users with an empty history are kept (the prompt then holds only the template and registers)."""
    check_choice("split", split, ("valid", "test"))
    target_split = data.split(split)
    users, hists, targets = [], [], []
    for u, t in sorted(target_split.items()):
        if not t:
            continue
        h = list(data.train.get(u, []))
        if split == "test":
            h += data.valid.get(u, [])
        users.append(u)
        hists.append(h[-max_history:] if max_history > 0 else [])
        targets.append(set(t))
    return EvalExamples(users, hists, targets)


def train_examples(data: SequentialData, max_history: int = 20) -> TrainExamples:
    """One example per position i >= 1 of each train sequence: ``(seq[max(0, i-H):i], seq[i])``."""
    users, hists, targets = [], [], []
    for u in sorted(data.train):
        seq = data.train[u]
        for i in range(1, len(seq)):
            users.append(u)
            hists.append(list(seq[max(0, i - max_history):i]) if max_history > 0 else [])
            targets.append(seq[i])
    return TrainExamples(users, hists, targets)


# ------------------------------------------------------------------------------------------------ loading
def _read_split(path: Path, skipped: dict) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    """user -> raw item ids, and user -> line numbers of each item (for error messages)."""
    if not path.is_file():
        raise DataError(f"{path}: missing split file — a sequential dataset needs sequential_train.txt, "
                        "sequential_valid.txt and sequential_test.txt (lines 'user_id item item ...')")
    seqs: dict[int, list[int]] = {}
    first_line: dict[int, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                skipped["blank_lines"] = skipped.get("blank_lines", 0) + 1
                continue
            nums = []
            for p in parts:
                try:
                    nums.append(int(p))
                except ValueError:
                    raise DataError(f"{path}:{lineno}: {p!r} is not an integer; each line must be "
                                    "'user_id item_id item_id ...' with whitespace-separated integer ids") from None
            if min(nums) < 0:
                raise DataError(f"{path}:{lineno}: negative id {min(nums)}; ids must be >= 0")
            user = nums[0]
            if user in seqs:
                raise DataError(f"{path}:{lineno}: user {user} already appears on line {first_line[user]}; "
                                "put each user's items of a split on one line, in chronological order")
            seqs[user] = nums[1:]
            first_line[user] = lineno
    if not seqs:
        raise DataError(f"{path}: the file is empty (no user lines); write one line per user "
                        "'user_id item item ...' (a line with only the user id means no items in this split)")
    return seqs, first_line


def _find_index(directory: Path, index) -> Path | None:
    if index is not None:
        p = Path(index)
        if not p.is_absolute() and not p.exists():
            p = directory / p
        if not p.is_file():
            raise DataError(f"{p}: index file not found; pass index= with the semantic-ID .json")
        return p
    found = sorted(directory.glob("*.json"))
    if len(found) > 1:
        raise DataError(f"{directory}: several .json files {[p.name for p in found]} — "
                        + hint("pass index= to choose the semantic-ID index",
                               "keep only the semantic-ID index .json in the --data directory"))
    return found[0] if found else None


def load_sequential(directory, index=None, item_base="auto") -> SequentialData:
    """The Beauty release format (module doc). ``index``: which ``.json`` (default: the only one in the
    directory; none -> ``semantic_ids=None``). ``item_base``: "auto", 0 or 1 (module doc)."""
    from .catalog import dedupe_codes, find_duplicates, read_index

    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory; pass the folder holding sequential_*.txt")
    skipped: dict[str, int] = {}
    raw, lines = {}, {}
    for s in SPLITS:
        raw[s], lines[s] = _read_split(directory / f"sequential_{s}.txt", skipped)
    index_path = _find_index(directory, index)
    codes = read_index(index_path) if index_path is not None else None

    used = {i for s in SPLITS for seq in raw[s].values() for i in seq}
    n_index = (max(codes) + 1) if codes else None
    if item_base == "auto":
        top = n_index if n_index is not None else max(used, default=0)
        item_base = 1 if used and 0 not in used and (n_index is None or top in used) else 0
    check_choice("item_base", item_base, ("auto", 0, 1))  # "auto" is resolved above

    for s in SPLITS:
        path = directory / f"sequential_{s}.txt"
        for user, items in raw[s].items():
            for raw_i in items:
                i = raw_i - item_base
                if i < 0 or (codes is not None and i not in codes):
                    if codes is not None and 0 <= i < n_index:
                        raise DataError(f"{path}:{lines[s][user]}: item {raw_i} has no entry in the index "
                                        f"{index_path.name}; the index must give every item of the sequences an "
                                        "identifier (re-create the index for this dataset)")
                    valid_range = (f"{item_base}..{n_index - 1 + item_base}" if codes is not None
                                   else f">= {item_base}")
                    raise DataError(f"{path}:{lines[s][user]}: item {raw_i} is outside the index "
                                    f"{index_path.name if index_path else ''} (valid ids {valid_range}, item_base="
                                    f"{item_base}); use the index built for these sequences or drop the item")

    out = {s: {user: [i - item_base for i in items] for user, items in raw[s].items()} for s in SPLITS}
    num_items = n_index if n_index is not None else (max(used, default=-1) - item_base + 1)
    if codes is not None and find_duplicates(codes):
        codes, skipped["identifier_collisions_reassigned"] = dedupe_codes(codes)
    return SequentialData(**out, num_items=num_items, semantic_ids=codes, source=str(directory), skipped=skipped,
                          item_base=item_base)
