"""`earn-export build ENGINE_DIR [--fp16]`: TensorRT engines for the exported graphs (needs TensorRT)."""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("build", help="build TensorRT engines (prefill.plan, decode.plan) from an engine dir")
    p.add_argument("engine_dir")
    p.add_argument("--fp16", action="store_true", help="fp16 engines (TRT 10: builder flag; TRT 11: fp16 graph)")
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--max-prompt-len", type=int, default=512)
    p.add_argument("--max-beam", type=int, default=40)
    p.add_argument("--workspace-gib", type=float, default=8.0)
    p.add_argument("--timing-cache", default=None)
    p.add_argument("--plugins", action="append", metavar="LIB.so",
                   help="TensorRT plugin library to load before parsing and serialise into the plans (repeatable); "
                        "default for engines exported with --attention plugin: plugins/build/libearn_plugins.so")
    p.set_defaults(func=run)


def run(args) -> int:
    from .tensorrt_builder import ShapeRange, TensorRTUnavailable, build_engines, tensorrt_available

    ok, reason = tensorrt_available()
    if not ok:
        print(f"earn-export build: {reason}", file=sys.stderr)
        return 3
    shapes = ShapeRange(batch=(1, min(8, args.max_batch), args.max_batch),
                        prompt_len=(2, min(128, args.max_prompt_len), args.max_prompt_len),
                        beam=(1, min(20, args.max_beam), args.max_beam))
    try:
        meta = build_engines(args.engine_dir, fp16=args.fp16, shapes=shapes, workspace_gib=args.workspace_gib,
                             timing_cache=args.timing_cache, plugins=args.plugins)
    except (TensorRTUnavailable, ValueError) as exc:
        print(f"earn-export build: {exc}", file=sys.stderr)
        return 3
    print(f"built {', '.join(meta['plans'])} with TensorRT {meta['tensorrt_version']} on {meta['gpu']['name']}"
          + "".join(f", plugin {p['plugin_name']} v{p['plugin_version']} ({p['library']}"
                    f"{', embedded' if p['serialized_into_plan'] else ''})" for p in meta["plugins"]))
    return 0
