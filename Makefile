# Two commands for a new machine (Python 3.11, no Docker):
#   make demo   set up, then index a small real photo set, enrol people, ask who is who
#   make test   set up, then run the test suite
# Also: make test-fast (no models, browser, reliability or Docker tests), make test-compose
# (docker-compose.yml started for real, where Docker can start), make lint (ruff, mypy).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-compose test-fast lint bench bench-load clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest

test-compose: $(STAMP)
	$(BIN)/python -m pytest tests/test_compose.py

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not needs_models and not browser and not reliability and not docker"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/index_and_who.py

bench-load: $(STAMP)
	$(BIN)/python benchmarks/load.py

clean:
	rm -rf $(VENV) out
