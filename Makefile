# `make demo` and `make test` work on a fresh machine: each creates .venv.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-tf test-backends lint docs venv

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch 2.14.1 + torchvision 0.29.1 come from this machine's local disk;
	# timm needs torchvision.
	$(PY) -m pip install -q -e ".[dev]" "torch==2.14.1" "torchvision==0.29.1" timm
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mobilenetv3 demo

test: $(STAMP) lint test-tf test-backends

lint: $(STAMP) docs
	$(VENV)/bin/ruff check .

# The documentation site (docs/, mkdocs.yml) into site/; strict: a warning fails
# (no -q: mkdocs then drops warnings before counting them, and strict passes).
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict

# Tests run in $(WORKERS) pytest-xdist processes, a test file per process at a time
# (module fixtures, exported files, are built once). Each pass then takes about half
# its serial time on the 2-core CI machine, whose single pytest process kept one core idle.
WORKERS ?= 2
PYTEST := $(PY) -m pytest -q -p no:cacheprovider -n $(WORKERS) --dist loadfile

test-tf: $(STAMP)
	KERAS_BACKEND=tensorflow $(PYTEST) -m "not heavy" --durations=40

# On JAX most of a core test's time is XLA compiling each model (once per shape): without
# LLVM's optimizations the compiles take about a third of the time (test_keras_applications_parity:
# 278 s -> 88 s here). The tests check what the programs compute, not how fast they run, except
# test_jax_startup's bit-for-bit comparisons with Keras' initializers, which hold at XLA's
# default level only (unfused, Keras' own initializers move by 1 ulp): they run with the defaults.
JAX_STARTUP := tests/test_jax_startup.py
test-backends: $(STAMP)
	KERAS_BACKEND=jax XLA_FLAGS="$(XLA_FLAGS) --xla_backend_optimization_level=0" $(PYTEST) -m "core and not heavy" --ignore=$(JAX_STARTUP)
	KERAS_BACKEND=jax $(PY) -m pytest -q -p no:cacheprovider -m "core and not heavy" $(JAX_STARTUP)
	KERAS_BACKEND=torch $(PYTEST) -m "core and not heavy"
