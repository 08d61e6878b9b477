"""Load and save checkpoints in the Hugging Face layout (config.json + safetensors + earn.json): our parameter
names are transformers', so loading is a strict ``load_state_dict`` and ``AutoModelForCausalLM`` reads ours."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .architectures import architecture
from .config import EarnConfig, ModelConfigError, load_hf_config
from .decoder import EarnForCausalLM

WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"


class CheckpointError(ModelConfigError):
    pass


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if (path / WEIGHTS).is_file():
        return load_file(str(path / WEIGHTS))
    if (path / INDEX).is_file():
        index = json.loads((path / INDEX).read_text())
        state = {}
        for shard in sorted(set(index["weight_map"].values())):
            if not (path / shard).is_file():
                raise CheckpointError(f"{path}: shard {shard} listed in {INDEX} is missing; re-download it")
            state.update(load_file(str(path / shard)))
        return state
    if (path / "pytorch_model.bin").is_file():
        raise CheckpointError(
            f"{path}: only pytorch_model.bin found; earn-export reads safetensors. Convert with "
            "`AutoModelForCausalLM.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)`."
        )
    raise CheckpointError(f"{path}: no {WEIGHTS} or {INDEX}; pass a Hugging Face checkpoint directory")


def load_pretrained(path, dtype: torch.dtype | None = None) -> EarnForCausalLM:
    """Build the model from a checkpoint dir (with its earn.json, if any)."""
    path = Path(path)
    cfg = load_hf_config(path)
    state = _read_state_dict(path)
    if "model.embed_tokens.weight" in state:
        rows = state["model.embed_tokens.weight"].shape[0]
        if rows != cfg.vocab_size:
            raise CheckpointError(
                f"{path}: embed_tokens has {rows} rows but config.vocab_size={cfg.vocab_size}; fix config.json"
            )
    stored = {t.dtype for k, t in state.items() if t.is_floating_point()}
    target = dtype or (stored.pop() if len(stored) == 1 else torch.float32)
    # built on the meta device and given the loaded tensors (assign=True): no second copy of the weights in
    # memory (a 1B fp32 checkpoint would otherwise need 10 GB to load); earn validated after loading
    with torch.device("meta"):
        model = EarnForCausalLM(cfg, init=False)
    expected = set(model.state_dict())
    if cfg.tie_word_embeddings:
        state.pop("lm_head.weight", None)
        expected.discard("lm_head.weight")
    missing = sorted(expected - set(state))
    unexpected = sorted(k for k in set(state) - expected if "rotary_emb" not in k)
    if missing:
        raise CheckpointError(
            f"{path}: checkpoint is missing {len(missing)} tensors, e.g. {missing[:5]}; is it truncated or a "
            "different architecture/size than config.json says?"
        )
    if unexpected:
        raise CheckpointError(f"{path}: checkpoint has {len(unexpected)} unexpected tensors, e.g. {unexpected[:5]}")
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False, assign=True)
    del state
    if cfg.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    model.model.rotary_emb = type(model.model.rotary_emb)(model.config)  # computed buffer, not in the checkpoint
    model.to(target)
    model.set_earn(EarnConfig.load(path))
    return model


def save_pretrained(model: EarnForCausalLM, path) -> Path:
    """Write config.json, model.safetensors (tied head omitted, as transformers does) and earn.json."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    cfg.architectures = [architecture(cfg).hf_class]
    cfg.save_pretrained(str(path))
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if cfg.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    save_file(state, str(path / WEIGHTS), metadata={"format": "pt"})
    if model.earn is not None:
        model.earn.save(path)
    return path


EarnForCausalLM.from_pretrained = staticmethod(load_pretrained)
EarnForCausalLM.save_pretrained = save_pretrained
