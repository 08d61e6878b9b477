"""The ONNX Runtime recommender runs without torch and transformers: a fresh interpreter where importing them
(or tokenizers, safetensors, scikit-learn, scipy, onnx, accelerate) raises loads an engine and recommends."""

import json
import subprocess
import sys
import textwrap

from earn_export.runtime import Recommender
from helpers import REPO, blocker

NOT_AT_RUN_TIME = ("torch", "transformers", "tokenizers", "safetensors", "sklearn", "scipy", "onnx", "accelerate")
HISTORIES = [[3, 17, 42], [], [5, 5, 5, 9, 11, 30, 31, 2]]


def test_runtime_without_torch_and_transformers(tiny_engine):
    script = "import sys; at_start = set(sys.modules)\n" + blocker(NOT_AT_RUN_TIME) + textwrap.dedent("""
        import json
        from earn_export import Recommender
        res = Recommender.load(sys.argv[1]).recommend(json.loads(sys.argv[2]), top_k=10)
        new = {m.split(".")[0] for m in set(sys.modules) - at_start}
        # numpy.random's Cython runtime registers itself as top-level `_cython_3_*` / `cython_runtime` modules
        third_party = sorted(m for m in new - set(sys.stdlib_module_names)
                             if not (m.startswith("_cython_") or m == "cython_runtime"))
        print(json.dumps({"items": res.items.tolist(), "scores": res.scores.tolist(), "modules": third_party}))
    """)
    proc = subprocess.run([sys.executable, "-c", script, str(tiny_engine), json.dumps(HISTORIES)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out["modules"]) <= {"earn_export", "numpy", "onnxruntime"}, out["modules"]
    want = Recommender.load(tiny_engine).recommend(HISTORIES, top_k=10)  # this process has torch loaded
    assert out["items"] == want.items.tolist()
    assert out["scores"] == want.scores.tolist()
