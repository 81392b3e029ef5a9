# `make test` and `make demo` install everything they need themselves.
VENV   ?= .venv
PYTHON := $(CURDIR)/$(VENV)/bin/python
# The venv first on PATH, so Jupyter kernels started by tests run its Python.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install system lint typecheck test test-unprivileged demo bench clean

install: system $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[dev]'
	touch $@

system:
	@sh .ci/system-packages

lint: install
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

typecheck: install
	$(PYTHON) -m mypy --strict ipyrunner tests

# A base temp of our own: rm -rf, unlike pytest's own clean-up, takes trees of any depth.
BASETEMP ?= /tmp/ipyrunner-pytest-$(shell id -u)

test: lint typecheck
	rm -rf $(BASETEMP)
	$(PYTHON) -m pytest --basetemp=$(BASETEMP)
	$(MAKE) test-unprivileged

# The sandbox tier again as uid 65534 (when run as root): notebook users are usually not root.
test-unprivileged: install
	sh .ci/unprivileged-tests

demo: install
	$(PYTHON) notebooks/run_demos.py

bench: install
	$(PYTHON) benchmarks/run.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
