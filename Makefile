# tfx-explain developer commands. `make demo` and `make test` set everything up
# on a fresh machine: a Python 3.10 virtualenv in .venv with the locked set.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
LOCK := requirements-lock.txt
EXTRAS := test,bench,forests
# Reinstall only when what we install from changes, or when a package folder lands
# (the editable install maps package folders when it is made).
ENV_HASH := $(shell (cat $(LOCK) setup.py pyproject.toml; ls */__init__.py) 2>/dev/null | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(ENV_HASH)
RUN_ROOT ?= $(CURDIR)/runs
PYTEST_ARGS ?=

export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2
# google-api-core and friends warn on every import under Python 3.10.
export PYTHONWARNINGS := ignore::FutureWarning

.PHONY: help env browser mariadb demo demo-images test test-fast bench lock clean python310

help:
	@echo "make demo   - set up .venv (Python 3.10) and run the penguin, digits and reviews pipelines end to end"
	@echo "make demo-images - only the digits (image) pipeline"
	@echo "make test   - set up .venv and run the test suite"
	@echo "make test-fast - the suite without the slow end-to-end runs (pytest -m 'not slow')"
	@echo "make bench  - run the benchmarks, writing benchmarks/results/*.json and *.md"
	@echo "make lock   - rewrite $(LOCK) from a fresh resolve of setup.py"

# Prints the Python 3.10 interpreter to use, or fails with what to install.
python310:
	@$(find_python310)

define find_python310
	candidate=""; \
	if [ -n "$$PYTHON310" ]; then candidate="$$PYTHON310"; \
	elif command -v python3.10 >/dev/null 2>&1 && python3.10 -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1; then \
	  candidate="$$(command -v python3.10)"; \
	else \
	  root="$${PYENV_ROOT:-$$(pyenv root 2>/dev/null || echo $$HOME/.pyenv)}"; \
	  for p in $$(ls -d "$$root"/versions/3.10.*/bin/python 2>/dev/null | sort -V); do candidate="$$p"; done; \
	fi; \
	if [ -z "$$candidate" ] || ! "$$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1; then \
	  echo "error: tfx-explain needs Python 3.10 (TFX 1.16, the newest TFX whose full dependency set is published for Linux, supports Python 3.9-3.10)." >&2; \
	  echo "Install one of:" >&2; \
	  echo "  Debian/Ubuntu:  apt-get install python3.10 python3.10-venv   (deadsnakes PPA on Ubuntu 24.04)" >&2; \
	  echo "  pyenv:          pyenv install 3.10" >&2; \
	  echo "or point PYTHON310=/path/to/python3.10 at an existing interpreter." >&2; \
	  exit 3; \
	fi; \
	echo "$$candidate"
endef

env: $(STAMP)

$(STAMP):
	@py310="$$($(find_python310))" || exit $$?; \
	if [ ! -x "$(PY)" ] || ! "$(PY)" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then \
	  echo "creating $(VENV) with $$py310"; rm -rf "$(VENV)"; "$$py310" -m venv "$(VENV)"; \
	fi
	$(PY) -m pip install --quiet --upgrade 'pip==24.2' 'setuptools==75.1.0' 'wheel==0.44.0'
	$(PY) -m pip install --quiet --no-build-isolation -c $(LOCK) -e '.[$(EXTRAS)]'
	@rm -f $(VENV)/.installed-*; touch $(STAMP)
	@echo "environment ready: $(VENV)"

demo: env
	$(PY) -m tfx_explain.pipelines.penguin.run_local --run-root "$(RUN_ROOT)"
	$(PY) -m tfx_explain.pipelines.digits.run_local --run-root "$(RUN_ROOT)"
	$(PY) -m tfx_explain.pipelines.reviews.run_local --run-root "$(RUN_ROOT)"

demo-images: env
	$(PY) -m tfx_explain.pipelines.digits.run_local --run-root "$(RUN_ROOT)"

# Headless Chromium renders our HTML reports in the tests (Debian's package).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the report rendering tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "error: the report tests need Chromium: apt-get install chromium (as root)" >&2; exit 4; \
	  fi; }

# A MySQL-compatible server for the shared-metadata tests (Debian's package;
# the tests start their own instance on loopback).
mariadb:
	@command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's mariadb-server for the shared ML Metadata tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server >/dev/null; \
	  else \
	    echo "error: the shared-metadata tests need MariaDB: apt-get install mariadb-server (as root)" >&2; exit 4; \
	  fi; }

test: env browser mariadb
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: env
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

bench: env
	$(PY) benchmarks/run_all.py

lock:
	@py310="$$($(find_python310))" || exit $$?; \
	rm -rf /tmp/tfx-explain-lock && "$$py310" -m venv /tmp/tfx-explain-lock && \
	/tmp/tfx-explain-lock/bin/pip install --quiet 'pip==24.2' && \
	/tmp/tfx-explain-lock/bin/pip install --quiet '.[$(EXTRAS)]' && \
	{ head -3 $(LOCK); /tmp/tfx-explain-lock/bin/pip freeze --exclude tfx-explain; } > $(LOCK).new && mv $(LOCK).new $(LOCK)

clean:
	rm -rf $(VENV) runs build *.egg-info .pytest_cache
