"""GPU check of the CUDA kernel of earn::CompactedAttention (the .cu the TensorRT plugin links), in one command:

    .venv/bin/python plugins/gpu_check.py [--out results/gpu_check.json] [--quick]

Needs a CUDA GPU, nvcc and a CUDA build of torch (the CPU-only torch of `make install` cannot run it). It
1. binds plugins/src/cuda/compacted_attention.cu into PyTorch (torch.utils.cpp_extension, about 1-3 minutes);
2. compares the kernels (fp32: CUDA cores; fp16: tensor cores, and the CUDA-core path too) with the PyTorch
   reference (earn_export.ops.compacted_attention_reference, the op the model's decode calls) on SmolLM2-135M (9:3
   heads), Qwen2.5-0.5B (14:2) and Llama-3.2-1B (32:8) decode shapes, head_dim 64, prompt 128 and 1024, beam 20,
   plus edge shapes (register-only layers with S = 2, beam 1 and 40, head_dim 32 and 128, left padding, mixed
   prompts with heavy padding whose padded K/V rows are NaN, a 16384-token prompt that splits, 1-3 generated
   tokens): fp32 max abs error <= 1e-4, fp16 max error <= 2e-2 relative; and that a misaligned view is refused;
3. times, at beam 20 and 16 users: the kernel (fp16: both paths); (a) the two-MatMul reference on CUDA; (b) SDPA over per-beam
   expanded KV (what transformers does: the prompt KV copied per beam, enable_gqa); and reports the kernel's
   achieved memory bandwidth against a device-to-device copy and against the GPU's nominal peak.
Exit status 1 when a parity check fails. Results: a table on stdout and JSON at --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the repository, for earn_export

NOMINAL_TBPS = {  # HBM bandwidth of common data-centre GPUs (vendor datasheets), TB/s
    "H100 80GB HBM3": 3.35, "H100 SXM": 3.35, "H100 PCIe": 2.0, "H100 NVL": 3.9, "H200": 4.8, "GH200": 4.0,
    "A100-SXM4-80GB": 2.039, "A100 80GB PCIe": 1.935, "A100-SXM4-40GB": 1.555, "A100-PCIE-40GB": 1.555,
    "L40S": 0.864, "L4": 0.3, "A10": 0.6,
}
MODELS = {"smollm2-135m": (9, 3, 64), "qwen2.5-0.5b": (14, 2, 64), "llama-3.2-1b": (32, 8, 64)}  # Hq, Hkv, D
ALGO = {"auto": 0, "cuda-cores": 1, "tensor-cores": 2}  # earn::cuda::Algo


def algos(dtype):
    import torch

    return ("tensor-cores", "cuda-cores") if dtype == torch.float16 else ("cuda-cores",)


def build_extension(verbose: bool):
    from torch.utils.cpp_extension import load

    t = time.perf_counter()
    ext = load(name="earn_compacted_attention_ext",
               sources=[str(HERE / "gpu" / "torch_binding.cpp"), str(HERE / "src" / "cuda" / "compacted_attention.cu")],
               extra_include_paths=[str(HERE / "include"), str(HERE / "src" / "cuda")],
               extra_cflags=["-O3", "-std=c++17"], extra_cuda_cflags=["-O3", "-std=c++17"], verbose=verbose)
    return ext, time.perf_counter() - t


def make_inputs(b, beam, hq, hkv, d, s, t, dtype, pad_rows=True, seed=0, heavy_pad=False):
    import torch

    g = torch.Generator(device="cuda").manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g, device="cuda").to(dtype)  # noqa: E731
    bias = torch.zeros(b, s, device="cuda")
    if pad_rows and s > 4:
        for i in range(1, b, 2):  # every other user left-padded by a different amount
            bias[i, : (i * s) // (2 * b)] = torch.finfo(torch.float32).min
    sk, sv = r(b, hkv, s, d), r(b, hkv, s, d)
    if heavy_pad:  # mixed prompts: user i keeps the last 40, 7, s/2, s columns; the padded K/V rows are NaN (the
        for i in range(b):  # kernel skips a padded prefix, so they must not reach the output)
            pad = s - (40, 7, s // 2, s)[i % 4]
            bias[i, :pad] = torch.finfo(torch.float32).min
            sk[i, :, :pad] = float("nan")
            sv[i, :, :pad] = float("nan")
    return r(b, beam, hq, d), sk, sv, bias, r(b, beam, hkv, t, d), r(b, beam, hkv, t, d)


def parity(ext, cases) -> list[dict]:
    import torch

    from earn_export.ops import compacted_attention_reference

    rows = []
    for name, (b, beam, hq, hkv, d, s, t) in cases:
        for dtype in (torch.float32, torch.float16):
            heavy = "heavy padding" in name
            ins = make_inputs(b, beam, hq, hkv, d, s, t, dtype, heavy_pad=heavy)
            clean = list(ins)
            if heavy:  # the reference multiplies the masked rows by 0: give it zeros where the kernel sees NaN
                clean[1], clean[2] = torch.nan_to_num(ins[1]), torch.nan_to_num(ins[2])
            ref = compacted_attention_reference(*clean, hq, hkv, d, d ** -0.5).reshape(b, beam, hq, d).float()
            for algo in algos(dtype):
                out = ext.compacted_attention(*ins, hq, hkv, d, d ** -0.5, ALGO[algo]).float()
                err = float((out - ref).abs().max())
                rel = err / max(float(ref.abs().max()), 1e-12)
                ok = err <= 1e-4 if dtype == torch.float32 else rel <= 2e-2
                ok = ok and bool(torch.isfinite(out).all())
                rows.append({"case": name, "shape": [b, beam, hq, hkv, d, s, t], "dtype": str(dtype).split(".")[-1],
                             "algo": algo, "max_abs_err": err, "max_rel_err": rel, "ok": ok})
                print(f"  parity {name:30s} {rows[-1]['dtype']:8s} {algo:12s} max|err| {err:.2e} (rel {rel:.2e}) "
                      f"{'ok' if ok else 'FAIL'}", flush=True)
    return rows


def misaligned_refused(ext) -> dict:
    """A view with an odd storage offset (not 16-byte aligned) is refused with a clear error, before any load."""
    import torch

    q, sk, sv, bias, gk, gv = make_inputs(2, 4, 14, 2, 64, 100, 2, torch.float16)
    flat = torch.empty(q.numel() + 1, dtype=q.dtype, device="cuda")
    q_odd = flat[1:].view_as(q)
    q_odd.copy_(q)
    try:
        ext.compacted_attention(q_odd, sk, sv, bias, gk, gv, 14, 2, 64, 0.125, 0)
        ok, msg = False, "accepted"
    except RuntimeError as exc:
        msg = str(exc).splitlines()[0]
        ok = "aligned" in msg
    torch.cuda.synchronize()  # the context is still usable
    print(f"  misaligned query view: {'refused' if ok else 'NOT refused'} ({msg})", flush=True)
    return {"case": "misaligned query view refused", "ok": ok, "message": msg}


def time_cuda(fn, warmup=5, iters=30) -> float:
    """Median milliseconds of fn() with CUDA events."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def copy_bandwidth_tbps() -> float:
    import torch

    x = torch.empty(1 << 28, dtype=torch.uint8, device="cuda")  # 256 MiB
    y = torch.empty_like(x)
    ms = time_cuda(lambda: y.copy_(x), warmup=3, iters=20)
    return 2 * x.numel() / (ms * 1e-3) / 1e12


