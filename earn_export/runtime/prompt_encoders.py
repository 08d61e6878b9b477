"""History → prompt token ids for the runtime: which prompt encoder an engine or checkpoint directory uses.

- Engines (format 2) carry prompt pieces (``earn_export.engine.prompt_pieces``): prompts are built by concatenation, with
  no tokenizer at run time. Engines whose tokenizer is context-dependent (manifest ``prompt.format ==
  "tokenizer"``) use the training prompt builder, which needs ``transformers``.
- Checkpoints use the training prompt builder (``prompt.json`` + tokenizer + ``items.json``); a bare model's
  directory without ``prompt.json`` gets the TIGER-style pieces: the history's identifier tokens (from the trie)
  between the registers.
"""

from __future__ import annotations

from pathlib import Path

from ..engine.prompt_pieces import PromptPieces


def engine_encoder(engine_dir, manifest: dict):
    """The prompt encoder of an exported engine directory (see the module doc)."""
    prompt = manifest.get("prompt") or {}
    if prompt.get("format") == "pieces":
        return PromptPieces.load(engine_dir)
    from ..data.prompts import PromptBuilder

    return PromptBuilder.load(engine_dir)


def build_encoder(directory, info: dict, item_paths: dict[int, list[int]]):
    """The prompt encoder of a checkpoint directory (see the module doc)."""
    directory = Path(directory)
    if (directory / "prompt.json").is_file():
        from ..data.prompts import PromptBuilder

        return PromptBuilder.load(directory)
    return PromptPieces.from_item_paths(item_paths, prefix=info.get("prefix_token_ids") or [],
                                        suffix=info.get("suffix_token_ids") or [],
                                        max_history=info.get("max_history") or 20)
