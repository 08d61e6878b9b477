import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # two workers on two cores: a torch pool of 2 threads in each would oversubscribe the cores, and OpenMP's
    # spinning barriers then slow every small op many-fold; one torch thread per worker keeps each on its core
    import torch

    torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
BEAUTY = Path(os.environ.get("EARN_BEAUTY_DIR", REPO.parent / "shared" / "data" / "amazon-beauty"))


def _built_once(tmp_path_factory, name, build):
    """The directory ``name`` made by ``build(dir)`` once per test run, also under pytest-xdist: the workers share
    the run's base temp dir, the first one builds under a file lock and the others wait and reuse it (the Beauty
    checkpoint costs about a minute of 2 cores, building it on each worker doubled that). Without xdist: a plain
    session-scoped directory."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        out = tmp_path_factory.mktemp(name)
        build(out)
        return out
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp().parent  # the run's dir, parent of every worker's popen-gwN
    out, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            if out.exists():  # a worker died mid-build: start again
                import shutil

                shutil.rmtree(out)
            out.mkdir()
            build(out)
            done.touch()
    return out


@pytest.fixture(scope="session")
def beauty_dir():
    if not (BEAUTY / "sequential_train.txt").is_file():
        pytest.skip(f"Beauty data not found at {BEAUTY} (set EARN_BEAUTY_DIR)")
    return BEAUTY


@pytest.fixture(scope="session")
def beauty_ckpt(beauty_dir, tmp_path_factory):
    """An EARN checkpoint trained for about a minute on 3,000 real Beauty training examples (micro preset, k = 1
    of 4 layers). Shared by every test that needs a *trained* model on real data (parity, C++ runtime, serving):
    trained once per test session."""
    from earn_export.data.data_spec import DataSpec
    from earn_export.train.train_checkpoint import train

    return _built_once(tmp_path_factory, "beauty-ckpt", lambda out: train(
        out, DataSpec.from_args(data=beauty_dir), split="auto", preset="micro", epochs=3, batch_size=64, lr=3e-3,
        progress=False, max_train_examples=3000, valid_users=200))


@pytest.fixture(scope="session")
def beauty_engine(beauty_ckpt, tmp_path_factory):
    """``beauty_ckpt`` exported to an fp32 engine (items head, TorchScript exporter: the fast one)."""
    from earn_export.export import export_onnx

    return _built_once(tmp_path_factory, "beauty-engine",
                       lambda out: export_onnx(beauty_ckpt, out, vocab="items", exporter="torchscript"))


@pytest.fixture(scope="session")
def beauty_test_histories(beauty_dir):
    """Histories (train + valid items, last 20) of the 3,553 Beauty test users, in user order."""
    from earn_export.data.sequences import eval_examples, load_sequential

    return eval_examples(load_sequential(beauty_dir), "test", max_history=20).histories


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A random-weight EARN checkpoint dir (tiny Llama, k = 2 of 4, TIGER prompts, max_history 5) with the trie of 60
    synthetic 3-token items as trie.npz: an exportable checkpoint in a second, for tests that need no training."""
    import numpy as np
    from helpers import earn_model, synthetic_trie

    d = tmp_path_factory.mktemp("tiny-ckpt")
    earn_model("llama", 2).save_pretrained(d)
    np.savez(d / "trie.npz", **synthetic_trie()[0])
    return d


@pytest.fixture(scope="session")
def tiny_engine(tiny_checkpoint, tmp_path_factory):
    """``tiny_checkpoint`` exported (fp32, items head, TorchScript): an engine for CLI, runtime and fuzz tests."""
    from earn_export.export import export_onnx

    out = tmp_path_factory.mktemp("tiny-engine")
    export_onnx(tiny_checkpoint, out, vocab="items", exporter="torchscript")
    return out


@pytest.fixture(scope="session")
def benchmark_script():
    """``load(name)`` imports ``benchmarks/NAME.py`` (``load(name, "tools")``: ``tools/NAME.py``; scripts, not a
    package: they run as ``python benchmarks/NAME.py`` and are not installed with earn_export)."""
    import importlib.util

    def load(name, folder="benchmarks"):
        mod_name = f"{folder}_{name}"
        if mod_name not in sys.modules:
            spec = importlib.util.spec_from_file_location(mod_name, REPO / folder / f"{name}.py")
            sys.modules[mod_name] = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(sys.modules[mod_name])
        return sys.modules[mod_name]

    return load


def pytest_collection_modifyitems(config, items):
    """Tests that use the Beauty data are marked ``beauty`` (``make test-fast`` leaves them out with ``slow``);
    under pytest-xdist the longest files go first (LONGEST_FIRST below)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items[:] = _longest_first(items)
    for item in items:
        if {"beauty_dir", "beauty_ckpt", "beauty_engine", "beauty_test_histories"} & set(item.fixturenames):
            item.add_marker(pytest.mark.beauty)


# The files that take longest (seconds of one pytest-xdist worker on 2 shared cores, fixtures included), longest
# first. Under `make test` (-n 2 --dist loadfile --no-loadscope-reorder) xdist hands whole files to whichever
# worker is free, in collection order: starting the long ones first keeps one of them from running alone at the
# end (with xdist's default order, by number of tests, the 2-test SmolLM2 file started last).
LONGEST_FIRST = ["test_batch_faults.py", "test_llm_experiment.py", "test_cpp_package.py", "test_plugins.py",
                 "test_architectures.py", "test_smollm2.py", "test_train.py", "test_serve_faults.py",
                 "test_graph_forms.py", "test_serve.py"]


def _longest_first(items):
    """Items regrouped file by file, the files of LONGEST_FIRST first; the order within a file is kept."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    return sorted(items, key=lambda item: rank.get(item.path.name, len(rank)))  # stable: keeps the rest in order
