"""Pretrained LLM -> EARN checkpoint (``earn-export convert``): HF directories and GGUF files."""

from .pretrained import ConvertError, add_catalog_tokens, convert, load_source

__all__ = ["ConvertError", "add_catalog_tokens", "convert", "load_source"]
