"""The one model definition (training, export and reference inference all use it)."""

from .checkpoint import CheckpointError, add_register_tokens, load_pretrained, save_pretrained
from .config import EarnConfig, ModelConfigError, UnsupportedArchitectureError, load_hf_config
from .decoder import EarnForCausalLM, GeneratedCache, PrefixCache, position_ids_from_mask
from .kv_cache_bytes import KVShape, kv_bytes, kv_report

EarnForCausalLM.from_pretrained = staticmethod(load_pretrained)
EarnForCausalLM.save_pretrained = save_pretrained

__all__ = [
    "CheckpointError", "EarnConfig", "EarnForCausalLM", "GeneratedCache", "KVShape", "ModelConfigError",
    "PrefixCache", "UnsupportedArchitectureError", "add_register_tokens", "kv_bytes", "kv_report",
    "load_hf_config", "load_pretrained", "position_ids_from_mask", "save_pretrained",
]
