"""Pretrained LLM -> EARN checkpoint (``earn-export convert``): HF directories and GGUF files.
Names load on first use, so that ``earn-export --help`` does not load torch."""

from ..lazy_import import lazy_attributes

__all__ = ["ConvertError", "add_catalog_tokens", "convert", "earnify", "load_earn_source", "load_source"]
__getattr__ = lazy_attributes(__name__, dict.fromkeys(__all__, ".pretrained"))
