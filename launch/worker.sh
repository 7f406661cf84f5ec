#!/usr/bin/env bash
# The one command every host of a multi-host run executes, with the same arguments everywhere:
# each TPU VM worker (started by `launch/tpu_vm.sh train`), each GPU node, each local test process.
#
#   launch/worker.sh --config configs/x.py[:arg] --workdir gs://BUCKET/run [--config.a.b=v ...]
#       [--coordinator_address HOST:PORT --num_processes N --process_id I]
#
# It adds --distributed, so jax.distributed.initialize() runs before any device is touched. On TPU
# VMs (and under SLURM / Open MPI) jax finds the coordinator and the process ids itself; elsewhere
# pass the three flags (GPU nodes: see launch/README.md).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The checkout's own venv (made by launch/setup_worker.sh or `make setup`) unless told otherwise.
python=${LANTERN_PYTHON:-$root/.venv/bin/python}
if [ ! -x "$python" ]; then
    echo "error: no python at $python: run launch/setup_worker.sh or set LANTERN_PYTHON" >&2
    exit 2
fi
# Output goes to a log file under nohup: unbuffered, so `tpu_vm.sh logs` shows progress as it happens.
export PYTHONUNBUFFERED=1
# exec: python itself gets the SIGTERM of a preemption, and the trainer saves before exiting.
exec "$python" -m lantern_jax.train --distributed "$@"
