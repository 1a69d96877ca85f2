# The two commands: `make run` (main job, end to end) and `make test` (test suite).
# Each creates/refreshes .venv and installs what it needs; quick when already installed.
PY := .venv/bin/python
STAMP := .venv/.installed
PRESET ?= demo
WORKDIR ?= .work

.PHONY: run test lint install clean

$(PY):
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip

$(STAMP): $(PY) pyproject.toml scripts/install_torch.sh
	bash scripts/install_torch.sh $(PY)
	$(PY) -m pip install -q -e ".[dev,ray]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m dacdr.cli pipeline --preset $(PRESET) --workdir $(WORKDIR)

# two pytest workers (a file's tests stay on one worker, so its session fixtures are built once
# there); each worker's torch/BLAS/duckdb take half the cores (dacdr.threads), so two fill the machine
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf $(WORKDIR) .pytest_cache
