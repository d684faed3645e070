# fleetserve — the commands the README names. Everything installs itself on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
REPO ?= model_repository
EXTRAS := cpu,torch,dev
# pip, quiet. This machine's pip configuration names local indexes that may be absent, which pip
# reports line by line: those lines are dropped; anything else, and pip's exit status, is kept.
pip_install = $(PY) -m pip install -q $(1) 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }; test $${PIPESTATUS[0]} -eq 0

.PHONY: run test bench proto lint setup clean-venv

## setup: the virtual environment with fleetserve and everything its tests need
setup: $(STAMP)

# torch goes first, pinned: the CPU build from local disk (an unpinned torch pulls a multi-GB CUDA build).
$(STAMP): pyproject.toml
	@set -e; start=$$(date +%s); \
	echo "== first-time setup: $(VENV)"; \
	test -x $(PY) || python3 -m venv $(VENV); \
	$(call pip_install,--upgrade pip); \
	$(call pip_install,torch==2.13.0); \
	$(call pip_install,-e '.[$(EXTRAS)]'); \
	rm -f $(VENV)/.installed-*; touch $@; \
	echo "== setup took $$(( $$(date +%s) - start )) s"

## run: serve the default model repository (digits) on REST 8000, gRPC 8001, metrics 8002
run: setup
	$(VENV)/bin/fleetserve serve --model-repository $(REPO)

## test: the whole suite
test: setup
	$(PY) -m pytest -q

## bench: the benchmarks (served vs raw onnxruntime), not part of the suite
bench: setup
	$(PY) -m loadtests.bench

## proto: regenerate services/fleetserve/wire from proto/
proto: setup
	$(PY) -m grpc_tools.protoc -I proto --python_out=services --pyi_out=services proto/fleetserve/wire/*.proto

## lint: ruff and mypy
lint: setup
	$(VENV)/bin/ruff check services tests loadtests
	$(VENV)/bin/ruff format --check services tests loadtests
	$(VENV)/bin/mypy services/fleetserve

clean-venv:
	rm -rf $(VENV)
