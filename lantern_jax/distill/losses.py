"""Distillation losses: divergences between teacher and student next-token distributions, and the
fit classifier's losses.

Conventions shared by every function here:

- p_T is the teacher, p_S the student, both ``softmax(logits / temperature)``. Objectives scale the
  KD term by T²; these functions do not.
- All math is fp32 whatever the input dtype. The teacher and the temperature are constants: no
  gradient flows into them.
- A token (or example) loss is ``Σ mask·d / num_valid``. ``num_valid`` defaults to ``mask.sum()``;
  callers accumulating over micro-batches or devices pass the *global* count, so the parts sum to the
  loss of the whole batch (a mean of per-micro-batch means would not). ``mask`` may hold float
  weights. Masked positions may hold any finite values (padding ids, zero logprobs). The teacher may
  give probability 0 (a −inf logit or logprob), read as log p_T = −1e30: its terms vanish, and reverse
  KL is ~1e30 instead of inf. Student logits must be finite.
- The teacher is either dense logits ``[..., V]`` or a sparse top-k ``TopK(ids, logprobs)``.

Divergences (β, α are Python floats in [0, 1]):

- ``forward_kl`` KL(p_T‖p_S); ``reverse_kl`` KL(p_S‖p_T); ``tvd`` ½·Σ|p_T − p_S|.
- ``jsd(beta)``: m = β·p_T + (1−β)·p_S, value β·KL(p_T‖m) + (1−β)·KL(p_S‖m). That formula is 0 at
  both ends, but JSD_β/β → KL(p_T‖p_S) as β → 0 and JSD_β/(1−β) → KL(p_S‖p_T) as β → 1, so (as in
  GKD) β = 0 *is* forward KL and β = 1 *is* reverse KL: the two ends are those limits.
- ``skew_kl(alpha)`` KL(p_T‖α·p_T + (1−α)·p_S); ``skew_reverse_kl(alpha)`` KL(p_S‖α·p_S + (1−α)·p_T).

Sparse teacher (``TopK``): the teacher's top-k ids (student vocabulary) and its log-probabilities at
temperature 1, as an API returns them. Two estimators:

- ``renorm``: both distributions restricted to the k ids and renormalised. Exact at any temperature:
  restricting softmax(z/T) to a set needs only z/T on that set, and logprobs differ from logits by a
  constant, so ``log_softmax(logprobs / T)`` over the k ids is the teacher's tempered restriction.
- ``tail``: a (k+1)-th bucket holds each distribution's remaining mass. Coarsening to k+1 outcomes
  does not commute with tempering, and the teacher's tempered tail Σ_tail p^(1/T) is not identified by
  its top-k, so both distributions are coarsened at temperature 1 (where the teacher's logprobs live)
  and the (k+1)-outcome distributions are then tempered: ``log_softmax([logprobs, log r] / T)``, r =
  1 − Σ top-k. The same for the student keeps d = 0 when p_S = p_T. Exact at T = 1 and whenever
  r = 0 (e.g. k = V). A remainder below fp32's resolution of 1 − Σ (k·2⁻²⁴) is rounding noise, which
  tempering would amplify (noise^(1/T)), and counts as zero.

Chunking: ``chunk_size`` splits the sequence axis (axis 1 of ``[B, T, ...]``; batch rows stay whole so
a batch-sharded array is sliced locally). Any T works: all chunks have the same size (the last one
overlaps its predecessor and skips the positions already counted), so one body is compiled and no
input is padded. Under differentiation each chunk's gradient is computed with its value and added in
place into a gradient buffer (a hand-written VJP: autodiff of a scan over slices of a closed-over array
adds a full-size cotangent per chunk, and checkpointing would compute every chunk twice); the backward
pass only scales it. So the only full-size arrays are the inputs and their gradients.
``fused_divergence`` goes further: it takes the student's final hidden states and unembedding, so
student logits exist one chunk at a time and no [B, T, V] array is ever built. The vocabulary axis
needs no chunking: a chunk's working set is B·chunk·V and ``chunk_size`` can be as small as one token.

Classifier losses (``cross_entropy``, ``soft_label_kl``, ``ordinal_emd``) take ``[..., C]`` logits with
classes ordered low < medium < high and a per-example mask or weight.
"""
from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

