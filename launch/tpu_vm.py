r"""Cloud TPU VM launcher: create -> setup -> train -> logs -> copy -> delete, all through gcloud.

    launch/tpu_vm.sh create --accelerator v4-16 [--spot | --queued]
    launch/tpu_vm.sh setup
    launch/tpu_vm.sh train --config configs/explainer_kd.py:qwen0.5b --workdir gs://BUCKET/run \
        [--config.train.steps=1000 ...]
    launch/tpu_vm.sh logs [--worker 1] [--follow]
    launch/tpu_vm.sh copy gs://BUCKET/run/checkpoints runs/run/
    launch/tpu_vm.sh delete [--queued]

Project, zone and TPU name come from --project / --zone / --name, else from LANTERN_TPU_PROJECT
(or CLOUDSDK_CORE_PROJECT) / LANTERN_TPU_ZONE (or CLOUDSDK_COMPUTE_ZONE) / LANTERN_TPU_NAME.
--dry-run prints every command, shell-quoted, one per line, instead of running it.
Standard library only: it runs wherever gcloud does, without this package's dependencies.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REMOTE_DIR = "lantern_jax"  # the checkout, in each worker's home directory
REMOTE_LOG = "train.log"  # in REMOTE_DIR on every worker; `logs` tails it
ARCHIVE = "lantern_jax.tar.gz"
# gcloud's accelerator names (TYPE-SIZE) and the runtime images Google recommends for JAX on each.
RUNTIMES = {"v2": "tpu-ubuntu2204-base", "v3": "tpu-ubuntu2204-base", "v4": "tpu-ubuntu2204-base",
            "v5p": "v2-alpha-tpuv5", "v5litepod": "v2-alpha-tpuv5-lite", "v6e": "v2-alpha-tpuv6e"}
ACCELERATOR = re.compile(rf"({'|'.join(RUNTIMES)})-[1-9][0-9]*")
ENV_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*", re.S)
SETTINGS = {"project": ("LANTERN_TPU_PROJECT", "CLOUDSDK_CORE_PROJECT"),
            "zone": ("LANTERN_TPU_ZONE", "CLOUDSDK_COMPUTE_ZONE"),
            "name": ("LANTERN_TPU_NAME",)}
TPU_VM = ["gcloud", "compute", "tpus", "tpu-vm"]
QUEUED = ["gcloud", "compute", "tpus", "queued-resources"]


class UsageError(Exception):
    """Bad input: reported as one line and exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would print the whole usage first: one line is clearer
        raise UsageError(message)


def setting(args, key: str) -> str:
    value = getattr(args, key) or next((os.environ[e] for e in SETTINGS[key] if os.environ.get(e)), "")
    if not value:
        raise UsageError(f"no TPU {key}: pass --{key} or set {' or '.join(SETTINGS[key])}")
    return value


def where(args) -> list[str]:
    """The TPU name followed by the --project / --zone flags every tpu-vm command takes."""
    return [setting(args, "name"), f"--project={setting(args, 'project')}", f"--zone={setting(args, 'zone')}"]


def on_workers(args, worker: str, command: str) -> list[str]:
    return [*TPU_VM, "ssh", *where(args), f"--worker={worker}", "--command", command]


# --- subcommands: each returns the commands to run, in order ------------------------------------

def create(args, _) -> list[list[str]]:
    if not ACCELERATOR.fullmatch(args.accelerator):
        raise UsageError(f"--accelerator {args.accelerator!r}: expected TYPE-SIZE with TYPE one of "
                         f"{', '.join(RUNTIMES)} (e.g. v4-16, v5litepod-16, v6e-8)")
    version = args.version or RUNTIMES[args.accelerator.split("-")[0]]
    spot = ["--spot"] if args.spot else []
    if args.queued:  # waits in Google's queue until capacity frees up, then creates node NAME
        return [[*QUEUED, "create", *where(args), f"--node-id={setting(args, 'name')}",
                 f"--accelerator-type={args.accelerator}", f"--runtime-version={version}", *spot]]
    return [[*TPU_VM, "create", *where(args), f"--accelerator-type={args.accelerator}",
             f"--version={version}", *spot]]


def setup(args, _) -> list[list[str]]:
    # A committed tree, so every worker runs exactly the code of one commit.
    local = f"/tmp/lantern_jax-{setting(args, 'name')}.tar.gz"
    if not args.dry_run:
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout
        if dirty:
            print(f"warning: uncommitted changes are not shipped (setup sends {args.ref})", file=sys.stderr)
    remote = (f"mkdir -p {REMOTE_DIR} && tar -xzf {ARCHIVE} -C {REMOTE_DIR} && "
              f"bash {REMOTE_DIR}/launch/setup_worker.sh {shlex.quote(args.jax_extra)}")
    return [["git", "-C", str(ROOT), "archive", "--format=tar.gz", f"--output={local}", args.ref],
            [*TPU_VM, "scp", local, f"{setting(args, 'name')}:{ARCHIVE}", *where(args)[1:], "--worker=all"],
            on_workers(args, "all", remote)]


