"""Which interactions a model is trained and evaluated on (:class:`DataSpec`, saved as ``data.json`` in every
checkpoint so ``eval``/``check`` default to the same data), and the item catalog built from them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import UsageError
from .errors import DataError


@dataclass
class DataSpec:
    """Where the interactions come from: ``sequential`` (Beauty format dir), ``interactions`` (CSV) or ``synthetic``."""

    kind: str = "synthetic"
    path: str | None = None
    seed: int = 0
    k_core: int = 5
    n_users: int = 2000
    n_items: int = 400

    @classmethod
    def from_args(cls, data=None, interactions=None, seed=0, k_core=5, **kw) -> "DataSpec":
        if data and interactions:
            raise UsageError("--data and --interactions both given — pass one: --data (sequential split files) or "
                             "--interactions (CSV/TSV)")
        if data:
            return cls("sequential", str(Path(data).resolve()), seed, k_core, **kw)
        if interactions:
            return cls("interactions", str(Path(interactions).resolve()), seed, k_core, **kw)
        return cls("synthetic", None, seed, k_core, **kw)

    def load(self):
        from .interactions import load_interactions
        from .sequences import load_sequential
        from .synthetic import make_synthetic

        if self.kind == "sequential":
            return load_sequential(self.path)
        if self.kind == "interactions":
            return load_interactions(self.path, k_core=self.k_core)
        if self.kind == "synthetic":
            return make_synthetic(n_users=self.n_users, n_items=self.n_items, seed=self.seed)
        raise DataError(f"unknown data kind {self.kind!r} in data.json; expected sequential|interactions|synthetic")

    def save(self, ckpt_dir) -> None:
        (Path(ckpt_dir) / "data.json").write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load_from(cls, ckpt_dir) -> "DataSpec | None":
        path = Path(ckpt_dir) / "data.json"
        if not path.is_file():
            return None
        fields = cls.__dataclass_fields__  # data.json also records what was loaded ("stats"), not an option
        return cls(**{k: v for k, v in json.loads(path.read_text()).items() if k in fields})


def make_catalog(data, seed: int = 0):
    """The data's semantic IDs when it has them, else IDs built from titles or co-occurrence."""
    from .catalog import ItemCatalog
    from .semantic_ids import semantic_ids_for

    return ItemCatalog(data.semantic_ids or semantic_ids_for(data, seed=seed))
