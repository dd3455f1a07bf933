# Parley: `make run` serves the demo, `make test` runs every test. Nothing else is needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test install migrate demo bench bench-smoke clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

migrate: install
	$(PY) manage.py migrate --no-input

demo: migrate
	$(PY) manage.py demo_load

run: demo
	$(PY) manage.py runserver 127.0.0.1:8000

test: install
	$(VENV)/bin/lint-imports
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) db.sqlite3 media staticfiles

BENCH_STAMP := $(VENV)/.bench-installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	@rm -f $(VENV)/.bench-installed-* && touch $(BENCH_STAMP)

# The four benchmarks at the issue's sizes (~25 minutes on 2 cores); rewrites docs/benchmarks.md.
bench: $(BENCH_STAMP)
	$(PY) -m bench.run --full $(BENCH_ARGS)

# Small sizes, about a minute; fails when an invariant breaks (duplicate rows or sends, lost frames).
bench-smoke: $(BENCH_STAMP)
	$(PY) -m bench.run --smoke $(BENCH_ARGS)