_F32 = jnp.float32
# Smallest mass a tail bucket gets: log(1e-30) ≈ −69 keeps an empty tail finite and its terms ~0.
_TINY_MASS = 1e-30
_LN2 = math.log(2.0)
_LOG_ZERO = -1e30  # a teacher's log 0: exp() is 0, differences stay finite
ESTIMATORS = ("renorm", "tail")


class TopK(NamedTuple):
    """A sparse teacher: its top-k next-token ids and log-probabilities (temperature 1)."""

    ids: jax.Array  # [B, T, k] int, student vocabulary
    logprobs: jax.Array  # [B, T, k]


class KDLosses(NamedTuple):
    kd: jax.Array  # divergence, normalised by num_valid (not scaled by T²)
    ce: jax.Array | None  # cross-entropy on `labels`, same mask and normaliser; None without labels


# ---------------------------------------------------------------------------------------------------
# Per-token math on log-probabilities over the last axis (the support: V, k or k+1 buckets).
# ls: student, lt: teacher.


def _kl(log_p, log_q):
    """KL(p‖q) = Σ p·(log p − log q)."""
    return jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)


def _log_mix(log_p, log_q, w):
    """log(w·p + (1−w)·q) in log space, so tiny probabilities keep their precision."""
    return jnp.logaddexp(log_p + jnp.log(w), log_q + jnp.log1p(-w))


def _forward_kl(ls, lt):
    return _kl(lt, ls)


def _reverse_kl(ls, lt):
    return _kl(ls, lt)


def _jsd(ls, lt, beta=0.5):
    if beta == 0.0:  # the β → 0 limit of JSD_β/β (module docstring)
        return _forward_kl(ls, lt)
    if beta == 1.0:  # the β → 1 limit of JSD_β/(1−β)
        return _reverse_kl(ls, lt)
    lm = _log_mix(lt, ls, beta)
    return beta * _kl(lt, lm) + (1.0 - beta) * _kl(ls, lm)


def _skew_kl(ls, lt, alpha=0.1):
    return _kl(lt, _log_mix(lt, ls, alpha))


def _skew_reverse_kl(ls, lt, alpha=0.1):
    return _kl(ls, _log_mix(ls, lt, alpha))


def _tvd(ls, lt):
    return 0.5 * jnp.sum(jnp.abs(jnp.exp(lt) - jnp.exp(ls)), axis=-1)


class Divergence(NamedTuple):
    """A divergence: its per-token function of (student, teacher) log-probabilities over the support,
    and the names of its own parameters (config keys `loss.<param>`, floats in [0, 1])."""

    token_fn: Callable[..., jax.Array]
    params: tuple[str, ...] = ()


# THE registry of divergences: the config key `loss.divergence`, the ablations and the losses below.
DIVERGENCES: dict[str, Divergence] = {
    "forward_kl": Divergence(_forward_kl),
    "reverse_kl": Divergence(_reverse_kl),
    "jsd": Divergence(_jsd, ("beta",)),
    "skew_kl": Divergence(_skew_kl, ("alpha",)),
    "skew_reverse_kl": Divergence(_skew_reverse_kl, ("alpha",)),
    "tvd": Divergence(_tvd),
}


def _log1mexp(x):
    """log(1 − eˣ) for x ≤ 0, finite at x = 0 (top-k logprobs may even sum past 1 by rounding)."""
    x = jnp.minimum(x, -_TINY_MASS)
    # Each branch gets inputs from its own range so the branch `where` discards has a finite gradient.
    near_zero = jnp.log(-jnp.expm1(jnp.maximum(x, -_LN2)))
    far = jnp.log1p(-jnp.exp(jnp.minimum(x, -_LN2)))
    return jnp.where(x > -_LN2, near_zero, far)


