"""Per-stage progress of an export: one tqdm bar per stage (with bytes where the stage knows its size), because
real exports take minutes per stage. A plain ``callable(message)`` also works as ``progress``."""

from __future__ import annotations

import time


class StageBars:
    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._bar = None
        self.stages: list[tuple[str, float]] = []  # (stage, seconds), for logs
        self._t = None

    def close(self) -> None:
        if self._t is not None:
            self.stages[-1] = (self.stages[-1][0], time.perf_counter() - self._t)
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __call__(self, stage: str) -> None:
        self.close()
        self.stages.append((stage, 0.0))
        self._t = time.perf_counter()
        if self.enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(desc=f"export: {stage}", bar_format="{desc} {elapsed}", leave=True)

    def start_bytes(self, total: int) -> None:
        if self._bar is not None:
            from tqdm.auto import tqdm

            desc = self._bar.desc
            self._bar.close()
            self._bar = tqdm(desc=desc, total=total, unit="B", unit_scale=True, unit_divisor=1024, leave=True)

    def advance(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)
