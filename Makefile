# `make demo` and `make test` each set everything up from nothing, then run.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench clean proto

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: the CPU wheel on local disk. Any other spec pulls CUDA builds.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,vertical,analytics,tracking,ray]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fedsilo simulate examples/mnist_3orgs.toml --out runs/mnist_3orgs --baseline

lint: $(STAMP)
	$(BIN)/ruff check src tests examples bench
	$(BIN)/ruff format --check src tests examples bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	# one worker per core (pytest-xdist); a module's tests stay on one worker (module fixtures)
	$(BIN)/python -m pytest -n auto --dist loadfile

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python bench/convergence.py

# Regenerate the gRPC code (checked in) from the .proto; needs the dev extra (grpcio-tools).
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I src --python_out=src --pyi_out=src --grpc_python_out=src \
		src/fedsilo/deploy/proto/fedsilo.proto

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
