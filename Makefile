# Two commands matter: `make demo` (the main job end to end) and `make test`.
# Everything installs itself into .venv (full toolkit) and .venv-runtime (runtime only).
PYTHON ?= python3
VENV := .venv
RT_VENV := .venv-runtime
BIN := $(VENV)/bin
RT_BIN := $(RT_VENV)/bin
FIXTURES ?= build/fixtures
PIP_FLAGS := --disable-pip-version-check --quiet
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install runtime-venv fixtures lint test test-fast test-main test-runtime test-wheels demo bench clean
.PHONY: test-kserve

install: $(VENV)/.installed

# Re-run only when the package metadata changes; editable installs pick up code changes.
$(VENV)/.installed: setup.cfg pyproject.toml runtime/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_FLAGS) --upgrade pip
	$(BIN)/pip install $(PIP_FLAGS) -e "./runtime[serve,openvino]" -e ".[dev]"
	touch $@

# A second venv with only the runtime (not editable: proves `pip install ./runtime` works).
runtime-venv: $(RT_VENV)/.installed

$(RT_VENV)/.installed: runtime/pyproject.toml $(shell find runtime/cifar10_runtime -type f -not -path '*/__pycache__/*')
	test -x $(RT_BIN)/python || $(PYTHON) -m venv $(RT_VENV)
	$(RT_BIN)/pip install $(PIP_FLAGS) --upgrade pip
	$(RT_BIN)/pip install $(PIP_FLAGS) --force-reinstall --no-deps "./runtime"
	$(RT_BIN)/pip install $(PIP_FLAGS) "./runtime[serve]" "pytest>=8,<10" "httpx>=0.27,<1" \
		"playwright>=1.45,<2" "tritonclient[http]>=2.40,<3" "tritonclient[grpc]>=2.40,<3" \
		"hypothesis>=6.100,<7" "pytest-timeout>=2.3,<3"
	touch $@

fixtures: install
	$(BIN)/python tests/make_fixtures.py --out $(FIXTURES)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# -rs: every skip says why; --durations: the slowest tests are named, not guessed at.
PYTEST := -m pytest -q -rs --durations=15

test-main: install fixtures
	CIFAR10_FIXTURES=$(abspath $(FIXTURES)) $(BIN)/python $(PYTEST) tests

test-runtime: runtime-venv fixtures
	CIFAR10_RUNTIME_ONLY=1 CIFAR10_FIXTURES=$(abspath $(FIXTURES)) $(RT_BIN)/python $(PYTEST) tests/runtime

# Both wheels into a fresh venv, then train + export from an empty folder (minutes: TensorFlow).
test-wheels:
	bash tests/wheels/check_wheels.sh

# The whole suite, as CI runs it (.ci/run).
test: lint test-wheels test-main test-runtime test-kserve

# deploy/kserve/ checked with KServe's own Python models (tests/deploy). kserve brings
# uvloop, fastapi, pandas...: kept out of .venv (uvloop would change uvicorn's loop in the
# serving tests), in a small venv of its own with the runtime for cifar-serve's CLI.
KSERVE_VENV := build/venv-kserve-manifests
$(KSERVE_VENV)/.installed: runtime/pyproject.toml
	test -x $(KSERVE_VENV)/bin/python || $(PYTHON) -m venv $(KSERVE_VENV)
	$(KSERVE_VENV)/bin/pip install $(PIP_FLAGS) "kserve>=0.14,<1" "pyyaml>=6" "pytest>=8,<10" \
		"pytest-timeout>=2.3,<3" \
		"./runtime"
	touch $@

# PYTHONPATH: the checkout's runtime (its CLI flags) over the copy installed for its deps.
test-kserve: $(KSERVE_VENV)/.installed
	PYTHONPATH=runtime $(KSERVE_VENV)/bin/python $(PYTEST) tests/deploy

# Unit tests only: no training, no export (tests marked slow are left out). It builds no
# fixtures either: tests that need them use build/fixtures if `make fixtures` made it, and
# otherwise skip, saying so.
test-fast: install
	CIFAR10_FIXTURES=$(abspath $(FIXTURES)) $(BIN)/python $(PYTEST) -m "not slow" tests

demo: install
	$(BIN)/python -m demo $(DEMO_ARGS)

# The runtime as a user installs it, nothing else: what the footprint benchmark measures.
BARE_VENV := build/venv-runtime-bare
$(BARE_VENV)/.installed: runtime/pyproject.toml
	test -x $(BARE_VENV)/bin/python || $(PYTHON) -m venv $(BARE_VENV)
	$(BARE_VENV)/bin/pip install $(PIP_FLAGS) "./runtime[serve]"
	touch $@

# The runtime with the openvino extra: the footprint table's third venv.
OV_VENV := build/venv-runtime-openvino
$(OV_VENV)/.installed: runtime/pyproject.toml
	test -x $(OV_VENV)/bin/python || $(PYTHON) -m venv $(OV_VENV)
	$(OV_VENV)/bin/pip install $(PIP_FLAGS) "./runtime[serve,openvino]"
	touch $@

# The server benchmark's peers (KServe, MLServer) in their own venv, never the runtime's.
PEERS_VENV := build/venv-peers
$(PEERS_VENV)/.installed: benchmarks/serving/peers/requirements.txt
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install $(PIP_FLAGS) -r benchmarks/serving/peers/requirements.txt
	touch $@

bench: install runtime-venv $(BARE_VENV)/.installed $(OV_VENV)/.installed $(PEERS_VENV)/.installed
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) $(RT_VENV) build
