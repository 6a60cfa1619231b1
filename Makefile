# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv and install
# everything first (torch from the local CPU build, then this project with its dev extra).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TORCH_SPEC ?= torch==2.13.0
# The training tools that read `evalsvc build` output, installed apart: LLaMA-Factory pins a
# transformers, peft and datasets older than evalsvc's, so its data loader gets a virtualenv of its
# own, which the tests run as a subprocess on the files evalsvc wrote (tests/training/consumers/).
CONSUMERS := .venv-consumers
CONSUMERS_STAMP := $(CONSUMERS)/.installed-stamp
CONSUMER_SPECS ?= llamafactory==0.9.5

.PHONY: install consumers demo test test-all lint bench install-check

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# torch first (the CPU build), pinned through the constraints so that nothing upgrades it. The PyPI
# wheels of torchvision and torchaudio that LLaMA-Factory requires carry compiled ops built for other
# torch builds, which fail to load beside the CPU torch: torchvision is removed (transformers then
# does without it) and torchaudio keeps its Python code only (LLaMA-Factory imports it at module level
# but calls it only to decode audio, which the format checks do not do).
$(CONSUMERS_STAMP): .ci/consumers-constraints.txt
	$(PYTHON) -m venv $(CONSUMERS)
	$(CONSUMERS)/bin/python -m pip install --quiet --upgrade pip
	$(CONSUMERS)/bin/python -m pip install --quiet "$(TORCH_SPEC)"
	$(CONSUMERS)/bin/python -m pip install --quiet -c .ci/consumers-constraints.txt $(CONSUMER_SPECS)
	$(CONSUMERS)/bin/python -m pip uninstall --quiet --yes torchvision
	rm -f $(CONSUMERS)/lib/python3*/site-packages/torchaudio/lib/*.so
	touch $@

consumers: $(CONSUMERS_STAMP)

demo: $(STAMP)
	$(BIN)/evalsvc score examples/query.wav examples/response.wav --model tiny --mode both

test: $(STAMP)
	$(BIN)/python -m pytest

test-all: $(STAMP)
	$(BIN)/python -m pytest -m ''

# A plain (not editable) install into a fresh virtualenv migrates a fresh database and runs a worker.
install-check:
	.ci/plain-install-check.sh

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
	$(BIN)/python bench/bench_llm_judge.py
	$(BIN)/python bench/bench_assessment.py
