#!/usr/bin/env bash
# Thin wrapper so the launcher reads like the other launch scripts: launch/tpu_vm.sh create ...
# The launcher is standard-library Python, so any python3 works (no venv needed on a laptop).
set -euo pipefail
exec "${PYTHON:-python3}" "$(dirname "${BASH_SOURCE[0]}")/tpu_vm.py" "$@"
