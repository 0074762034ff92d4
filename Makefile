# Two commands do all the set-up on a fresh machine:
#   make run    the DAG end to end on the local platform (moto S3 + Azurite + Spark local mode)
#   make test   lint + the whole test suite (what CI runs)
#   make test-unit   the pure-Python tier alone, in under two minutes (tests/tiers.py)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The development set: the Airflow side, the cluster side, local Spark and the test tools.
REQUIREMENTS := $(wildcard requirements*.txt spark_jobs/requirements.in)
STAMP := $(VENV)/.installed-$(shell cat $(REQUIREMENTS) package-lock.json | sha256sum | cut -c1-16)

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

TIER_TESTS := test-unit test-dag test-spark test-e2e test-services
.PHONY: venv lint test fuse $(TIER_TESTS) run featurize bench bench-latency grid-screenshot lock \
	wheelhouse smoke-aws clean

$(STAMP): $(REQUIREMENTS) package.json package-lock.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv==0.13.9
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements-dev.txt
	npm ci --no-audit --no-fund --loglevel=error
	rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The whole suite on TEST_WORKERS processes (pytest-xdist): a module stays on one worker (its
# fixtures are module-wide), the costliest tiers are handed out first (tests/tiers.py).
TEST_WORKERS ?= 2
test: lint fuse
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# One tier of the suite, cheapest first: test-unit (pure Python), test-dag (dag.test),
# test-spark (a local SparkSession), test-e2e (emulators, spark-submit), test-services
# (airflow standalone). `make test` runs them all.
$(TIER_TESTS): test-%: venv
	$(BIN)/python -m pytest -m $*
test-e2e: fuse

# The FUSE tests (tests/test_slow_fs.py, make bench-latency) need /dev/fuse and Debian's fuse3.
# Without them those tests skip, and fail under CI=true.
fuse:
	command -v fusermount3 >/dev/null || apt-get install -y fuse3 \
		|| { apt-get update -qq && apt-get install -y fuse3; } \
		|| echo "fuse3 not installed: tests/test_slow_fs.py will skip (fail under CI=true)"

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
# in headless Debian Chromium. playwright is not in requirements-dev.txt: CI does not need it.
grid-screenshot: venv
	test -x /usr/bin/chromium || { apt-get update -qq && apt-get install -y chromium; }
	$(BIN)/uv pip install --quiet --python $(BIN)/python playwright==1.65.2
	$(BIN)/python -m localdev.grid_screenshot $(ARGS)

# Featurize at object-store latency through a FUSE passthrough (docs/performance.md): needs
# /dev/fuse and Debian's fuse3, installed here if missing. ARGS: e.g. --rounds 1.
bench-latency: venv fuse
	$(BIN)/python -m benchmarks.latency $(ARGS)

# The cluster's requirements, locked for EMR's Python (3.11, manylinux x86_64) with every file's
# sha256, from spark_jobs/requirements.in (the local venv installs the .in itself). Pins already in
# the lock are kept: ARGS=--upgrade to move them. Then which wheel of each pin the cluster gets.
lock: venv
	$(BIN)/uv pip compile --quiet --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
		--generate-hashes --custom-compile-command "make lock" $(ARGS) \
		-c spark_jobs/cluster-constraints.txt spark_jobs/requirements.in -o spark_jobs/requirements.lock
	$(BIN)/python -m fruits.wheelhouse download

# The locked wheels into the lake, where EMR's bootstrap installs them from (never from PyPI):
# make wheelhouse BUCKET=<lake bucket> [CODE_PREFIX=code], with your AWS credentials.
CODE_PREFIX ?= code
wheelhouse: venv
	$(BIN)/python -m fruits.wheelhouse upload --bucket $(BUCKET) --code-prefix $(CODE_PREFIX)

# One tiny night (10 photos, one core node) on platform emr with your own accounts: AWS from the
# default credential chain, Azure from AZURE_STORAGE_CONNECTION_STRING; CONFIG is your
# fruits_config JSON. Says what it checked and what it cost; always cleans up.
smoke-aws: venv
	$(BIN)/python -m localdev.smoke_aws --config $(CONFIG)

clean:
	rm -rf $(VENV) node_modules .pytest_cache .local-runs .wheelhouse
