"""`earn-export build ENGINE_DIR [--fp16]`: TensorRT engines for the exported graphs (needs TensorRT)."""

from __future__ import annotations


def register(sub) -> None:
    from ..cli_args import existing_dir, positive_float, positive_int

    p = sub.add_parser("build", help="build TensorRT engines (prefill.plan, decode.plan) from an engine dir")
    p.add_argument("engine_dir", type=existing_dir, help="engine directory written by `earn-export export`")
    p.add_argument("--fp16", action="store_true", help="fp16 engines (TRT 10: builder flag; TRT 11: fp16 graph)")
    p.add_argument("--max-batch", type=positive_int, default=64, help="largest users per call of the profiles")
    p.add_argument("--max-prompt-len", type=positive_int, default=512, help="largest prompt length of the profiles")
    p.add_argument("--max-beam", type=positive_int, default=40, help="largest beam width of the profiles")
    p.add_argument("--workspace-gib", type=positive_float, default=8.0, help="TensorRT workspace memory limit")
    p.add_argument("--timing-cache", default=None,
                   help="TensorRT timing cache file to read and update (default: ENGINE_DIR/timing.cache)")
    p.add_argument("--plugins", action="append", metavar="LIB.so",
                   help="TensorRT plugin library to load before parsing (repeatable); default for engines exported "
                        "with --attention plugin: plugins/build/libearn_plugins.so")
    p.add_argument("--embed-plugins", action="store_true",
                   help="serialise the plugin libraries into the plans (self-contained plans; TensorRT then accepts "
                        "one such plan per library and process); default: loaders load the library once per process")
    p.set_defaults(func=run)


def run(args) -> int:
    """Exit 2 (with one line naming ``pip install 'earn-export[tensorrt]'``) when TensorRT is missing."""
    from .tensorrt_builder import ShapeRange, TensorRTUnavailable, build_engines, tensorrt_available

    ok, reason = tensorrt_available()
    if not ok:
        raise TensorRTUnavailable(reason)
    shapes = ShapeRange(batch=(1, min(8, args.max_batch), args.max_batch),
                        prompt_len=(2, min(128, args.max_prompt_len), args.max_prompt_len),
                        beam=(1, min(20, args.max_beam), args.max_beam))
    meta = build_engines(args.engine_dir, fp16=args.fp16, shapes=shapes, workspace_gib=args.workspace_gib,
                         timing_cache=args.timing_cache, plugins=args.plugins,
                         embed_plugins=args.embed_plugins)
    print(f"built {', '.join(meta['plans'])} with TensorRT {meta['tensorrt_version']} on {meta['gpu']['name']}"
          + "".join(f", plugin {p['plugin_name']} v{p['plugin_version']} ({p['library']}"
                    f"{', embedded' if p['serialized_into_plan'] else ''})" for p in meta["plugins"]))
    return 0
