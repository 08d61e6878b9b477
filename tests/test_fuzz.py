"""Property-based tests (hypothesis) of the trie-constrained search and ``Recommender.recommend``.

Invariants, for random tries, backends, histories (empty, long, duplicates, unknown ids skipped), top_k, beam and
batch sizes: no crash; items unique per user; scores non-increasing; item -1 (score -inf) only at the tail;
every returned item's score is its identifier's log-prob sum; batched results equal one-user-at-a-time results;
and when the beam holds every item, the search is exhaustive (the exact ranking).
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from earn_export.data.catalog import Trie
from earn_export.runtime import Recommender
from earn_export.search import constrained_beam_search

V = 64  # token vocabulary of the synthetic search problems


def check_ranking(items, scores, top_k):
    """The per-user invariants of a ranked result [U, top_k]."""
    assert items.shape == scores.shape and items.shape[1] == top_k
    for row, sc in zip(items, scores):
        valid = row >= 0
        n = int(valid.sum())
        assert valid[:n].all() and not valid[n:].any(), f"-1 before a valid item: {row}"
        assert np.isneginf(sc[n:]).all() and np.isfinite(sc[:n]).all()
        assert len(set(row[:n].tolist())) == n, f"duplicate items: {row}"
        assert (np.diff(sc[:n]) <= 0).all(), f"scores increase: {sc}"


# ---------------------------------------------------------------------------------------- search, synthetic
class MarkovBackend:
    """Deterministic log-probs that depend on the user (prompt's last token) and the previous token only: each
    row is computed on its own, so batching cannot change results, and every identifier's score is known."""

    out_token_ids = None  # full vocabulary

    def __init__(self, seed):
        rng = np.random.default_rng(seed)
        self.user = rng.normal(size=(V, V)).astype(np.float32)
        self.trans = rng.normal(size=(V, V)).astype(np.float32)

    @staticmethod
    def _log_softmax(x):
        x = x - x.max(-1, keepdims=True)
        return (x - np.log(np.exp(x).sum(-1, keepdims=True))).astype(np.float32)

    def prefill(self, input_ids, attention_mask):
        users = np.asarray(input_ids)[:, -1]
        return self._log_softmax(self.user[users]), users

    def decode(self, users, tokens, parents, step):
        return self._log_softmax(self.user[users][:, None, :] + self.trans[tokens]), users

    def path_score(self, user, path):
        """What the search must report for one identifier: the float32 sum of its token log-probs, in order."""
        score = np.float32(0)
        score += self._log_softmax(self.user[user])[path[0]]
        for prev, tok in zip(path, path[1:]):
            score += self._log_softmax(self.user[user] + self.trans[prev])[tok]
        return score


@st.composite
def search_problems(draw):
    depth = draw(st.integers(1, 4))
    codes = draw(st.integers(1, 5))
    space = codes ** depth
    n_items = draw(st.integers(1, min(40, space)))
    picks = draw(st.lists(st.integers(0, space - 1), min_size=n_items, max_size=n_items, unique=True))
    # level l uses tokens 1 + 10 l + code: distinct per level, inside V
    paths = {item: [1 + 10 * lvl + (p // codes ** lvl) % codes for lvl in range(depth)]
             for item, p in enumerate(picks)}
    users = draw(st.lists(st.integers(0, V - 1), min_size=1, max_size=6))
    beam = draw(st.integers(1, 45))
    return paths, users, beam, draw(st.integers(0, 2 ** 16))


@settings(max_examples=150, deadline=None)
@given(search_problems())
def test_search_invariants_and_exhaustive_when_beam_holds_every_item(problem):
    paths, users, beam, seed = problem
    trie, backend = Trie.build(paths), MarkovBackend(seed)
    ids = np.asarray(users, np.int64)[:, None]
    res = constrained_beam_search(backend, trie, ids, np.ones_like(ids), beam=beam)
    check_ranking(res.items, res.scores, beam)
    for u, (row, sc, toks) in enumerate(zip(res.items, res.scores, res.tokens)):
        n = int((row >= 0).sum())
        assert 1 <= n <= min(beam, len(paths))
        for item, s, t in zip(row[:n], sc[:n], toks[:n]):
            assert t.tolist() == paths[int(item)]
            assert s == pytest.approx(backend.path_score(users[u], paths[int(item)]), abs=1e-5)
        if beam >= len(paths):  # nothing is ever pruned: the exact ranking of every item
            exact = sorted(backend.path_score(users[u], p) for p in paths.values())[::-1]
            np.testing.assert_allclose(sc, exact + [-np.inf] * (beam - len(paths)), atol=1e-5)
    # one user at a time gives the same lists and scores
    for u, user in enumerate(users):
        one = constrained_beam_search(backend, trie, ids[u:u + 1], np.ones_like(ids[u:u + 1]), beam=beam)
        assert (one.items[0] == res.items[u]).all() and (one.scores[0] == res.scores[u]).all()


# ------------------------------------------------------------------------------------- Recommender on ORT
@pytest.fixture(scope="module")
def rec(tiny_engine):
    return Recommender.load(tiny_engine)


@st.composite
def requests(draw, n_known):
    item = st.one_of(st.integers(0, n_known - 1), st.integers(0, n_known - 1),  # known ids twice as likely
                     st.integers(n_known, 10 * n_known), st.integers(-5, -1))  # unknown: above range, negative
    history = st.one_of(st.just([]), st.lists(item, max_size=4), st.lists(item, min_size=5, max_size=40),
                        st.lists(st.integers(0, n_known - 1), min_size=1, max_size=3).map(lambda h: h * 4))
    histories = draw(st.lists(history, min_size=1, max_size=7))
    beam = draw(st.integers(1, 24))
    return histories, draw(st.integers(1, beam)), beam, draw(st.integers(1, 8))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_recommend_invariants_and_batching(rec, data):
    histories, top_k, beam, batch_size = data.draw(requests(len(rec.known_items)))
    rec.batch_size = batch_size
    res = rec.recommend(histories, top_k=top_k, beam=beam, on_unknown="skip")
    check_ranking(res.items, res.scores, top_k)
    known = rec.known_items
    for h, skipped, truncated in zip(histories, res.skipped, res.truncated):
        kept = [i for i in h if i in known]
        assert skipped == len(h) - len(kept)
        assert truncated == max(0, len(kept) - rec.max_history)
    assert set(res.items[res.items >= 0].tolist()) <= known
    for u, h in enumerate(histories):  # one user at a time, one call each
        one = rec.recommend([h], top_k=top_k, beam=beam, on_unknown="skip")
        assert (one.items[0] == res.items[u]).all(), (h, one.items[0], res.items[u])
        np.testing.assert_allclose(one.scores[0], res.scores[u], atol=1e-5)