def timings(ext, users: int, beam: int, t: int, prompts, dtypes) -> list[dict]:
    import torch
    import torch.nn.functional as F

    from earn_export.ops import compacted_attention_reference

    rows = []
    for model, (hq, hkv, d) in MODELS.items():
        for s in prompts:
            for dtype in dtypes:
                q, sk, sv, bias, gk, gv = make_inputs(users, beam, hq, hkv, d, s, t, dtype, pad_rows=False)
                scale = d ** -0.5
                kernel = {a: time_cuda(lambda a=a: ext.compacted_attention(q, sk, sv, bias, gk, gv, hq, hkv, d, scale,
                                                                           ALGO[a])) for a in algos(dtype)}
                kernel_ms = min(kernel.values())
                ref_ms = time_cuda(lambda: compacted_attention_reference(q, sk, sv, bias, gk, gv, hq, hkv, d, scale))
                # (b) what transformers holds and runs: prompt KV expanded per beam, + own generated KV, SDPA
                k_exp = torch.cat([sk.unsqueeze(1).expand(-1, beam, -1, -1, -1), gk], dim=3).reshape(
                    users * beam, hkv, s + t, d).contiguous()
                v_exp = torch.cat([sv.unsqueeze(1).expand(-1, beam, -1, -1, -1), gv], dim=3).reshape(
                    users * beam, hkv, s + t, d).contiguous()
                q_exp = q.reshape(users * beam, hq, 1, d)
                sdpa_ms = time_cuda(lambda: F.scaled_dot_product_attention(q_exp, k_exp, v_exp, enable_gqa=True))
                el = torch.tensor([], dtype=dtype).element_size()
                essential = (2 * users * hkv * s * d * el + 2 * users * beam * hkv * t * d * el
                             + 2 * users * beam * hq * d * el + users * s * 4)
                rows.append({"model": model, "prompt": s, "dtype": str(dtype).split(".")[-1], "users": users,
                             "beam": beam, "kernel_ms": kernel_ms, "kernel_ms_by_algo": kernel,
                             "best_algo": min(kernel, key=kernel.get), "two_matmul_ms": ref_ms, "sdpa_expanded_ms": sdpa_ms,
                             "speedup_vs_two_matmul": ref_ms / kernel_ms, "speedup_vs_sdpa": sdpa_ms / kernel_ms,
                             "essential_bytes": essential,
                             "kernel_tbps": essential / (kernel_ms * 1e-3) / 1e12})
                r = rows[-1]
                print(f"  time {model:13s} P={s:5d} {r['dtype']:8s} kernel {kernel_ms:7.3f} ms ({r['best_algo']}; "
                      + ", ".join(f"{a} {v:.3f}" for a, v in kernel.items()) + ") | two-MatMul "
                      f"{ref_ms:7.3f} ms ({r['speedup_vs_two_matmul']:.1f}x) | SDPA expanded {sdpa_ms:7.3f} ms "
                      f"({r['speedup_vs_sdpa']:.1f}x) | {r['kernel_tbps']:.2f} TB/s", flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/gpu_check.json")
    ap.add_argument("--quick", action="store_true", help="fp16 timings only, fewer parity cases")
    ap.add_argument("--verbose", action="store_true", help="show the extension build")
    args = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device (or a CPU-only torch); this script needs a GPU", file=sys.stderr)
        return 2
    props = torch.cuda.get_device_properties(0)
    print(f"device: {props.name}, {props.multi_processor_count} SMs, torch {torch.__version__}, CUDA "
          f"{torch.version.cuda}", flush=True)
    ext, build_s = build_extension(args.verbose)
    print(f"extension built in {build_s:.0f} s", flush=True)

    cases = []
    for model, (hq, hkv, d) in MODELS.items():
        for s in (128, 1024):
            cases.append((f"{model} P={s} beam=20", (4, 20, hq, hkv, d, s, 3)))
    if not args.quick:
        cases += [("registers only S=2 (layers>=k)", (4, 20, 14, 2, 64, 2, 1)),
                  ("beam 1, S=77", (3, 1, 32, 8, 64, 77, 2)),
                  ("beam 40, S=300", (2, 40, 14, 2, 64, 300, 3)),
                  ("head_dim 128, MHA", (2, 20, 8, 8, 128, 200, 2)),
                  ("head_dim 32, G=4", (3, 20, 8, 2, 32, 129, 1)),
                  ("long prompt S=4096", (2, 20, 14, 2, 64, 4096, 3)),
                  ("long prompt S=16384, beam 1 (splits)", (2, 1, 14, 2, 64, 16384, 1)),
                  ("heavy padding, mixed prompts S=512", (8, 20, 14, 2, 64, 512, 2)),
                  ("GQA 8, head_dim 128, beam 40", (2, 40, 8, 1, 128, 300, 3))]
    print("parity against the PyTorch reference (fp32 <= 1e-4 abs, fp16 <= 2e-2 rel):", flush=True)
    par = parity(ext, cases)
    par.append(misaligned_refused(ext))

    copy_tbps = copy_bandwidth_tbps()
    nominal = next((v for k, v in NOMINAL_TBPS.items() if k in props.name), None)
    print(f"device-to-device copy: {copy_tbps:.2f} TB/s; nominal peak: {nominal or 'unknown'} TB/s", flush=True)
    dtypes = (torch.float16,) if args.quick else (torch.float16, torch.float32)
    print("timings (16 users, beam 20, 3 generated tokens per beam):", flush=True)
    tim = timings(ext, users=16, beam=20, t=3, prompts=(128, 1024), dtypes=dtypes)
    for r in tim:
        r["fraction_of_copy_bw"] = r["kernel_tbps"] / copy_tbps
        r["fraction_of_nominal_bw"] = r["kernel_tbps"] / nominal if nominal else None

    result = {"device": props.name, "sms": props.multi_processor_count, "torch": torch.__version__,
              "cuda": torch.version.cuda, "build_s": build_s, "copy_tbps": copy_tbps, "nominal_tbps": nominal,
              "parity": par, "timings": tim, "parity_ok": all(r["ok"] for r in par)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n| model | prompt | dtype | kernel ms (path) | two-MatMul ms | SDPA expanded ms | vs SDPA | TB/s | of copy BW "
          f"| of peak |\n|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in tim:
        peak = f"{100 * r['fraction_of_nominal_bw']:.0f}%" if r["fraction_of_nominal_bw"] else "–"
        print(f"| {r['model']} | {r['prompt']} | {r['dtype']} | {r['kernel_ms']:.3f} ({r['best_algo']}) | "
              f"{r['two_matmul_ms']:.3f} | "
              f"{r['sdpa_expanded_ms']:.3f} | {r['speedup_vs_sdpa']:.1f}x | {r['kernel_tbps']:.2f} | "
              f"{100 * r['fraction_of_copy_bw']:.0f}% | {peak} |")
    print(f"\nparity: {'all ok' if result['parity_ok'] else 'FAILED'}; JSON: {out}")
    return 0 if result["parity_ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
