"""What this CPU's matrix units can do: ``earn-export inspect --machine``.

A speed figure means little without the machine's own limit for the same kind of matmul. Reads the CPU's
extensions (AVX2 ... AMX) and measures single-thread peak GFLOP/s of every path the engines can take (torch fp32
and bf16, ONNX Runtime fp32, dynamic int8 and MatMulNBits) for a decode- and a prefill-shaped matmul, per thread
CPU second, so a loaded machine reports what the core does when it runs.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

# (M, K, N): decode = 4 users x beam 20 rows through a 1024 -> 4096 projection (the shape); prefill =
# 4 users x 128 prompt tokens through the same projection
SHAPES = {"decode": (80, 1024, 4096), "prefill": (512, 1024, 4096)}
FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
PATHS = ("torch_fp32", "torch_bf16", "ort_fp32", "ort_int8_dynamic", "ort_nbits8", "ort_nbits4")


def _cpuinfo(*keys: str) -> str | None:
    """The value of the first /proc/cpuinfo line starting with one of ``keys`` (None: no such line or file)."""
    path = Path("/proc/cpuinfo")
    lines = path.read_text(errors="replace").splitlines() if path.is_file() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(keys)), None)


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags from /proc/cpuinfo (Linux), or None where that file does not exist."""
    flags = _cpuinfo("flags", "Features")
    return None if flags is None else set(flags.split())


def cpu_features(flags: set[str] | None = None) -> dict:
    """``{feature: True/False/None}`` for :data:`FEATURES` plus ``source``. None = unknown: without
    /proc/cpuinfo only torch's dispatch level (AVX2 / AVX-512) is known, not VNNI/BF16/AMX."""
    flags = cpu_flags() if flags is None else flags
    if flags is not None:
        out = {f: f in flags for f in FEATURES}
        out["source"] = "/proc/cpuinfo"
        return out
    out = dict.fromkeys(FEATURES)
    try:
        import torch

        cap = torch.backends.cpu.get_cpu_capability()  # "DEFAULT", "AVX2", "AVX512", "ZVECTOR", ...
        out["avx2"] = cap in ("AVX2", "AVX512")
        out["avx512f"] = cap == "AVX512"
        out["source"] = f"torch.backends.cpu.get_cpu_capability() = {cap} (no /proc/cpuinfo: VNNI/BF16/AMX unknown)"
    except Exception:  # noqa: BLE001 - any failure leaves every feature unknown
        out["source"] = "unknown (no /proc/cpuinfo, no torch)"
    return out


def cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def int8_note(features: dict) -> str | None:
    """One line when the dynamic-int8 path has no int8 dot-product unit here (it still computes correctly)."""
    if features.get("avx512_vnni") or features.get("amx_int8") or features.get("avx_vnni"):
        return None
    known = features.get("avx512_vnni") is not None
    what = "no AVX-512 VNNI or AMX-int8" if known else "VNNI/AMX unknown (no /proc/cpuinfo)"
    return (f"int8: this CPU has {what}; ONNX Runtime's MatMulInteger falls back to a slower, exact kernel "
            "(results are correct, the speed-up over fp32 is smaller or none)")


