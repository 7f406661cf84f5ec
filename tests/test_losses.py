"""distill/losses.py against an independent float64 NumPy reference, plus the identities it must keep.

Shapes are fixed and every loss form is gathered into a few jitted functions, so the file compiles a
handful of times (each compile costs seconds on a 2-core CPU) and hypothesis only varies values.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lantern_jax.distill import losses as L

B, T, V, K, D, CHUNK = 2, 5, 12, 4, 6, 2  # T % CHUNK != 0: the last chunk overlaps the one before
NAMES = list(L.DIVERGENCES)
SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------------------------------------
# NumPy reference: probabilities in float64, formulas written directly from the definitions.


def np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_kl(p, q):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sum(np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0), -1)


def np_divergence(name, ps, pt, beta=0.5, alpha=0.1):
    if name == "forward_kl":
        return np_kl(pt, ps)
    if name == "reverse_kl":
        return np_kl(ps, pt)
    if name == "jsd":
        if beta == 0:
            return np_kl(pt, ps)
        if beta == 1:
            return np_kl(ps, pt)
        m = beta * pt + (1 - beta) * ps
        return beta * np_kl(pt, m) + (1 - beta) * np_kl(ps, m)
    if name == "skew_kl":
        return np_kl(pt, alpha * pt + (1 - alpha) * ps)
    if name == "skew_reverse_kl":
        return np_kl(ps, alpha * ps + (1 - alpha) * pt)
    if name == "tvd":
        return 0.5 * np.abs(pt - ps).sum(-1)
    raise KeyError(name)


def np_distributions(s, teacher, temp, estimator=None):
    """(p_S, p_T) over the support the estimator compares, in float64."""
    s = s.astype(np.float64)
    if estimator is None:
        return np_softmax(s / temp), np_softmax(teacher.astype(np.float64) / temp)
    ids, lp = teacher
    k = ids.shape[-1]
    ps_k, pt_k = np.take_along_axis(np_softmax(s), ids, -1), np.exp(lp.astype(np.float64))
    if estimator == "renorm":  # restrict to the k ids, renormalise, then temper
        ps_k, pt_k = ps_k ** (1 / temp), pt_k ** (1 / temp)
        return ps_k / ps_k.sum(-1, keepdims=True), pt_k / pt_k.sum(-1, keepdims=True)

    def coarse_tempered(p_k):  # top-k + the rest at temperature 1 (rest under fp32 resolution = 0), then temper
        rest = 1 - p_k.sum(-1, keepdims=True)
        q = np.concatenate([p_k, np.where(rest < k * 2.0**-24, 0.0, rest)], -1) ** (1 / temp)
        return q / q.sum(-1, keepdims=True)

    return coarse_tempered(ps_k), coarse_tempered(pt_k)


def np_loss(name, s, teacher, mask, temp, estimator=None, **params):
    d = np_divergence(name, *np_distributions(s, teacher, temp, estimator), **params)
    return np.sum(np.where(mask, d, 0.0)) / mask.sum()


# ------------------------------------------------------------------------------------------------
# Inputs


def make_inputs(seed, scale=2.0, equal=False, zero_prob=False):
    rng = np.random.default_rng(seed)
    s = (rng.normal(size=(B, T, V)) * scale).astype(np.float32)
    t = s.copy() if equal else (rng.normal(size=(B, T, V)) * scale).astype(np.float32)
    if zero_prob:  # a teacher that rules a token out (p_T = 0), as a padded vocabulary does
        t[0, 0, 0] = -np.inf
    mask = rng.random((B, T)) < 0.7
    mask[0, 0] = True
    with np.errstate(divide="ignore"):
        lp_all = np.log(np_softmax(t.astype(np.float64))).astype(np.float32)
    order = np.argsort(-t, -1)
    ids = rng.permuted(order[..., :K], axis=-1).astype(np.int32)  # top-k in no particular order
    ids_full = rng.permuted(order, axis=-1).astype(np.int32)  # k = V
    lp, lp_full = np.take_along_axis(lp_all, ids, -1), np.take_along_axis(lp_all, ids_full, -1)
    # what a padded position may hold: zero logprobs and id 0, which alone would be a broken teacher
    ids[~mask], lp[~mask] = 0, 0.0
    return dict(s=s, t=t, mask=mask, ids=ids, lp=lp, ids_full=ids_full, lp_full=lp_full)


def teachers(x):
    """Teacher forms checked everywhere: form -> (teacher, estimator), as NumPy arrays."""
    sparse, full = L.TopK(x["ids"], x["lp"]), L.TopK(x["ids_full"], x["lp_full"])
    return {"dense": (x["t"], None), "renorm": (sparse, "renorm"), "tail": (sparse, "tail"),
            "renorm_k=V": (full, "renorm"), "tail_k=V": (full, "tail")}


def _loss(name, s, teacher, est, mask, temp, chunk=None, **params):
    return L.divergence(name, s, teacher, mask, temp, estimator=est or "renorm", chunk_size=chunk, **params)


@jax.jit
def all_values(x, temp):
    out = {(name, form): _loss(name, x["s"], teacher, est, x["mask"], temp)
           for name in NAMES for form, (teacher, est) in teachers(x).items()}
    for beta in (0.0, 0.3, 1.0):
        out["jsd", f"beta={beta}"] = L.jsd(x["s"], x["t"], x["mask"], temp, beta=beta)
    out["skew_kl", "alpha=0.4"] = L.skew_kl(x["s"], x["t"], x["mask"], temp, alpha=0.4)
    out["skew_reverse_kl", "alpha=0.4"] = L.skew_reverse_kl(x["s"], x["t"], x["mask"], temp, alpha=0.4)
    per_token = L.token_divergence("jsd", x["s"], x["t"], temp, beta=0.3)
    out["jsd", "per-token"] = jnp.sum(jnp.where(x["mask"], per_token, 0)) / x["mask"].sum()
    return out


def values_for(x, temp):
    return jax.device_get(all_values(x, jnp.float32(temp)))


def np_teacher(teacher):
    return (teacher.ids, teacher.logprobs) if isinstance(teacher, L.TopK) else teacher


# ------------------------------------------------------------------------------------------------
# Values


@SETTINGS
@given(seed=st.integers(0, 2**31), temp=st.floats(0.5, 3.0), scale=st.floats(0.1, 4.0))
def test_every_form_matches_numpy_reference(seed, temp, scale):
    x = make_inputs(seed, scale)
    got = values_for(x, temp)
    for name in NAMES:
        for form, (teacher, est) in teachers(x).items():
            want = np_loss(name, x["s"], np_teacher(teacher), x["mask"], temp, est)
            np.testing.assert_allclose(got[name, form], want, rtol=1e-4, atol=1e-5, err_msg=f"{name} {form}")
    for (name, form), params in {("jsd", "beta=0.3"): {"beta": 0.3}, ("jsd", "per-token"): {"beta": 0.3},
                                 ("skew_kl", "alpha=0.4"): {"alpha": 0.4},
                                 ("skew_reverse_kl", "alpha=0.4"): {"alpha": 0.4}}.items():
        want = np_loss(name, x["s"], x["t"], x["mask"], temp, **params)
        np.testing.assert_allclose(got[name, form], want, rtol=1e-4, atol=1e-5, err_msg=f"{name} {form}")


@SETTINGS
@given(seed=st.integers(0, 2**31), temp=st.floats(0.5, 3.0), scale=st.floats(0.1, 6.0))
def test_identities(seed, temp, scale):
    got = values_for(make_inputs(seed, scale), temp)
    for (name, form), value in got.items():
        assert value >= -1e-6, (name, form)  # every divergence is ≥ 0
        if name == "tvd":
            assert value <= 1 + 1e-6, form
    # sparse with k = V is the dense divergence, to float32 rounding: the sparse forms renormalise
    # the teacher's V logprobs, each already rounded to float32, where the dense form normalises its
    # logits; they can differ by a few 1e-5 relative, which rtol=1e-5 let through only by chance
    for name in NAMES:
        for est in ("renorm", "tail"):
            np.testing.assert_allclose(got[name, f"{est}_k=V"], got[name, "dense"], rtol=1e-4, atol=1e-5)
    # the JSD ends are forward and reverse KL (their limits: test_jsd_limits_in_float64_reference)
    np.testing.assert_allclose(got["jsd", "beta=0.0"], got["forward_kl", "dense"], rtol=1e-6)
    np.testing.assert_allclose(got["jsd", "beta=1.0"], got["reverse_kl", "dense"], rtol=1e-6)


def test_jsd_limits_in_float64_reference():
    """The convention: JSD_β/β → KL(p_T‖p_S) as β → 0 and JSD_β/(1−β) → KL(p_S‖p_T) as β → 1."""
    ps, pt = np_softmax(np.random.default_rng(0).normal(size=(2, 3, V)))
    for eps in (1e-7, 1e-9):
        np.testing.assert_allclose(np_divergence("jsd", ps, pt, beta=eps) / eps, np_kl(pt, ps), rtol=1e-4)
        np.testing.assert_allclose(np_divergence("jsd", ps, pt, beta=1 - eps) / eps, np_kl(ps, pt), rtol=1e-4)


def test_zero_when_equal():
    got = values_for(make_inputs(1, equal=True), 1.3)
    for key, value in got.items():
        assert abs(value) < 1e-6, key


def test_teacher_probability_zero():
    """A −inf teacher logit or logprob (p_T = 0) contributes 0, not NaN; only reverse KL blows up."""
    x, temp = make_inputs(2, zero_prob=True), 1.3
    x["lp"][0, 0, 1] = -np.inf  # and one in a top-k
    got = values_for(x, temp)
    for name in NAMES:
        for form, (teacher, est) in teachers(x).items():
            want = np_loss(name, x["s"], np_teacher(teacher), x["mask"], temp, est)
            if name == "reverse_kl":  # infinite; log 0 is −1e30 in fp32
                assert np.isinf(want) and got[name, form] > 1e20, form
            else:
                np.testing.assert_allclose(got[name, form], want, rtol=1e-4, atol=1e-5, err_msg=f"{name} {form}")


# ------------------------------------------------------------------------------------------------
# Chunking and gradients


# The chunk engine is shared by every name and teacher form: it slices the inputs and runs the same
# per-token code. Compiles are the cost here, so each name runs chunked with one teacher form (each form
# with two names) and one chunk size; the sizes run from 1 to past T (with T = 5, sizes 2-4 end on a
# chunk that overlaps the one before).
CHUNKED_CASES = [("forward_kl", "dense", 1), ("reverse_kl", "renorm", 3), ("jsd", "tail", 2),
                 ("skew_kl", "tail", 4), ("skew_reverse_kl", "dense", 5), ("tvd", "renorm", 9)]
FUSED_CASES = [("forward_kl", "renorm", CHUNK), ("jsd", "dense", CHUNK)]  # the second with CE too


@jax.jit
def chunk_pairs(x, h, w, labels, temp):
    """{case: ((value, grads) unchunked, (value, grads) chunked)} on logits, and on the fused path."""
    out = {}
    for name, form, chunk in CHUNKED_CASES:
        teacher, est = teachers(x)[form]
        loss = lambda s, c: _loss(name, s, teacher, est, x["mask"], temp, c)
        out[name, form] = tuple(jax.value_and_grad(loss)(x["s"], c) for c in (None, chunk))
    for (name, form, chunk), labels in zip(FUSED_CASES, (None, labels)):
        teacher, est = teachers(x)[form]

        def fused(h, w, c):
            kd, ce = L.fused_divergence(name, h, w, teacher, x["mask"], temp, labels=labels,
                                        estimator=est or "renorm", chunk_size=c)
            return kd if ce is None else kd + 0.3 * ce  # two outputs: the per-output gradients combine
        out[name, form + " fused"] = tuple(jax.value_and_grad(fused, argnums=(0, 1))(h, w, c) for c in (None, chunk))
    return out


def test_chunked_equals_unchunked_values_and_gradients():
    x, temp, rng = make_inputs(3), 1.7, np.random.default_rng(3)
    h, w = rng.normal(size=(B, T, D)).astype(np.float32), rng.normal(size=(D, V)).astype(np.float32)
    labels = rng.integers(0, V, (B, T))
    for (name, form), ((value, grads), (chunked_value, chunked_grads)) in chunk_pairs(x, h, w, labels, temp).items():
        np.testing.assert_allclose(chunked_value, value, rtol=1e-5, atol=1e-6, err_msg=f"{name} {form}")
        for g, g_chunked in zip(jax.tree.leaves(grads), jax.tree.leaves(chunked_grads)):
            assert np.isfinite(g).all() and np.abs(g).max() > 0, (name, form)
            np.testing.assert_allclose(g_chunked, g, rtol=1e-5, atol=1e-6, err_msg=f"{name} {form}")
        if "fused" not in form:
            teacher, est = teachers(x)[form]
            want = np_loss(name, x["s"], np_teacher(teacher), x["mask"], temp, est)
            np.testing.assert_allclose(chunked_value, want, rtol=1e-4, atol=1e-5, err_msg=f"{name} {form}")


def test_forward_kl_gradient_is_analytic():
    """∂KL(p_T‖p_S)/∂z_S = (p_S − p_T)/T per valid token / N, dense; on the k ids for renorm."""
    x, temp = make_inputs(4), 1.5
    mask = x["mask"].astype(np.float64)[..., None] / x["mask"].sum()
    grad = jax.jit(jax.grad(lambda s, t: L.forward_kl(s, t, x["mask"], temp), argnums=0))
    ps, pt = np_distributions(x["s"], x["t"], temp)
    np.testing.assert_allclose(grad(x["s"], x["t"]), (ps - pt) / temp * mask, atol=1e-6)
    ps_k, pt_k = np_distributions(x["s"], (x["ids"], x["lp"]), temp, "renorm")
    want = np.zeros((B, T, V))
    np.put_along_axis(want, x["ids"], (ps_k - pt_k) / temp * mask, -1)
    np.testing.assert_allclose(grad(x["s"], L.TopK(x["ids"], x["lp"])), want, atol=1e-6)


@jax.jit
def _fused_value_and_grads(h, w, t, mask, labels, num_valid):
    def loss(h, w):
        out = L.fused_divergence("jsd", h, w, t, mask, 2.0, labels=labels, num_valid=num_valid, chunk_size=None)
        return out.kd + out.ce
    return jax.value_and_grad(loss, argnums=(0, 1))(h, w)


def test_global_count_makes_micro_batches_sum_to_the_batch():
    """Micro-batches (here: the batch rows, selected by mask so one compile serves all) normalised by
    the global valid count sum to the whole batch's loss and gradient; a mean of means does not."""
    x, rng = make_inputs(5), np.random.default_rng(5)
    x["mask"][1] = False
    x["mask"][1, :2] = True  # the rows have different valid counts
    h, w = rng.normal(size=(B, T, D)).astype(np.float32), rng.normal(size=(D, V)).astype(np.float32)
    labels = rng.integers(0, V, (B, T))
    run = lambda mask, n: _fused_value_and_grads(h, w, x["t"], mask, labels, n)
    rows = [x["mask"] & (np.arange(B) == i)[:, None] for i in range(B)]
    full, full_grads = run(x["mask"], x["mask"].sum())
    parts = [run(m, x["mask"].sum()) for m in rows]
    np.testing.assert_allclose(sum(v for v, _ in parts), full, rtol=1e-6)
    for i in range(2):
        np.testing.assert_allclose(sum(g[i] for _, g in parts), full_grads[i], rtol=1e-5, atol=1e-7)
    mean_of_means = sum(run(m, m.sum())[0] for m in rows) / B
    assert abs(mean_of_means - full) > 1e-3


