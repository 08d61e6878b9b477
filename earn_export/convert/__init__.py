"""Pretrained LLM -> EARN checkpoint (``earn-export convert``): HF directories and GGUF files.

Names are imported lazily so that ``earn_export.convert.cli`` (imported for ``earn-export --help``) does not load
torch."""

__all__ = ["ConvertError", "add_catalog_tokens", "convert", "load_source"]


def __getattr__(name):
    if name in __all__:
        from . import pretrained

        return getattr(pretrained, name)
    raise AttributeError(name)
