"""LoRA through qwix: rank-r adapters beside the backbone's projections; only they are trained.

    --config.model.lora.rank=16 --config.model.lora.alpha=32 --config.model.lora.targets="('q','v')"

qwix (the library Google's tunix trains LoRA with) intercepts the matmuls of an NNX module's call:
for each weight whose module path matches its rule it adds (x·A)·B·alpha/rank, A [in, r] and B
[r, out] held by that module as `nnx.LoRAParam`s `kernel_lora_a` / `kernel_lora_b`. qwix would
create them on a first call of the model; that call cannot create parameters for layers stacked
under `lax.scan` (the full-size configs scan them), so this module creates them itself in qwix's
layout, with a leading layer axis where the kernel has one, and lets qwix route the computation
(`skip_nnx_init`). A starts He-uniform and B at zero (qwix's defaults): the adapted model starts
as the base model. Adapters are float32 whatever the frozen base is stored in; the layer casts
its output back to the compute dtype.

The optimizer, gradients and checkpoints follow `trainable(model)`: the adapters only.
`merged(model)` folds them into the kernels (W + alpha/r·A·B) for `save_hf`, which then writes a
plain checkpoint transformers loads.
"""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from lantern_jax import mesh as mesh_lib
from lantern_jax.config import require
from lantern_jax.models import layers as L

TARGETS = ("q", "k", "v", "o", "gate", "up", "down")  # attention and MLP projections


def enabled(lcfg: ml_collections.ConfigDict | None) -> bool:
    return bool(lcfg) and lcfg.rank > 0


def trainable(model: nnx.Module):
    """The variables an optimizer updates: the adapters when there are any, else every parameter."""
    return nnx.LoRAParam if jax.tree.leaves(nnx.state(model, nnx.LoRAParam)) else nnx.Param


def _backbone(model):
    """(holder, attribute) of the module qwix wraps: the transformer the objectives call."""
    for name in ("model", "backbone"):  # DecoderLM.model, Classifier.backbone
        if hasattr(model, name):
            return model, name
    return None, None


def check(lcfg: ml_collections.ConfigDict) -> None:
    """Raises ConfigError naming the key of a bad LoRA section."""
    require(lcfg.rank >= 0, f"config key 'model.lora.rank': {lcfg.rank} must be >= 0")
    if lcfg.rank:
        require(lcfg.alpha > 0, f"config key 'model.lora.alpha': {lcfg.alpha} must be positive")
        require(bool(lcfg.targets) and set(lcfg.targets) <= set(TARGETS),
                f"config key 'model.lora.targets': {list(lcfg.targets)} must be a non-empty subset of {list(TARGETS)}")


def apply(model, lcfg: ml_collections.ConfigDict, *, seed: int = 0):
    """`model` with adapters on its backbone's `lcfg.targets` projections (a no-op at rank 0).
    Under `jax.set_mesh` the adapters are born sharded like their kernels."""
    if not enabled(lcfg):
        return model
    check(lcfg)
    import qwix  # noqa: PLC0415  (qwix pulls in its quantization stack: only LoRA runs pay for it)

    holder, name = _backbone(model)
    root = getattr(holder, name) if holder is not None else model
    rngs = nnx.Rngs(seed)
    targets = tuple(lcfg.targets)
    for path, module in nnx.iter_modules(root):
        if isinstance(module, L.Dense) and path and path[-1] in targets:
            _add_adapters(module, int(lcfg.rank), rngs)
    provider = qwix.LoraProvider(module_path=rf"(.*/)?({'|'.join(map(re.escape, targets))})",
                                 rank=int(lcfg.rank), alpha=float(lcfg.alpha))
    wrapped = qwix.apply_lora_to_model(root, provider, skip_nnx_init=True, rngs=rngs)
    wrapped.lora_scale = float(lcfg.alpha) / int(lcfg.rank)  # static: `merged` folds with it
    if holder is None:
        return wrapped
    setattr(holder, name, wrapped)
    return model


def _add_adapters(dense: L.Dense, rank: int, rngs: nnx.Rngs) -> None:
    kernel = dense.kernel
    *stack, d_in, d_out = kernel.shape  # stack: the layer axis of scanned blocks
    names = tuple(kernel.get_metadata().get("out_sharding") or (None,) * kernel.ndim)
    init_a = jax.nn.initializers.he_uniform(batch_axis=tuple(range(len(stack))))
    for attr, shape, init, axes in (
            ("kernel_lora_a", (*stack, d_in, rank), init_a, (*names[:-1], None)),
            ("kernel_lora_b", (*stack, rank, d_out), jax.nn.initializers.zeros, (*names[:-2], None, names[-1]))):
        active = not jax.sharding.get_abstract_mesh().empty
        setattr(dense, attr, nnx.LoRAParam(init(rngs.params(), shape, jnp.float32),
                                           out_sharding=mesh_lib.fit_names(axes, shape),
                                           sharding_rules=mesh_lib.RULES, eager_sharding=active))


def merged(model):
    """A copy of `model` with each adapter folded into its kernel, W + alpha/rank·A·B (in fp32,
    then the kernel's dtype), and no adapters: what `save_hf` exports. `model` itself is unchanged."""
    if trainable(model) is not nnx.LoRAParam:
        return model
    model = nnx.clone(model)
    holder, name = _backbone(model)
    root = getattr(holder, name) if holder is not None else model
    scale = root.lora_scale
    for _, module in nnx.iter_modules(root):
        if isinstance(module, L.Dense) and hasattr(module, "kernel_lora_a"):
            a, b = module.kernel_lora_a[...], module.kernel_lora_b[...]
            w = module.kernel[...]
            delta = scale * jnp.einsum("...ir,...ro->...io", a, b)
            module.kernel[...] = (w.astype(jnp.float32) + delta).astype(w.dtype)
            del module.kernel_lora_a, module.kernel_lora_b
    plain = root.__class__._unquantized_type  # noqa: SLF001  (qwix's record of the class it wrapped)
    root.__class__ = plain
    return model
