"""Attention analysis (paper §3, Fig. 2, Table 4) and the split-layer rule (``earn-export analyze``).
Names are imported lazily so that ``earn-export --help`` does not load torch."""

from ..lazy_import import lazy_attributes

_NAMES = {"Corpus": ".collect", "collect": ".collect", "EPS": ".metrics", "GROUPS": ".metrics",
          "AttentionStats": ".metrics", "row_metrics": ".metrics",
          "capture_attention": ".probes", "analyze": ".run_analysis", "analyze_model": ".run_analysis", "recommend_split": ".split_rule"}
__all__ = sorted(_NAMES)
__getattr__ = lazy_attributes(__name__, _NAMES)
