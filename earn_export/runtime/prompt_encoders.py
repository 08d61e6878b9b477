"""History → prompt token ids for the runtime: engines build prompts from their prompt pieces (no tokenizer),
unless their tokenizer is context-dependent."""

from __future__ import annotations

from ..engine.prompt_pieces import PromptPieces


def engine_encoder(engine_dir, manifest: dict):
    """The prompt encoder of an exported engine directory (see the module doc)."""
    prompt = manifest.get("prompt") or {}
    if prompt.get("format") == "pieces":
        return PromptPieces.load(engine_dir)
    from ..data.prompts import PromptBuilder

    return PromptBuilder.load(engine_dir)
