"""Trie-constrained beam search: exhaustive oracle, a plain-Python reference, transformers' generate; metrics."""

import itertools
import math

import numpy as np
import pytest
import torch

from earn_export.data.catalog import Trie
from earn_export.runtime.backends import TorchBackend
from earn_export.search import constrained_beam_search, evaluate_rankings
from helpers import L, dense_model, synthetic_trie, token_prompts

V = 48


class TableBackend:
    """Log-probs that depend on (user, generated prefix) only: lets the oracle score every identifier."""

    out_token_ids = None

    def __init__(self, n_users, seed=0):
        self.n_users, self.seed = n_users, seed

    def lp(self, user, path):
        rng = np.random.default_rng(abs(hash((self.seed, user, tuple(path)))) % (2**32))
        x = rng.normal(size=V) * 3
        return (x - np.log(np.exp(x - x.max()).sum()) - x.max()).astype(np.float32)

    def prefill(self, input_ids, attention_mask):
        return np.stack([self.lp(u, ()) for u in range(len(input_ids))]), [[()] for _ in range(len(input_ids))]

    def decode(self, state, tokens, parents, step):
        paths = [[state[u][p] + (int(t),) for p, t in zip(parents[u], tokens[u])] for u in range(len(state))]
        assert all(len(p) == step for row in paths for p in row)
        return np.stack([[self.lp(u, p) for p in row] for u, row in enumerate(paths)]), paths


def make_trie(n_items=60, seed=0):
    paths = {i: [t - 10 for t in p] for i, p in synthetic_trie(n_items, seed)[1].items()}  # tokens 0..29 < V
    return Trie.build(paths), paths


def exhaustive(backend, paths, user):
    scores = {item: sum(backend.lp(user, tuple(p[:i]))[p[i]] for i in range(len(p))) for item, p in paths.items()}
    return sorted(scores.items(), key=lambda kv: -kv[1])


def reference_beam(backend, paths, user, beam):
    """Textbook beam search over prefixes (dict-based, no vectorisation)."""
    prefixes = {tuple(p[:d]) for p in paths.values() for d in range(L + 1)}
    beams = [((), 0.0)]
    for _ in range(L):
        cand = []
        for pre, sc in beams:
            lp = backend.lp(user, pre)
            cand += [(pre + (t,), sc + float(lp[t])) for t in range(V) if pre + (t,) in prefixes]
        beams = sorted(cand, key=lambda c: -c[1])[:beam]
    inv = {tuple(p): i for i, p in paths.items()}
    return [(inv[p], s) for p, s in beams]


def test_beam_at_catalog_size_is_exhaustive():
    trie, paths = make_trie()
    be = TableBackend(3)
    res = constrained_beam_search(be, trie, np.zeros((3, 4), np.int64), np.ones((3, 4), np.int64), beam=64)
    for u in range(3):
        want = exhaustive(be, paths, u)
        assert res.items[u, :60].tolist() == [i for i, _ in want]
        np.testing.assert_allclose(res.scores[u, :60], [s for _, s in want], rtol=1e-5)
        # 60 items only: 4 dead slots, item -1 and score -inf, tokens -1
        assert (res.items[u, 60:] == -1).all() and np.isneginf(res.scores[u, 60:]).all()
        assert (res.tokens[u, 60:] == -1).all()
        assert [paths[i] for i in res.items[u, :60]] == res.tokens[u, :60].tolist()


@pytest.mark.parametrize("beam", [1, 3, 20])
def test_beam_equals_reference_beam_search(beam):
    trie, paths = make_trie(seed=1)
    be = TableBackend(4, seed=beam)
    res = constrained_beam_search(be, trie, np.zeros((4, 4), np.int64), np.ones((4, 4), np.int64), beam=beam)
    for u in range(4):
        want = reference_beam(be, paths, u, beam)
        assert res.items[u].tolist() == [i for i, _ in want]
        np.testing.assert_allclose(res.scores[u], [s for _, s in want], rtol=1e-5)


