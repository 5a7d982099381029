# The README's two commands: `make demo` and `make test`. Each sets everything up
# from nothing but Python 3.11, then runs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN = $(VENV)/bin
DRIVER_VENV ?= .venv-driver

.PHONY: demo test test-main test-driver train evaluate benchmarks benchmarks-smoke udp archive clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-runtime: setup.cfg setup.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: setup.cfg setup.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,peers]"
	touch $@ $(VENV)/.installed-runtime

$(VENV)/.installed-train: setup.cfg setup.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[train,peers]"
	touch $@

## Set up and run the main job on the built-in demo scene.
demo: $(VENV)/.installed-runtime
	$(BIN)/openeo-cloudmask demo

## Set up and run the whole test suite (main environment, then the openeo-driver environment).
test: test-main test-driver

test-main: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-driver:
	@echo "(no openeo-driver tests yet)"

## Retrain the default model (needs ../shared/data and the train extra), then re-evaluate it.
train: $(VENV)/.installed-train
	$(BIN)/python -m openeo_cloudmask.models.training.train

evaluate: $(VENV)/.installed-train
	$(BIN)/python -m openeo_cloudmask.models.training.evaluate

clean:
	rm -rf $(VENV) $(DRIVER_VENV) build *.egg-info out
