"""TensorRT engine builder for the two exported graphs (UNVERIFIED: TensorRT cannot be installed here).

Written against the TensorRT 10.x and 11.x Python APIs; profiles, the precision policy and engine metadata are
plain Python and unit-tested. TRT 10 builds fp16 with ``BuilderFlag.FP16``; TRT 11 removed weak typing, so
``--fp16`` there needs a graph exported in fp16, built strongly typed. Plugins: :mod:`.plugin_library`.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path

from ..atomic import staged_output
from ..errors import UserError
from ..engine.manifest import load_manifest, sha256_file

ENGINE_FORMAT_VERSION = 1


class TensorRTUnavailable(RuntimeError, UserError):
    """TensorRT (or a GPU) is missing: ``earn-export build`` exits 2 with one line naming the extra, as every command
    whose optional extra is missing does."""

    exit_code = 2


def tensorrt_available() -> tuple[bool, str]:
    """The one capability check: (ok, reason). Needs the ``tensorrt`` Python package and a CUDA device."""
    try:
        import tensorrt as trt  # noqa: F401
    except Exception as exc:  # ImportError, or a stub package failing at import
        return False, (
            f"earn-export build needs TensorRT, which is not installed ({type(exc).__name__}: {exc}) — pip install "
            "'earn-export[tensorrt]' (TensorRT 10.x or 11.x for your CUDA version; where PyPI's tensorrt-*-libs are "
            "download stubs, NVIDIA's pip index or tarball). ONNX Runtime runs the exported graphs without it."
        )
    version = getattr(trt, "__version__", "0")
    if int(version.split(".")[0]) < 10:
        return False, f"TensorRT {version} is too old — earn-export builds with TensorRT 10.x or 11.x; upgrade it."
    return True, f"TensorRT {version}"


@dataclass(frozen=True)
class ShapeRange:
    batch: tuple[int, int, int] = (1, 8, 64)
    prompt_len: tuple[int, int, int] = (2, 128, 512)
    beam: tuple[int, int, int] = (1, 20, 40)
    generated: tuple[int, int, int] | None = None  # per-beam generated tokens held; None: (0, 1, L-1) of the model


def profiles(manifest: dict, shapes: ShapeRange) -> dict[str, dict[str, tuple[tuple[int, ...], ...]]]:
    """min/opt/max shapes for every dynamic input of prefill and decode, derived from the manifest."""
    m = manifest["model"]
    hkv, d, n, k, r = m["n_kv_heads"], m["head_dim"], m["num_layers"], m["split_layer"], m["n_registers"]

    def tri(*dims):  # dims: ints or (min, opt, max) triples -> three shapes
        return tuple(tuple(x[i] if isinstance(x, tuple) else x for x in dims) for i in range(3))

    b, p, nb, t = shapes.batch, shapes.prompt_len, shapes.beam, shapes.generated
    if t is None:  # decode step s holds s generated tokens per beam: 0 .. L-1 for an L-token identifier
        t = (0, 1, max(1, int(m.get("id_length") or 4) - 1))
    prefill = {"input_ids": tri(b, p), "attention_mask": tri(b, p)}
    decode = {"input_ids": tri(b, nb, 1), "position_ids": tri(b, nb, 1), "attention_mask": tri(b, p)}
    for layer in range(n):
        shared = p if layer < k else r
        for kind in ("key", "value"):
            decode[f"past_key_values.{layer}.{kind}"] = tri(b, hkv, shared, d)
            decode[f"generated.{layer}.{kind}"] = tri(b, nb, hkv, t, d)
    return {"prefill": prefill, "decode": decode}


def precision_plan(trt_version: str, fp16: bool, graph_dtype: str) -> dict:
    """How to get the requested precision on this TensorRT major version, or a clear refusal."""
    major = int(trt_version.split(".")[0])
    if not fp16:
        return {"builder_flags": [], "strongly_typed": major >= 11}
    if major >= 11:
        if graph_dtype != "float16":
            raise ValueError(
                "TensorRT 11 removed BuilderFlag.FP16: fp16 must be in the graph. Re-export with "
                "`earn-export export CKPT --fp16` and build that engine directory."
            )
        return {"builder_flags": [], "strongly_typed": True}
    return {"builder_flags": ["FP16"], "strongly_typed": False}


def engine_metadata(manifest: dict, trt_version: str, gpu: dict, shapes: ShapeRange, plan: dict,
                    files: dict[str, Path], plugins: list | None = None) -> dict:
    """engine.json: what a loader must check before deserialising (TRT version, GPU, profiles, hashes)."""
    return {
        "format_version": ENGINE_FORMAT_VERSION,
        "tensorrt_version": trt_version,
        "gpu": gpu,
        "host": platform.machine(),
        "precision": plan,
        "profiles": {g: {n: list(map(list, s)) for n, s in prof.items()}
                     for g, prof in profiles(manifest, shapes).items()},
        "onnx_sha256": manifest.get("sha256", {}),
        "plans": {name: sha256_file(Path(p)) for name, p in files.items()},  # streamed: plans can be GBs
        "plugins": plugins or [],  # plugin_library.plugin_metadata entries: op, version, sha256, embedded
    }


@staged_output("engine_dir", last=("engine.json",))
def build_engines(engine_dir, fp16: bool = False, shapes: ShapeRange = ShapeRange(),
                  workspace_gib: float = 8.0, timing_cache: str | None = None, plugins=None,
                  embed_plugins: bool = False, staging=None) -> dict:
    """Build prefill.plan and decode.plan beside the ONNX graphs and write engine.json, atomically (staged, engine.json
    last). ``plugins``: plugin libraries (default for ``--attention plugin``: plugins/build's); ``embed_plugins``:
    serialise them into the plans. Libraries this build loaded are deregistered when it ends."""
    ok, reason = tensorrt_available()
    if not ok:
        raise TensorRTUnavailable(reason)
    import tensorrt as trt

    engine_dir = Path(engine_dir)
    manifest = load_manifest(engine_dir)  # format version and sha256 of every file checked before building
    plan = precision_plan(trt.__version__, fp16, manifest.get("dtype", "float32"))
    from ..ops import libraries
    from .plugin_library import embedded_in, plugin_metadata, resolve_for_build
    from .plugin_registry import loaded_for_build

    libs = resolve_for_build(manifest, plugins)
    infos = [libraries.trt_plugin_info(p) for p in libs]  # creator name/version/namespace: the registry check
    embed = embedded_in(manifest, libs) if embed_plugins else set()  # the plans with plugin nodes, when asked
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    if not hasattr(trt.IBuilderConfig, "plugins_to_serialize"):
        embed = set()  # this TensorRT cannot embed libraries: loaders must load them (engine.json says so)
    cache_path = Path(timing_cache) if timing_cache else engine_dir / "timing.cache"
    cache_bytes = cache_path.read_bytes() if cache_path.is_file() else b""
    written = {}  # graph -> plan path
    # before parsing (the parser looks the creator up); deregistered after the build if this build loaded it
    with loaded_for_build(builder.get_plugin_registry(), libs, infos):
        for graph, prof in profiles(manifest, shapes).items():
            flags = 0
            if plan["strongly_typed"] and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
                flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
            network = builder.create_network(flags)
            parser = trt.OnnxParser(network, logger)
            if not parser.parse_from_file(str(engine_dir / f"{graph}.onnx")):
                errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
                raise RuntimeError(f"TensorRT could not parse {graph}.onnx: {errors}")
            config = builder.create_builder_config()
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
            for flag in plan["builder_flags"]:
                config.set_flag(getattr(trt.BuilderFlag, flag))
            if graph in embed:
                config.plugins_to_serialize = [str(p) for p in libs]  # the plan carries the library
            config.set_timing_cache(config.create_timing_cache(cache_bytes), ignore_mismatch=False)
            profile = builder.create_optimization_profile()
            for name, (lo, opt, hi) in prof.items():
                profile.set_shape(name, lo, opt, hi)
            config.add_optimization_profile(profile)
            serialized = builder.build_serialized_network(network, config)
            if serialized is None:
                raise RuntimeError(f"TensorRT failed to build {graph}; see the log above")
            written[graph] = staging / f"{graph}.plan"
            written[graph].write_bytes(bytes(serialized))
            cache_bytes = bytes(config.get_timing_cache().serialize())
    (Path(timing_cache) if timing_cache else staging / "timing.cache").write_bytes(cache_bytes)
    meta = engine_metadata(manifest, trt.__version__, _gpu_info(), shapes, plan, written,
                           [plugin_metadata(p, sorted(embed), info) for p, info in zip(libs, infos)])
    (staging / "engine.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def _gpu_info() -> dict:
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability()
            return {"name": torch.cuda.get_device_name(), "sm": f"{major}{minor}"}
    except Exception:
        pass
    return {"name": "unknown", "sm": "unknown"}
