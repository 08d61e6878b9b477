"""Parity of an exported engine with the torch reference checkpoint, over real prompts: prefill log-probs,
decode log-probs along the torch beam path, and the top-K item lists; optionally polygraphy's comparator
(``pip install earn-export[parity]``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..search.metrics import topk_overlap


def _replay(backend, prefill_call: dict, decode_calls: list) -> list:
    """Decode log-probs of ``backend`` along a recorded beam path (prefill inputs + decode calls)."""
    _, state = backend.prefill(prefill_call["input_ids"], prefill_call["attention_mask"])
    out = []
    for call in decode_calls:
        lp, state = backend.decode(state, call["tokens"], call["parents"], call["step"])
        out.append(lp)
    return out


def check_engine(engine_dir, reference_ckpt=None, users=None, n: int = 500, beam: int = 20, top_k: int = 20,
                 batch_size: int = 32, providers=None, polygraphy: bool = False, progress: bool = False,
                 reference_model=None, reference_dtype: str | None = None, session_options=None) -> dict:
    """Compare an engine with its reference on ``users`` (histories; default the test users of ``data.json``,
    else catalog samples; ``n`` caps the count). ``reference_model`` replaces ``reference_ckpt`` (tests).

    Per batch one ORT and one torch search run, both recorded; decode log-probs are compared where the paths
    agree, else the torch path is replayed on ONNX Runtime, so both see the same inputs and torch runs once.
    ``topk_identical_up_to_ties_fraction`` also accepts lists that differ only where scores are within
    ``tie_tolerance`` (1e-4 fp32, 2e-2 fp16): an order the dtype cannot decide.
    """
    from concurrent.futures import ThreadPoolExecutor

    from ..data.data_spec import DataSpec
    from ..data.sequences import eval_examples
    from ..runtime.backends import RecordingBackend, TorchBackend
    from ..runtime.cpu_workers import cpu_cores, ort_single_threaded_options, torch_single_threaded
    from ..runtime.recommender import Recommender
    from ..search.beam import constrained_beam_search

    import torch
    from tqdm.auto import tqdm

    on_cpu = reference_model is None or next(reference_model.parameters()).device.type == "cpu"
    workers = cpu_cores() if on_cpu and not providers else 1
    opts = session_options if session_options is not None else ort_single_threaded_options() if workers > 1 else None
    rec = Recommender.load(engine_dir, backend="onnxruntime", providers=providers, session_options=opts)
    manifest = rec.manifest
    if reference_model is None:
        from ..model import load_pretrained

        if reference_ckpt is None:
            reference_ckpt = manifest.get("source_checkpoint")
        if reference_ckpt is None:
            raise ValueError("check_engine needs reference_ckpt (or reference_model)")
        reference_model = load_pretrained(reference_ckpt, dtype=None)

    # the reference runs at the engine's precision by default: parity then measures the export (graph,
    # kernels), not fp16 rounding of the weights, which is a model-quality question (compare Recall instead)
    reference_dtype = reference_dtype or manifest["dtype"]
    reference_model = reference_model.to(getattr(torch, reference_dtype)).eval()
    ref = TorchBackend(reference_model, head_token_ids=manifest["vocab"]["vocab_out_token_ids"])

    spec = DataSpec.load_from(engine_dir) if users is None else None  # the data the checkpoint was trained on
    if spec is not None:
        users = eval_examples(spec.load(), "test", max_history=rec.max_history).histories[:n]
    if users is None:  # no data.json: random histories over the catalog, lengths 0..max_history
        rng = np.random.default_rng(0)
        items = np.array(sorted(rec.known_items))
        users = [rng.choice(items, size=int(rng.integers(0, rec.max_history + 1))).tolist() for _ in range(n)]
    users = list(users)[:n]
    clean, skipped, _ = rec.prepare(users, on_unknown="skip")

    pre_diff, dec_diff, pre_rel = 0.0, 0.0, 0.0
    identical = tie_equal = replayed = 0
    overlap = 0.0  # mean fraction of the reference's top-K items also in the engine's top-K (quantized engines)
    tol = 2e-2 if manifest["dtype"] == "float16" else 1e-4
    mismatches = []
    starts = list(range(0, len(clean), batch_size))
    poly_prompts = []
    prompts = {s: rec.encoder(clean[s: s + batch_size]) for s in starts}

    def search(job):
        backend, s = job
        recorder = RecordingBackend(backend)
        with torch.no_grad():
            res = constrained_beam_search(recorder, rec.trie, *prompts[s], beam=beam, columns=rec.columns)
        return res, recorder.calls

    jobs = [(b, s) for s in starts for b in (rec.backend, ref)]
    bar = tqdm(total=len(clean), desc="parity", unit="user", disable=not progress)
    with torch_single_threaded(workers > 1), ThreadPoolExecutor(max(1, workers)) as pool:
        results = pool.map(search, jobs)  # in job order: (ORT, torch) per batch
        for s in starts:
            (ort_res, ort_calls), (ref_res, ref_calls) = next(results), next(results)
            chunk = clean[s: s + batch_size]
            ids, mask = prompts[s]
            if len(poly_prompts) < 2:
                poly_prompts.append((ids, mask))
            lp_ref, lp_ort = ref_calls[0]["logprobs"], ort_calls[0]["logprobs"]
            d = np.abs(lp_ref - lp_ort)
            pre_diff = max(pre_diff, float(d.max()))
            pre_rel = max(pre_rel, float(d.max() / max(np.abs(lp_ref).max(), 1e-12)))
            ref_dec, ort_dec = ref_calls[1:], ort_calls[1:]
            if len(ref_dec) == len(ort_dec) and all(  # the same beam path
                    x["step"] == y["step"] and np.array_equal(x["tokens"], y["tokens"])
                    and np.array_equal(x["parents"], y["parents"]) for x, y in zip(ref_dec, ort_dec)):
                ort_lps = [c["logprobs"] for c in ort_dec]
            else:  # the ORT search went elsewhere: score the torch path on ONNX Runtime
                replayed += 1
                with torch.no_grad():
                    ort_lps = _replay(rec.backend, ref_calls[0], ref_dec)
            for call, lp in zip(ref_dec, ort_lps):
                dec_diff = max(dec_diff, float(np.abs(call["logprobs"] - lp).max()))
            a = np.asarray(ort_res.items)[:, :top_k]
            b = np.asarray(ref_res.items)[:, :top_k]
            sa = np.asarray(ort_res.scores)[:, :top_k]
            sb = np.asarray(ref_res.scores)[:, :top_k]
            # rank-wise score agreement: lists that differ only by swapping items scored within `tol` of each other
            close = np.where(np.isfinite(sb), np.abs(np.nan_to_num(sa - sb, nan=np.inf)), 0.0).max(1) <= tol
            overlap += float(topk_overlap(a, b).sum())
            for i in range(len(chunk)):
                if np.array_equal(a[i], b[i]):
                    identical += 1
                    tie_equal += 1
                    continue
                tie_equal += int(close[i])
                if len(mismatches) < 50:  # the report lists the first 50
                    diff = np.nonzero(a[i] != b[i])[0]
                    mismatches.append({
                        "user": s + i, "history": chunk[i], "first_diff_rank": int(diff[0]),
                        "n_diff": int(len(diff)), "same_set": bool(set(a[i].tolist()) == set(b[i].tolist())),
                        "onnxruntime": a[i].tolist(), "torch": b[i].tolist(),
                        "onnxruntime_scores": sa[i].round(5).tolist(), "torch_scores": sb[i].round(5).tolist(),
                    })
            bar.update(len(chunk))
    bar.close()
    u = len(clean)
    report = {
        "engine_dir": str(engine_dir), "users": u, "beam": beam, "top_k": top_k,
        "dtype": manifest["dtype"], "reference_dtype": reference_dtype, "vocab": manifest["vocab"]["mode"],
        "providers": list(getattr(rec.backend, "device_providers", [])),
        "prefill_max_abs_diff": pre_diff, "prefill_max_rel_diff": pre_rel, "decode_max_abs_diff": dec_diff,
        "topk_identical_fraction": identical / u if u else 1.0, "tie_tolerance": tol,
        "topk_identical_up_to_ties_fraction": tie_equal / u if u else 1.0,
        "topk_overlap_mean": overlap / u if u else 1.0,
        "quantization": (manifest.get("quantization") or {}).get("mode"),
        "users_with_unknown_items_skipped": int((skipped > 0).sum()),
        "batches_replayed_on_torch_path": replayed, "workers": workers,
        "mismatches": mismatches,
    }
    if polygraphy:
        report["polygraphy"] = polygraphy_prefill(engine_dir, poly_prompts, ref, atol=tol)
    return report


def polygraphy_prefill(engine_dir, prompts, reference_backend, atol: float) -> dict:
    """``polygraphy run prefill.onnx --onnxrt [--trt]`` on real prompts, compared with the torch outputs."""
    try:
        from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
        from polygraphy.comparator import Comparator, CompareFunc, IterationResult
    except ImportError:
        return {"skipped": "polygraphy is not installed (pip install 'earn-export[parity]')"}
    engine_dir = Path(engine_dir)
    feeds = [{"input_ids": ids, "attention_mask": mask} for ids, mask in prompts]
    runners = [OnnxrtRunner(SessionFromOnnx(str(engine_dir / "prefill.onnx"), providers=["CPUExecutionProvider"]))]
    try:
        import tensorrt  # noqa: F401
        from polygraphy.backend.trt import EngineFromNetwork, NetworkFromOnnxPath, TrtRunner

        runners.append(TrtRunner(EngineFromNetwork(NetworkFromOnnxPath(str(engine_dir / "prefill.onnx")))))
    except Exception:
        pass
    results = Comparator.run(runners, data_loader=feeds)
    torch_iters = []
    for f in feeds:
        lp, _ = reference_backend.prefill(f["input_ids"], f["attention_mask"])
        torch_iters.append(IterationResult(outputs={"logits": lp}, runner_name="torch-reference"))
    results.append(("torch-reference", torch_iters))
    # compare every polygraphy runner against the torch reference on the logits only (KV dtype may differ)
    func = CompareFunc.simple(atol=atol, rtol=0.0, check_shapes=True,
                              find_output_func=lambda name, idx, res: [name] if name == "logits" else [])
    comparisons = [(i, len(results) - 1) for i in range(len(results) - 1)]
    acc = Comparator.compare_accuracy(results, compare_func=func, comparisons=comparisons)
    return {"runners": [r.name for r in runners] + ["torch-reference"], "atol": atol, "passed": bool(acc)}
