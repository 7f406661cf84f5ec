"""Does a training config fit a hardware slice? Per-device bytes from abstract shapes, on CPU.

    python -m lantern_jax.memory_fit --config configs/explainer_kd.py:qwen0.5b@v5p-32
    python -m lantern_jax.memory_fit --config configs/teacher_sft.py:qwen7b --target v5e-16

API: `fit_report(cfg, target) -> Report`, `check_fits(cfg, target)` (raises `MemoryFitError`),
`TARGETS` (slices), `ARCHITECTURES` (the full-size models' HF configs: no checkpoint needed).

Method. The model, its AdamW state and the online teacher are built with `nnx.eval_shape` under a
`jax.sharding.AbstractMesh` of the target's shape: nothing is allocated, and every parameter gets
the sharding the real run gives it (same `mesh.RULES`, same "replicate what the axis doesn't
divide"). Their per-device bytes are exact: each array's shard shape (ceil-divided). Activations
are not arrays of the model, so they come from the formula below over the same shapes, for the
attention and LM head the step uses on the target (`step_backends`: splash on TPU, cuDNN on GPU,
the vocabulary-blocked head on both). The formula is calibrated against the TPU compiler: for TPU
slices, `lantern_jax.aot` compiles the real step on this CPU (libtpu, no TPU) and the compiler's
own figure (the peak of live bytes, `peak_memory_in_bytes`: what its RESOURCE_EXHAUSTED check
counts) is what the estimate is held to, within 10 % on every full-size config (docs/benchmarks.md,
`make test-aot`). Where libtpu is installed, `python -m lantern_jax.aot` checks a TPU slice against
the compiled step itself.

Peak per device = persistent + the largest transient phase (b = rows per device per micro-batch,
T = max_length, D hidden, L layers, F MLP width, V vocabulary, c = bytes of the compute dtype).
  persistent: params, AdamW mu + nu (param_dtype; LoRA: the adapters' only), and an online
    teacher's params (stored in teacher.dtype: `ExplainerKD.teacher_section`).
  gradients of what is trained (param_dtype; x2 with gradient accumulation: running sum + one
    micro-batch's) are live in the backward phases.
  saved activations: the layer scan keeps each layer's input, (L + 2)·b·T·D·c (+ the embedding
    output and final hidden state); remat "dots_no_batch" also keeps every weight matmul's output,
    b·T·(q + k + v + o + MLP)·c per layer; "dots" adds one attention array; "none" is estimated as
    the layer working set below, per layer.
  layer backward: saved + gradients + one layer recomputed and differentiated: matmul outputs and
    their gradients (with "dots" remat the outputs are saved: their gradients only); attention: 3
    fp32 [b, heads, T, T] arrays on the xla path, or the kernels' fp32 RoPE'd queries and keys and
    their output; the layer's weights all-gathered plus their gradient (LoRA: no gradient); every
    layer's weight shards cast to the compute dtype (XLA hoists the cast out of the scan).
  loss, blocked head (`fused_loss`): saved + 6 fp32 [b, chunk, block] arrays, the hidden states'
    fp32 gradient, the unembedding gathered in the compute dtype and its fp32 gradient; chunked
    head (`losses.fused_*`, n outputs: CE, + KD): (2 + 3n) fp32 [b, chunk, V] arrays, n·b·T·D·c
    and an unsharded n·D·V fp32 gradient buffers, the unembedding in param_dtype.
  teacher forward: saved + the teacher's layer forward (matmul outputs, attention, gathered
    weights) and its final hidden states (blocked head) or its logits (chunked head).
  embedding backward: gradients + the embedding table's gradient, a scatter-add into a whole
    fp32 table before its reduce-scatter.
  optimizer update: gradients + the largest leaf (XLA updates in place, leaf by leaf).
Dimensions a tensor axis shards (heads, MLP, vocabulary) are divided by it. Only HEADROOM of each
chip's memory is planned for: the rest is for the runtime and program, collective buffers,
fragmentation and what this estimate misses.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx
from jax.sharding import AbstractMesh, AxisType

from lantern_jax import config as config_lib
from lantern_jax import mesh as mesh_lib
from lantern_jax import lora, train_step
from lantern_jax.distill import fused_loss, objectives
from lantern_jax.models import sources
from lantern_jax.models.decoder import DecoderConfig
from lantern_jax.models.kinds import build_model

GiB = 1024 ** 3
HEADROOM = 0.9  # fraction of a chip's memory a step may plan to use


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    devices: int
    bytes_per_device: int
    note: str = ""
    topology: str = ""  # TPU slices: the topology libtpu compiles for (lantern_jax.aot)


# v5e-N: N chips; v5p-N counts TensorCores (2 per chip), so v5p-32 is 16 chips; H100 SXM 80GB
# exposes 81,559 MiB.
TARGETS = {t.name: t for t in (
    Target("v5e-4", 4, 16 * GiB, "TPU v5e, 2x2, 16 GiB HBM2 per chip", "v5e:2x2"),
    Target("v5e-8", 8, 16 * GiB, "TPU v5e, 2x4, 16 GiB HBM2 per chip", "v5e:2x4"),
    Target("v5e-16", 16, 16 * GiB, "TPU v5e, 4x4, 16 GiB HBM2 per chip", "v5e:4x4"),
    Target("v5p-32", 16, 95 * GiB, "TPU v5p, 2x2x4 chips (32 TensorCores), 95 GiB HBM2e per chip", "v5p:2x2x4"),
    Target("8xH100", 8, 81_559 * 1024 ** 2, "one node of 8 H100 SXM 80GB (set XLA_PYTHON_CLIENT_MEM_FRACTION=.95)"),
)}

# Full-size architectures as their HF config.json gives them (the fields our config_from_hf reads),
# keyed by the checkpoint folder's name: `hf:/any/path/<name>` resolves here when the folder is absent.
_QWEN2 = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_act": "silu",
          "bos_token_id": 151643, "eos_token_id": 151645, "initializer_range": 0.02,
          "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 1_000_000.0,
          "use_sliding_window": False}
ARCHITECTURES = {
    "Qwen2.5-7B-Instruct": {**_QWEN2, "hidden_size": 3584, "intermediate_size": 18944,
                            "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
                            "vocab_size": 152064, "tie_word_embeddings": False},
    "Qwen2.5-1.5B-Instruct": {**_QWEN2, "hidden_size": 1536, "intermediate_size": 8960,
                              "num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2,
                              "vocab_size": 151936, "tie_word_embeddings": True},
    "Qwen2.5-0.5B-Instruct": {**_QWEN2, "hidden_size": 896, "intermediate_size": 4864,
                              "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
                              "vocab_size": 151936, "tie_word_embeddings": True},
    "ModernBERT-large": {"architectures": ["ModernBertForMaskedLM"], "model_type": "modernbert",
                         "hidden_size": 1024, "intermediate_size": 2624, "num_hidden_layers": 28,
                         "num_attention_heads": 16, "vocab_size": 50368, "max_position_embeddings": 8192,
                         "hidden_activation": "gelu", "norm_eps": 1e-5, "norm_bias": False,
                         "attention_bias": False, "mlp_bias": False, "local_attention": 128,
                         "global_attn_every_n_layers": 3, "global_rope_theta": 160_000.0,
                         "local_rope_theta": 10_000.0, "pad_token_id": 50283, "bos_token_id": 50281,
                         "eos_token_id": 50282, "classifier_pooling": "mean", "initializer_range": 0.02},
}


class MemoryFitError(ValueError):
    """A config whose per-device peak exceeds the target's planned memory (or that can't be sized)."""


@dataclasses.dataclass
class Report:
    config: str
    target: Target
    mesh: dict[str, int]
    rows: int  # rows per device per micro-batch
    length: int
    persistent: dict[str, int]  # term -> bytes per device, live for the whole step
    phases: dict[str, dict[str, int]]  # transient phase -> its terms (bytes per device)

    @property
    def peak_phase(self) -> str:
        return max(self.phases, key=lambda p: sum(self.phases[p].values()))

    @property
    def needed(self) -> int:
        return sum(self.persistent.values()) + sum(self.phases[self.peak_phase].values())

    @property
    def available(self) -> int:
        return int(HEADROOM * self.target.bytes_per_device)

    @property
    def fits(self) -> bool:
        return self.needed <= self.available

    def terms(self) -> dict[str, int]:
        """Every term of the peak."""
        return {**self.persistent, **self.phases[self.peak_phase]}

    def biggest(self) -> tuple[str, int]:
        return max(self.terms().items(), key=lambda kv: kv[1])

    def table(self) -> str:
        t = self.target
        lines = [f"{self.config} on {t.name} ({t.devices} devices x {t.bytes_per_device / GiB:.1f} GiB; "
                 f"mesh {' '.join(f'{k}={v}' for k, v in self.mesh.items())}; "
                 f"{self.rows} rows x {self.length} tokens per device per micro-batch)",
                 f"  [{t.note}]" if t.note else "", f"  {'':<62}{'GiB/dev':>8}"]
        row = lambda name, b: lines.append(f"  {name:<62}{b / GiB:>8.2f}")  # noqa: E731
        for k, v in self.persistent.items():
            row(k, v)
        for phase, terms in self.phases.items():
            peak = "  <- peak" if phase == self.peak_phase else ""
            row(f"{phase} (transient){peak}", sum(terms.values()))
            for k, v in terms.items():
                row("    " + k, v)
        lines.append(f"  {'peak':<62}{self.needed / GiB:>8.2f}  of {self.available / GiB:.2f} planned "
                     f"({HEADROOM:.0%} of {t.bytes_per_device / GiB:.1f}): "
                     f"{'fits' if self.fits else 'DOES NOT FIT'}")
        return "\n".join(line for line in lines if line)


# --- models, abstractly ------------------------------------------------------------------------

def architecture(source: str) -> dict:
    """The HF config of `hf:<dir>`: its config.json when the folder exists, else ARCHITECTURES."""
    kind, _, path = source.partition(":")
    if kind != "hf":
        raise MemoryFitError(f"model source {source!r}: memory fit needs hf:<dir> (a checkpoint folder "
                             f"or one of {sorted(ARCHITECTURES)})")
    config_json = os.path.join(path, "config.json")
    if os.path.isfile(config_json):
        with open(config_json) as f:
            return json.load(f)
    name = os.path.basename(os.path.normpath(path))
    if name not in ARCHITECTURES:
        raise MemoryFitError(f"model source {source!r}: no {config_json} and {name!r} is not one of "
                             f"{sorted(ARCHITECTURES)}")
    return ARCHITECTURES[name]


def model_config(mcfg: ml_collections.ConfigDict, kind: str):
    """(model kind, our config) of a config's model section, as `sources.build` would construct it
    (random init: shapes only)."""
    if mcfg.source == "init":
        return sources.init_config(mcfg, kind)
    return sources.section_config(mcfg, kind, architecture(mcfg.source))


def mesh_sizes(mesh_cfg, devices: int) -> dict[str, int]:
    """The config's mesh (one axis may be -1) on `devices` devices."""
    dims = {a: int(mesh_cfg.get(a, 1)) for a in mesh_lib.MESH_AXES}
    known = math.prod(d for d in dims.values() if d != -1)
    for a, d in dims.items():
        if d == -1:
            dims[a] = devices // known
    if math.prod(dims.values()) != devices:
        raise mesh_lib.MeshError(f"mesh {dict(mesh_cfg)} does not fit {devices} devices")
    return dims


