# mammo-tf developer commands. `make test` and `make demo` create the virtualenv when it is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MIAS_ARCHIVE ?= ../shared/data/mias/all-mias.tar.gz
DEMO_DIR ?= runs/demo

.PHONY: install test demo lint bench data clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP) ## create .venv and install mammo-tf with its pinned dependencies

test: $(STAMP) ## run the whole test suite (CI runs exactly this; MIAS tests need ../shared/data/mias)
	$(BIN)/pytest -q

demo: $(STAMP) ## the main job on the phantom: make a dataset, summarise it, draw it, sample it
	rm -rf $(DEMO_DIR)
	$(BIN)/mammo-tf data phantom --n 8 --size 512 --seed 0 --out $(DEMO_DIR)/phantom
	$(BIN)/mammo-tf data info --data $(DEMO_DIR)/phantom
	$(BIN)/mammo-tf data preview --data $(DEMO_DIR)/phantom --out $(DEMO_DIR)/preview.png

lint: $(STAMP) ## ruff lint
	$(BIN)/ruff check .

bench: $(STAMP) ## measure the tf.data pipelines against float32 and bf16 model steps; writes BENCHMARKS.md
	$(BIN)/python benchmarks/bench_pipeline.py --out BENCHMARKS.md --bf16 on

data: $(STAMP) ## unpack and verify mini-MIAS from ../shared into data/mias (git-ignored), once
	@if [ -f data/mias/Info.txt ]; then echo "data/mias is already there"; \
	else $(BIN)/mammo-tf data import $(MIAS_ARCHIVE) --dest data/mias; fi

clean: ## remove the virtualenv, caches and demo runs (not data/)
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
