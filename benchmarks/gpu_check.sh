#!/usr/bin/env bash
# GPU check (issue 7): the explainer KD step's tokens/s and MFU (Qwen2.5-0.5B student, online
# Qwen2.5-1.5B teacher, bf16) and generation tokens/s, on one GPU in at most ~8 minutes.
#
#   bash benchmarks/gpu_check.sh [gpu_check.py flags]      # e.g. --batch 8 --seq 2048
#
# Needs jax (with its CUDA plugin), flax, optax and orbax on the machine. grain and ml-collections
# (imported by the trainer) may be missing there: put their wheels in .whl/ (fetched on a machine
# with network, see launch/README.md) and this script installs them into a private folder first.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
  site=${GPU_CHECK_SITE:-/tmp/lantern_site}
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$site" .whl/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# Leave XLA room for its autotuning buffers (the defaults fit an 80 GB H100).
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
exec timeout "${GPU_CHECK_TIMEOUT:-480}" "$PYTHON" -u benchmarks/gpu_check.py "$@"
