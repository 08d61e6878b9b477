"""CPU training is bit-reproducible for a fixed thread count: the same command twice writes identical weights.

(Between thread counts the weights differ in the last bits: the count fixes how float sums are split.
docs/results/reproducibility.md gives the measurements; ``earn-export demo`` pins one thread for that reason.)
"""

import pytest
import torch

from earn_export.cli import main


@pytest.mark.slow
def test_training_twice_gives_identical_weights(tmp_path, capsys):
    threads = torch.get_num_threads()
    try:
        weights = []
        for run in ("a", "b"):
            out = tmp_path / run
            assert main(["train", "--model-config", "micro", "--synthetic-users", "300", "--synthetic-items", "60",
                         "--epochs", "1", "--threads", "1", "--quiet", "--out", str(out)]) == 0
            weights.append((out / "model.safetensors").read_bytes())
        capsys.readouterr()
    finally:
        torch.set_num_threads(threads)
    assert weights[0] == weights[1]
