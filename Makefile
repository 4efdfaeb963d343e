# Two commands matter: `make run` (the whole system, driven end to end) and `make test`.
# Both create the virtual environment on first use.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SOURCES := contracts producer consumer emulator common tools tests examples bench
PYTEST_WORKERS ?= 2

INFRA_VENV ?= .venv-infra
INFRA_STAMP := $(INFRA_VENV)/.installed-stamp

.PHONY: run test bench bench-quick lint check-types install infra-tools contracts contracts-check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# checkov pins packages the app needs newer (packaging, aiohttp): its own environment.
$(INFRA_STAMP): infra/requirements-check.txt
	$(PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(INFRA_VENV)/bin/python -m pip install --quiet -r infra/requirements-check.txt
	touch $(INFRA_STAMP)

install: $(STAMP)

infra-tools: $(INFRA_STAMP)

run: $(STAMP)
	$(PY) -m tools.demo

# Side-by-side benchmarks (about 20 minutes; results in docs/benchmarks/). Not tests.
bench: $(STAMP)
	$(PY) -m bench

bench-quick: $(STAMP)
	$(PY) -m bench --quick

test: lint check-types contracts-check $(STAMP) $(INFRA_STAMP)
	INFRA_TOOLS_BIN=$(INFRA_VENV)/bin $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup -q

# Regenerate JSON Schemas, the AsyncAPI document and the event catalogue after a model change.
contracts: $(STAMP)
	$(PY) -m contracts generate

# Fails on stale generated artefacts or on a breaking change against schemas/released/.
contracts-check: $(STAMP)
	$(PY) -m contracts check
	$(PY) -m contracts gate

lint: $(STAMP)
	$(VENV)/bin/ruff check $(SOURCES)
	$(VENV)/bin/ruff format --check $(SOURCES)

check-types: $(STAMP)
	$(VENV)/bin/mypy $(SOURCES)

clean:
	rm -rf $(VENV) $(INFRA_VENV) .run .pytest_cache .mypy_cache .ruff_cache
