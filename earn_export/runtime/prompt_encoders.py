"""History → prompt token ids for the runtime: engines build prompts from their prompt pieces (no tokenizer),
unless their tokenizer is context-dependent; checkpoints use the training prompt builder, or the TIGER-style
pieces when they have no ``prompt.json``."""

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
