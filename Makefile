# Two commands cover a bare machine: `make quickstart` and `make test` each install into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch that the build machines carry; on a GPU machine install your CUDA build of
# torch>=2.4 into the venv first and set TORCH_SPEC= (empty) to keep it.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install quickstart test lint
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(if $(TORCH_SPEC),$(BIN)/python -m pip install -q $(TORCH_SPEC))
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

quickstart: install
	HF_HUB_OFFLINE=1 $(BIN)/python train.py +experiment=quickstart

test: install
	HF_HUB_OFFLINE=1 WANDB_MODE=offline $(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports
