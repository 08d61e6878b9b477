#!/usr/bin/env bash
# SmolLM2-135M EARN vs dense on Beauty on a lent GPU (issue 14). UNVERIFIED: no GPU was lent when it was written.
#
# The device machine reaches no registry and a call carries at most 64 MiB, but the SmolLM2 GGUF is 94 MiB.
# So the file travels in two halves, in two calls on the same warm machine (it stays warm ~30 s after a call):
#   here:   bash benchmarks/gpu_smollm2.sh prepare          # .gpu/: Beauty data, gguf wheel, the GGUF in two parts
#   call 1: run(command="bash benchmarks/gpu_smollm2.sh stage", carry=[".gpu/a", ".gpu/data", ".gpu/whl"], timeout_s=120)
#   call 2: run(command="bash benchmarks/gpu_smollm2.sh run", carry=[".gpu/b"], timeout_s=600)   # right after call 1
# call 2 re-joins the halves, installs the gguf wheel into /tmp/site and runs benchmarks/gpu_smollm2.py
# (~2 min fine-tuning per model + convert + 2 evaluations of 3,553 users: about 7 minutes). Results come back
# in $OUT (gpu_smollm2.md / .json, log.txt). The image has torch, transformers, onnx, onnxruntime, sklearn, tqdm.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  prepare)
    grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> "$(git rev-parse --git-path info/exclude)"
    mkdir -p .gpu/a .gpu/b .gpu/data .gpu/whl
    cp ../shared/data/amazon-beauty/* .gpu/data/
    GGUF=$(.venv/bin/python -c "from earn_export.convert.smollm2 import smollm2_gguf; print(smollm2_gguf())")
    split -n 2 -d "$GGUF" .gpu/part.
    mv .gpu/part.00 .gpu/a/part && mv .gpu/part.01 .gpu/b/part
    sha256sum "$GGUF" | cut -d' ' -f1 > .gpu/b/sha256
    .venv/bin/python -m pip download -q --no-deps --only-binary=:all: -d .gpu/whl "gguf==0.19.0"
    du -sh .gpu/*
    ;;
  stage)   # call 1: keep the first half where call 2 finds it
    cp .gpu/a/part /tmp/smollm2.part.a && ls -la /tmp/smollm2.part.a && nvidia-smi -L
    mkdir -p /tmp/beauty && cp .gpu/data/* /tmp/beauty/
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl
    ;;
  run)     # call 2
    cat /tmp/smollm2.part.a .gpu/b/part > /tmp/SmolLM2-135M-Instruct.Q4_1.gguf
    echo "$(cat .gpu/b/sha256)  /tmp/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum -c -
    export PYTHONPATH=/tmp/site:$PWD EARN_SMOLLM2_GGUF=/tmp/SmolLM2-135M-Instruct.Q4_1.gguf PYTHONUNBUFFERED=1
    export TOKENIZERS_PARALLELISM=false
    OUTDIR=${OUT:-results/gpu-smollm2}
    python3 benchmarks/gpu_smollm2.py --data /tmp/beauty --work /tmp/gpu-smollm2 --out "$OUTDIR" \
        --minutes "${MINUTES:-2.0}" 2>&1 | tee "$OUTDIR/log.txt"
    ;;
  *) echo "usage: $0 prepare|stage|run" >&2; exit 2 ;;
esac
