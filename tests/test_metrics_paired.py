"""Per-user metrics (the mean is what ``eval`` reports) and the paired bootstrap of two models on one user set."""

import numpy as np
import pytest

from earn_export.search.metrics import evaluate_rankings, per_user_metrics, topk_overlap


def test_per_user_metrics_average_to_the_reported_ones():
    rng = np.random.default_rng(0)
    ranked = np.stack([rng.permutation(50)[:20] for _ in range(40)])
    targets = [set(rng.choice(50, rng.integers(1, 4), replace=False).tolist()) for _ in range(40)]
    per = per_user_metrics(ranked, targets)
    agg = evaluate_rankings(ranked, targets)
    for k, v in per.items():
        assert v.shape == (40,) and agg[k] == pytest.approx(v.mean())
    # one hand-checked user: target at rank 2 (0-based 1) of 20
    one = per_user_metrics(np.array([[5, 7] + list(range(10, 28))]), [{7}])
    assert one["recall@10"][0] == 1.0 and one["ndcg@10"][0] == pytest.approx(1 / np.log2(3))


def test_topk_overlap_counts_the_reference_set_and_ignores_empty_slots():
    got = np.array([[1, 2, 3, 4], [9, 8, -1, -1], [5, 6, 7, 8]])
    ref = np.array([[4, 3, 2, 1], [8, 7, -1, -1], [-1, -1, -1, -1]])
    # same set reordered; 1 of the reference's 2 items; an empty reference counts as no overlap
    assert topk_overlap(got, ref).tolist() == [1.0, 0.5, 0.0]


def test_paired_bootstrap_interval_covers_the_difference_and_detects_a_clear_win(benchmark_script):
    paired_bootstrap = benchmark_script("llm_beauty").paired_bootstrap
    rng = np.random.default_rng(1)
    a = rng.random(500)
    b = a - 0.05 + 0.01 * rng.standard_normal(500)
    r = paired_bootstrap(a, b, resamples=2000)
    assert r["low"] < r["diff"] < r["high"] and r["low"] > 0 and r["p_not_below"] == 1.0
    same = paired_bootstrap(a, a.copy(), resamples=500)
    assert same["diff"] == 0 and same["low"] == 0 == same["high"]
    with pytest.raises(ValueError, match="equal-length"):
        paired_bootstrap(a, b[:10])
