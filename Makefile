# Two commands do all the set-up on a fresh machine:
#   make run    the DAG end to end on the local platform (moto S3 + Azurite + Spark local mode)
#   make test   lint + the whole test suite (what CI runs)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt spark_jobs/requirements.txt package-lock.json | sha256sum | cut -c1-16)

# PySpark must run its workers with the venv's Python, not whatever python3 is on PATH.
export PYSPARK_PYTHON := $(abspath $(BIN)/python)
export PYSPARK_DRIVER_PYTHON := $(abspath $(BIN)/python)
export PATH := $(abspath $(BIN)):$(abspath node_modules/.bin):$(PATH)
export PYTHONPATH := $(abspath plugins):$(abspath .)

# Featurize any folder of photos: make featurize INPUT=~/photos OUTPUT=/tmp/features [WEIGHTS=...]
# The last line says how many images were listed, featurized and quarantined, and where to.
INPUT ?= ../shared/data/fruits360-sample
OUTPUT ?= .local-runs/features
WEIGHTS ?= ../shared/models/mobilenet_v2_1.0_pretrained_no_top.weights.h5

.PHONY: venv lint test run featurize bench bench-latency grid-screenshot smoke-aws clean

$(STAMP): requirements.txt spark_jobs/requirements.txt package.json package-lock.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv==0.13.9
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.txt
	npm ci --no-audit --no-fund --loglevel=error
	rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest

run: venv
	$(BIN)/python -m localdev.run_pipeline $(ARGS)

featurize: venv
	$(BIN)/spark-submit $$($(BIN)/python -m fruits.local_platform) \
		--conf spark.ui.showConsoleProgress=false spark_jobs/featurize.py \
		--input $(INPUT) --output $(OUTPUT) --weights $(WEIGHTS)

bench: venv
	$(BIN)/python -m benchmarks.featurize
	$(BIN)/python -m benchmarks.quality
	$(BIN)/python -m benchmarks.pca
	$(BIN)/python -m benchmarks.big_photos

# The README's pictures of the Airflow UI (docs/grid.png, docs/graph.png), from a real local night
# in headless Debian Chromium. playwright is not in requirements.txt: CI does not need it.
grid-screenshot: venv
	test -x /usr/bin/chromium || { apt-get update -qq && apt-get install -y chromium; }
	$(BIN)/uv pip install --quiet --python $(BIN)/python playwright==1.65.2
	$(BIN)/python -m localdev.grid_screenshot $(ARGS)

# Featurize at object-store latency through a FUSE passthrough (README, Performance): needs
# /dev/fuse and Debian's fuse3, installed here if missing. ARGS: e.g. --rounds 1.
bench-latency: venv
	command -v fusermount3 >/dev/null || apt-get install -y fuse3
	$(BIN)/python -m benchmarks.latency $(ARGS)

# One tiny night (10 photos, one core node) on platform emr with your own accounts: AWS from the
# default credential chain, Azure from AZURE_STORAGE_CONNECTION_STRING; CONFIG is your
# fruits_config JSON. Says what it checked and what it cost; always cleans up.
smoke-aws: venv
	$(BIN)/python -m localdev.smoke_aws --config $(CONFIG)

clean:
	rm -rf $(VENV) node_modules .pytest_cache .local-runs
