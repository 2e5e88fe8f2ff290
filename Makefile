# One venv, created idempotently; torch is pinned first so pip takes the CPU wheel
# (a bare `torch` would pull a multi-GB CUDA build). GPU users: see docs/install.md.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
CORPUS ?= sample_data/corpus
CHECKPOINT ?= sample_data/checkpoint
PORT ?= 8501

.PHONY: run test setup setup-test browser clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[test]"
	touch $@

setup: $(VENV)/.installed

# The browser tests drive Debian's chromium through Playwright (never a downloaded browser).
browser:
	@test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium)

run: setup
	$(BIN)/horizonlens serve --corpus $(CORPUS) --checkpoint $(CHECKPOINT) --port $(PORT)

test: setup browser
	$(BIN)/python -m pytest tests -q

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
