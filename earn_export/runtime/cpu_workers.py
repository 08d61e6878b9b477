"""One single-threaded search per CPU core, for batch jobs (``eval``, ``check``) on the CPU.

A batch is many small ops; torch's intra-op threading joins after each, and on a shared 2-core machine a join
waits for a descheduled thread (the SmolLM2 reference search ran 3-7× slower with 2 threads than with 1).
Whole batches on separate single-threaded workers need no join. A served ``Recommender`` keeps the libraries'
own threading.
"""

from __future__ import annotations

import contextlib
import os


def cpu_cores() -> int:
    """Cores this process may run on (cgroup/affinity aware where the OS says so)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def is_cpu_backend(backend) -> bool:
    """A torch backend on the CPU (``TorchBackend`` or a wrapper exposing its ``device``)."""
    return str(getattr(backend, "device", None)).startswith("cpu")


@contextlib.contextmanager
def torch_single_threaded(enabled: bool = True):
    """``torch.set_num_threads(1)`` for the block (process-wide; ``enabled=False``: unchanged), restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1 if enabled else before)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def ort_single_threaded_options():
    """ONNX Runtime session options running each ``run`` on its calling thread (no intra-op pool)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return opts
