"""Attention analysis (paper §3, Fig. 2, Table 4): where each layer's attention goes on real prompts, reduced to
per-layer statistics, plotted, and turned into a split-layer recommendation (``earn-export analyze``)."""

from .collect import Corpus, collect
from .metrics import EPS, GROUPS, AttentionStats, row_metrics
from .probes import attention_probs, capture_attention
from .run import analyze, analyze_model
from .split_rule import recommend_split

__all__ = ["AttentionStats", "Corpus", "EPS", "GROUPS", "analyze", "analyze_model", "attention_probs",
           "capture_attention", "collect", "recommend_split", "row_metrics"]
