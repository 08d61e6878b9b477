"""Command-line start-up: wall time of ``--help``, one ``recommend`` query and rejected bad flags, each run in a fresh
process (what a user waits for). ``make bench-cli`` / ``python benchmarks/cli_startup.py [--engine DIR]``.

Why a benchmark and not a test: times on a shared machine vary by the load; the tests check the structural
reasons instead (no torch/transformers/onnxruntime import before a bad flag is rejected, no torch or transformers
in the ONNX Runtime recommender), and this prints the figures of docs/results/startup.md.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def cases(engine: str, scratch: str) -> list[tuple[str, list[str], int]]:
    """(label, earn-export arguments, expected exit status)."""
    return [
        ("earn-export --help", ["--help"], 0),
        ("earn-export recommend --help", ["recommend", "--help"], 0),
        ("recommend, one query (ONNX Runtime)", ["recommend", engine, "--history", "1 2 3"], 0),
        ("bad flag: recommend --top-k 30 (> --beam)", ["recommend", engine, "--history", "1", "--top-k", "30"], 2),
        ("bad flag: inspect --beam 0", ["inspect", engine, "--beam", "0"], 2),
        ("bad flag: train --split-layer 999", ["train", "--split-layer", "999", "--out", f"{scratch}/t"], 2),
        ("bad flag: train --epochs 0", ["train", "--epochs", "0", "--out", f"{scratch}/t"], 2),
        ("bad flag: export of an engine dir (no config.json)", ["export", scratch, "--out", f"{scratch}/e"], 2),
    ]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/cli_startup.py", description=__doc__.splitlines()[0])
    p.add_argument("--engine", default="engines/demo", help="engine dir for the recommend rows (make demo writes it)")
    p.add_argument("--repeats", type=int, default=3, help="fresh processes per row; the median and max are shown")
    p.add_argument("--any-exit", action="store_true",
                   help="time rows whatever their exit status (to time an older version, e.g. with PYTHONPATH set "
                        "to its checkout: `PYTHONPATH=../old python benchmarks/cli_startup.py --any-exit`)")
    args = p.parse_args(argv)
    if not (Path(args.engine) / "manifest.json").is_file():
        print(f"{args.engine}: no engine — run `make demo` first or pass --engine DIR", file=sys.stderr)
        return 2
    exe = shutil.which("earn-export", path=str(Path(sys.executable).parent)) or "earn-export"
    scratch = tempfile.mkdtemp(prefix="cli-startup-")
    print(f"| command (fresh process, {args.repeats} runs) | median s | max s |\n|---|---:|---:|")
    try:
        for label, cmd, want in cases(args.engine, scratch):
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                proc = subprocess.run([exe, *cmd], capture_output=True, text=True)
                times.append(time.perf_counter() - t0)
                if proc.returncode != want and not args.any_exit:
                    print(f"{label}: exit {proc.returncode}, expected {want}: {proc.stderr.strip()[-300:]}",
                          file=sys.stderr)
                    return 1
            print(f"| {label} | {statistics.median(times):.2f} | {max(times):.2f} |")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
