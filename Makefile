# Two commands do all the set-up on a fresh machine:
#   make demo   -> creates .venv, installs the pinned CPU set, runs `ecaug demo` end to end
#   make test   -> creates/updates .venv, runs the test suite (CI: .ci/run calls this)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv demo test test-spark bench clean help

help:
	@echo "make demo   - install into $(VENV) and run the whole pipeline on the bundled Beauty data"
	@echo "make test   - install into $(VENV) and run the tests"
	@echo "make test-spark - install pyspark and run the Spark profile tests (needs a JDK 17)"
	@echo "make bench  - run the benchmarks in benchmarks/ (installs requirements-bench.txt)"

venv: $(STAMP)

# The install a user does (docs/guide/install.md), editable:
# the package's extras under the shipped constraints, then torchrec without its dependencies (its
# metadata asks for an unpinned CUDA `fbgemm-gpu`; `train` already lists what it really needs).
# torch==2.13.0 (pinned by the constraints) is the CPU build on this kind of machine's disk; a
# machine on the public index installs the CPU build first: see docs/guide/install.md.
CONSTRAINTS := ecaug_feast/constraints.txt
EXTRAS      := train,serve,test

$(STAMP): requirements.txt requirements-torchrec.txt pyproject.toml setup.py $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c $(CONSTRAINTS) -e '.[$(EXTRAS)]'
	$(PIP) install -q --no-deps -r requirements-torchrec.txt
	$(VENV)/bin/ecaug doctor
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ecaug demo

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Spark profile (docs/guide/cluster.md): pyspark is not a dependency of ecaug; its workers
# run $$PYSPARK_PYTHON, which must be the venv's interpreter (it has Feast).
test-spark: $(STAMP)
	$(PIP) install -q -c $(CONSTRAINTS) 'pyspark>=4.0,<4.4'
	ECAUG_TEST_SPARK=1 PYSPARK_PYTHON=$(abspath $(PY)) $(PY) -m pytest -q -m spark tests/scale $(PYTEST_ARGS)

bench: $(STAMP)
	$(PIP) install -q -c $(CONSTRAINTS) -r requirements-bench.txt
	@# the serving benchmark's load generator (Debian's wrk); apt-get update once, only when missing
	command -v wrk >/dev/null || { command -v apt-get >/dev/null && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; } || { echo "install wrk for benchmarks/serving.py"; exit 1; }
	$(PY) benchmarks/feast_io.py
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/serving.py
	$(PY) benchmarks/synth_vs_ctgan.py --quick

clean:
	rm -rf $(VENV) .ecaug
