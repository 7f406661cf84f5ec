"""LoRA through qwix (lantern_jax/lora.py): adapters only in the optimizer and the checkpoints, the
base frozen, and a merged export that transformers loads and that computes what the adapters do."""
import dataclasses

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from lantern_jax import config as config_lib
from lantern_jax import lora, train, train_step
from lantern_jax.checkpoint import Checkpointer
from lantern_jax.config import ConfigError
from lantern_jax.models import hf
from lantern_jax.models.decoder import DecoderConfig

RNG = np.random.default_rng(0)
CFG = DecoderConfig(vocab_size=64, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=48,
                    family="qwen2", qkv_bias=True, scan_layers=True)
LORA = ml_collections.ConfigDict({"rank": 4, "alpha": 8.0, "targets": ("q", "k", "v", "o", "gate", "up", "down")})


def adapted(scan=True, targets=LORA.targets, seed=0):
    model = hf.build_model("lm", dataclasses.replace(CFG, scan_layers=scan), seed=seed)
    return lora.apply(model, ml_collections.ConfigDict({**LORA.to_dict(), "targets": targets}), seed=1)


def perturb(model):
    """Non-zero B (it starts at zero, the base model's output)."""
    for _, module in nnx.iter_modules(model):
        if hasattr(module, "kernel_lora_b"):
            module.kernel_lora_b[...] = jnp.asarray(RNG.standard_normal(module.kernel_lora_b.shape) * 0.1, jnp.float32)
    return model


@pytest.mark.parametrize("scan", [True, False])
def test_adapters_sit_beside_the_targeted_kernels_and_start_as_the_base(scan):
    ids = jnp.asarray(RNG.integers(0, 64, (2, 7)), jnp.int32)
    base = hf.build_model("lm", dataclasses.replace(CFG, scan_layers=scan), seed=0)
    model = adapted(scan, targets=("q", "down"))
    shapes = {jax.tree_util.keystr(p): x.shape for p, x in jax.tree_util.tree_leaves_with_path(
        nnx.state(model, nnx.LoRAParam))}
    stack = (2,) if scan else ()
    expected = {("q", "a"): (*stack, 32, 4), ("q", "b"): (*stack, 4, 32),
                ("down", "a"): (*stack, 48, 4), ("down", "b"): (*stack, 4, 32)}
    assert len(shapes) == 4 * (1 if scan else 2)
    for path, shape in shapes.items():
        (layer, ab), = [(k, p) for (k, p) in expected if f"'{k}'" in path and f"lora_{p}" in path]
        assert shape == expected[(layer, ab)], path
    np.testing.assert_array_equal(model(ids), base(ids))
    assert lora.trainable(model) is nnx.LoRAParam and lora.trainable(base) is nnx.Param


def test_only_adapters_train_and_the_export_merges_them(tmp_path):
    """Two steps of the real jitted train step: the base is bit-identical, the adapters moved, the
    optimizer holds adapter state only; the merged export loads in transformers with no missing
    keys and gives the adapted model's logits."""
    torch = pytest.importorskip("torch")
    import transformers

    cfg = config_lib.train_config("teacher_sft")
    cfg.optim.update(lr=1e-2, warmup_steps=1)
    model = adapted()
    base_before = jax.tree.map(np.asarray, nnx.state(model, nnx.Not(nnx.LoRAParam)))
    adapters_before = jax.tree.map(np.asarray, nnx.state(model, nnx.LoRAParam))
    optimizer = train_step.optimizer_for(model, cfg.optim, 10)
    assert optimizer.wrt is nnx.LoRAParam
    moments = [x for x in jax.tree.leaves(nnx.state(optimizer)) if x.ndim]  # AdamW mu + nu (+ scalar counts)
    assert sum(x.size for x in moments) == 2 * sum(x.size for x in jax.tree.leaves(adapters_before))
    ids = jnp.asarray(RNG.integers(0, 64, (4, 9)), jnp.int32)
    batch = {"input_ids": ids, "attention_mask": jnp.ones_like(ids), "labels": jnp.roll(ids, -1, 1),
             "loss_mask": jnp.ones(ids.shape, jnp.float32)}
    step_fn, _ = train_step.make_steps(cfg)
    losses = [float(step_fn(model, optimizer, batch, jnp.asarray(i), None)["loss"]) for i in range(3)]
    assert losses[-1] < losses[0]
    base_after = jax.tree.map(np.asarray, nnx.state(model, nnx.Not(nnx.LoRAParam)))
    jax.tree.map(np.testing.assert_array_equal, base_before, base_after)
    moved = jax.tree.map(lambda a, b: float(np.abs(np.asarray(b) - a).max()), adapters_before,
                         nnx.state(model, nnx.LoRAParam))
    assert min(jax.tree.leaves(moved)) > 0

    train.export(model, None, str(tmp_path / "export"))
    ref, info = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "export", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    with torch.no_grad():
        theirs = ref.eval()(input_ids=torch.tensor(np.asarray(ids), dtype=torch.long)).logits.numpy()
    ours = model(ids)
    np.testing.assert_allclose(theirs, ours, atol=1e-4)
    reloaded = hf.load_hf(tmp_path / "export")
    np.testing.assert_allclose(reloaded(ids), ours, atol=1e-5)
    assert not jax.tree.leaves(nnx.state(reloaded, nnx.LoRAParam))
    assert jax.tree.leaves(nnx.state(model, nnx.LoRAParam))  # merging copied: the live model keeps them


