"""One train loop for every task: teacher_sft | explainer_kd | classifier_kd.

    python -m lantern_jax.train --config configs/explainer_kd.py:local --workdir runs/x \
        [--config.train.steps=100 ...]

Mesh from the config; models built sharded (random init inside jit, or HF / GGUF weights placed
straight into their shards, `models.sources`); what differs between tasks is the objective
(`distill.objectives`); the jitted steps are in `train_step`. Rerunning with the same --workdir
resumes from the last checkpoint, data position included; SIGTERM saves and exits. Metrics go to
TensorBoard, metrics.jsonl and a progress bar with tokens/s and KD-aware MFU. A config with a
`chain` trains its stages in order (`run`).
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx
from tqdm import tqdm

from lantern_jax import cli, probe, stages, storage
from lantern_jax import config as config_lib
from lantern_jax import lora
from lantern_jax import mesh as mesh_lib
from lantern_jax import train_step as train_step_lib
from lantern_jax.checkpoint import Checkpointer
from lantern_jax.config import ConfigError, require
from lantern_jax.data import datasets
from lantern_jax.data import input_pipeline as pipe
from lantern_jax.data.schema import DataError
from lantern_jax.distill import objectives
from lantern_jax.guard import FiniteGuard
from lantern_jax.models import attention as attention_lib
from lantern_jax.models import hf, sources
from lantern_jax.train_log import MetricsLog

log = logging.getLogger("lantern_jax.train")


# --- validation (before anything is built or compiled) ---------------------------------------

def check_config(cfg: ml_collections.ConfigDict, objective: objectives.Objective | None = None,
                 earlier_stages: tuple[str, ...] = ()) -> objectives.Objective:
    """The checks that need neither devices nor data, so a pipeline can run them for every stage
    before its first one starts; returns the config's objective."""
    objective = objective or objectives.for_config(cfg)
    config_lib.one_of(cfg, "model.kind", ("lm", "classifier"))
    config_lib.one_of(cfg, "model.attention", attention_lib.BACKENDS)
    lora.check(cfg.model.lora)
    require(cfg.model.kind == objective.model_kind,
            f"config key 'model.kind': task {cfg.task!r} needs "
            f"{'a classifier' if objective.model_kind == 'classifier' else 'an lm'}")
    sources.parse(cfg.model.source, "model.source", earlier_stages=earlier_stages)
    objective.validate(earlier_stages)
    config_lib.check_finite(cfg)
    for key in ("train.steps", "train.batch_size", "data.max_length", "optim.grad_accum",
                "train.checkpoint_every", "train.log_every", "train.eval_every", "train.keep_checkpoints"):
        require(config_lib.get(cfg, key) > 0, f"config key {key!r} must be positive")
    require(cfg.optim.lr > 0, "config key 'optim.lr' must be positive")
    require(cfg.train.batch_size % cfg.optim.grad_accum == 0,
            f"config key 'train.batch_size': {cfg.train.batch_size} is not divisible by "
            f"optim.grad_accum={cfg.optim.grad_accum}")
    return objective


def validate(cfg: ml_collections.ConfigDict, devices=None, objective: objectives.Objective | None = None,
             earlier_stages: tuple[str, ...] = ()) -> jax.sharding.Mesh:
    """Checks the config against itself, the devices and the data; returns the mesh."""
    check_config(cfg, objective, earlier_stages)
    mesh = mesh_lib.make_mesh(dict(cfg.mesh), devices)
    if cfg.model.remat != "none" and not cfg.model.scan_layers and mesh.devices.flat[0].platform == "cpu":
        log.warning("config key 'model.remat': %r saves no memory on CPU unless model.scan_layers=True "
                    "(see layers.REMAT_POLICIES)", cfg.model.remat)
    mesh_lib.check_batch(mesh, cfg.train.batch_size, cfg.optim.grad_accum)
    require(cfg.train.batch_size % jax.process_count() == 0,
            f"config key 'train.batch_size': {cfg.train.batch_size} is not divisible by "
            f"{jax.process_count()} processes")
    require(bool(cfg.data.dir), "config key 'data.dir' is empty")
    for split in (cfg.data.train_split, cfg.data.eval_split):
        if split:
            try:
                datasets.read_dataset(cfg.data.name, cfg.data.dir, split)
            except DataError as e:
                raise ConfigError(f"config key 'data': {e}") from None
    return mesh


