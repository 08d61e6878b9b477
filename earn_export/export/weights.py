"""One external-data file for the weights of both graphs (``weights.data``), each distinct tensor stored once.

Saved the usual way each graph carries its own copy. Tensors are matched by content, not by name (the two
exports name folded tensors differently); large ones start 64 KiB-aligned for memory mapping, and the sha256
is computed while writing, so the manifest needs no second pass over gigabytes.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

WEIGHTS_FILE = "weights.data"
MIN_EXTERNAL_BYTES = 1024  # smaller tensors (shapes, scalars, norms of tiny models) stay inside the graph
ALIGN_THRESHOLD = 1 << 20
ALIGNMENT = 1 << 16
SMALL_ALIGNMENT = 64


class SharedWeights:
    """Writer of ``weights.data``: :meth:`add_graph` moves a graph's large initializers into it (deduplicated)."""

    def __init__(self, out_dir, name: str = WEIGHTS_FILE, min_bytes: int = MIN_EXTERNAL_BYTES, progress=None,
                 file_path=None):
        self.out_dir = Path(out_dir)
        self.name = name  # the location the graphs record (relative to out_dir)
        self.path = Path(file_path) if file_path is not None else self.out_dir / name  # where it is written now
        self.min_bytes = min_bytes
        self.progress = progress  # callable(n_bytes) per tensor written or referenced
        self._file = open(self.path, "wb")
        self._sha = hashlib.sha256()
        self._index: dict[tuple, tuple[int, int]] = {}
        self.size = 0
        self.tensors = 0  # distinct tensors written
        self.references = 0  # initializers pointing into the file
        self.graphs: list[str] = []

    def _pad_to(self, alignment: int) -> None:
        pad = -self.size % alignment
        if pad:
            zeros = b"\0" * pad
            self._file.write(zeros)
            self._sha.update(zeros)
            self.size += pad

    def _put(self, key: tuple, data) -> tuple[int, int]:
        hit = self._index.get(key)
        if hit is not None:
            return hit
        n = len(data)
        self._pad_to(ALIGNMENT if n >= ALIGN_THRESHOLD else SMALL_ALIGNMENT)
        offset = self.size
        self._file.write(data)
        self._sha.update(data)
        self.size += n
        self.tensors += 1
        self._index[key] = (offset, n)
        return offset, n

    def add_graph(self, model, graph_name: str) -> int:
        """Move ``model``'s initializers of >= min_bytes into the file, one tensor at a time; returns bytes moved."""
        import onnx_ir as ir

        moved = 0
        for value in list(model.graph.initializers.values()):
            tensor = value.const_value
            if tensor is None:
                continue
            if tensor.nbytes < self.min_bytes:
                if isinstance(tensor, ir.ExternalTensor):  # e.g. a TorchScript export's temporary file: inline it
                    value.const_value = ir.Tensor(tensor.numpy(), name=value.name)
                continue
            data = tensor.tobytes()
            key = (int(tensor.dtype), tuple(int(d) for d in tensor.shape), len(data),
                   hashlib.blake2b(data, digest_size=20).digest())
            offset, length = self._put(key, data)
            value.const_value = ir.ExternalTensor(self.name, offset, length, tensor.dtype, shape=tensor.shape,
                                                  name=value.name, base_dir=str(self.out_dir))
            del data, tensor
            self.references += 1
            moved += length
            if self.progress is not None:
                self.progress(length)
        self.graphs.append(graph_name)
        return moved

    def close(self) -> dict:
        """Flush and close; returns the manifest entry (file, bytes, sha256, counts, graphs)."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.chmod(self.path, 0o644)
        return {"file": self.name, "bytes": self.size, "sha256": self._sha.hexdigest(), "tensors": self.tensors,
                "references": self.references, "shared_by": list(self.graphs),
                "layout": "ONNX external data (location/offset/length), one copy of each distinct tensor"}

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        if self.path.exists():
            self.path.unlink()
