# Every target sets itself up: a fresh clone with Python >= 3.11 and git needs nothing else.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test test-all lint demo demo-fleet demo-fleet-nats bench clean fuzz

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "hotswap needs Python >= 3.11; run make PYTHON=python3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

# the whole suite on every CPython >= 3.11 found here (python3.X on PATH, pyenv), each in its
# own .venv-3.X; what CI runs after make lint
test-all:
	.ci/test-all

# ruff (pyflakes, pycodestyle errors, isort, pyupgrade, bugbear) and mypy, as pyproject says
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy

# a guided, unattended hot swap with demo/hello (build, serve, rebuild, reload, stop)
demo: $(STAMP)
	$(PY) -m demo.hello.walkthrough

clean:
	rm -rf $(VENV) .venv-3.* build dist .pytest_cache

# every benchmark in its own subprocess, one table, figures in bench/results.json (minutes)
bench: $(STAMP)
	$(PY) bench/run.py

# the artifact-reader fuzzing of tests/runtime/test_fuzz_artifacts.py with many more examples
# than the test suite's ~30 s budget (tens of minutes)
fuzz: $(STAMP)
	HOTSWAP_FUZZ_PROFILE=hotswap-fuzz $(PY) -m pytest -q -p no:cacheprovider --timeout 7200 tests/runtime/test_fuzz_artifacts.py

# four workers of the web demo follow a release channel under load: publish, status --wait,
# a failing canary rolled back, a manual rollback (unattended; demo/web/README.md)
demo-fleet: $(STAMP)
	$(PY) -m demo.web.fleet
	$(PY) -m demo.fleet.walkthrough

# a NATS JetStream server, two machines (three workers) following it: publish, status --wait,
# a failing canary rolled back by rollout (unattended; demo/fleet/README.md)
demo-fleet-nats: $(STAMP)
	$(PY) -m demo.fleet.walkthrough
