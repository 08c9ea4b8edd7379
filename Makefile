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

test-tf: $(STAMP)
	KERAS_BACKEND=tensorflow $(PY) -m pytest -q -p no:cacheprovider -m "not heavy" --durations=40

test-backends: $(STAMP)
	KERAS_BACKEND=jax $(PY) -m pytest -q -p no:cacheprovider -m "core and not heavy"
	KERAS_BACKEND=torch $(PY) -m pytest -q -p no:cacheprovider -m "core and not heavy"
