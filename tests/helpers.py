"""Helpers shared by the test modules (no test module imports another): tiny models with registers, a synthetic
CSR trie, prompts and beam paths for backend comparisons, and an import blocker for fresh interpreters."""

import textwrap
from pathlib import Path

import numpy as np

from model_configs import llama32_1b, qwen25_05b, tiny_llama, tiny_qwen

from earn_export.data.data_spec import DataSpec

REPO = Path(__file__).resolve().parents[1]

P_ID, S_ID = 90, 91  # register token ids inside the tiny vocab


def make_model(cfg_fn=tiny_llama, k=2, layers=4, seed=0, **kw):
    import torch

    from earn_export.model import EarnConfig, EarnForCausalLM

    torch.manual_seed(seed)
    m = EarnForCausalLM(cfg_fn(layers=layers, **kw)).eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    m.set_earn(EarnConfig(split_layer=k, prefix_token_ids=[P_ID], suffix_token_ids=[S_ID]))
    return m


ITEM_TOKENS = list(range(10, 40))  # 3 levels x 10 codes: level l uses tokens 10 + 10 l .. 19 + 10 l
L = 3


def synthetic_trie(n_items=60, seed=0):
    """CSR trie (CONTRACTS.md) over ``n_items`` distinct 3-token identifiers; returns (arrays, item -> tokens)."""
    rng = np.random.default_rng(seed)
    codes = set()
    while len(codes) < n_items:
        codes.add(tuple(int(10 + 10 * lvl + rng.integers(0, 10)) for lvl in range(L)))
    paths = {item: list(c) for item, c in enumerate(sorted(codes, key=lambda c: rng.random()))}
    nodes = [{}]  # node -> {token: child}
    leaf = {}
    for item, path in paths.items():
        n = 0
        for tok in path:
            if tok not in nodes[n]:
                nodes.append({})
                nodes[n][tok] = len(nodes) - 1
            n = nodes[n][tok]
        leaf[n] = item
    offsets, tokens, children = [0], [], []
    for node in nodes:
        for tok in sorted(node):
            tokens.append(tok)
            children.append(node[tok])
        offsets.append(len(tokens))
    leaf_item = np.full(len(nodes), -1, np.int64)
    for n, item in leaf.items():
        leaf_item[n] = item
    arrays = {"offsets": np.array(offsets, np.int64), "tokens": np.array(tokens, np.int64),
              "children": np.array(children, np.int64), "leaf_item": leaf_item, "depth": np.array(L, np.int64)}
    return arrays, paths


def earn_model(kind="llama", k=2, seed=0):
    from earn_export.model import EarnConfig

    cfg = {"llama": tiny_llama, "qwen2": tiny_qwen}[kind]
    m = make_model(cfg, k=k, seed=seed)
    m.set_earn(EarnConfig(split_layer=k, prefix_token_ids=[P_ID], suffix_token_ids=[S_ID], id_length=L,
                          paradigm="tiger", max_history=5))
    return m


def dense_model(seed=0):
    """A plain dense checkpoint (no registers, no earn.json): k = N."""
    m = make_model(tiny_llama, k=4, seed=seed)
    m.set_earn(None)
    return m


def token_prompts(model, lens, seed=3):
    """Left-padded prompts with the model's registers (if any) around random non-item body tokens."""
    g = np.random.default_rng(seed)
    earn = model.earn
    pre = list(earn.prefix_token_ids) if earn else []
    suf = list(earn.suffix_token_ids) if earn else []
    s = max(lens)
    ids = np.zeros((len(lens), s), np.int64)
    mask = np.zeros_like(ids)
    for i, n in enumerate(lens):
        body = g.integers(40, 80, n - len(pre) - len(suf)).tolist()
        ids[i, s - n:] = pre + body + suf
        mask[i, s - n:] = 1
    return ids, mask


def random_path(b, beam, steps, vocab_out, seed=7):
    """Per step: (tokens [b, beam] as column indices, parents [b, beam])."""
    g = np.random.default_rng(seed)
    out = []
    for s in range(1, steps + 1):
        parents = np.zeros((b, beam), np.int64) if s == 1 else g.integers(0, beam, (b, beam))
        out.append((g.integers(0, vocab_out, (b, beam)), parents))
    return out


def compare_backends(a, b, ids, mask, beam, steps=L - 1):
    """Run both backends along one random beam path; returns max |diff| per call (prefill, decode 1..)."""
    la, sa = a.prefill(ids, mask)
    lb, sb = b.prefill(ids, mask)
    diffs = [float(np.abs(la - lb).max())]
    outs = [(la, lb)]
    cols = a.out_token_ids
    for step, (col, parents) in enumerate(random_path(len(ids), beam, steps, la.shape[-1]), start=1):
        tokens = col if cols is None else cols[col]
        la, sa = a.decode(sa, tokens, parents, step)
        lb, sb = b.decode(sb, tokens, parents, step)
        assert la.shape == (len(ids), beam, lb.shape[-1])
        diffs.append(float(np.abs(la - lb).max()))
        outs.append((la, lb))
    return diffs, outs


