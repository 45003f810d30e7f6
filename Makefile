# The two commands a fresh clone needs: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned to the CPU build for CI and local tests; the library's own range stays open.
TORCH_PIN ?= torch==2.13.0

.PHONY: test lint typecheck unit integration demo clean runtime java gpu-bundle

$(BIN)/mme-local: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_PIN)" -e ".[dev]"
	touch $@

runtime: $(BIN)/mme-local java
	$(BIN)/mme-local runtime install

# TorchServe's frontend is Java: Debian's openjdk-17-jre-headless when no java is on PATH.
# Without root (or sudo) it says how in one line and goes on; only --stack torchserve needs it.
java:
	@command -v java >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo -n ); \
	  echo "installing openjdk-17-jre-headless (Java for the TorchServe stack)"; \
	  { $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	      openjdk-17-jre-headless; } >/dev/null 2>&1 || \
	  echo "could not install Java; for --stack torchserve run: sudo apt-get install openjdk-17-jre-headless"; }

lint: $(BIN)/mme-local
	$(BIN)/ruff check mme_local cloud tests bench
	$(BIN)/ruff format --check mme_local cloud tests bench

typecheck: $(BIN)/mme-local
	$(BIN)/mypy mme_local cloud bench

unit: $(BIN)/mme-local
	$(BIN)/pytest -q -n logical --maxprocesses 4 tests/unit

# Unit tests are CPU-bound and independent: one worker per core, up to four. Integration tests
# run one at a time: several time real loads and unloads, and the replays must match them.
test: lint typecheck runtime
	$(BIN)/pytest -q -ra -n logical --maxprocesses 4 tests/unit
	$(BIN)/pytest -q -ra tests/integration

demo: runtime
	$(BIN)/mme-local demo

# What an offline GPU host lacks for bench/gpu_check.py, in parts of at most 60 MiB each.
gpu-bundle: runtime
	$(BIN)/python bench/gpu_bundle.py --out gpu-bundle

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
