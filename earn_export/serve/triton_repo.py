"""``earn-export triton-repo``: a Triton model repository for servers with the ONNX Runtime / TensorRT backends.

``prefill/`` and ``decode/`` hold the engine's graphs (``max_batch_size: 0``: the BLS model sends whole prompt
batches), ``earn_recommender/`` a Python-backend BLS model with the interface of ``earn-export serve`` whose beam
loop is this package's search (``1/engine/`` holds the engine's small files). Every ``config.pbtxt`` is parsed back
and checked against the ONNX graphs (:func:`validate_repository`); what is verified where: docs/serving.md.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

from ..errors import UserError, check_choice
from . import MODEL_NAME
from ..engine.manifest import runtime_files
from .served_model import OPTIONS_PARAMETER, ServeOptions, model_config, model_py

GRAPH_BACKENDS = {"onnxruntime": ("onnxruntime", ""), "tensorrt": ("tensorrt", "tensorrt_plan"),
                  "python-onnxruntime": ("python", "")}  # --graphs -> (backend, platform) of prefill/decode


class TritonRepoError(ValueError, UserError):
    """The repository cannot be written or does not validate; the message names the problem and the fix."""


def _onnx_io(path: Path) -> dict:
    """{"inputs": [(name, triton dtype, dims)], "outputs": [...]} of an ONNX graph (weights not loaded)."""
    import onnx
    from tritonclient.grpc import model_config_pb2 as mc

    dtypes = {onnx.TensorProto.INT64: mc.TYPE_INT64, onnx.TensorProto.FLOAT: mc.TYPE_FP32,
              onnx.TensorProto.FLOAT16: mc.TYPE_FP16, onnx.TensorProto.INT32: mc.TYPE_INT32,
              onnx.TensorProto.BFLOAT16: mc.TYPE_BF16, onnx.TensorProto.BOOL: mc.TYPE_BOOL}
    g = onnx.load(str(path), load_external_data=False).graph

    def rows(values):
        out = []
        for v in values:
            t = v.type.tensor_type
            if t.elem_type not in dtypes:
                raise TritonRepoError(f"{path}: {v.name} has ONNX dtype {t.elem_type}, which has no Triton mapping")
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
            out.append((v.name, dtypes[t.elem_type], dims))
        return out

    return {"inputs": rows(g.input), "outputs": rows(g.output)}


def graph_config(name: str, io: dict, graphs: str, device: str, instances: int):
    from tritonclient.grpc import model_config_pb2 as mc

    backend, platform = GRAPH_BACKENDS[graphs]
    cfg = mc.ModelConfig(name=name, max_batch_size=0, backend=backend, platform=platform)
    for n, dt, dims in io["inputs"]:
        cfg.input.add(name=n, data_type=dt, dims=dims)
    for n, dt, dims in io["outputs"]:
        cfg.output.add(name=n, data_type=dt, dims=dims)
    kind = mc.ModelInstanceGroup.KIND_GPU if device == "gpu" else mc.ModelInstanceGroup.KIND_CPU
    cfg.instance_group.add(count=instances, kind=kind)
    return cfg


def write_triton_repo(engine_dir, out, opts: ServeOptions, graphs: str = "onnxruntime", device: str = "gpu",
                      graph_instances: int = 1, overwrite: bool = False) -> dict:
    """Write the repository (see module doc), validate it, and return the validation report."""
    from google.protobuf import text_format

    from ..engine.manifest import load_manifest

    check_choice("--graphs", graphs, tuple(GRAPH_BACKENDS), TritonRepoError)
    check_choice("--instance-kind", device, ("gpu", "cpu"), TritonRepoError)
    if graphs == "python-onnxruntime" and device == "gpu":
        device = "cpu"  # the Python-backend graphs run ONNX Runtime's CPU provider
    engine_dir = Path(engine_dir).resolve()
    manifest = load_manifest(engine_dir, verify=True)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise TritonRepoError(f"{out} exists and is not empty; choose another --out or pass --overwrite")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)

    for graph in ("prefill", "decode"):
        spec = manifest["graphs"][graph]
        version = out / graph / "1"
        version.mkdir(parents=True)
        onnx_path = engine_dir / spec["file"]
        if graphs == "tensorrt":
            plan = engine_dir / f"{graph}.plan"
            if not plan.is_file():
                raise TritonRepoError(f"{plan} not found: build the TensorRT plans first "
                                      f"(`earn-export build {engine_dir} --fp16`), or use --graphs onnxruntime")
            shutil.copy2(plan, version / "model.plan")
        else:
            shutil.copy2(onnx_path, version / "model.onnx")
            if spec.get("external_data"):  # the graph names its weights file; keep the name beside model.onnx
                shutil.copy2(engine_dir / spec["external_data"], version / spec["external_data"])
            if graphs == "python-onnxruntime":
                (version / "model.py").write_text(model_py("bls_model", "OnnxGraphModel"))
        cfg = graph_config(graph, _onnx_io(onnx_path), graphs, device, graph_instances)
        (out / graph / "config.pbtxt").write_text(text_format.MessageToString(cfg))

    # the BLS model: the served model's config (ragged history, optional top_k, per-request errors) minus the
    # warm-up request (prefill/decode may still be loading when Triton warms this model up)
    bls_opts = replace(opts, engine_dir="<model version>/engine", backend="bls").with_engine_ids(manifest)
    version = out / MODEL_NAME / "1"
    version.mkdir(parents=True)
    cfg = model_config(bls_opts.validate(), warmup=False)
    (out / MODEL_NAME / "config.pbtxt").write_text(text_format.MessageToString(cfg))
    (version / "model.py").write_text(model_py("bls_model"))
    for name in ["manifest.json", *runtime_files(manifest)]:  # the engine's small files, beside model.py
        if name and (engine_dir / name).is_file():
            (version / "engine" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(engine_dir / name, version / "engine" / name)
    (out / "README.txt").write_text(
        f"Triton model repository for {engine_dir.name} written by earn-export triton-repo (graphs: {graphs}, "
        f"device: {device}).\nServe: tritonserver --model-repository {out.resolve()}\n"
        "earn_recommender is a Python-backend BLS model: the server's Python needs earn-export installed.\n")
    return validate_repository(out, engine_dir)


def validate_repository(repo, engine_dir) -> dict:
    """Parse every config.pbtxt with ``model_config_pb2`` and check the graph models against the ONNX graphs.
    Returns {"models": {name: summary}}; raises TritonRepoError naming the first problem."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    repo, engine_dir = Path(repo), Path(engine_dir)
    manifest = json.loads((engine_dir / "manifest.json").read_text())
    report = {"models": {}}
    configs = {}
    for cfg_path in sorted(repo.glob("*/config.pbtxt")):
        cfg = mc.ModelConfig()
        try:
            text_format.Parse(cfg_path.read_text(), cfg)
        except text_format.ParseError as exc:
            raise TritonRepoError(f"{cfg_path}: not a valid Triton model config ({exc})") from exc
        if cfg.name != cfg_path.parent.name:
            raise TritonRepoError(f"{cfg_path}: name {cfg.name!r} differs from its directory")
        configs[cfg.name] = cfg
    missing = {"prefill", "decode", MODEL_NAME} - set(configs)
    if missing:
        raise TritonRepoError(f"{repo}: no config.pbtxt for {sorted(missing)}")
    for graph in ("prefill", "decode"):
        cfg = configs[graph]
        want = _onnx_io(engine_dir / manifest["graphs"][graph]["file"])
        for kind, have in (("inputs", cfg.input), ("outputs", cfg.output)):
            got = [(t.name, t.data_type, list(t.dims)) for t in have]
            if sorted(got) != sorted(want[kind]):
                diff = sorted(set(map(str, got)) ^ set(map(str, want[kind])))
                raise TritonRepoError(f"{repo / graph / 'config.pbtxt'}: {kind} differ from {graph}.onnx: {diff[:6]}")
        files = sorted(p.name for p in (repo / graph / "1").iterdir())
        report["models"][graph] = {"backend": cfg.backend, "platform": cfg.platform, "inputs": len(cfg.input),
                                   "outputs": len(cfg.output), "files": files}
    bls = configs[MODEL_NAME]
    opts = json.loads(bls.parameters[OPTIONS_PARAMETER].string_value)
    # what `earn-export serve` would declare for this engine (its id map: string / int original ids, titles)
    served = model_config(ServeOptions(engine_dir="-", catalog_ids=bool(opts.get("catalog_ids"))).with_engine_ids(
        manifest), warmup=False)
    for kind in ("input", "output"):
        got = [text_format.MessageToString(t, as_one_line=True) for t in getattr(bls, kind)]
        want = [text_format.MessageToString(t, as_one_line=True) for t in getattr(served, kind)]
        if got != want:
            raise TritonRepoError(f"{repo / MODEL_NAME / 'config.pbtxt'}: {kind}s differ from earn-export serve's "
                                  f"for this engine: {sorted(set(got) ^ set(want))[:4]} — write the repository again")
    version = repo / MODEL_NAME / "1"
    compile((version / "model.py").read_text(), str(version / "model.py"), "exec")  # a syntax error fails here
    for name in ("manifest.json", *runtime_files(manifest)):
        if not (version / "engine" / name).is_file():
            raise TritonRepoError(f"{version / 'engine'}: {name} missing; write the repository again")
    report["models"][MODEL_NAME] = {"backend": bls.backend, "max_batch_size": bls.max_batch_size,
                                    "dynamic_batching": bls.HasField("dynamic_batching"), "beam": opts["beam"],
                                    "ids": opts.get("id_type") or "catalog"}
    return report


def run_triton_repo(args) -> int:
    opts = ServeOptions.from_args(args, backend="bls", instances=args.instances or 1)
    report = write_triton_repo(args.engine_dir, args.out, opts, graphs=args.graphs, device=args.instance_kind,
                               graph_instances=args.graph_instances, overwrite=args.overwrite)
    for name, info in report["models"].items():
        print(f"{name:18s} {json.dumps(info)}")
    print(f"wrote {args.out}: every config.pbtxt parses with model_config_pb2 and prefill/decode match the ONNX "
          f"graphs' I/O" + ("" if args.graphs == "python-onnxruntime" else
                            f" (serving with the {args.graphs} backend is unverified here)"))
    return 0