def _with_tail(log_p):
    """Append the bucket log(1 − Σ p) of the mass outside the top-k; one below fp32's resolution of
    1 − Σ (k·2⁻²⁴ for k summed probabilities) is rounding noise and counts as empty."""
    k = log_p.shape[-1]
    log_r = _log1mexp(jax.nn.logsumexp(log_p, axis=-1, keepdims=True))
    log_r = jnp.where(log_r < math.log(k * 2.0**-24), math.log(_TINY_MASS), log_r)
    return jnp.concatenate([log_p, log_r], axis=-1)


def _support_log_probs(student_logits, teacher, temperature, estimator):
    """Student and teacher log-probabilities at `temperature` over a common support (last axis)."""
    z = student_logits.astype(_F32)
    if not isinstance(teacher, TopK):
        lt = jax.nn.log_softmax(teacher.astype(_F32) / temperature)
        return jax.nn.log_softmax(z / temperature), _teacher(lt)
    lt = teacher.logprobs.astype(_F32)
    z_k = jnp.take_along_axis(z, teacher.ids, axis=-1)
    if estimator == "renorm":  # renormalising over the k ids needs no full-vocabulary reduction
        return jax.nn.log_softmax(z_k / temperature), _teacher(jax.nn.log_softmax(lt / temperature))
    # tail: coarsen both to k+1 outcomes at temperature 1, then temper the coarsened distributions
    ls = _with_tail(z_k - jax.nn.logsumexp(z, axis=-1, keepdims=True))
    return jax.nn.log_softmax(ls / temperature), _teacher(jax.nn.log_softmax(_with_tail(lt) / temperature))


def _teacher(log_p):
    """A constant, and log 0 = −inf floored so that 0·(log 0 − log q) is 0, not NaN. (Flooring here, not
    guarding each product, keeps the unchunked backward from holding one more [B, T, V] array.)"""
    return lax.stop_gradient(jnp.maximum(log_p, _LOG_ZERO))


def token_divergence(name, student_logits, teacher, temperature=1.0, *, estimator="renorm", **params):
    """Per-position divergence ``[...]`` (unmasked, unnormalised) between p_T and p_S."""
    _check(name, estimator, params)
    return DIVERGENCES[name].token_fn(*_support_log_probs(student_logits, teacher, temperature, estimator), **params)


