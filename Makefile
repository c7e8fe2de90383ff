# mammo-tf developer commands. `make test` and `make demo` create the virtualenv when it is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MIAS_ARCHIVE ?= ../shared/data/mias/all-mias.tar.gz
DEMO_DIR ?= runs/demo

SR_RUN ?= $(HOME)/mammo-runs/sr-x2-mias-12k
SHIPPED_MODELS ?= saved_models
SERVING_DIR ?= saved_models/serving

.PHONY: install test test-fast demo lint bench data clean pretrained-sr ship-sr pretrained-gan ship-gan pretrained-classifier pretrained-insert ship-insert export study study-status study-units

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP) ## create .venv and install mammo-tf with its pinned dependencies

test: $(STAMP) ## run the whole test suite on 2 processes, one test file each (CI runs exactly this; MIAS tests need ../shared/data/mias)
	$(BIN)/pytest -q -n 2 --dist loadfile

test-fast: $(STAMP) ## the suite without the tests marked slow (child processes, whole studies): minutes, for iterating
	$(BIN)/pytest -q -m "not slow"

demo: $(STAMP) ## the main job on the phantom: dataset, summary, preview, a quick SR GAN, upscale and evaluate-sr
	rm -rf $(DEMO_DIR)
	$(BIN)/mammo-tf data phantom --n 16 --size 512 --seed 0 --out $(DEMO_DIR)/phantom
	$(BIN)/mammo-tf data info --data $(DEMO_DIR)/phantom
	$(BIN)/mammo-tf data preview --data $(DEMO_DIR)/phantom --out $(DEMO_DIR)/preview.png
	$(BIN)/mammo-tf train-sr --data $(DEMO_DIR)/phantom --preset quick --run-dir $(DEMO_DIR)/sr
	$(BIN)/mammo-tf upscale $(DEMO_DIR)/phantom/mdb001.pgm --model $(DEMO_DIR)/sr --risk-map --out $(DEMO_DIR)/upscaled
	$(BIN)/mammo-tf evaluate-sr --model $(DEMO_DIR)/sr --data $(DEMO_DIR)/phantom --out $(DEMO_DIR)/evaluate-sr

lint: $(STAMP) ## ruff lint
	$(BIN)/ruff check .

bench: $(STAMP) ## pipelines vs model steps; SR training steps/s; whole-film upscaling per engine on this CPU kind; whole-film heatmaps, XLA vs eager; images from shards vs source files; one device vs mirrored; writes BENCHMARKS.md
	$(BIN)/python benchmarks/bench_pipeline.py --out BENCHMARKS.md --bf16 on
	$(BIN)/python benchmarks/bench_sr.py --out BENCHMARKS.md
	$(BIN)/python benchmarks/bench_upscale.py --out BENCHMARKS.md
	$(BIN)/python benchmarks/bench_detect.py --out BENCHMARKS.md
	$(BIN)/python benchmarks/bench_shards.py --out BENCHMARKS.md
	$(BIN)/python benchmarks/bench_distribute.py --bf16 on --out BENCHMARKS.md

data: $(STAMP) ## unpack and verify mini-MIAS from ../shared into data/mias (git-ignored), once
	@if [ -f data/mias/Info.txt ]; then echo "data/mias is already there"; \
	else $(BIN)/mammo-tf data import $(MIAS_ARCHIVE) --dest data/mias; fi

pretrained-sr: $(STAMP) data ## train the shipped x2 SR models on MIAS in the background (resumes a started run); log in $(SR_RUN)/train.log
	mkdir -p $(SR_RUN)
	resume=$$([ -f $(SR_RUN)/checkpoints/last.keras ] && echo --resume); \
	nohup $(BIN)/mammo-tf train-sr --data data/mias --preset standard --precision auto --seed 0 \
		--run-dir $(SR_RUN) $$resume >> $(SR_RUN)/train.log 2>&1 &
	@echo "training in the background: tail -f $(SR_RUN)/train.log"

GAN_RUN ?= $(HOME)/mammo-runs/synth-64-mias-v2
CLS_RUN ?= $(HOME)/mammo-runs/calc-classifier-mias

pretrained-gan: $(STAMP) data ## train the synthesis GAN on MIAS in the background (standard preset, hours, resumes a started run); log in $(GAN_RUN)/train.log
	mkdir -p $(GAN_RUN)
	resume=$$([ -f $(GAN_RUN)/checkpoints/last.keras ] && echo --resume); \
	nohup $(BIN)/mammo-tf train-gan --data data/mias --preset standard --seed 0 --precision float32 \
		--run-dir $(GAN_RUN) $$resume >> $(GAN_RUN)/train.log 2>&1 &
	@echo "training in the background: tail -f $(GAN_RUN)/train.log"

INSERT_RUN ?= $(HOME)/mammo-runs/insert-64-mias

