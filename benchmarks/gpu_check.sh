#!/usr/bin/env bash
# GPU check: KD-step MFU at 16x1024 and 8x2048 with the fused kernels (cuDNN attention, the
# vocabulary-blocked LM head), each kernel against the path it replaces (time, compiled temporary
# bytes), and LoRA SFT tokens/s for a 7B-shaped teacher, on one GPU in at most ~8 minutes.
#
#   bash benchmarks/gpu_check.sh [gpu_check.py flags]   # e.g. --sections kd,lora --json /tmp/gpu.json
#
# Needs jax (with its CUDA plugin), flax, optax and orbax on the machine. grain, ml-collections and
# qwix (imported by the trainer) may be missing there: put their wheels in .whl/ (fetched on a
# machine with network, see launch/README.md) and this script installs them into a private folder first.
set -euo pipefail
cd "$(dirname "$0")/.."

source benchmarks/device_env.sh
exec timeout "${GPU_CHECK_TIMEOUT:-480}" "$PYTHON" -u benchmarks/gpu_check.py "$@"