def test_fused_matches_logits_path_and_cross_entropy():
    x, rng = make_inputs(6), np.random.default_rng(6)
    h = rng.normal(size=(B, T, D)).astype(jnp.bfloat16)  # bf16 activations: the math is still fp32
    w = rng.normal(size=(D, V)).astype(np.float32)
    labels = rng.integers(0, V, (B, T))

    @jax.jit
    def run(h, w, t, mask, labels):
        fused = L.fused_divergence("forward_kl", h, w, t, mask, 2.0, labels=labels, label_smoothing=0.1,
                                   chunk_size=CHUNK)
        logits = lambda w: jnp.einsum("btd,dv->btv", h, w, preferred_element_type=jnp.float32)
        ce = lambda w: L.cross_entropy(logits(w), labels, mask, label_smoothing=0.1)
        fused_ce = lambda w: L.fused_cross_entropy(h, w, labels, mask, label_smoothing=0.1, chunk_size=CHUNK)
        return (fused, L.forward_kl(logits(w), t, mask, 2.0), jax.value_and_grad(ce)(w),
                jax.value_and_grad(fused_ce)(w))

    fused, kd, (ce, g_ce), (fused_ce, g_fused_ce) = run(h, w, x["t"], x["mask"], labels)
    np.testing.assert_allclose(fused.kd, kd, rtol=1e-6)
    np.testing.assert_allclose(fused.ce, ce, rtol=1e-6)
    np.testing.assert_allclose(fused_ce, ce, rtol=1e-6)
    np.testing.assert_allclose(g_fused_ce, g_ce, rtol=1e-5, atol=1e-7)
    assert jax.eval_shape(lambda: L.fused_divergence("tvd", h, w, x["t"], x["mask"])).ce is None


