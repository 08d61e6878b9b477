"""The one model definition (training, export and reference inference all use it).
Names load on first use, so the light modules (``shapes``, ``config``, ``kv_cache_bytes``) import without torch."""

from ..lazy_import import lazy_attributes

_LAZY = {
    "CheckpointError": ".checkpoint", "EarnForCausalLM": ".checkpoint",
    "load_pretrained": ".checkpoint", "save_pretrained": ".checkpoint", "EarnConfig": ".config",
    "ModelConfigError": ".config", "UnsupportedArchitectureError": ".config", "load_hf_config": ".config",
    "GeneratedCache": ".decoder", "PrefixCache": ".decoder", "position_ids_from_mask": ".decoder",
    "KVShape": ".kv_cache_bytes", "kv_bytes": ".kv_cache_bytes", "kv_report": ".kv_cache_bytes",
}
__all__ = sorted(_LAZY)
__getattr__ = lazy_attributes(__name__, _LAZY)
