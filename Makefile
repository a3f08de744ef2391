# The README's commands. `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench faults clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt -e .
	touch $@

demo: setup
	$(BIN)/python scripts/demo.py

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -q

# the fault suite alone, at full scale (its CI scale runs within `make test`)
faults: setup
	FAULTS_SCALE=full $(BIN)/python -m pytest -q -m faults -p no:cacheprovider

bench: setup
	$(BIN)/python -m bench.npm_crawl

clean:
	rm -rf $(VENV) data build *.egg-info