def test_batch_sharded_chunked_loss_matches_single_device():
    """The chunks slice the sequence axis, so batch-sharded inputs stay sharded (2 of the fake devices)."""
    x, rng = make_inputs(7), np.random.default_rng(7)
    h, w = rng.normal(size=(B, T, D)).astype(np.float32), rng.normal(size=(D, V)).astype(np.float32)
    teacher = L.TopK(x["ids"], x["lp"])
    loss = lambda h, w, teacher, mask: L.fused_divergence("forward_kl", h, w, teacher, mask, estimator="tail",
                                                          chunk_size=CHUNK).kd
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:B]), ("data",))
    rows = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    sharded = jax.device_put((h, teacher, x["mask"]), rows)
    value, grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(sharded[0], w, *sharded[1:])
    want_value, want_grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(h, w, teacher, x["mask"])
    np.testing.assert_allclose(value, want_value, rtol=1e-6)
    for g, want in zip(grads, want_grads):
        np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------------------------------
# Dispatch and errors


def test_registry_and_dispatch_errors():
    assert set(L.DIVERGENCES) == {"forward_kl", "reverse_kl", "jsd", "skew_kl", "skew_reverse_kl", "tvd"}
    s = jnp.zeros((1, 2, 3))
    with pytest.raises(ValueError, match="unknown divergence 'kl'.*forward_kl"):
        L.divergence("kl", s, s)
    with pytest.raises(ValueError, match="estimator 'topk'"):
        L.divergence("forward_kl", s, s, estimator="topk")
    with pytest.raises(ValueError, match="'tvd' takes no parameters, got 'beta'"):
        L.divergence("tvd", s, s, beta=0.5)
    with pytest.raises(ValueError, match=r"beta must be a Python float in \[0, 1\]"):
        L.jsd(s, s, beta=1.5)


