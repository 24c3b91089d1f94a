# The two commands of the README:
#   make demo   set up, start the Flow, fine-tune MiniLM on Banking77, print before/after metrics, save, stop
#   make test   set up, run the whole test suite (offline)
# Settings: DATA_DIR (the shared data sets), PORT (the Flow's gRPC port), PYTHON (a Python 3.11).

PYTHON ?= python3
VENV ?= .venv
DATA_DIR ?= $(abspath ../shared/data)
PORT ?= 54321
BIN := $(VENV)/bin

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export JINA_OPTOUT_TELEMETRY := 1
export FINETUNER_DATA_DIR := $(DATA_DIR)

.PHONY: demo test check lint format clean

# The client (client/: finetuner + finetuner_protocol) and the service (finetuner_core) in one command, so that the
# service's dependency on the client resolves to this checkout.
$(VENV)/.installed: pyproject.toml client/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -e ./client -e ".[dev]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/python examples/text_banking77.py --data-dir "$(DATA_DIR)" --port $(PORT) --out outputs/banking77

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: $(VENV)/.installed
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

check: lint test

format: $(VENV)/.installed
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

clean:
	rm -rf outputs workspace .pytest_cache
