# Two entry points for a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# A CPU build from the local wheel store on CPU machines; a plain `torch` would pull CUDA.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install demo test lint browser bench-peers peers clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/featlab demo

# Headless Chromium from Debian for the browser tests (Playwright's own download is not used).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "browser tests need /usr/bin/chromium: sudo apt-get install chromium chromium-driver"; fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check featlab tests experiments

test: $(STAMP) browser
	$(BIN)/ruff check featlab tests experiments
	$(BIN)/python -m pytest -q

# The peers featlab is benchmarked against pin transformer-lens / transformers versions featlab
# cannot share, so they get their own venv. It sees featlab's packages through a .pth file
# (site.addsitedir, so featlab's editable install resolves too) and adds only the peers and
# the few pure-python packages they import, with --no-deps, so pip never replaces a shared one.
PEERS := .venv-peers
PEER_PACKAGES := eai-sparsify==1.3.3 sae-dashboard==0.8.0 natsort==8.4.0 \
  dataclasses-json==0.6.7 'marshmallow>=3.18,<4' typing-inspect==0.9.0 mypy-extensions==1.2.0 \
  eindex-callum==0.1.2 decode-clt==0.0.1
PEERS_STAMP := $(PEERS)/.installed

$(PEERS_STAMP): $(STAMP) Makefile
	test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	site=$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	peer_site=$$($(PEERS)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	echo "import site; site.addsitedir('$$site')" > $$peer_site/featlab-venv.pth
	$(PEERS)/bin/pip install -q --no-deps $(PEER_PACKAGES)
	$(PEERS)/bin/python -c 'import featlab, sparsify, sae_dashboard, schedulefree'
	touch $(PEERS_STAMP)

peers: $(PEERS_STAMP)

bench-peers: $(PEERS_STAMP)
	OMP_NUM_THREADS=1 $(PEERS)/bin/python experiments/bench_vs_sparsify.py
	OMP_NUM_THREADS=1 $(PEERS)/bin/python experiments/bench_vs_saedashboard.py

clean:
	rm -rf $(VENV) $(PEERS) .pytest_cache .ruff_cache
