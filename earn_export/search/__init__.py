"""Trie-constrained beam search over item identifiers and ranking metrics (shared by eval, runtime, bench)."""

from .beam import BeamResult, constrained_beam_search, token_columns
from .metrics import evaluate_rankings

__all__ = ["BeamResult", "constrained_beam_search", "evaluate_rankings", "token_columns"]
