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

# The suite runs the training and ONNX export tests too: the train extra brings torch (the CPU build;
# pip takes it from this machine's local wheel).
$(VENV)/.installed-test: setup.cfg setup.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,peers,train]"
	touch $@ $(VENV)/.installed-runtime $(VENV)/.installed-train

$(VENV)/.installed-train: setup.cfg setup.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[train,peers]"
	touch $@

## Set up and run the main job on the built-in demo scene.
demo: $(VENV)/.installed-runtime
	$(BIN)/openeo-cloudmask demo

## Set up and run the whole test suite (main environment, then the openeo-driver environment).
## Both suites run even if the first fails, so the summary lines of both are printed; it fails if either does.
test:
	@status=0; $(MAKE) --no-print-directory test-main || status=1; \
	$(MAKE) --no-print-directory test-driver || status=1; exit $$status

test-main: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q -p no:cacheprovider

# openeo-driver pins an older pystac than openeo-processes-dask: it gets its own virtualenv (~2.5 min to install).
$(DRIVER_VENV)/.installed-driver: setup.cfg setup.py
	$(PYTHON) -m venv $(DRIVER_VENV)
	$(DRIVER_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(DRIVER_VENV)/bin/python -m pip install --quiet -e ".[driver]" pytest onnx
	touch $@

test-driver: $(DRIVER_VENV)/.installed-driver
	$(DRIVER_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/driver

## Retrain the default model (needs ../shared/data and the train extra), then re-evaluate it.
train: $(VENV)/.installed-train
	$(BIN)/python -m openeo_cloudmask.models.training.train

evaluate: $(VENV)/.installed-train
	$(BIN)/python -m openeo_cloudmask.models.training.evaluate

## Benchmarks against ukis-csmask and s2cloudless (~10 min on 2 cores): writes benchmarks/RESULTS.md.
benchmarks: $(VENV)/.installed-test
	$(BIN)/python -m benchmarks.run

## The seconds-long version CI runs (plumbing only; numbers mean nothing), into out/benchmarks-smoke.
benchmarks-smoke: $(VENV)/.installed-test
	$(BIN)/python -m benchmarks.run --smoke --out out/benchmarks-smoke

## Regenerate process_graphs/cloud_mask.json from udf/cloud_mask.py and the model card
## (MEASURE=1: first measure the UDF's memory per chunk, after a new model or window).
udp: $(VENV)/.installed-runtime
	$(BIN)/python process_graphs/build_udp.py $(if $(MEASURE),--measure)

## Build the UDF dependency archive (model + onnxruntime for CDSE's Python 3.11) into dist/.
archive: $(VENV)/.installed-runtime
	$(BIN)/python -m openeo_cloudmask.dependency_archive

clean:
	rm -rf $(VENV) $(DRIVER_VENV) build *.egg-info out
