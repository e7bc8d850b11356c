# Two commands work on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: install
	$(BIN)/fcnkit demo

test: install
	$(BIN)/python tests/run_isolated.py

bench: install
	$(BIN)/python benchmarks/forward.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