def train(args, overrides) -> list[list[str]]:
    bad = [o for o in overrides if not o.startswith("--config.")]
    if bad:
        raise UsageError(f"unrecognized arguments: {' '.join(bad)} (overrides look like --config.a.b=v)")
    env = ""
    for assignment in args.env:
        if not ENV_ASSIGNMENT.fullmatch(assignment):
            raise UsageError(f"--env {assignment!r}: expected NAME=VALUE")
        name, value = assignment.split("=", 1)
        env += f"{name}={shlex.quote(value)} "  # only the value quoted: a quoted NAME= is no assignment
    worker = ["launch/worker.sh", f"--config={args.config}", f"--workdir={args.workdir}", *overrides]
    # Detached with nohup: the run must outlive this ssh session; `logs` reads its output.
    remote = f"cd {REMOTE_DIR} && {env}nohup {shlex.join(worker)} >> {REMOTE_LOG} 2>&1 < /dev/null &"
    return [on_workers(args, "all", remote)]


def logs(args, _) -> list[list[str]]:
    follow = " -F" if args.follow else ""
    return [on_workers(args, str(args.worker), f"tail -n {args.lines}{follow} {REMOTE_DIR}/{REMOTE_LOG}")]


def copy(args, _) -> list[list[str]]:
    if not (args.src.startswith("gs://") or args.dst.startswith("gs://")):
        raise UsageError(f"copy {args.src} {args.dst}: one side must be a gs:// path")
    cp = ["gcloud", "storage", "cp", "-r", args.src, args.dst]
    if args.worker is None:
        return [cp]
    return [on_workers(args, str(args.worker), f"cd {REMOTE_DIR} && {shlex.join(cp)}")]


def delete(args, _) -> list[list[str]]:
    if args.queued:  # --force deletes the node together with its queued resource
        return [[*QUEUED, "delete", *where(args), "--force", "--quiet"]]
    return [[*TPU_VM, "delete", *where(args), "--quiet"]]


# --- command line -----------------------------------------------------------------------------

def count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a number 0, 1, 2, ...")
    return int(text)


def build_parser() -> Parser:
    common = Parser(add_help=False)
    for key, envs in SETTINGS.items():
        common.add_argument(f"--{key}", default="", help=f"default: ${' or $'.join(envs)}")
    common.add_argument("--dry-run", action="store_true", help="print the commands instead of running them")
    ap = Parser(prog="launch/tpu_vm.sh", description=__doc__, allow_abbrev=False,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="subcommand", required=True)

    def command(name, func, summary):
        p = sub.add_parser(name, parents=[common], help=summary, allow_abbrev=False)
        p.set_defaults(func=func)
        return p

    p = command("create", create, "create the TPU VM (a slice: one VM per worker)")
    p.add_argument("--accelerator", required=True, help="e.g. v4-16 (2 workers), v5litepod-16, v6e-8")
    p.add_argument("--version", default="", help="runtime image (default: the JAX image for the type)")
    p.add_argument("--spot", action="store_true", help="spot capacity: cheaper, preemptible")
    p.add_argument("--queued", action="store_true", help="a queued resource: waits for capacity")
    p = command("setup", setup, "ship the committed tree to every worker and install it")
    p.add_argument("--ref", default="HEAD", help="git commit or branch to ship")
    p.add_argument("--jax-extra", default="tpu", help="jax[EXTRA] to install (tpu, cuda12, ...)")
    p = command("train", train, "start launch/worker.sh on every worker, detached")
    p.epilog = "Any --config.a.b=v after these flags is passed on to the trainer."
    p.add_argument("--config", required=True, help="configs/x.py[:arg], relative to the checkout")
    p.add_argument("--workdir", required=True, help="gs://BUCKET/run: shared by all workers")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="environment for the run (repeatable), e.g. LIBTPU_INIT_ARGS=...")
    p = command("logs", logs, f"tail {REMOTE_DIR}/{REMOTE_LOG} of one worker")
    p.add_argument("--worker", type=count, default=0)
    p.add_argument("--lines", type=count, default=100)
    p.add_argument("--follow", action="store_true")
    p = command("copy", copy, "gcloud storage cp -r, here or (--worker) on a worker")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--worker", type=count, default=None,
                   help="run the copy on this worker, paths relative to its checkout")
    p = command("delete", delete, "delete the TPU VM (or, with --queued, its queued resource)")
    p.add_argument("--queued", action="store_true")
    return ap


def main(argv=None) -> int:
    try:
        args, extra = build_parser().parse_known_args(argv)
        if extra and args.func is not train:
            raise UsageError(f"unrecognized arguments: {' '.join(extra)}")
        commands = args.func(args, extra)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for cmd in commands:
        if args.dry_run:
            print(shlex.join(cmd))
            continue
        print(f"+ {shlex.join(cmd)}", file=sys.stderr, flush=True)
        rc = subprocess.run(cmd).returncode
        if rc:
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