def _token_cross_entropy(logits, labels, label_smoothing=0.0):
    """−Σ q·log p_S with q = (1−ε)·one_hot(label) + ε/C."""
    logp = jax.nn.log_softmax(logits.astype(_F32))
    nll = -jnp.take_along_axis(logp, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return (1.0 - label_smoothing) * nll - label_smoothing * jnp.mean(logp, axis=-1)


# ---------------------------------------------------------------------------------------------------
# Masked sums and the global-count normaliser.


def _masked_sum(values, mask):
    # `where`, not just a product: a non-finite value at a masked position stays out of the sum
    return jnp.sum(jnp.where(mask != 0, values * mask, 0.0))


def _normalise(total, mask, num_valid):
    n = jnp.sum(mask.astype(_F32)) if num_valid is None else jnp.asarray(num_valid, _F32)
    return total / jnp.where(n > 0, n, 1.0)  # an all-masked batch gives 0, not NaN


def _default_mask(mask, shape):  # no mask: every position counts
    return jnp.ones(shape, _F32) if mask is None else mask


# ---------------------------------------------------------------------------------------------------
# Chunking over the sequence axis.


def _seq_slice(tree, start, size):
    return jax.tree.map(lambda x: lax.dynamic_slice_in_dim(x, start, size, axis=1), tree)


def _fold_chunks(step, carry, length, chunk):
    """carry = step(carry, start, keep) over ⌈length/chunk⌉ chunks, as one scanned body.

    Every slice has the full `chunk` size (one compiled body, no padded copies of the inputs): the
    last chunk starts at length − chunk, and `keep` [chunk] marks its positions no earlier chunk had."""
    def body(carry, i):
        start = jnp.minimum(i * chunk, length - chunk)
        return step(carry, start, start + jnp.arange(chunk) >= i * chunk), None

    return lax.scan(body, carry, jnp.arange(-(-length // chunk)))[0]


def _zero_sums(fn, chunk, seq, shared, seq_const, const):
    shapes = jax.eval_shape(fn, _seq_slice(seq, 0, chunk), shared, _seq_slice(seq_const, 0, chunk), const,
                            jnp.ones(chunk, bool))
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def _tree_add(a, b):
    return jax.tree.map(lambda x, y: x + y.astype(x.dtype), a, b)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _chunked_sum(fn, chunk, seq, shared, seq_const, const):
    """Σ over sequence chunks of fn(seq_chunk, shared, seq_const_chunk, const, keep), a tuple of scalar
    sums over the positions `keep` marks; chunk ≤ T.

    Differentiable in `seq` (leaves [B, T, ...], sliced on axis 1) and `shared` (not sliced);
    `seq_const` (sliced) and `const` get no gradient."""
    def step(sums, start, keep):
        sc = _seq_slice(seq_const, start, chunk)
        return _tree_add(sums, fn(_seq_slice(seq, start, chunk), shared, sc, const, keep))

    zeros = _zero_sums(fn, chunk, seq, shared, seq_const, const)
    return _fold_chunks(step, zeros, jax.tree.leaves(seq)[0].shape[1], chunk)


def _chunked_sum_fwd(fn, chunk, seq, shared, seq_const, const):
    """Values and each output's gradients in one pass, so the backward only scales them: no chunk is
    computed twice. Gradients carry a leading axis over the n outputs (n = 1 or 2 here)."""
    zeros = _zero_sums(fn, chunk, seq, shared, seq_const, const)
    n = len(jax.tree.leaves(zeros))
    basis = jax.tree.unflatten(jax.tree.structure(zeros), list(jnp.eye(n, dtype=_F32)))

    def step(carry, start, keep):
        sums, g_seq, g_shared = carry
        sc = _seq_slice(seq_const, start, chunk)
        out, vjp = jax.vjp(lambda x, w: fn(x, w, sc, const, keep), _seq_slice(seq, start, chunk), shared)
        d_seq, d_shared = jax.vmap(vjp)(basis)
        # add, not overwrite: the last chunk overlaps its predecessor (with zero gradient there)
        add_slice = lambda buf, d: lax.dynamic_update_slice_in_dim(
            buf, lax.dynamic_slice_in_dim(buf, start, chunk, axis=2) + d, start, axis=2)
        return _tree_add(sums, out), jax.tree.map(add_slice, g_seq, d_seq), _tree_add(g_shared, d_shared)

    # `seq`'s gradient is written in place slice by slice; `shared`'s is summed over chunks in fp32
    init = (zeros, jax.tree.map(lambda x: jnp.zeros((n, *x.shape), x.dtype), seq),
            jax.tree.map(lambda w: jnp.zeros((n, *w.shape), jnp.promote_types(w.dtype, _F32)), shared))
    sums, g_seq, g_shared = _fold_chunks(step, init, jax.tree.leaves(seq)[0].shape[1], chunk)
    return sums, (g_seq, jax.tree.map(lambda a, w: a.astype(w.dtype), g_shared, shared))


def _chunked_sum_bwd(fn, chunk, residuals, g):
    g_seq, g_shared = residuals
    g = jnp.stack(jax.tree.leaves(g)).astype(_F32)  # one cotangent per output
    scale = lambda grads: jnp.tensordot(g, grads.astype(_F32), axes=1).astype(grads.dtype)
    return jax.tree.map(scale, g_seq), jax.tree.map(scale, g_shared), None, None


_chunked_sum.defvjp(_chunked_sum_fwd, _chunked_sum_bwd)


# ---------------------------------------------------------------------------------------------------
# Token losses: dense, sparse, chunked and fused all go through `_token_sums`.


def _check(name, estimator, params):
    if name not in DIVERGENCES:
        raise ValueError(f"unknown divergence {name!r}; expected one of {sorted(DIVERGENCES)}")
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown sparse-teacher estimator {estimator!r}; expected one of {ESTIMATORS}")
    allowed = list(DIVERGENCES[name].params)
    for key, value in params.items():
        if key not in allowed:
            raise ValueError(f"divergence {name!r} takes {allowed or 'no parameters'}, got {key!r}")
        if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} {key} must be a Python float in [0, 1], got {value!r}")


def _token_sums(name, estimator, params, label_smoothing, x, unembedding, seq_const, temperature, keep=None):
    """(Σ mask·divergence if a teacher, Σ mask·cross-entropy if labels) over one chunk; x is student
    logits, or hidden states when there is an unembedding."""
    teacher, mask, labels = seq_const
    if keep is not None:  # positions an earlier chunk already counted
        mask = jnp.where(keep, mask, 0)
    logits = x if unembedding is None else jnp.einsum("...d,dv->...v", x, unembedding, preferred_element_type=_F32)
    sums = ()
    if teacher is not None:
        ls, lt = _support_log_probs(logits, teacher, temperature, estimator)
        sums += (_masked_sum(DIVERGENCES[name].token_fn(ls, lt, **params), mask),)
    if labels is not None:
        sums += (_masked_sum(_token_cross_entropy(logits, labels, label_smoothing), mask),)
    return sums


def _token_losses(x, unembedding, mask, chunk_size, num_valid, *, name=None, teacher=None, temperature=1.0,
                  estimator="renorm", params=None, labels=None, label_smoothing=0.0):
    """[divergence if a teacher, cross-entropy if labels], each normalised by num_valid."""
    params = params or {}
    if teacher is not None:
        _check(name, estimator, params)
    mask = _default_mask(mask, x.shape[:-1])
    fn = functools.partial(_token_sums, name, estimator, params, label_smoothing)
    temperature = lax.stop_gradient(jnp.asarray(temperature, _F32))  # a constant, like the teacher
    seq_const = (teacher, mask, labels)
    if chunk_size is None:
        sums = fn(x, unembedding, seq_const, temperature)
    else:
        if x.ndim != 3:
            raise ValueError(f"chunking needs [batch, seq, features] inputs, got shape {x.shape}")
        sums = _chunked_sum(fn, min(int(chunk_size), x.shape[1]), x, unembedding, seq_const, temperature)
    return [_normalise(s, mask, num_valid) for s in sums]


def divergence(name, student_logits, teacher, mask=None, temperature=1.0, *, estimator="renorm",
               num_valid=None, chunk_size=None, **params):
    """Masked mean over positions of divergence `name` between p_T and p_S.

    student_logits [..., V]; teacher: logits [..., V] or TopK; mask [...] (bool/int/float weights).
    `chunk_size` (for [B, T, V] inputs) computes it over sequence chunks with the same value and
    gradient; `params` are the divergence's own (beta for jsd, alpha for the skews)."""
    return _token_losses(student_logits, None, mask, chunk_size, num_valid, name=name, teacher=teacher,
                         temperature=temperature, estimator=estimator, params=params)[0]


def fused_divergence(name, hidden, unembedding, teacher, mask=None, temperature=1.0, *, labels=None,
                     label_smoothing=0.0, estimator="renorm", num_valid=None, chunk_size=64,
                     **params) -> KDLosses:
    """KD from the student's final hidden states [B, T, D] and unembedding [D, V] (pass the embedding
    table transposed when tied), with student logits built one sequence chunk at a time.

    With `labels` [B, T] it also returns the cross-entropy from the same logits (one pass for the
    explainer's λ_sft·CE + λ_kd·KD). A chunk's working set is about four fp32 [B, chunk_size, V]
    arrays (200 MB at B=4, V=49,152); `chunk_size=None` materialises the logits (the naive form)."""
    out = _token_losses(hidden, unembedding, mask, chunk_size, num_valid, name=name, teacher=teacher,
                        temperature=temperature, estimator=estimator, params=params, labels=labels,
                        label_smoothing=label_smoothing)
    return KDLosses(out[0], out[1] if labels is not None else None)


def fused_cross_entropy(hidden, unembedding, labels, mask=None, *, label_smoothing=0.0, num_valid=None,
                        chunk_size=64):
    """Token cross-entropy (e.g. teacher SFT) from hidden states [B, T, D] and unembedding [D, V],
    logits built one sequence chunk at a time as in `fused_divergence`."""
    return _token_losses(hidden, unembedding, mask, chunk_size, num_valid, labels=labels,
                         label_smoothing=label_smoothing)[0]


def forward_kl(student_logits, teacher_logits, mask=None, temperature=1.0, **kw):
    """KL(p_T‖p_S): mass-covering, the classic KD loss. `teacher_logits` may be a TopK."""
    return divergence("forward_kl", student_logits, teacher_logits, mask, temperature, **kw)


def reverse_kl(student_logits, teacher_logits, mask=None, temperature=1.0, **kw):
    """KL(p_S‖p_T): mode-seeking."""
    return divergence("reverse_kl", student_logits, teacher_logits, mask, temperature, **kw)


def jsd(student_logits, teacher_logits, mask=None, temperature=1.0, beta=0.5, **kw):
    """Generalised JSD; beta = 0 is forward KL, beta = 1 reverse KL (module docstring)."""
    return divergence("jsd", student_logits, teacher_logits, mask, temperature, beta=beta, **kw)


def skew_kl(student_logits, teacher_logits, mask=None, temperature=1.0, alpha=0.1, **kw):
    """KL(p_T‖α·p_T + (1−α)·p_S): forward KL kept finite where the student has no mass."""
    return divergence("skew_kl", student_logits, teacher_logits, mask, temperature, alpha=alpha, **kw)


def skew_reverse_kl(student_logits, teacher_logits, mask=None, temperature=1.0, alpha=0.1, **kw):
    """KL(p_S‖α·p_S + (1−α)·p_T)."""
    return divergence("skew_reverse_kl", student_logits, teacher_logits, mask, temperature, alpha=alpha, **kw)


def tvd(student_logits, teacher_logits, mask=None, temperature=1.0, **kw):
    """Total variation ½·Σ|p_T − p_S|, in [0, 1]."""
    return divergence("tvd", student_logits, teacher_logits, mask, temperature, **kw)


# ---------------------------------------------------------------------------------------------------
# Classifier losses (also usable per token: logits [..., C], mask [...]).


def cross_entropy(logits, labels, mask=None, *, label_smoothing=0.0, num_valid=None):
    """Cross-entropy on hard labels with label smoothing ε (target (1−ε)·one_hot + ε/C)."""
    return _token_losses(logits, None, mask, None, num_valid, labels=labels, label_smoothing=label_smoothing)[0]


def soft_label_kl(logits, teacher_probs, mask=None, *, temperature=1.0, num_valid=None):
    """KL(p_T‖p_S) to the teacher's soft labels (e.g. label-word probabilities of low/medium/high).

    Probabilities are read as logprobs: at temperature T the target is p_T^(1/T), renormalised."""
    teacher_logits = jnp.log(jnp.maximum(teacher_probs.astype(_F32), _TINY_MASS))
    return divergence("forward_kl", logits, teacher_logits, mask, temperature, num_valid=num_valid)


def ordinal_emd(logits, target, mask=None, *, num_valid=None):
    """Ordinal-aware loss for classes ordered low < medium < high: the earth mover's distance between
    the student's and the target's class distributions, Σ_k |F_S(k) − F_target(k)| over the CDFs.

    For a hard label y it equals the expected class distance E_{c~p_S}|c − y|: predicting "high" for a
    "low" pair costs twice "medium". `target` is int labels [...] or probabilities [..., C] (soft
    teacher labels). Chosen over CORAL because it works on the usual softmax head, so it combines
    with cross-entropy and soft-label KD on the same logits; add it to those with a weight."""
    p = jax.nn.softmax(logits.astype(_F32))
    if jnp.issubdtype(target.dtype, jnp.integer):
        target = jax.nn.one_hot(target, logits.shape[-1])
    # for 1-D distributions the EMD is the L1 distance between CDFs (the last entry is always 0)
    per_example = jnp.sum(jnp.abs(jnp.cumsum(p - target.astype(_F32), axis=-1)[..., :-1]), axis=-1)
    mask = _default_mask(mask, per_example.shape)
    return _normalise(_masked_sum(per_example, mask), mask, num_valid)
