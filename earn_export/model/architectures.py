"""The architecture table: per model family, the ``model_type``s it accepts and the few facts that differ.

Every family is a pre-norm RMSNorm / RoPE / GQA / SwiGLU decoder, so one implementation (:mod:`.decoder`) covers
all; the model, the exporter, ``convert`` and the CLI read the differences only from here. Facts come from the
family's ``modeling_<family>.py``. Adding a family: docs/architectures.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UnsupportedArchitectureError

# RoPE kinds evaluated by transformers' own init functions (RotaryEmbedding in decoder.py); ``dynamic`` once at
# init, which equals transformers up to max_position_embeddings
ROPE_COMMON = ("default", "linear", "dynamic", "yarn")


@dataclass(frozen=True)
class Architecture:
    """What one family's checkpoints need from the shared decoder. Bias facts are a bool when the family fixes
    them, else the config key that switches them; ``sliding_window`` names the config switch earn-export refuses."""

    family: str
    model_types: tuple[str, ...]
    hf_class: str
    qkv_bias: bool | str = False
    o_bias: bool | str = False
    mlp_bias: bool | str = False
    qk_norm: bool = False
    activations: tuple[str, ...] = ("silu",)
    rope_types: tuple[str, ...] = ROPE_COMMON
    sliding_window: str | None = None

    def flag(self, fact: bool | str, cfg) -> bool:
        """A bool fact, or the value of the config key that names it."""
        return fact if isinstance(fact, bool) else bool(getattr(cfg, fact, False))


ARCHITECTURES = (
    Architecture("llama", ("llama",), "LlamaForCausalLM", qkv_bias="attention_bias", o_bias="attention_bias",
                 mlp_bias="mlp_bias", rope_types=ROPE_COMMON + ("llama3", "longrope")),
    Architecture("qwen2", ("qwen2",), "Qwen2ForCausalLM", qkv_bias=True,
                 sliding_window="set use_sliding_window=false"),
    Architecture("qwen3", ("qwen3",), "Qwen3ForCausalLM", qkv_bias="attention_bias", o_bias="attention_bias",
                 qk_norm=True, sliding_window="set use_sliding_window=false"),
    Architecture("mistral", ("mistral",), "MistralForCausalLM", sliding_window='set "sliding_window": null'),
)

BY_MODEL_TYPE = {t: a for a in ARCHITECTURES for t in a.model_types}
SUPPORTED_MODEL_TYPES = tuple(BY_MODEL_TYPE)


def supported() -> str:
    """One phrase for error messages: ``llama (LlamaForCausalLM), qwen2 (Qwen2ForCausalLM), ...``."""
    return ", ".join(f"{t} ({BY_MODEL_TYPE[t].hf_class})" for t in SUPPORTED_MODEL_TYPES)


def lookup(model_type, where: str = "config") -> Architecture:
    """The entry for ``model_type``; an unknown one is a one-line error listing the supported ones."""
    arch = BY_MODEL_TYPE.get(model_type)
    if arch is None:
        raise UnsupportedArchitectureError(
            f"{where}: model_type={model_type!r} is not supported; earn-export supports {supported()}. Convert the "
            "checkpoint to one of these or add its family to earn_export/model/architectures.py "
            "(docs/architectures.md)."
        )
    return arch


def architecture(cfg) -> Architecture:
    return lookup(getattr(cfg, "model_type", None))


def rope_type(cfg) -> str:
    params = getattr(cfg, "rope_parameters", None) or {}
    scaling = getattr(cfg, "rope_scaling", None) or {}
    return params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"


def check_config(cfg) -> Architecture:
    """Refuse, with the reason and the fix, a config whose family is known but whose settings the shared decoder
    does not compute: a RoPE kind, activation or sliding window outside the family's entry."""
    arch = architecture(cfg)
    kind = rope_type(cfg)
    if kind not in arch.rope_types:
        raise UnsupportedArchitectureError(
            f"config: rope_type {kind!r} is not supported for {arch.family}; supported: {', '.join(arch.rope_types)}."
            " Use a checkpoint with one of these or add the kind to its entry in earn_export/model/architectures.py"
            " with a parity test"
        )
    act = getattr(cfg, "hidden_act", "silu")
    if act not in arch.activations:
        raise UnsupportedArchitectureError(
            f"config: hidden_act={act!r} is not supported for {arch.family} (the MLP is gated "
            f"{'/'.join(arch.activations)}); use a checkpoint with hidden_act={arch.activations[0]!r}"
        )
    window = _binding_window(cfg)
    if window is not None:
        fix = arch.sliding_window or 'remove "sliding_window"'
        raise UnsupportedArchitectureError(
            f"config: sliding_window={window} is smaller than max_position_embeddings="
            f"{cfg.max_position_embeddings}, so sequences longer than {window} tokens would attend over a window; "
            f"earn-export implements full causal attention only. If prompts plus identifiers stay under {window} "
            f"tokens (recommendation prompts do) the window never applies: {fix} in config.json"
        )
    return arch


def _binding_window(cfg) -> int | None:
    """The attention window of a config when it can bind (some layer slides and the window is shorter than the
    longest position), else None. transformers' Qwen configs already clear ``sliding_window`` when
    ``use_sliding_window`` is false; ``layer_types`` says which layers slide when the config has it."""
    window = getattr(cfg, "sliding_window", None)
    types = getattr(cfg, "layer_types", None)
    max_pos = getattr(cfg, "max_position_embeddings", None)
    if (not window or getattr(cfg, "use_sliding_window", None) is False
            or (types is not None and "sliding_attention" not in types) or (max_pos is not None and window >= max_pos)):
        return None
    return int(window)
