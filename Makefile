# Two commands matter: `make run` (the whole system, driven end to end) and `make test`.
# Both create the virtual environments on first use, with exactly the versions in the
# locks: uv.lock (the application; pyproject.toml says what it may be) and
# infra/requirements-check.txt (the infrastructure checkers; infra/requirements-check.in).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SOURCES := contracts producer consumer emulator common console tools tests examples bench
PYTEST_WORKERS ?= 2
PYTEST_ARGS ?=

# uv installs from the locks. It comes from PyPI, pinned here, into its own small
# environment; the Dockerfiles install the same version (tests/infra checks they agree).
UV_VERSION := 0.13.9
UV_VENV ?= .venv-uv
ifeq ($(origin UV),undefined)
UV := $(UV_VENV)/bin/uv
UV_STAMP := $(UV_VENV)/.uv-$(UV_VERSION)
else
UV_STAMP :=# `make test UV=uv`: the caller's uv, no bootstrap
endif

INFRA_VENV ?= .venv-infra
INFRA_IN := infra/requirements-check.in
INFRA_LOCK := infra/requirements-check.txt
INFRA_STAMP := $(INFRA_VENV)/.synced-stamp
# `--universal`: one lock for every platform; the header names the command to re-run.
INFRA_COMPILE = $(UV) pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock" $(INFRA_IN)

# The project environment is $(VENV); interpreters come from the machine, never downloaded.
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))
export UV_PYTHON_DOWNLOADS := never
export UV_NO_PROGRESS := 1

.PHONY: run test bench bench-quick lint check-types install infra-tools browser-tools lock \
	lock-check upgrade contracts contracts-check clean

$(UV_STAMP):
	rm -rf $(UV_VENV)
	$(PYTHON) -m venv $(UV_VENV)
	$(UV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	touch $@

# Fails, saying what to run, when uv.lock no longer matches pyproject.toml. Offline: a
# lock that matches is checked without the index. (tests/test_lock_versions.py checks
# $(INFRA_LOCK) against $(INFRA_IN) the same way.)
lock-check: $(UV_STAMP)
	@$(UV) --version >/dev/null
	@$(UV) lock --check --offline --quiet 2>/dev/null || { \
		echo "make: uv.lock does not match pyproject.toml: run \`make lock\` and commit uv.lock" >&2; \
		exit 1; }

# Exactly uv.lock with the `dev` extra (every component, tests, linters), the project
# editable; packages the lock does not list are removed. A no-op when nothing changed.
# An environment made by pip (before the locks) keeps pip and setuptools: made afresh.
install: lock-check
	@grep -qs '^uv = ' $(VENV)/pyvenv.cfg || rm -rf $(VENV)
	$(UV) sync --locked --extra dev --python $(PYTHON) --quiet

# checkov pins packages the app needs newer (packaging, aiohttp): its own environment.
$(INFRA_STAMP): $(INFRA_LOCK) $(UV_STAMP)
	grep -qs '^uv = ' $(INFRA_VENV)/pyvenv.cfg || \
		{ rm -rf $(INFRA_VENV) && $(UV) venv --quiet --python $(PYTHON) $(INFRA_VENV); }
	$(UV) pip sync --quiet --python $(INFRA_VENV)/bin/python $(INFRA_LOCK)
	touch $@

infra-tools: lock-check $(INFRA_STAMP)

# Re-lock after editing dependencies in pyproject.toml or infra/requirements-check.in;
# versions already locked stay unless the new bounds exclude them.
lock: $(UV_STAMP)
	$(UV) lock
	$(INFRA_COMPILE) --output-file $(INFRA_LOCK)

# The newest versions the bounds allow, then the whole test suite against them.
upgrade: $(UV_STAMP)
	$(UV) lock --upgrade
	$(INFRA_COMPILE) --upgrade --output-file $(INFRA_LOCK)
	$(MAKE) test

run: install
	$(PY) -m tools.demo

# Side-by-side benchmarks (about 25 minutes; results in docs/benchmarks/). Not tests.
bench: install
	$(PY) -m bench

bench-quick: install
	$(PY) -m bench --quick

# Debian's Chromium and chromedriver for the console's browser tests (tests/console), from
# apt when missing (CI runs as root on Debian); Selenium is given both paths and never
# downloads a browser or a driver. Without root the tests are skipped, saying why.
browser-tools:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends chromium chromium-driver >/dev/null; \
	else \
		echo "make: browser tests skipped: apt-get install chromium chromium-driver" >&2; \
	fi

test: lint check-types contracts-check infra-tools browser-tools
	INFRA_TOOLS_BIN=$(INFRA_VENV)/bin UV=$(UV) \
		$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup -q $(PYTEST_ARGS)

# Regenerate JSON Schemas, the AsyncAPI document and the event catalogue after a model change.
contracts: install
	$(PY) -m contracts generate

# Fails on stale generated artefacts or on a breaking change against schemas/released/.
contracts-check: install
	$(PY) -m contracts check
	$(PY) -m contracts gate

lint: install
	$(VENV)/bin/ruff check $(SOURCES)
	$(VENV)/bin/ruff format --check $(SOURCES)

check-types: install
	$(VENV)/bin/mypy $(SOURCES)

clean:
	rm -rf $(VENV) $(INFRA_VENV) $(UV_VENV) .run .pytest_cache .mypy_cache .ruff_cache