def test_checkpoints_hold_the_adapters_and_restore_them_onto_a_fresh_base(tmp_path):
    cfg = config_lib.train_config("teacher_sft")
    model = perturb(adapted())
    optimizer = train_step.optimizer_for(model, cfg.optim, 10)
    state = Checkpointer.state(model, optimizer)
    saved = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(state)}
    assert not any("'kernel'" in k or "embedding" in k for k in saved)  # no frozen weight is written
    assert any("kernel_lora_a" in k for k in saved) and any("opt_state" in k for k in saved)
    data = grain.MapDataset.range(4).to_iter_dataset()
    ckpt = Checkpointer(str(tmp_path), every=1, async_save=False)
    ckpt.save(1, model, optimizer, iter(data), force=True)
    ckpt.wait()
    fresh = adapted()  # the same base (seed), new adapters
    fresh_opt = train_step.optimizer_for(fresh, cfg.optim, 10)
    ckpt.restore(1, fresh, fresh_opt, iter(data))
    ckpt.close()
    ids = jnp.asarray(RNG.integers(0, 64, (2, 5)), jnp.int32)
    np.testing.assert_array_equal(fresh(ids), model(ids))


def test_lora_flops_drop_the_frozen_weight_gradients():
    model = adapted()
    n_all = train_step.param_count(model) - CFG.vocab_size * CFG.hidden_size
    adapters = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.LoRAParam)))
    attention = 2 * 2 * CFG.num_layers * 16 * CFG.hidden_size
    assert train_step.flops_per_token(model, 16, training=True) == 3 * (2 * n_all + attention) - 2 * (n_all - adapters)
    assert train_step.flops_per_token(model, 16, training=False) == 2 * n_all + attention


@pytest.mark.parametrize("override,message", [
    ("model.lora.rank=-1", "'model.lora.rank': -1 must be >= 0"),
    ("model.lora.targets=('q','lm_head')", "'model.lora.targets': ['q', 'lm_head'] must be a non-empty subset"),
    ("model.lora.alpha=0.0", "'model.lora.alpha': 0.0 must be positive")])
def test_bad_lora_keys_name_the_key(override, message):
    cfg = config_lib.load_config("configs/teacher_sft.py:qwen7b_lora", [override, "model.lora.rank=8"]
                                 if "rank" not in override else [override])
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        lora.check(cfg.model.lora)


def test_the_7b_lora_config():
    cfg = config_lib.load_config("configs/teacher_sft.py:qwen7b_lora@v5e-8")
    assert (cfg.model.lora.rank, cfg.model.lora.alpha, cfg.model.param_dtype) == (16, 32.0, "bfloat16")
    assert set(cfg.model.lora.targets) == set(lora.TARGETS) and cfg.mesh.fsdp == 8