pretrained-insert: $(STAMP) data ## fit the insertion layouts and train the refiner on MIAS in the background (resumes a started run); then evaluate-insert
	mkdir -p $(INSERT_RUN)
	resume=$$([ -f $(INSERT_RUN)/checkpoints/last.keras ] && echo --resume); \
	nohup sh -c "$(BIN)/mammo-tf train-insert --data data/mias --preset standard --seed 0 --run-dir $(INSERT_RUN) $$resume && \
		$(BIN)/mammo-tf evaluate-insert --model $(INSERT_RUN) --data data/mias --out $(INSERT_RUN)-report" \
		>> $(INSERT_RUN)/train.log 2>&1 &
	@echo "training in the background: tail -f $(INSERT_RUN)/train.log"

ship-insert: $(STAMP) ## ship the finished insertion run (after make pretrained-insert) with its evaluate-insert report as saved_models/insert-64
	$(BIN)/mammo-tf ship $(INSERT_RUN) --name insert-64 --report $(INSERT_RUN)-report

ship-gan: $(STAMP) data ## evaluate the synthesis run (its last validation checkpoint) on held-out MIAS patients; ship saved_models/synth-64
	$(BIN)/mammo-tf evaluate-gan --model $(GAN_RUN) --data data/mias --out $(GAN_RUN)-report
	$(BIN)/mammo-tf ship $(GAN_RUN) --name synth-64 --report $(GAN_RUN)-report

pretrained-classifier: $(STAMP) data ## train the classifier on the MIAS training patients, ship saved_models/calc-classifier
	$(BIN)/mammo-tf train-classifier --data data/mias --preset standard --seed 0 --run-dir $(CLS_RUN)
	$(BIN)/mammo-tf ship $(CLS_RUN) --name calc-classifier

STUDY_RUN ?= $(HOME)/mammo-runs/aug-mias-2
STUDY_WORKERS ?= 2
STUDY_REPORT = reports/aug-mias-2
STUDY_ARGS = --data data/mias --preset standard --positive-fractions 0.25,0.5,1

study: $(STAMP) data ## the augmentation study, second edition, on MIAS (5 folds x 3 seeds, many hours, resumable); report into reports/aug-mias-2
	@# STUDY_WORKERS processes of one thread each share the units (each locks the one it trains), then the
	@# report from their units; units saved by `make study-units` (on another machine) are reused, not trained again
	mkdir -p $(STUDY_RUN)/work
	$(BIN)/python -c 'import sys; from mammo_tf.workflows.study.saved_units import restore_units as r; \
		print(len(r(*sys.argv[1:])), "units restored")' $(STUDY_REPORT)/units $(STUDY_RUN)/work
	seq $(STUDY_WORKERS) | xargs -P $(STUDY_WORKERS) -I{} env TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 \
		OMP_NUM_THREADS=1 $(BIN)/mammo-tf evaluate-aug $(STUDY_ARGS) --out $(STUDY_RUN) --train-only >> $(STUDY_RUN)/study.log 2>&1
	$(BIN)/mammo-tf evaluate-aug $(STUDY_ARGS) --out $(STUDY_RUN)
	mkdir -p $(STUDY_REPORT) && cp $(STUDY_RUN)/report.md $(STUDY_RUN)/metrics.json $(STUDY_RUN)/predictions.csv.gz \
		$(STUDY_RUN)/*.png $(STUDY_REPORT)/

study-status: $(STAMP) ## how far `make study` is: per fold, units finished of those planned, units being trained now
	$(BIN)/mammo-tf evaluate-aug $(STUDY_ARGS) --out $(STUDY_RUN) --status

study-units: $(STAMP) ## copy the study's finished units (per-fold models, classifier scores: small files) into reports/aug-mias-2/units
	$(BIN)/python -c 'import sys; from mammo_tf.workflows.study.saved_units import save_units as s; \
		print(len(s(*sys.argv[1:])), "units saved")' $(STUDY_RUN)/work $(STUDY_REPORT)/units

ship-sr: $(STAMP) data ## evaluate the SR run on the MIAS test patients and the phantom; write saved_models/sr-x2*
	$(BIN)/mammo-tf ship-sr $(SR_RUN) --data data/mias --out saved_models

export: $(STAMP) ## export every shipped model ($(SHIPPED_MODELS)/*/model.keras) for TF Serving into $(SERVING_DIR), verified
	@found=0; for model in $(SHIPPED_MODELS)/*/model.keras; do \
		[ -f "$$model" ] || continue; name=$$(basename "$$(dirname "$$model")"); \
		if [ -f "$$(dirname "$$model")/insertion.json" ]; then \
			echo "$$name: skipped (an insertion refiner serves no request alone: its inputs come from the NumPy renderer)"; continue; fi; \
		found=1; \
		$(BIN)/mammo-tf export "$$model" --name "$$name" --out $(SERVING_DIR) || exit $$?; \
	done; \
	if [ $$found = 0 ]; then echo "no exportable shipped models in $(SHIPPED_MODELS)/ (no */model.keras but insertion refiners): nothing to export"; fi

clean: ## remove the virtualenv, caches and demo runs (not data/)
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
