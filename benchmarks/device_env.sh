# shellcheck shell=bash
# Sourced by the device scripts (gpu_check.sh, accelerator_demo.sh) from the repository root: the
# wheels in .whl/ (packages a JAX image lacks, fetched on a machine with network) go into a private
# folder on PYTHONPATH, with the repository itself, and XLA keeps room for its autotuning buffers.
PYTHON=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
  site=${LANTERN_SITE:-/tmp/lantern_site}
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" .whl/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
