# One venv, created idempotently; torch is pinned first so pip takes the CPU wheel
# (a bare `torch` would pull a multi-GB CUDA build). GPU users: see docs/install.md.
#
# The package is installed editable: analysis/ is its source root, so new files are seen without a reinstall.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
CORPUS ?= sample_data/corpus
CHECKPOINT ?= sample_data/checkpoint
PORT ?= 8501

.PHONY: run test check setup browser clean sample-replays

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[test,ray,s3]"
	touch $@

setup: $(VENV)/.installed

# The browser tests drive Debian's chromium through Playwright (never a downloaded browser).
browser:
	@test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium)

run: setup
	$(BIN)/horizonlens serve --corpus $(CORPUS) --checkpoint $(CHECKPOINT) --port $(PORT)

# Regenerate the bundled corpus's replays (docs/replay.md): a stratified random sample of 60 trajectories
# (seed 0, by domain and outcome, among those under 20k estimated tokens), recorded in the cache so corpus-level
# routing statistics say what they stand for; replayed with the current code, then compacted into one file per
# table; then its aggregates. The search index is not shipped (docs/sample-corpus.md), so it is removed again.
sample-replays: setup
	$(BIN)/horizonlens replay $(CORPUS) --checkpoint $(CHECKPOINT) --sample 60 --seed 0 --max-tokens 20000 --force
	$(BIN)/horizonlens compact $(CORPUS)
	$(BIN)/horizonlens index $(CORPUS)
	rm -rf $(CORPUS)/index

# Static checks: lint, types on the package, and the layer contract.
check: setup
	$(BIN)/ruff check analysis app tests
	$(BIN)/mypy
	$(BIN)/lint-imports

test: setup browser check
	$(BIN)/python -m pytest tests -q --durations=25

clean:
	rm -rf $(VENV) build .pytest_cache test-artifacts
