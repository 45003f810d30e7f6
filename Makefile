# The two commands a fresh clone needs: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned to the CPU build for CI and local tests; the library's own range stays open.
TORCH_PIN ?= torch==2.13.0

.PHONY: test lint typecheck unit integration demo clean runtime gpu-bundle

$(BIN)/mme-local: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_PIN)" -e ".[dev]"
	touch $@

runtime: $(BIN)/mme-local
	$(BIN)/mme-local runtime install

lint: $(BIN)/mme-local
	$(BIN)/ruff check mme_local cloud tests bench
	$(BIN)/ruff format --check mme_local cloud tests bench

typecheck: $(BIN)/mme-local
	$(BIN)/mypy mme_local cloud bench

unit: $(BIN)/mme-local
	$(BIN)/pytest tests/unit -q

test: lint typecheck runtime
	$(BIN)/pytest -q -ra

demo: runtime
	$(BIN)/mme-local demo

# What an offline GPU host lacks for bench/gpu_check.py, in parts of at most 60 MiB each.
gpu-bundle: runtime
	$(BIN)/python bench/gpu_bundle.py --out gpu-bundle

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