def blocker(names) -> str:
    """Python source installing a meta-path finder that makes importing ``names`` (top-level packages) fail:
    prepended to scripts run in fresh interpreters."""
    return textwrap.dedent(f"""
        import importlib.abc, sys
        BLOCKED = {tuple(names)!r}
        class Blocked(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"blocked heavy import: {{name}}")
        sys.meta_path.insert(0, Blocked())
    """)


# ---- pretrained-shaped checkpoints with BPE tokenizers (convert tests and the architecture table)
CONVERT_DATA = DataSpec(n_users=300, n_items=60)
# Qwen2.5 pads its embedding matrix past the tokenizer (151,936 rows for 151,665 tokens): the new tokens then get
# ids inside the padded rows and no resize happens. Llama-3.2 has no spare rows: convert resizes.
SHAPES = {"qwen2.5-0.5b": (qwen25_05b, "qwen2", 512), "llama-3.2-1b": (llama32_1b, "llama3", 0)}


def pretrained_checkpoint(path, shape, layers=2):
    """A random-weight "pretrained" checkpoint + BPE tokenizer. Weights are drawn with std 0.1 (not 0.02): with
    the small init, a 2-layer random model's next-token distribution is nearly uniform, and its top-20 lists
    are then decided by log-prob gaps far below fp32 resolution (a trained model's are not)."""
    from bpe_tokenizers import bpe_tokenizer

    from earn_export.model import EarnForCausalLM

    cfg_fn, kind, spare = SHAPES[shape] if shape in SHAPES else shape
    tok = bpe_tokenizer(kind)
    cfg = cfg_fn(layers=layers, vocab=len(tok) + spare)
    cfg.initializer_range = 0.1
    model = EarnForCausalLM(cfg, init=False)
    model.init_weights(seed=0)
    model.save_pretrained(path)
    tok.save_pretrained(str(path))
    return path


# ---- model = transformers
def hf_and_ours(cfg, tmp_path, seed=0):
    """transformers' model with non-trivial norm weights and biases, and ours loaded from its saved weights."""
    import torch
    from transformers import AutoModelForCausalLM

    from earn_export.model import load_pretrained

    torch.manual_seed(seed)
    cfg._attn_implementation = "eager"
    hf = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
    with torch.no_grad():  # non-trivial norm weights and biases, so a missed term shows up
        for name, p in hf.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    hf.save_pretrained(tmp_path)
    ours = load_pretrained(tmp_path).eval()
    return hf, ours


def hf_batch(vocab, lens, seed=1):
    """Random left-padded ids and mask of the given lengths."""
    import torch

    g = torch.Generator().manual_seed(seed)
    s = max(lens)
    ids = torch.randint(0, vocab, (len(lens), s), generator=g)
    mask = torch.zeros(len(lens), s, dtype=torch.long)
    for i, n in enumerate(lens):
        mask[i, s - n:] = 1
    return ids, mask


# ---- the C++ runtime
HEADERS = [Path("/usr/include/onnxruntime"), REPO.parent / "shared/third_party/onnxruntime/1.27.1-include"]


def cpp_runtime_module():
    """The C++ runtime extension. Skips only where it cannot be built (no ONNX Runtime C++ headers); where the
    headers exist a missing build fails the test instead of hiding behind a skip."""
    import pytest

    from earn_export.runtime import cpp_runtime

    if not any((h / "onnxruntime_cxx_api.h").is_file() for h in HEADERS):
        pytest.skip("no ONNX Runtime C++ headers here: the C++ runtime is not built (docs/cpp-runtime.md)")
    return cpp_runtime.module()


def assert_same(cpp_res, py_res):
    assert cpp_res.items.shape == py_res.items.shape
    assert (cpp_res.items == py_res.items).all()
    np.testing.assert_allclose(cpp_res.scores, py_res.scores, atol=1e-5, rtol=0)
    assert (np.isneginf(cpp_res.scores) == np.isneginf(py_res.scores)).all()
    assert (cpp_res.skipped == py_res.skipped).all() and (cpp_res.truncated == py_res.truncated).all()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def trie_walk(trie, tokens) -> int:
    """Node reached from the root along ``tokens`` in a CSR trie, or -1 (a walk of the arrays, independent of the
    search's padded-children form)."""
    node = 0
    for tok in tokens:
        s, e = int(trie.offsets[node]), int(trie.offsets[node + 1])
        k = s + int(np.searchsorted(trie.tokens[s:e], int(tok)))
        if k == e or trie.tokens[k] != int(tok):
            return -1
        node = int(trie.children[k])
    return node


