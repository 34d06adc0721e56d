# One command builds the website, one runs every test; both set everything up.
#   make book   - create .venv if missing, install, execute every notebook, build the site
#   make test   - the same set-up, then library tests, nbval, the build, the browser test
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SITE := _build/html
NOTEBOOKS := $(wildcard book/*.ipynb)
export PYTHONHASHSEED := 0

.PHONY: help setup book test test-lib test-notebooks test-book test-browser browser-deps \
        lab serve clean lint

help:  ## list the targets
	@awk -F':.*## ' '/^[a-z-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (attnkit)" >/dev/null
	@touch $@

setup: $(STAMP)  ## create .venv and install everything (runs automatically)

book: $(STAMP)  ## execute every notebook and build the website (warnings are errors)
	$(BIN)/jupyter-book clean . >/dev/null
	$(BIN)/jupyter-book build . --all -W -n --keep-going
	@echo "The website is at $(CURDIR)/$(SITE)/index.html (serve it with: make serve)"

test: test-lib test-notebooks test-book test-browser  ## every test: library, nbval, build, browser
	@echo "All tests passed."

test-lib: $(STAMP) lint  ## the library's tests (pytest), its doctests, and ruff
	$(BIN)/python -m pytest tests -q --ignore=tests/browser
	$(BIN)/python -m pytest -q -p no:cacheprovider --doctest-modules attnkit \
	    --ignore=attnkit/kernels --ignore=attnkit/bench/__main__.py --ignore=attnkit/__main__.py

test-notebooks: $(STAMP)  ## nbval: every notebook's stored outputs match a fresh run
	$(BIN)/python -m pytest -q -p no:cacheprovider --nbval $(NOTEBOOKS) exercises/source \
	    --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout 600

test-book: book  ## the warnings-as-errors build

browser-deps:
	@command -v chromium >/dev/null || { \
	    echo "Installing Debian's chromium for the browser test"; \
	    if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	    else sudo apt-get update -qq && sudo apt-get install -y -qq chromium; fi; }

test-browser: $(STAMP) browser-deps  ## open the built site in headless Chromium, offline
	@test -f $(SITE)/index.html || $(MAKE) book
	$(BIN)/python -m pytest tests/browser -q

lab: $(STAMP)  ## open the notebooks in JupyterLab to run them locally
	$(BIN)/jupyter lab book/

serve:  ## serve the built website on http://127.0.0.1:8000
	$(BIN)/python -m http.server --bind 127.0.0.1 --directory $(SITE) 8000

.PHONY: student-notebooks
student-notebooks: $(STAMP)  ## regenerate the student notebooks book/exercises/chNN.ipynb from exercises/source
	$(BIN)/python -m attnkit.grading release --out book/exercises

lint: $(STAMP)  ## ruff (code and docstrings) over the library, the tests and book/_ext
	$(BIN)/python -m ruff check attnkit tests book/_ext

clean:  ## remove the built website and caches (keeps .venv)
	rm -rf _build .pytest_cache .hypothesis artifacts
