# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv and install
# everything first (torch from the local CPU build, then this project with its dev extra).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TORCH_SPEC ?= torch==2.13.0

.PHONY: install demo test test-all lint bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/evalsvc score examples/query.wav examples/response.wav --model tiny --mode both

test: $(STAMP)
	$(BIN)/python -m pytest

test-all: $(STAMP)
	$(BIN)/python -m pytest -m ''

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python bench/bench_audio.py
	$(BIN)/python bench/bench_engine.py
	$(BIN)/python bench/bench_gpu.py
	$(BIN)/python bench/bench_loading.py
	$(BIN)/python bench/bench_lora_merge.py
	$(BIN)/python bench/bench_invariance.py
	$(BIN)/python bench/plan_hardware.py
	$(BIN)/python bench/bench_store.py
	$(BIN)/python bench/bench_api.py
	$(BIN)/python bench/bench_bulk.py
	$(BIN)/python bench/bench_reports.py
	$(BIN)/python bench/bench_training.py
