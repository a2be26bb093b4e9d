# keras_mgrade developer commands. Each target creates the virtual
# environment it needs (.venv) on first use.
#
#   make demo    train a small mGRADE model, export int8, run it on
#                TFLite Micro, print the report (examples/quickstart.py)
#   make test    the test suite under KERAS_BACKEND=tensorflow, jax, torch
#   make lint    ruff check + format check
#   make bench   the benchmarks (long; results go to benchmarks/RESULTS.md)

PYTHON ?= python3
VENV ?= .venv
BACKENDS ?= tensorflow jax torch
PYTEST_ARGS ?=
BIN := $(VENV)/bin

.PHONY: demo test lint bench venv clean

venv: $(VENV)/.installed

# torch==2.13.0 first: a CPU build (an unpinned torch pulls a CUDA build).
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -e ".[tensorflow,jax,torch,tflite,dev]"
	touch $@

demo: venv
	KERAS_BACKEND=tensorflow $(BIN)/python examples/quickstart.py $(DEMO_ARGS)

lint: venv
	$(BIN)/ruff check keras_mgrade tests examples benchmarks
	$(BIN)/ruff format --check keras_mgrade tests examples benchmarks

# Runs the suite once per backend; fails if any backend fails.
test: venv lint
	@failed=""; \
	for b in $(BACKENDS); do \
		echo "=== KERAS_BACKEND=$$b"; \
		KERAS_BACKEND=$$b $(BIN)/python -m pytest -q --durations=15 $(PYTEST_ARGS) \
			|| failed="$$failed $$b"; \
	done; \
	if [ -n "$$failed" ]; then echo "FAILED on:$$failed"; exit 1; fi; \
	echo "all backends passed: $(BACKENDS)"

bench: venv
	for b in $(BACKENDS); do \
		KERAS_BACKEND=$$b $(BIN)/python benchmarks/scan_speed.py; \
	done

clean:
	rm -rf $(VENV) out build *.egg-info