def shard_bytes(x, mesh: AbstractMesh) -> int:
    """Bytes one device holds of an abstract array: its shard shape, ceil-divided per sharded dim."""
    spec = tuple(getattr(x.sharding, "spec", ())) if getattr(x, "sharding", None) is not None else ()
    sizes = dict(zip(mesh.axis_names, mesh.axis_sizes))
    shape = []
    for i, dim in enumerate(x.shape):
        axes = spec[i] if i < len(spec) else None
        axes = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
        shape.append(-(-dim // math.prod(sizes[a] for a in axes)))
    return math.prod(shape) * jnp.dtype(x.dtype).itemsize


def tree_bytes(tree, mesh: AbstractMesh) -> int:
    return sum(shard_bytes(x, mesh) for x in jax.tree.leaves(tree))


def abstract_models(cfg: ml_collections.ConfigDict, mesh: AbstractMesh | jax.sharding.Mesh):
    """(model, optimizer, teacher or None), abstract and sharded as the real run builds them; on a
    concrete mesh (e.g. of abstract TPU devices) their shardings can be compiled for."""
    kind, mcfg = model_config(cfg.model, cfg.model.kind)
    tsec = objectives.for_config(cfg).teacher_section()
    tkind, tcfg = model_config(tsec, "lm") if tsec is not None else (None, None)

    def build():
        model = lora.apply(build_model(kind, mcfg, seed=cfg.seed), cfg.model.lora, seed=cfg.seed)
        teacher = build_model(tkind, tcfg, seed=cfg.seed) if tcfg is not None else None
        return model, train_step.optimizer_for(model, cfg.optim, cfg.train.steps), teacher

    concrete = isinstance(mesh, jax.sharding.Mesh)
    with jax.set_mesh(mesh) if concrete else jax.sharding.use_abstract_mesh(mesh):
        return nnx.eval_shape(build)


# --- activations and other transients ---------------------------------------------------------

def _shape(model) -> dict:
    """The dimensions the activation formula needs, from our model config."""
    c = getattr(model.cfg, "backbone", model.cfg)
    decoder = isinstance(c, DecoderConfig)
    return dict(D=c.hidden_size, L=c.num_layers, N=c.num_heads, K=c.num_kv_heads if decoder else c.num_heads,
                H=c.dims_per_head if decoder else c.head_dim, F=c.intermediate_size,
                gated=decoder or c.family == "modernbert", V=c.vocab_size, c=jnp.dtype(c.dtype).itemsize,
                remat=c.remat)


def _split(n: int, tp: int) -> int:
    """Per-device size of a tensor-sharded dimension (replicated when the axis doesn't divide it)."""
    return n // tp if n % tp == 0 else n


def _layer_terms(s: dict, b: int, T: int, tp: int) -> tuple[int, int]:
    """(one layer's weight-matmul outputs, one fp32 [b, heads, T, T] attention array), bytes per device."""
    N, K, F = _split(s["N"], tp), _split(s["K"], tp), _split(s["F"], tp)
    matmuls = N * s["H"] + 2 * K * s["H"] + 2 * s["D"] + (2 if s["gated"] else 1) * F
    return b * T * matmuls * s["c"], b * N * T * T * 4


def _layer_weights(model, s: dict, tp: int) -> int:
    """One layer's weights gathered over fsdp (still split over tensor), in the compute dtype: the
    cast to it runs on the shards, before the all-gather."""
    blocks = (getattr(model, "model", None) or getattr(model, "backbone", None) or model).layers
    return sum(x.size for x in jax.tree.leaves(nnx.state(blocks, nnx.Param))) // blocks.num // tp * s["c"]


def step_backends(cfg, target: Target) -> tuple[str, str]:
    """(attention backend, LM head) the step compiles to on the target: `auto` is the platform's
    kernel (models/attention.py, distill/fused_loss.py)."""
    platform = "tpu" if target.topology else "gpu"
    attention = cfg.model.attention
    if attention == "auto":
        attention = "splash" if platform == "tpu" else "cudnn" if jnp.dtype(cfg.model.dtype).itemsize == 2 else "xla"
    head = cfg.loss.get("lm_head", "chunked")
    return attention, ("blocked" if head == "auto" else head)


def _attention_terms(s: dict, b: int, T: int, tp: int, backend: str) -> dict[str, int]:
    """One layer's attention memory beyond its projections: the xla path's fp32 [T, T] arrays, or
    a kernel's fp32 queries and keys (RoPE runs in fp32) with its output."""
    N, K, H = _split(s["N"], tp), _split(s["K"], tp), s["H"]
    if backend == "xla":
        return {"attention (3 x fp32 [b, heads, T, T])": 3 * b * N * T * T * 4}
    return {"attention kernel inputs and outputs (fp32 RoPE, [b, T, heads, H])": b * T * H * (3 * N + 2 * K) * 4}


def transient_phases(cfg, model, teacher, mesh: AbstractMesh, rows: int, grads: dict[str, int],
                     largest_leaf: int, target: Target | None = None) -> dict[str, dict[str, int]]:
    """{phase: {term: bytes per device}}; see the module docstring."""
    sizes = dict(zip(mesh.axis_names, mesh.axis_sizes))
    tp, T, b = sizes["tensor"], cfg.data.max_length, rows
    attention, head = step_backends(cfg, target) if target is not None else ("xla", "chunked")
    s = _shape(model)
    matmuls, scores = _layer_terms(s, b, T, tp)
    residual = b * T * s["D"] * s["c"]
    score_arrays = scores if attention == "xla" else 0
    per_layer = {"full": 0, "dots_no_batch": matmuls, "dots": matmuls + score_arrays,
                 "none": 2 * matmuls + 3 * score_arrays}[s["remat"]]
    saved = {f"saved activations (remat {s['remat']!r})": (s["L"] + 2) * residual + s["L"] * per_layer}
    pbytes = jnp.dtype(cfg.model.param_dtype).itemsize
    trained = lora.trainable(model) is nnx.Param  # LoRA: no gradient for the frozen weights
    recomputed = s["remat"] in ("full", "none")  # else the matmul outputs are among the saved
    layer = {**saved, **grads,
             ("matmul outputs + their gradients" if recomputed else "matmul output gradients"):
                 (2 if recomputed else 1) * matmuls,
             **_attention_terms(s, b, T, tp, attention),
             ("gathered layer weights + their gradient" if trained else "gathered layer weights"):
                 (2 if trained else 1) * _layer_weights(model, s, tp)}
    if pbytes != s["c"]:  # XLA casts every layer's shards to the compute dtype once, outside the scan
        layer["all layers' weight shards in the compute dtype"] = (
            sum(shard_bytes(x, mesh) for x in jax.tree.leaves(nnx.state(_layers(model), nnx.Param))) * s["c"] // pbytes)
    phases = {"layer backward": layer}
    if cfg.model.kind == "lm":
        V = _split(s["V"], tp)
        if head == "blocked":
            block = fused_loss.BLOCK
            chunk = min(cfg.loss.get("chunk_size", 512), T)
            loss = {**saved, "vocabulary blocks (6 x fp32 [b, chunk, block])": 6 * b * chunk * min(block, V) * 4,
                    "hidden-state gradient (fp32)": b * T * s["D"] * 4,
                    "unembedding gathered (compute dtype)": s["D"] * V * s["c"]}
            if trained:  # XLA gathers it over tensor and keeps the model dimension split over fsdp
                loss["unembedding gradient (fp32, split over fsdp)"] = s["D"] * s["V"] * 4 // sizes["fsdp"]
        else:
            n = 2 if cfg.task == "explainer_kd" else 1  # outputs of the chunked loss: KD and CE, or CE
            chunk = min(cfg.loss.chunk_size if cfg.task == "explainer_kd" else 64, T)  # objectives' chunks
            loss = {**saved,
                    f"logit chunks ({2 + 3 * n} x fp32 [b, chunk, V])": (2 + 3 * n) * b * chunk * V * 4,
                    "hidden-state gradient buffers": n * residual,
                    "unembedding gradient buffers (fp32, unsharded)": n * s["D"] * V * 4 if trained else 0,
                    "unembedding gathered (param dtype)": s["D"] * V * pbytes}
            if sizes["fsdp"] > 1 and trained:  # sharded, the gradient is a copy that can live on into the backward
                layer["unembedding gradient buffers (until reduce-scattered)"] = n * s["D"] * V * 4
        if teacher is not None:
            t = _shape(teacher)
            t_matmuls, t_scores = _layer_terms(t, b, T, tp)
            t_out = (("hidden states", b * T * t["D"] * t["c"]) if head == "blocked" else
                     ("logits", b * T * _split(t["V"], tp) * t["c"]))
            loss["online teacher " + t_out[0]] = t_out[1]
            phases["teacher forward"] = {
                **saved, "matmul outputs": t_matmuls, **_attention_terms(t, b, T, tp, attention),
                "gathered layer weights": _layer_weights(teacher, t, tp),
                "unembedding gathered": t["D"] * _split(t["V"], tp) * t["c"] if head != "blocked" else 0,
                t_out[0]: t_out[1]}
        phases["loss"] = loss
    if trained:  # the embedding lookup's gradient is a scatter-add into a zero table, whole before its reduce-scatter
        phases["embedding backward"] = {**grads, "embedding table gradient (fp32)": _split(s["V"], tp) * s["D"] * 4}
    phases["optimizer update"] = {**grads, "largest updated leaf": largest_leaf}
    return {p: {k: v for k, v in terms.items() if v} for p, terms in phases.items()}


def _layers(model):
    return (getattr(model, "model", None) or getattr(model, "backbone", None) or model).layers


# --- the check ---------------------------------------------------------------------------------

def fit_report(cfg: ml_collections.ConfigDict, target: Target | str, name: str = "config") -> Report:
    """Per-device memory of one training step of `cfg` on `target` (a Target or a TARGETS name)."""
    if isinstance(target, str):
        if target not in TARGETS:
            raise MemoryFitError(f"unknown target {target!r}; targets: {sorted(TARGETS)}")
        target = TARGETS[target]
    dims = mesh_sizes(cfg.mesh, target.devices)
    mesh = AbstractMesh(tuple(dims.values()), tuple(dims), axis_types=(AxisType.Auto,) * len(dims))
    micro = cfg.train.batch_size // cfg.optim.grad_accum
    mesh_lib.check_batch(mesh, cfg.train.batch_size, cfg.optim.grad_accum)
    rows = micro // mesh_lib.data_parallel_size(mesh)
    model, optimizer, teacher = abstract_models(cfg, mesh)
    param_leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
    params = sum(shard_bytes(x, mesh) for x in param_leaves)
    pdt = cfg.model.param_dtype
    persistent = {f"params ({pdt})": params,
                  "AdamW mu + nu": tree_bytes(nnx.state(optimizer), mesh)}  # (+ step counters)
    if teacher is not None:
        persistent[f"online teacher params ({pdt}, as train.py stores it)"] = tree_bytes(
            nnx.state(teacher, nnx.Param), mesh)
    accum = cfg.optim.grad_accum > 1
    trained = jax.tree.leaves(nnx.state(model, lora.trainable(model)))  # LoRA: the adapters
    trained_bytes = sum(shard_bytes(x, mesh) for x in trained)
    grads = {f"gradients ({'adapters' if len(trained) < len(param_leaves) else pdt}"
             f"{', x2: running sum + micro-batch' if accum else ''})": trained_bytes * (2 if accum else 1)}
    largest = max(shard_bytes(x, mesh) for x in trained)
    phases = transient_phases(cfg, model, teacher, mesh, rows, grads, largest, target)
    return Report(name, target, dims, rows, cfg.data.max_length, persistent, phases)


def check_fits(cfg: ml_collections.ConfigDict, target: Target | str, name: str = "config") -> Report:
    """`fit_report`, raising MemoryFitError when the peak exceeds the planned memory."""
    report = fit_report(cfg, target, name)
    if not report.fits:
        term, size = report.biggest()
        raise MemoryFitError(
            f"{name} does not fit {report.target.name}: needs {report.needed / GiB:.2f} GiB per device, "
            f"{report.available / GiB:.2f} GiB available ({HEADROOM:.0%} of "
            f"{report.target.bytes_per_device / GiB:.1f} GiB); biggest term: {term} = {size / GiB:.2f} GiB "
            f"(peak in {report.peak_phase}; mesh {report.mesh}; {report.rows} rows x {report.length} "
            f"tokens per device per micro-batch)")
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="per-device memory of a training config on a slice")
    ap.add_argument("--config", required=True,
                    help="configs/x.py:variant[@slice] (the suffix picks the variant's layout for that slice); "
                         "--config.a.b=v overrides follow")
    ap.add_argument("--target", default=None, help=f"one of {', '.join(TARGETS)} (default: the @slice suffix)")
    args, rest = ap.parse_known_args(argv)
    bad = [r for r in rest if not r.startswith("--config.")]
    if bad:
        print(f"error: unknown arguments {bad}", file=sys.stderr)
        return 2
    suffix = args.config.rpartition(":")[2].rpartition("@")[2] if "@" in args.config else None
    target = args.target or suffix
    if target is None:
        print(f"error: give --target ({', '.join(TARGETS)}) or a config variant ending in @target",
              file=sys.stderr)
        return 2
    try:
        cfg = config_lib.load_config(args.config, rest)
        report = fit_report(cfg, target, args.config)
    except ValueError as e:  # ConfigError, MeshError, MemoryFitError, a config file's unknown variant
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.table())
    return 0 if report.fits else 1


if __name__ == "__main__":
    sys.exit(main())
