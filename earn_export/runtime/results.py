"""What every recommender returns (the Python ``Recommender``, the C++ runtime's ``CppRecommender``, served models):
a leaf module, so the runtimes share the type without importing each other."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


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