def test_dead_ends_and_item_vocab_columns():
    # one item only: every beam but the first dies at step 0; output vocabulary = the trie's tokens
    trie = Trie.build({7: [3, 5, 9]})

    class Sliced(TableBackend):
        out_token_ids = np.array([9, 3, 5])

        def lp(self, user, path):
            return np.log(np.array([0.2, 0.5, 0.3], np.float32))

    res = constrained_beam_search(Sliced(2), trie, np.zeros((2, 3), np.int64), np.ones((2, 3), np.int64), beam=4)
    assert res.items.tolist() == [[7, -1, -1, -1]] * 2
    np.testing.assert_allclose(res.scores[:, 0], np.log(0.5) + np.log(0.3) + np.log(0.2), rtol=1e-6)

    class Missing(Sliced):
        out_token_ids = np.array([9, 3])

    with pytest.raises(ValueError, match="not in the engine's output vocabulary"):
        constrained_beam_search(Missing(1), trie, np.zeros((1, 3), np.int64), np.ones((1, 3), np.int64), beam=2)


def test_runtime_beams_equal_transformers_generate(tmp_path):
    """Dense model, full vocabulary: our beams (items, order, scores) = HF generate with the same trie."""
    from transformers import AutoModelForCausalLM

    arrays, paths = synthetic_trie()
    trie = Trie.build(paths)
    model = dense_model()
    model.save_pretrained(tmp_path)
    hf = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    ids, mask = token_prompts(model, [9, 6, 8])
    beam = 20
    res = constrained_beam_search(TorchBackend(model), trie, ids, mask, beam=beam)

    prefixes = {tuple(p[:d]) for p in paths.values() for d in range(L)}
    children = {pre: sorted({p[len(pre)] for p in paths.values() if tuple(p[: len(pre)]) == pre}) for pre in prefixes}
    p_len = ids.shape[1]

    def allowed(batch_id, sent):
        return children.get(tuple(sent[p_len:].tolist()), [])

    with torch.no_grad():
        out = hf.generate(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), num_beams=beam,
                          num_return_sequences=beam, max_new_tokens=L, min_new_tokens=L, do_sample=False,
                          prefix_allowed_tokens_fn=allowed, length_penalty=0.0, early_stopping=True,
                          return_dict_in_generate=True, output_scores=True, pad_token_id=0, eos_token_id=None)
    seqs = out.sequences[:, p_len:].reshape(len(ids), beam, L).numpy()
    hf_scores = out.sequences_scores.reshape(len(ids), beam).numpy()
    assert (res.tokens == seqs).all()
    np.testing.assert_allclose(res.scores, hf_scores, atol=1e-4)


def test_metrics_hand_computed():
    ranked = np.array([[5, 1, 9, -1], [2, 3, 4, 6]])
    targets = [{1, 7}, {6}]
    m = evaluate_rankings(ranked, targets, ks=(2, 4))
    # user 0: hit at rank 2 -> recall@2 = 1/2; ndcg@2 = (1/log2(3)) / (1 + 1/log2(3))
    # user 1: hit at rank 4 -> recall@2 = 0, recall@4 = 1; ndcg@4 = (1/log2(5)) / 1
    assert m["recall@2"] == pytest.approx((0.5 + 0) / 2)
    assert m["recall@4"] == pytest.approx((0.5 + 1) / 2)
    n0 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert m["ndcg@2"] == pytest.approx(n0 / 2)
    assert m["ndcg@4"] == pytest.approx((n0 + 1 / math.log2(5)) / 2)
    with pytest.raises(ValueError, match="at least one target"):
        evaluate_rankings(ranked, [{1}, set()], ks=(2,))
    assert list(itertools.islice(m, 1)) == ["users"]


def test_select_breaks_ties_like_a_stable_sort():
    """Ties at the beam cut keep the lowest candidate index (deterministic beams), -inf included."""
    from earn_export.search.beam import _select

    rng = np.random.default_rng(0)
    for _ in range(500):
        b, m = int(rng.integers(1, 5)), int(rng.integers(2, 60))
        beam = int(rng.integers(1, m))
        scores = rng.integers(-3, 3, (b, m)).astype(np.float32)  # many exact ties
        scores[rng.random((b, m)) < 0.2] = -np.inf
        idx, vals = _select(scores, beam)
        ref = np.argsort(-scores, axis=1, kind="stable")[:, :beam]
        assert np.array_equal(idx, ref) and np.array_equal(vals, np.take_along_axis(scores, ref, 1))
