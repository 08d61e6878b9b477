# earn-export: the two README commands are `make demo` (main job on the embedded default) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
MODEL ?=
NAME ?= $(notdir $(patsubst %/,%,$(MODEL)))
OUT ?= engines/$(NAME)
ARGS ?=

.PHONY: install demo test test-fast cli-reference bench-cli export bench clean

$(PY):
	python3 -m venv $(VENV)

# torch is pinned to the CPU build that is available locally; an unpinned torch would pull CUDA wheels.
install: $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test,parity]"

demo: install
	$(VENV)/bin/earn-export demo $(ARGS)

test: install
	$(PY) -m pytest -q tests $(ARGS)

# the quick subset: no Beauty-trained fixtures, subprocess kills or long fuzzing (see README "Tests")
test-fast: install
	$(PY) -m pytest -q tests -m "not slow and not beauty" $(ARGS)

# rewrite README's generated CLI reference from the parsers (re-run after adding or changing a flag)
cli-reference: install
	$(PY) -m earn_export.cli_reference README.md

# wall time of `--help`, one `recommend` query and rejected bad flags, each in a fresh process
bench-cli: install
	$(PY) -m earn_export.bench.cli_startup $(ARGS)

export: install
	@test -n "$(MODEL)" || (echo "usage: make export MODEL=path/to/checkpoint [OUT=engines/name] [ARGS='--fp16']" && exit 2)
	$(VENV)/bin/earn-export export $(MODEL) --out $(OUT) $(ARGS)
	$(VENV)/bin/earn-export check $(OUT) --reference $(MODEL)

bench: install
	$(VENV)/bin/earn-export bench $(ARGS)

clean:
	rm -rf engines/*/ runs/ results/ .pytest_cache
