# Two commands a newcomer needs: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
CORE_STAMP := $(VENV)/.installed-core
# CPU torch first: a bare `pip install torch` (or one pulled in by verl) would fetch a multi-GB CUDA build.
TORCH_CPU := torch==2.13.0
# The versions CI passed with (pip constraints, so an extra installs only what it needs); `make lock` writes it.
LOCK := requirements.lock

.PHONY: demo test lint install clean bench node-clients lock

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# the demo runs synthesis (by replay) and the evaluator: the core and those two extras
$(CORE_STAMP): pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/python -m pip install -q -c $(LOCK) -e '.[eval,synth]'
	touch $(CORE_STAMP)

# dev = every CPU feature (eval, synth, v1, rl) + the test tools
$(STAMP): pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/python -m pip install -q $(TORCH_CPU)
	$(BIN)/python -m pip install -q -c $(LOCK) -e '.[dev]'
	touch $(STAMP) $(CORE_STAMP)

install: $(STAMP)

demo: $(CORE_STAMP)
	$(BIN)/codegym demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info tests/clients/node_modules

# Re-resolve $(LOCK) after a change of pyproject.toml (uv keeps the locked versions that still fit; delete the
# file first for the newest). For Python 3.11 on Linux, with the CPU torch wheel pip finds on this machine's disk
# (/opt/wheels): torch itself is left out, the Makefile installs it first.
lock: $(STAMP)
	echo '$(TORCH_CPU)+cpu' > $(VENV)/torch-cpu.txt
	$(BIN)/uv pip compile pyproject.toml --extra dev --python $(BIN)/python -c $(VENV)/torch-cpu.txt \
		--find-links /opt/wheels --no-emit-package torch --no-emit-package codegym-mcp \
		--custom-compile-command 'make lock' -o $(LOCK)

# Every benchmark in benchmarks/ (median of 5 runs each; < 15 min on 2 cores); writes benchmarks/RESULTS.md.
bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

# A second MCP client, written by others, for the serving tests (tests/test_server_fastmcp.py): the
# fastmcp CLI in a venv of its own inside .venv, so its dependencies never touch the project's.
FASTMCP := $(VENV)/fastmcp/bin/fastmcp
$(FASTMCP): | $(BIN)/python
	$(BIN)/python -m venv $(VENV)/fastmcp
	$(VENV)/fastmcp/bin/python -m pip install -q 'fastmcp==4.1.6' || echo "fastmcp did not install: its tests will fail under CI"
fastmcp: $(FASTMCP)
test: $(FASTMCP)
.PHONY: fastmcp

# The Node.js MCP clients of the client matrix (tests/test_client_matrix.py): the official TypeScript SDK
# 1.x and v2 and the MCP Inspector CLI, exactly as pinned in tests/clients/package-lock.json (Node.js >= 20).
# Where they cannot be installed, their tests fail under CI=true and are skipped (saying so) elsewhere.
NODE_CLIENTS := tests/clients/node_modules/.package-lock.json
$(NODE_CLIENTS): tests/clients/package.json tests/clients/package-lock.json
	cd tests/clients && npm ci --no-audit --no-fund || echo "the npm MCP clients did not install: their tests will fail under CI"
node-clients: $(NODE_CLIENTS)
test: $(NODE_CLIENTS)

# The rl+gpu install must resolve on a Linux GPU machine: uv resolves it from package metadata (no GPU, no
# multi-GB wheel) for every supported Python, and the gpu extra is compared with veRL's own vllm pins.
# Exit 1: a conflict or pin drift; 2: the package index could not be reached (nothing was checked).
check-gpu-resolve: $(STAMP)
	$(BIN)/python scripts/check_gpu_resolve.py
test: check-gpu-resolve
.PHONY: check-gpu-resolve

# The native load generator of benchmarks/bench_native.py: Debian's wrk, installed only where it is missing
# (needs root and the Debian archive; says so and fails where apt cannot reach it).
bench-deps:
	@command -v wrk >/dev/null || { apt-get update && apt-get install -y wrk; } || \
		{ echo "could not install wrk with apt-get (no root, or the Debian archive is unreachable): install it by hand"; exit 1; }
.PHONY: bench-deps
