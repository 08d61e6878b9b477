"""Model configuration: the Hugging Face config (architecture) and ``earn.json`` (the EARN split). Transformers'
own config classes normalise the RoPE parameters of transformers 4 and 5 alike and round-trip ``config.json``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import ModelConfigError, UnsupportedArchitectureError  # noqa: F401 (raised and re-exported here)

EARN_FORMAT_VERSION = 1


def load_hf_config(source):
    """A transformers config from a checkpoint dir, config.json path, dict or config object (families of
    :mod:`.architectures` only)."""
    from transformers import AutoConfig, PretrainedConfig

    from .architectures import check_config, lookup

    if isinstance(source, PretrainedConfig):
        cfg = source
    elif isinstance(source, dict):
        lookup(source.get("model_type"), "config dict")
        cfg = AutoConfig.for_model(**source)
    else:
        path = Path(source)
        cfg_path = path / "config.json" if path.is_dir() else path
        if not cfg_path.is_file():
            raise ModelConfigError(f"{cfg_path}: no config.json found; pass a Hugging Face checkpoint directory")
        raw = json.loads(cfg_path.read_text())
        lookup(raw.get("model_type"), str(cfg_path))
        cfg = AutoConfig.from_pretrained(str(cfg_path.parent))
    check_config(cfg)
    return cfg


def head_dim(cfg) -> int:
    """The config's head_dim (may differ from hidden / heads, as in Qwen3), else hidden / heads."""
    return getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads


@dataclass
class EarnConfig:
    """Contents of ``earn.json``: ``split_layer`` k (layers >= k run on the registers and the rows after the
    prompt only; k = N is the dense baseline) and which tokens are registers."""

    split_layer: int
    n_prefix: int = 1
    n_suffix: int = 1
    prefix_token_ids: list[int] = field(default_factory=list)
    suffix_token_ids: list[int] = field(default_factory=list)
    paradigm: str = "lcrec"
    id_length: int = 4
    max_history: int = 20
    format_version: int = EARN_FORMAT_VERSION

    @property
    def register_token_ids(self) -> list[int]:
        return list(self.prefix_token_ids) + list(self.suffix_token_ids)

    @property
    def n_registers(self) -> int:
        return self.n_prefix + self.n_suffix

    def validate(self, num_layers: int, vocab_size: int) -> None:
        if not 1 <= self.split_layer <= num_layers:
            raise ModelConfigError(f"earn.json: split_layer k={self.split_layer} is out of range; it must satisfy "
                                   f"1 <= k <= {num_layers} (the model has {num_layers} layers; k={num_layers} is the "
                                   "dense model).")
        if len(self.prefix_token_ids) != self.n_prefix or len(self.suffix_token_ids) != self.n_suffix:
            raise ModelConfigError(f"earn.json: n_prefix={self.n_prefix}/n_suffix={self.n_suffix} but "
                                   f"prefix_token_ids={self.prefix_token_ids}, suffix_token_ids="
                                   f"{self.suffix_token_ids}; give one id per register.")
        if self.split_layer < num_layers and self.n_registers == 0:
            raise ModelConfigError("earn.json: split_layer < num_layers needs at least one register token (n_prefix + "
                                   "n_suffix > 0); the late layers would have nothing to attend to.")
        bad = [t for t in self.register_token_ids if not 0 <= t < vocab_size]
        if bad:
            raise ModelConfigError(f"earn.json: register token ids {bad} do not fit the vocabulary of size "
                                   f"{vocab_size}; resize the embeddings with model.resize_token_embeddings before "
                                   "using them.")
        if self.format_version != EARN_FORMAT_VERSION:
            raise ModelConfigError(f"earn.json: format_version {self.format_version} is not supported by this "
                                   f"earn-export (expects {EARN_FORMAT_VERSION}); re-save the checkpoint with this "
                                   "version.")

    def save(self, directory) -> Path:
        path = Path(directory) / "earn.json"
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory) -> "EarnConfig | None":
        path = Path(directory) / "earn.json"
        if not path.is_file():
            return None
        raw = json.loads(path.read_text())
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ModelConfigError(f"{path}: unknown keys {sorted(unknown)}; written by a newer earn-export?")
        return cls(**raw)