def _matmul_model(W, dtype=None, m="m"):
    """A one-MatMul ONNX model ``y = x @ W`` with W (a numpy array or TensorProto) as an initializer: what the
    exporter's projections are."""
    from onnx import TensorProto, helper, numpy_helper

    dtype = TensorProto.FLOAT if dtype is None else dtype
    K, N = W.dims if isinstance(W, TensorProto) else W.shape
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"], name="proj")], "probe",
                          [helper.make_tensor_value_info("x", dtype, [m, K])],
                          [helper.make_tensor_value_info("y", dtype, [m, N])],
                          [W if isinstance(W, TensorProto) else numpy_helper.from_array(W, "W")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return model


def _time(fn, seconds: float) -> float:
    """Seconds of this thread's CPU time per call (best of a few rounds, after a warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(3):
        n, t0, dt = 0, time.thread_time(), 0.0
        while dt < seconds / 3:
            fn()
            n += 1
            dt = time.thread_time() - t0
        best = min(best, dt / n)
    return best


def measure_peaks(shapes: dict | None = None, seconds: float = 0.15, paths=PATHS) -> dict:
    """``{shape: {path: GFLOP/s}}`` on one thread (see module doc). ``seconds``: CPU time per path and shape."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from ..ops.ort_quantizers import matmul_integer_s8, matmul_nbits
    from .cpu_workers import ort_single_threaded_options, torch_single_threaded

    out = {}
    models_by_kn = {}  # the ORT models of one (K, N), all from the same fp32 weights: quantized once for both shapes
    with torch_single_threaded():
        for name, (M, K, N) in (shapes or SHAPES).items():
            flop = 2.0 * M * K * N
            W = (np.random.default_rng(0).standard_normal((K, N)) * 0.02).astype(np.float32)
            x = np.random.default_rng(1).standard_normal((M, K)).astype(np.float32)
            row = {}
            for dt, path in ((torch.float32, "torch_fp32"), (torch.bfloat16, "torch_bf16")):
                if path in paths:
                    a, b = torch.from_numpy(x).to(dt), torch.from_numpy(W).to(dt)
                    row[path] = flop / _time(lambda a=a, b=b: torch.matmul(a, b), seconds) / 1e9
            for path in (p for p in paths if p.startswith("ort_")):
                if (K, N) not in models_by_kn:  # fp32 and what --quantize int8 / int8-nbits / int4 write
                    models_by_kn[(K, N)] = {"ort_fp32": _matmul_model(W),
                                            "ort_int8_dynamic": matmul_integer_s8(_matmul_model(W), []),
                                            **{f"ort_nbits{b}": matmul_nbits(_matmul_model(W), b, []) for b in (8, 4)}}
                model = models_by_kn[(K, N)][path].SerializeToString()
                sess = ort.InferenceSession(model, ort_single_threaded_options(),
                                            providers=["CPUExecutionProvider"])
                row[path] = flop / _time(lambda s=sess: s.run(None, {"x": x}), seconds) / 1e9
            out[name] = {p: round(row[p], 1) for p in paths if p in row}
    return out


def ort_bf16_matmul() -> str | None:
    """None when ONNX Runtime's CPU provider runs a bf16 ``MatMul`` here, else its one-line reason (x86 builds have
    no bf16 MatMul kernel: a bf16 graph would not load, so engines stay fp32/int8 on ORT CPU)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    w = helper.make_tensor("W", TensorProto.BFLOAT16, [8, 8], bytes(128), raw=True)
    model = _matmul_model(w, TensorProto.BFLOAT16, m=2)
    try:
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - NOT_IMPLEMENTED is the expected answer on x86
        return str(exc).strip().splitlines()[0][:200]
    return None


def machine_report(seconds: float = 0.15) -> dict:
    """Everything ``inspect --machine`` prints: CPU, features, library versions, peaks per path and shape."""
    import onnxruntime
    import torch

    feats = cpu_features()
    rep = {"cpu": cpu_model(), "machine": platform.machine(), "cores": os.cpu_count(),
           "features": feats, "int8_note": int8_note(feats),
           "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
           "shapes": {k: {"M": m, "K": kk, "N": n} for k, (m, kk, n) in SHAPES.items()},
           "threads": 1, "timing": "GFLOP per thread CPU second (time.thread_time), best of 3 rounds"}
    reason = ort_bf16_matmul()
    rep["ort_bf16_matmul"] = {"supported": reason is None, "error": reason}
    rep["peak_gflops"] = measure_peaks(seconds=seconds)
    return rep


def format_report(rep: dict) -> str:
    feats = rep["features"]
    yn = {True: "yes", False: "no", None: "unknown"}
    lines = [f"CPU: {rep['cpu']} ({rep['machine']}, {rep['cores']} logical cores)",
             "features: " + ", ".join(f"{f} {yn[feats[f]]}" for f in FEATURES) + f"  [{feats['source']}]",
             f"torch {rep['versions']['torch']}, onnxruntime {rep['versions']['onnxruntime']}"]
    if rep.get("int8_note"):
        lines.append(rep["int8_note"])
    bf = rep["ort_bf16_matmul"]
    lines.append("ONNX Runtime CPU bf16 MatMul: "
                 + ("supported" if bf["supported"] else f"not available ({bf['error']})"))
    peaks = rep["peak_gflops"]
    names = list(peaks)
    lines.append(f"\npeak GFLOP/s, one thread ({rep['timing']}):")
    lines.append(f"  {'path':18s}" + "".join(
        f"{n + ' ' + 'x'.join(str(rep['shapes'][n][d]) for d in 'MKN'):>24s}" for n in names))
    for p in PATHS:
        vals = [peaks[n].get(p) for n in names]
        ratio = [f"{v:8.1f} ({v / peaks[n]['ort_fp32']:.1f}x)" if v is not None and peaks[n].get("ort_fp32")
                 else "-" for v, n in zip(vals, names)]
        lines.append(f"  {p:18s}" + "".join(f"{r:>24s}" for r in ratio))
    lines.append("  (x: against ort_fp32 on the same shape)")
    return "\n".join(lines)


_NOTED = set()


def note_int8_kernel(manifest: dict, providers: list) -> None:
    """Print :func:`int8_note` once per process when an ``--quantize int8`` engine runs on the CPU of a machine
    without an int8 dot-product unit (the engine still runs, on ONNX Runtime's slower exact kernel)."""
    import sys

    if (manifest.get("quantization") or {}).get("mode") == "int8" and providers[:1] == ["CPUExecutionProvider"]:
        note = int8_note(cpu_features())
        if note and note not in _NOTED:
            _NOTED.add(note)
            print(note, file=sys.stderr)