def trie_lookup(trie, tokens) -> int:
    """Item id of a full identifier token path, or -1 if it is not one."""
    node = trie_walk(trie, tokens) if len(tokens) == trie.depth else -1
    return int(trie.leaf_item[node]) if node >= 0 else -1


def trie_allowed(trie, prefix) -> list[int]:
    """Token ids that may follow the identifier prefix ``prefix``."""
    node = trie_walk(trie, prefix)
    return [] if node < 0 else trie.tokens[trie.offsets[node]:trie.offsets[node + 1]].tolist()


def recommender_from_checkpoint(ckpt_dir, vocab="full", batch_size=64, dtype=None):
    """A torch-backend ``Recommender`` straight from a training checkpoint (its trie.npz or catalog), without an
    export: the reference the tests compare engines and precisions against."""
    from earn_export.data.id_map import load_id_map
    from earn_export.engine.trie_files import resolve_trie
    from earn_export.model import load_pretrained
    from earn_export.runtime import Recommender
    from earn_export.data.prompts import PromptBuilder
    from earn_export.engine.prompt_pieces import PromptPieces
    from earn_export.runtime.backends import TorchBackend

    model = load_pretrained(ckpt_dir, dtype=dtype)
    trie = resolve_trie(None, Path(ckpt_dir))
    paths = trie.item_paths()
    earn = model.earn
    info = {"prefix_token_ids": list(earn.prefix_token_ids), "suffix_token_ids": list(earn.suffix_token_ids),
            "paradigm": earn.paradigm, "id_length": earn.id_length, "max_history": earn.max_history or 20}
    head = np.unique(trie.tokens) if vocab == "items" else None
    # the training prompt builder, or the TIGER-style pieces for a checkpoint without prompt.json
    encoder = PromptBuilder.load(ckpt_dir) if (Path(ckpt_dir) / "prompt.json").is_file() else \
        PromptPieces.from_item_paths(paths, prefix=info["prefix_token_ids"], suffix=info["suffix_token_ids"],
                                     max_history=info["max_history"])
    return Recommender(TorchBackend(model, head_token_ids=head), trie, encoder, paths.keys(),
                       max_history=info["max_history"], batch_size=batch_size,
                       id_map=load_id_map(ckpt_dir, n_items=max(paths) + 1))


# ------------------------------------------------------------------------------------------- own item ids
# A user's own log (docs/own-ids.md): string ids (sku-...) or integers that are not 0..n-1, trained and exported
# (tests/test_own_ids.py, and the C++ package's id functions in tests/test_cpp_package.py).
N_USERS, N_ITEMS = 160, 50


def item_spelling(kind: str, i: int):
    return f"sku-{i * 7 + 3}" if kind == "str" else 1000 + 13 * i  # ints: not 0..n-1, not in natural order


def write_log(path, kind: str, seed: int = 0) -> None:
    """user,item,timestamp[,title] rows: every user walks a ring of items (learnable), random times."""
    rng = np.random.default_rng(seed)
    rows = ["user_id,item_id,timestamp" + (",title" if kind == "str" else "")]
    for u in range(N_USERS):
        start, n = int(rng.integers(N_ITEMS)), int(rng.integers(6, 14))
        times = np.sort(rng.integers(1_400_000_000, 1_500_000_000, n))
        for j, t in enumerate(times):
            i = (start + j) % N_ITEMS
            title = f",Product {i} shade {i % 5}" if kind == "str" else ""
            rows.append(f"u{u},{item_spelling(kind, i)},{t}{title}")
    rows.append("u0,sku-rare,1400000000" if kind == "str" else "u0,999999,1400000000")  # dropped by the 5-core
    path.write_text("\n".join(rows) + "\n")


def own_id_engine(root: Path, kind: str):
    """(kind, csv, checkpoint, engine): a log of `kind` ids written to root, trained (micro, 1 epoch), exported."""
    from earn_export.export import export_onnx
    from earn_export.train.train_checkpoint import train

    csv = root / "log.csv"
    write_log(csv, kind)
    ckpt = train(root / "ckpt", DataSpec.from_args(interactions=csv), split="auto", preset="micro", epochs=1,
                 batch_size=64, lr=3e-3, progress=False, valid_users=50)
    engine = root / "engine"
    export_onnx(ckpt, engine, vocab="items", exporter="torchscript")
    return kind, csv, ckpt, engine


def histories_of(kind):
    return [[item_spelling(kind, i) for i in (3, 4, 5)], [item_spelling(kind, 10)], []]


def load_benchmark(name: str):
    """``benchmarks/NAME.py`` imported as the module ``benchmarks_NAME`` (scripts, not a package: they run as
    ``python benchmarks/NAME.py``); the same module object as conftest's ``benchmark_script`` fixture."""
    import importlib.util
    import sys

    mod_name = f"benchmarks_{name}"
    if mod_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(mod_name, REPO / "benchmarks" / f"{name}.py")
        sys.modules[mod_name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[mod_name])
    return sys.modules[mod_name]
