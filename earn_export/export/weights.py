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

    def __init__(self, out_dir, progress=None, file_path=None):
        self.out_dir = Path(out_dir)  # the graphs record WEIGHTS_FILE, relative to it
        self.path = Path(file_path) if file_path is not None else self.out_dir / WEIGHTS_FILE  # where it is written now
        self.progress = progress  # callable(n_bytes) per tensor written or referenced
        self._file = open(self.path, "wb")
        self._sha = hashlib.sha256()
        self._index: dict[tuple, tuple[int, int]] = {}
        self.size = 0
        self.tensors = 0  # distinct tensors written
        self.references = 0  # initializers pointing into the file
        self.graphs: list[str] = []

    def _put(self, key: tuple, data) -> tuple[int, int]:
        hit = self._index.get(key)
        if hit is not None:
            return hit
        n = len(data)
        pad = -self.size % (ALIGNMENT if n >= ALIGN_THRESHOLD else SMALL_ALIGNMENT)
        for chunk in (b"\0" * pad, data):
            self._file.write(chunk)
            self._sha.update(chunk)
        offset = self.size + pad
        self.size = offset + n
        self.tensors += 1
        self._index[key] = (offset, n)
        return offset, n

    def add_graph(self, model, graph_name: str) -> None:
        """Move ``model``'s initializers of >= MIN_EXTERNAL_BYTES into the file, one tensor at a time."""
        import onnx_ir as ir

        for value in list(model.graph.initializers.values()):
            tensor = value.const_value
            if tensor is None:
                continue
            if tensor.nbytes < MIN_EXTERNAL_BYTES:
                if isinstance(tensor, ir.ExternalTensor):  # e.g. a TorchScript export's temporary file: inline it
                    value.const_value = ir.Tensor(tensor.numpy(), name=value.name)
                continue
            data = tensor.tobytes()
            key = (int(tensor.dtype), tuple(int(d) for d in tensor.shape), len(data),
                   hashlib.blake2b(data, digest_size=20).digest())
            offset, length = self._put(key, data)
            value.const_value = ir.ExternalTensor(WEIGHTS_FILE, offset, length, tensor.dtype, shape=tensor.shape,
                                                  name=value.name, base_dir=str(self.out_dir))
            del data, tensor
            self.references += 1
            if self.progress is not None:
                self.progress(length)
        self.graphs.append(graph_name)

    def close(self) -> dict:
        """Flush and close; returns the manifest entry (file, bytes, sha256, counts, graphs)."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.chmod(self.path, 0o644)
        return {"file": WEIGHTS_FILE, "bytes": self.size, "sha256": self._sha.hexdigest(), "tensors": self.tensors,
                "references": self.references, "shared_by": list(self.graphs),
                "layout": "ONNX external data (location/offset/length), one copy of each distinct tensor"}

    def abort(self) -> None:
        self._file.close()  # a no-op when already closed
        self.path.unlink(missing_ok=True)