# ------------------------------------------------------------------------------------------------
# Classifier losses


@jax.jit
def classifier_losses(logits, labels, probs, weights):
    return dict(ce=L.cross_entropy(logits, labels, weights),
                ce_smooth=L.cross_entropy(logits, labels, weights, label_smoothing=0.2),
                kl=L.soft_label_kl(logits, probs, weights, temperature=2.0),
                emd=L.ordinal_emd(logits, labels, weights),
                emd_soft=L.ordinal_emd(logits, probs, weights))


@SETTINGS
@given(seed=st.integers(0, 2**31))
def test_classifier_losses_match_numpy(seed):
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(8, 3)) * 2).astype(np.float32)
    labels = rng.integers(0, 3, 8)
    probs = np_softmax(rng.normal(size=(8, 3)) * 2).astype(np.float32)
    weights = rng.random(8).astype(np.float32) * (rng.random(8) < 0.8)
    weights[0] = 1.0
    got = classifier_losses(logits, labels, probs, weights)
    p = np_softmax(logits.astype(np.float64))
    onehot = np.eye(3)[labels]
    mean = lambda v: np.sum(v * weights) / weights.sum()
    np.testing.assert_allclose(got["ce"], mean(-np.log(p[np.arange(8), labels])), rtol=1e-5)
    smooth = 0.8 * onehot + 0.2 / 3
    np.testing.assert_allclose(got["ce_smooth"], mean(-(smooth * np.log(p)).sum(-1)), rtol=1e-5)
    pt2 = np_softmax(np.log(probs.astype(np.float64)) / 2.0)
    np.testing.assert_allclose(got["kl"], mean(np_kl(pt2, np_softmax(logits / 2.0))), rtol=1e-4, atol=1e-6)
    # ordinal: for a hard label the EMD is the expected class distance E|c − y|
    np.testing.assert_allclose(got["emd"], mean((p * np.abs(np.arange(3) - labels[:, None])).sum(-1)), rtol=1e-5)
    cdf_gap = np.cumsum(p - probs, -1)[:, :-1]
    np.testing.assert_allclose(got["emd_soft"], mean(np.abs(cdf_gap).sum(-1)), rtol=1e-5, atol=1e-6)


