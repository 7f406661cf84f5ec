"""Sharding on 8 fake CPU devices: the rules table (golden), born-sharded params, equal outputs."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from lantern_jax import mesh as mesh_lib
from lantern_jax.models import hf
from lantern_jax.models.decoder import DecoderConfig, DecoderLM
from lantern_jax.models.encoder import Classifier, ClassifierConfig, EncoderConfig

pytestmark = pytest.mark.skipif(jax.device_count() != 8, reason="needs the 8 fake devices of conftest")

DEC = DecoderConfig(vocab_size=64, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2,
                    intermediate_size=48, family="qwen2", qkv_bias=True)
MODERN = EncoderConfig(vocab_size=64, hidden_size=32, num_layers=3, num_heads=4, intermediate_size=40,
                       family="modernbert", local_attention=4)

# Golden: parameter (layer index as *) -> the PartitionSpec the rules table gives on (2, 2, 2).
GOLDEN_DECODER = {
    "model.embed.embedding": P("tensor", "fsdp"),
    "model.final_norm.scale": P(None),
    "model.layers.blocks.*.attn_norm.scale": P(None),
    "model.layers.blocks.*.mlp_norm.scale": P(None),
    "model.layers.blocks.*.attn.q.kernel": P("fsdp", "tensor"),
    "model.layers.blocks.*.attn.q.bias": P("tensor"),
    "model.layers.blocks.*.attn.k.kernel": P("fsdp", "tensor"),
    "model.layers.blocks.*.attn.k.bias": P("tensor"),
    "model.layers.blocks.*.attn.v.kernel": P("fsdp", "tensor"),
    "model.layers.blocks.*.attn.v.bias": P("tensor"),
    "model.layers.blocks.*.attn.o.kernel": P("tensor", "fsdp"),
    "model.layers.blocks.*.gate.kernel": P("fsdp", "tensor"),
    "model.layers.blocks.*.up.kernel": P("fsdp", "tensor"),
    "model.layers.blocks.*.down.kernel": P("tensor", "fsdp"),
    "lm_head.kernel": P("fsdp", "tensor"),
}
GOLDEN_MODERNBERT_CLASSIFIER = {
    "backbone.embed.embedding": P("tensor", "fsdp"),
    "backbone.embed_norm.scale": P(None),
    "backbone.final_norm.scale": P(None),
    "backbone.layers.blocks.*.attn.q.kernel": P("fsdp", "tensor"),
    "backbone.layers.blocks.*.attn.k.kernel": P("fsdp", "tensor"),
    "backbone.layers.blocks.*.attn.v.kernel": P("fsdp", "tensor"),
    "backbone.layers.blocks.*.attn.o.kernel": P("tensor", "fsdp"),
    "backbone.layers.blocks.*.attn_norm.scale": P(None),
    "backbone.layers.blocks.*.mlp_norm.scale": P(None),
    "backbone.layers.blocks.*.up.kernel": P("fsdp", "tensor"),
    "backbone.layers.blocks.*.gate.kernel": P("fsdp", "tensor"),
    "backbone.layers.blocks.*.down.kernel": P("tensor", "fsdp"),
    "dense.kernel": P("fsdp", None),
    "head_norm.scale": P(None),
    "out.kernel": P("fsdp", None),
    "out.bias": P(None),
}


def normalise(spec: P) -> P:
    """Drop trailing Nones so P('a', None) == P('a')."""
    parts = list(spec)
    while parts and parts[-1] is None:
        parts.pop()
    return P(*parts)


def param_specs(model) -> dict[str, P]:
    out = {}
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        key = re.sub(r"\.\d+\.", ".*.", ".".join(map(str, path)))
        out.setdefault(key, []).append(normalise(var[...].sharding.spec))
    return out


@pytest.fixture(scope="module")
def mesh():
    return mesh_lib.make_mesh((2, 2, 2))


@pytest.mark.parametrize("build,golden", [
    (lambda: DecoderLM(DEC, rngs=nnx.Rngs(0)), GOLDEN_DECODER),
    (lambda: Classifier(ClassifierConfig(MODERN), rngs=nnx.Rngs(0)), GOLDEN_MODERNBERT_CLASSIFIER),
], ids=["decoder", "modernbert_classifier"])
def test_params_are_born_with_the_rules_table_specs(mesh, build, golden):
    with jax.set_mesh(mesh):
        model = nnx.jit(build)()  # created inside jit: never materialised unsharded
    specs = param_specs(model)
    assert set(specs) == set(golden)
    for name, spec in golden.items():
        assert all(s == normalise(spec) for s in specs[name]), (name, specs[name], spec)


def test_sharded_outputs_equal_single_device(mesh, tmp_path):
    ref = DecoderLM(DEC, rngs=nnx.Rngs(0))
    hf.save_hf(ref, tmp_path / "m")
    ids = jnp.asarray(np.random.default_rng(0).integers(1, 64, size=(8, 12)), jnp.int32)
    mask = jnp.ones_like(ids).at[::2, 9:].set(0)
    expected = nnx.jit(lambda m, i, k: m(i, k))(ref, ids, mask)

    sharded = hf.load_hf(tmp_path / "m", mesh=mesh)  # tensors go straight to their shards
    q = sharded.model.layers.blocks[0].attn.q.kernel[...]
    assert q.sharding.spec == P("fsdp", "tensor") and len(q.addressable_shards) == 8
    assert q.addressable_shards[0].data.shape == (16, 16)  # [32, 32] over fsdp=2 x tensor=2
    with jax.set_mesh(mesh):
        batch = jax.device_put((ids, mask), mesh_lib.batch_sharding(mesh))
        got = nnx.jit(lambda m, i, k: m(i, k))(sharded, *batch)
    assert got.sharding.spec[0] == ("data", "fsdp")
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-5)


def test_indivisible_dims_replicate_instead_of_failing(mesh):
    odd = DecoderConfig(vocab_size=63, hidden_size=24, num_layers=1, num_heads=3, num_kv_heads=1, head_dim=5,
                        intermediate_size=30)
    with jax.set_mesh(mesh):
        model = nnx.jit(lambda: DecoderLM(odd, rngs=nnx.Rngs(0)))()
    assert normalise(model.model.embed.embedding[...].sharding.spec) == P(None, "fsdp")  # 63 % 2
    assert normalise(model.model.layers.blocks[0].attn.k.kernel[...].sharding.spec) == P("fsdp")


def test_mesh_errors_are_one_clear_line():
    with pytest.raises(mesh_lib.MeshError, match="needs 12 devices, but 8 are available"):
        mesh_lib.make_mesh((2, 2, 3))
    with pytest.raises(mesh_lib.MeshError, match="unknown axis"):
        mesh_lib.make_mesh({"model": 2})
    with pytest.raises(mesh_lib.MeshError, match="not divisible by 3"):
        mesh_lib.make_mesh({"data": -1, "tensor": 3})
    mesh = mesh_lib.make_mesh({"data": -1, "tensor": 2})
    assert dict(zip(mesh.axis_names, mesh.axis_sizes)) == {"data": 4, "fsdp": 1, "tensor": 2}
    with pytest.raises(mesh_lib.MeshError, match="batch size 6 is not divisible by the data-parallel size 4"):
        mesh_lib.check_batch(mesh, 6)
