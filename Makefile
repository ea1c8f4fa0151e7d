# Fresh machine: Python 3.11+ and make. Each target sets up what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench bench-floor screenshots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[demo,test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/connected-emails --demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/sweep.py

# Every row of "close to the floor": check's CPU beside the floor, then the first frames and
# the cursor beside a bare Textual app, each pair measured in the same run.
bench-floor: $(STAMP)
	$(BIN)/python bench/floor.py --pairs 3
	$(BIN)/python bench/tui.py

screenshots: $(STAMP)
	$(BIN)/python scripts/export_screenshots.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache
