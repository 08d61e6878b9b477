"""KV-cache accounting: exact bytes of the compacted EARN cache vs the dense and HF-beam-search caches
(formulas: docs/design.md §3; dense is k = N; HF copies the prompt KV per beam)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KVShape:
    num_layers: int
    n_kv_heads: int
    head_dim: int
    dtype_bytes: int = 4

    @classmethod
    def of(cls, model) -> "KVShape":
        return cls(model.num_layers, model.n_kv_heads, model.head_dim, next(model.parameters()).element_size())


def kv_bytes(shape: KVShape, *, batch: int, beam: int, prompt_len: int, steps: int,
             split_layer: int | None = None, n_registers: int = 0, layout: str = "earn") -> int:
    """Cache bytes for ``batch`` users. layout: "earn" (compacted; k = N gives our dense runtime) or "hf"."""
    n = shape.num_layers
    k = n if split_layer is None else split_layer
    if not 1 <= k <= n:
        raise ValueError(f"split_layer {k} out of range 1..{n}")
    if layout == "earn":
        tokens = k * prompt_len + (n - k) * n_registers + beam * n * steps
    elif layout == "hf":
        tokens = n * beam * (prompt_len + steps)
    else:
        raise ValueError(f"layout must be 'earn' or 'hf', got {layout!r}")
    return batch * 2 * shape.n_kv_heads * shape.head_dim * shape.dtype_bytes * tokens  # 2: keys and values


def kv_report(shape: KVShape, *, batch: int, beam: int, prompt_len: int, steps: int, split_layer: int,
              n_registers: int) -> dict:
    """Bytes of the three layouts and EARN's reduction against each."""
    common = dict(batch=batch, beam=beam, prompt_len=prompt_len, steps=steps)
    earn = kv_bytes(shape, split_layer=split_layer, n_registers=n_registers, **common)
    dense = kv_bytes(shape, split_layer=shape.num_layers, **common)
    hf = kv_bytes(shape, layout="hf", **common)
    return {"earn_bytes": earn, "dense_bytes": dense, "hf_beam_bytes": hf, "reduction_vs_dense": 1 - earn / dense,
            "reduction_vs_hf": 1 - earn / hf}
