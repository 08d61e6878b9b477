"""Data for EARN recommenders: sequences and splits, item catalog and trie, semantic IDs, tokenizer, prompts.
Heavy libraries (transformers, tokenizers, scikit-learn) are imported only inside the functions that need them."""

from .catalog import ItemCatalog, Trie
from .errors import DataError
from .interactions import load_interactions
from .prompts import PromptBuilder, template_words
from .semantic_ids import build_semantic_ids, item_features, semantic_ids_for
from .sequences import EvalExamples, SequentialData, TrainExamples, eval_examples, load_sequential, train_examples
from .synthetic import make_synthetic
from .tokenizer import build_tokenizer, extend_tokenizer, register_tokens

__all__ = [
    "DataError", "EvalExamples", "ItemCatalog", "PromptBuilder", "SequentialData", "TrainExamples", "Trie",
    "build_semantic_ids", "build_tokenizer", "eval_examples", "extend_tokenizer", "item_features",
    "load_interactions", "load_sequential", "make_synthetic", "register_tokens", "semantic_ids_for",
    "template_words", "train_examples",
]
