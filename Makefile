VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint bench

setup:
	bash scripts/setup.sh

demo: setup
	$(VENV)/bin/ctscribe demo

test: setup
	$(PY) -m pytest -q

lint:
	$(VENV)/bin/ruff check .

bench: setup
	$(PY) bench/ingest.py
