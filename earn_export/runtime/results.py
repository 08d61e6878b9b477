"""What every recommender returns or raises (the Python ``Recommender``, the C++ runtime's ``CppRecommender``, served
models): a leaf module, so the runtimes share the types without importing each other."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import UserError, hint


@dataclass
class RecommendResult:
    items: np.ndarray  # [U, top_k] int64, best first, -1 = fewer valid items
    scores: np.ndarray  # [U, top_k] float32: sum of the identifier's token log-probs (-inf for padding)
    skipped: np.ndarray = field(default=None)  # [U] int64 unknown ids dropped (on_unknown="skip")
    truncated: np.ndarray = field(default=None)  # [U] int64 oldest items dropped beyond max_history
    # ids="original" (earn_export.runtime.original_ids): items are then the catalog's original ids (object array)
    index: np.ndarray = field(default=None)  # [U, top_k] int64 catalog indices (= items unless ids="original")
    titles: np.ndarray = field(default=None)  # [U, top_k] object: item titles when the engine's id map has them
    unknown: dict = field(default=None)  # ids="original", on_unknown="skip": user -> original ids dropped


class UnknownItemError(KeyError, UserError):
    """History item ids that the engine's catalog does not know."""

    def __init__(self, unknown: dict[int, list]):
        self.unknown = unknown  # user index -> unknown ids (original ids as the caller spelled them, when mapped)
        ids = sorted({i for v in unknown.values() for i in v}, key=lambda i: (isinstance(i, str), i))
        users = sorted(unknown)
        super().__init__(
            f"unknown item ids {ids[:20]}{' ...' if len(ids) > 20 else ''} in the histories of users {users[:20]}: "
            "the engine's catalog has no such items — map them to catalog ids, or "
            + hint("pass on_unknown='skip' to drop them (counted in RecommendResult.skipped)",
                   "pass --on-unknown skip to drop them (the output notes how many)")
        )

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]
