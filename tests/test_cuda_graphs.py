"""The CUDA-graph decode path of the torch backend (static buffers, bucketed prompt length, in-graph beam
reorder), run eagerly on the CPU: same beams and log-probs as the plain backend; interleaved searches fail loudly."""

import numpy as np
import pytest
import torch
from helpers import earn_model, synthetic_trie, token_prompts

from earn_export.data.catalog import Trie
from earn_export.runtime.backends import TorchBackend
from earn_export.search import constrained_beam_search


@pytest.fixture(scope="module")
def setup():
    arrays, paths = synthetic_trie()
    trie = Trie.build(paths)
    model = earn_model("llama", 2)
    head = np.unique(trie.tokens)
    return model, trie, head


def test_static_buffer_decode_equals_plain_backend(setup):
    model, trie, head = setup
    plain = TorchBackend(model, head)
    graphs = TorchBackend(model, head, cuda_graphs=True)
    assert graphs._graphs is not None and not graphs._graphs.capture  # CPU: the same code, no capture
    # two batches of one size but different prompt lengths share a bucket (slot reuse, left-padded KV)
    for lens in ([9, 7, 4], [13, 12, 5], [40, 3, 8]):
        ids, mask = token_prompts(model, lens)
        with torch.no_grad():
            a = constrained_beam_search(plain, trie, ids, mask, beam=20)
            b = constrained_beam_search(graphs, trie, ids, mask, beam=20)
        np.testing.assert_array_equal(a.items, b.items)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
    assert {k[2] for k in graphs._graphs.slots} == {32, 64}  # buckets of 32 prompt columns


def test_interleaved_searches_are_refused(setup):
    model, trie, head = setup
    be = TorchBackend(model, head, cuda_graphs=True)
    ids, mask = token_prompts(model, [6, 5])
    _, s1 = be.prefill(ids, mask)
    _, s2 = be.prefill(ids, mask)
    tok = np.zeros((2, 4), dtype=np.int64) + int(head[0])
    par = np.zeros((2, 4), dtype=np.int64)
    be.decode(s1, tok, par, 1)
    be.decode(s2, tok, par, 1)  # takes the same static buffers
    with pytest.raises(RuntimeError, match="one search at a time"):
        be.decode(s1, tok, par, 2)