def test_ordinal_loss_respects_order():
    """Confidently 'high' for a 'low' pair costs twice confidently 'medium'; cross-entropy can't tell."""
    logits = np.zeros((8, 3), np.float32)
    logits[0, 1] = logits[1, 2] = 12.0  # example 0 says medium, example 1 says high; both are low
    labels, only = np.zeros(8, np.int32), np.eye(8, dtype=np.float32)  # only[i]: weight on example i
    medium, high = (classifier_losses(logits, labels, np_softmax(logits), only[i]) for i in (0, 1))
    np.testing.assert_allclose(high["emd"], 2 * medium["emd"], rtol=1e-3)
    np.testing.assert_allclose(high["ce"], medium["ce"], rtol=1e-6)


def test_online_teacher_with_a_wider_padded_vocabulary():
    """Qwen2.5-7B (152,064 rows) teaching 1.5B (151,936): the padding columns are cut."""
    from lantern_jax.distill import objectives
    from lantern_jax.config import train_config
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(size=(2, 3, 12)), jnp.float32)
    assert objectives.match_vocab(logits, 10).shape == (2, 3, 10)
    np.testing.assert_array_equal(objectives.match_vocab(logits, 12), logits)
    with pytest.raises(ValueError, match=r"online teacher vocabulary \(12\) is smaller than the student's \(16\)"):
        objectives.match_vocab(logits, 16)

    from flax import nnx
    from lantern_jax.models.decoder import DecoderConfig, DecoderLM
    small = dict(hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=32)
    student = DecoderLM(DecoderConfig(vocab_size=24, **small), rngs=nnx.Rngs(0))
    teacher = DecoderLM(DecoderConfig(vocab_size=32, **small), rngs=nnx.Rngs(1))
    ids = jnp.asarray(rng.integers(0, 24, (2, 6)), jnp.int32)
    batch = {"input_ids": ids, "attention_mask": jnp.ones_like(ids), "labels": jnp.roll(ids, -1, 1),
             "loss_mask": jnp.ones_like(ids)}
    objective = objectives.ExplainerKD(train_config("explainer_kd"))
    loss, m = objective.loss(student, batch, 0, jnp.float32(12), teacher)
    expected = L.forward_kl(student(ids), teacher(ids)[..., :24], batch["loss_mask"])
    np.testing.assert_allclose(m["kd"], expected, rtol=1e-5)
