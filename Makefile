# fleetserve — the commands the README names. Everything installs itself on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
REPO ?= model_repository
EXTRAS := cpu,torch,dev,ray
# pip, quiet. This machine's pip configuration names local indexes that may be absent, which pip
# reports line by line: those lines are dropped; anything else, and pip's exit status, is kept.
pip_install = $(PY) -m pip install -q $(1) 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }; test $${PIPESTATUS[0]} -eq 0

.PHONY: run test bench bench-batching loadtest demo proto lint setup system-deps clean-venv

## setup: the virtual environment with fleetserve and everything its tests need
setup: system-deps $(STAMP)

# Debian packages, installed when their program is missing (apt-get update first). A policy-rc.d
# that answers 101 keeps apt from starting them as system services: fleetserve and the tests
# start their own, on their own ports.
SYSTEM_PROGRAMS := redis-server:redis-server prometheus:prometheus nginx:nginx chromium:chromium
system-deps:
	@missing=""; for pair in $(SYSTEM_PROGRAMS); do \
	  prog=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$prog >/dev/null 2>&1 || test -x /usr/sbin/$$prog || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "== missing Debian packages:$$missing (run: sudo apt-get install$$missing)"; exit 0; fi; \
	  echo "== installing Debian packages:$$missing"; \
	  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; \
	  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing >/dev/null; \
	  status=$$?; rm -f /usr/sbin/policy-rc.d; exit $$status; \
	fi

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

## run: the local cluster on the default repository (fleetserve up): nginx on REST 8000 / gRPC 8001
## in front of one replica per core, Redis, Prometheus 9090 and the sidecars; it prints the URLs.
## Without nginx / Redis / Prometheus it serves one replica on 8000 / 8001 / 8002 and says so.
run: setup
	$(VENV)/bin/fleetserve up --model-repository $(REPO)

## test: the whole suite
test: setup
	$(PY) -m pytest -q

## bench: the benchmarks (served vs raw onnxruntime; batch policies; 1 vs 2 replicas behind nginx),
## not part of the suite
bench: setup
	$(PY) -m loadtests.bench
	$(PY) -m loadtests.batching
	$(PY) -m loadtests.cluster_bench

## loadtest: Locust (loadtests/locustfile.py) headless for LOADTEST_TIME against a running cluster
## (start it first with make run); the HTML report goes to LOADTEST_REPORT
LOADTEST_HOST ?= http://127.0.0.1:8000
LOADTEST_USERS ?= 12
LOADTEST_TIME ?= 60s
LOADTEST_REPORT ?= .bench/loadtest/report.html
loadtest: setup
	@$(PY) -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)" \
	  $(LOADTEST_HOST)/v2/health/ready 2>/dev/null \
	  || { echo "== nothing ready at $(LOADTEST_HOST): start the cluster first (make run)"; exit 1; }
	@mkdir -p $(dir $(LOADTEST_REPORT))
	$(VENV)/bin/locust -f loadtests/locustfile.py --headless -u $(LOADTEST_USERS) -r $(LOADTEST_USERS) \
	  -t $(LOADTEST_TIME) --stop-timeout 10 --host $(LOADTEST_HOST) --only-summary \
	  --html $(LOADTEST_REPORT) --csv $(basename $(LOADTEST_REPORT))
	@echo "== Locust report: $(LOADTEST_REPORT)"

## bench-batching: the batch policies under closed- and open-loop load (loadtests/batching.py)
bench-batching: setup
	$(PY) -m loadtests.batching

## demo: issue 6's continuous-training loop end to end (loadtests/ct_loop.py), on free loopback
## ports in a temporary folder: clean then inverted digits, drift alarm, retraining on the labelled
## drifted traffic, automated shadow / canary / promote; prints the report (the e2e test runs --short)
demo: setup
	$(PY) -m loadtests.ct_loop

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