def _host(metrics) -> dict[str, float]:
    return {k: float(v) for k, v in jax.device_get(metrics).items()}


# --- the loop ---------------------------------------------------------------------------------

# The config sections a workdir's checkpoints hold the state of: a rerun must not change them
# (`storage.prepare`). Compute dtype, remat, the attention kernel and the tokenizer's path don't
# change the state.
STATE_KEYS = ("task", "model")
STATE_KEYS_IGNORED = ("model.dtype", "model.remat", "model.attention", "model.tokenizer")


class Hook(Protocol):
    """A measurement of the live model as it trains (e.g. a student's generation quality on dev
    pairs, which the loss does not show): called every `every` steps and at the last one, its
    metrics logged under `name` in metrics.jsonl beside the train and eval rows."""

    name: str
    every: int

    def __call__(self, step: int, model, tokenizer) -> dict[str, float]: ...


class Preempted(SystemExit):
    """SIGTERM or a preemption notice: the last step is checkpointed; raised as Preempted(143),
    the exit status of a process stopped by SIGTERM (128 + 15)."""


def train(cfg: ml_collections.ConfigDict, workdir: str, devices=None, hooks: Sequence[Hook] = ()) -> dict[str, Any]:
    """Runs (or resumes) one training run on `devices` (default: all); returns the last train and
    eval metrics (and each hook's under its name)."""
    objective = objectives.for_config(cfg)
    mesh = validate(cfg, devices, objective)
    storage.prepare(workdir, cfg.to_json_best_effort(indent=2), state_keys=STATE_KEYS, ignore=STATE_KEYS_IGNORED,
                    write=jax.process_index() == 0)
    model, tokenizer = sources.build(cfg.model, mesh, seed=cfg.seed, kind=cfg.model.kind)
    with jax.set_mesh(mesh):  # adapters are born with their kernel's sharding
        model = lora.apply(model, cfg.model.lora, seed=cfg.seed)
    tcfg = objective.teacher_section()
    teacher = sources.build(tcfg, mesh, seed=cfg.seed, kind="lm")[0] if tcfg else None
    with jax.set_mesh(mesh):  # optimizer moments are born with their parameter's sharding
        optimizer = train_step_lib.optimizer_for(model, cfg.optim, cfg.train.steps)
    data = lambda split, shuffle: pipe.dataset(cfg.task, cfg.data.name, cfg.data.dir, split, tokenizer,  # noqa: E731
                                               max_length=cfg.data.max_length, topk=objective.topk,
                                               seed=cfg.seed, shuffle=shuffle)
    data_iter = pipe.train_iterator(data(cfg.data.train_split, True), cfg.train.batch_size)
    evals = (pipe.eval_batches(data(cfg.data.eval_split, False), cfg.train.batch_size,
                               cfg.train.eval_batches) if cfg.data.eval_split else [])
    if cfg.data.eval_split and not evals:
        log.warning("config key 'data.eval_split': %r holds %d examples per process, fewer than one batch of "
                    "train.batch_size=%d: this run has no eval metrics", cfg.data.eval_split,
                    len(data(cfg.data.eval_split, False)), cfg.train.batch_size)
    ckpt = Checkpointer(workdir, every=cfg.train.checkpoint_every, keep=cfg.train.keep_checkpoints)
    start = ckpt.restore_latest(model, optimizer, data_iter)
    if start:
        log.info("resumed from step %d", start)
    train_step, eval_step = train_step_lib.make_steps(cfg, objective)
    metrics_log = MetricsLog(workdir)
    if not start and cfg.model.get("probe_examples", 0):
        batches = pipe.eval_batches(data(cfg.data.train_split, True), cfg.train.batch_size,
                                    -(-cfg.model.probe_examples // cfg.train.batch_size))
        with jax.set_mesh(mesh):
            fitted = probe.init_head(model, batches, lambda b: pipe.to_global(b, mesh),
                                     lambda_hard=cfg.loss.lambda_hard, lambda_soft=cfg.loss.lambda_soft)
        metrics_log.write(0, "probe", fitted)
        if jax.process_index() == 0:
            print(f"[train] head fitted on frozen features of {fitted['probe_examples']} examples "
                  f"(train accuracy {fitted['probe_train_accuracy']:.2f})", flush=True)

    n_student = train_step_lib.param_count(model)
    fpt = train_step_lib.flops_per_token(model, cfg.data.max_length, training=True)
    if teacher is not None:
        fpt += train_step_lib.flops_per_token(teacher, cfg.data.max_length, training=False)
    peak = cfg.train.peak_flops_per_device or next(
        (v for k, v in train_step_lib.PEAK_FLOPS.items() if jax.devices()[0].device_kind.startswith(k)), 0.0)
    if jax.process_index() == 0:
        print(f"[train] task={cfg.task} params={n_student / 1e6:.2f}M mesh={dict(zip(mesh.axis_names, mesh.axis_sizes))} "
              f"steps {start}->{cfg.train.steps} flops/token={fpt:.3g}", flush=True)

    bar = tqdm(total=cfg.train.steps, initial=start, disable=jax.process_index() != 0,
               dynamic_ncols=True, file=sys.stdout, mininterval=1.0)
    last: dict[str, Any] = {}
    tokens_per_step = cfg.train.batch_size * cfg.data.max_length
    with contextlib.ExitStack() as closing, jax.set_mesh(mesh):
        for resource in (metrics_log, ckpt, bar):  # closed on any exit; pending (finite) saves finish
            closing.callback(resource.close)
        step = logged_at = start
        guard = FiniteGuard()
        tic = time.perf_counter()
        while step < cfg.train.steps:
            batch = pipe.to_global(next(data_iter), mesh)
            out = train_step(model, optimizer, batch, jnp.asarray(step, jnp.int32), teacher)
            step += 1
            guard.note(step, out)
            if step % cfg.train.log_every == 0 or step == cfg.train.steps:
                guard.check(ckpt.latest_step())  # before any NaN is logged or saved
                m = _host(out)  # waits for the step: the time below is real compute
                dt = (time.perf_counter() - tic) / (step - logged_at)
                tic, logged_at = time.perf_counter(), step
                m.update(step_time=dt, tokens_per_s=tokens_per_step / dt)
                if peak:
                    m["mfu"] = fpt * tokens_per_step / dt / (peak * jax.device_count())
                metrics_log.write(step, "train", m)
                last["train"] = m
                bar.set_postfix(loss=f"{m['loss']:.4f}", tok_s=f"{m['tokens_per_s']:.0f}",
                                **({"mfu": f"{m['mfu']:.1%}"} if peak else {}))
            bar.update(1)
            if evals and (step % cfg.train.eval_every == 0 or step == cfg.train.steps):
                last["eval"] = evaluate(eval_step, model, evals, mesh, teacher)
                metrics_log.write(step, "eval", last["eval"])
            for hook in hooks:
                if step % hook.every == 0 or step == cfg.train.steps:
                    last[hook.name] = hook(step, model, tokenizer)
                    metrics_log.write(step, hook.name, last[hook.name])
            if ckpt.due(step) or step == cfg.train.steps:
                guard.check(ckpt.latest_step(), step=step, weights=nnx.state(model))
            ckpt.save(step, model, optimizer, data_iter, force=step == cfg.train.steps)
            if ckpt.preempted(step):
                guard.check(ckpt.latest_step(), step=step, weights=nnx.state(model))
                ckpt.save(step, model, optimizer, data_iter, force=True)
                ckpt.wait()
                print(f"[train] preempted: saved step {step}, exiting", flush=True)
                break
    if step < cfg.train.steps:  # preempted: callers (pipeline, ablations) must not go on as if done
        raise Preempted(143)
    if cfg.train.export:
        export(model, tokenizer, os.path.join(storage.local(workdir), "export"))
        if jax.process_index() == 0:
            storage.upload(workdir, "export")
    return last


# --- chains -----------------------------------------------------------------------------------

def chain_configs(cfg: ml_collections.ConfigDict, workdir: str) -> list[tuple[str, ml_collections.ConfigDict, str]]:
    """(name, config, workdir) per stage of a chain; each stage is the config with its overrides."""
    out = []
    for i, stage in enumerate(cfg.chain):
        require("name" in stage, f"config key 'chain[{i}]': a stage needs a name")
        sub = ml_collections.ConfigDict(cfg.to_dict())
        with sub.unlocked():
            sub.chain = []
        config_lib.apply_overrides(sub, [f"{k}={v}" for k, v in dict(stage.get("overrides", {})).items()])
        out.append((stage["name"], sub, os.path.join(workdir, stage["name"])))
    return out


def run(cfg: ml_collections.ConfigDict, workdir: str, devices=None) -> dict[str, Any]:
    """One run, or a chain: every stage is validated first, then each runs once, in order
    (`lantern_jax.stages`: a finished stage is skipped on rerun). A "stage:<name>" source is that
    earlier stage's export. Returns the metrics of the runs trained by this call."""
    if not cfg.chain:
        return train(cfg, workdir, devices)
    chain = chain_configs(cfg, workdir)
    for i, (_, sub, _) in enumerate(chain):
        validate(sub, devices, earlier_stages=tuple(n for n, _, _ in chain[:i]))
    results = {}
    for name, sub, stage_dir in chain:
        for key in ("model.source", "teacher.source"):
            kind, _, ref = config_lib.get(sub, key).partition(":")
            if kind == "stage":
                export_dir = os.path.join(storage.local(os.path.join(workdir, ref)), "export")
                config_lib.apply_overrides(sub, [f"{key}=hf:{export_dir}"])
        outcome = stages.run_once(f"[train] stage {name}", stage_dir,
                                  lambda sub=sub, stage_dir=stage_dir: train(sub, stage_dir, devices))
        if not outcome.skipped:
            results[name] = outcome.summary
    return results


def evaluate(eval_step, model, batches, mesh, teacher=None) -> dict[str, float]:
    """Means over eval batches, weighted by their valid counts (tokens or examples)."""
    totals: dict[str, float] = {}
    for b in batches:
        m = _host(eval_step(model, pipe.to_global(b, mesh), teacher))
        for k, v in m.items():
            totals[k] = totals.get(k, 0.0) + (v if k == "valid" else v * m["valid"])
    n = totals.pop("valid", 0.0) or 1.0
    return {k: v / n for k, v in totals.items()}


def export(model, tokenizer, path: str) -> None:
    """The trained model as an HF checkpoint (+ tokenizer), for serving and the next stage."""
    hf.save_hf(lora.merged(model), path, tokenizer=tokenizer if jax.process_index() == 0 else None)


def _join_job(args: argparse.Namespace) -> None:
    if args.distributed:
        jax.distributed.initialize(args.coordinator_address, args.num_processes, args.process_id)


def _arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--distributed", action="store_true",
                    help="jax.distributed.initialize(): auto-detected on TPU VMs / SLURM / MPI, "
                         "else give the three flags below (GPU nodes, localhost tests)")
    ap.add_argument("--coordinator_address", default=None, help="host:port of process 0")
    ap.add_argument("--num_processes", type=int, default=None)
    ap.add_argument("--process_id", type=int, default=None)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("absl", "jax._src", "orbax", "tensorflow_datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return cli.main(lambda cfg, workdir, args: run(cfg, workdir), argv, description="lantern_jax training",
                    arguments=_arguments, before=_join_job)


if __name__ == "__main__":
    sys.exit(main())
