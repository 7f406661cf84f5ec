"""The LM head and its loss over vocabulary blocks: no [B, T, V] logits, no fp32 head matmuls.

    loss, metrics = lm_head_loss(hidden, unembedding, labels, mask, teacher=Head(t_hidden, t_unembedding),
                                 divergence="tvd", temperature=T, kd_weight=λ_kd·T², ce_weight=λ_sft)

For accelerators, where `losses.fused_divergence`'s sequence chunks still hold several fp32
[rows, chunk, V] arrays (V = 152k for Qwen2.5) and run the head in the parameters' fp32. Here a
chunk of the sequence meets the vocabulary one block at a time: [rows, chunk, block] logits from
operands in the activations' dtype (bf16) with fp32 accumulation, reduced on the fly.

Forward, per sequence chunk: pass 1 over the blocks keeps running log-sum-exps (the student's at
temperature T and at 1, a dense teacher's at T), the label's logit, the logits' sum (label
smoothing) and, for a sparse teacher, the student's logits at its top-k ids. A dense teacher's
divergence needs normalised probabilities, so pass 2 sums it, with S = Σ_v ∂d/∂log p_S(v), block
by block: every divergence in `losses` is a sum over the vocabulary of a function of
(log p_S(v), log p_T(v)), so a block's share is the same function on the block.
Backward, per chunk and block: the logits are recomputed (a dense teacher's too) and
    ∂d/∂z_v = (∂d/∂log p_S(v) − p_S(v)·S) / T              dense teacher
    ∂d/∂z_v = ∂d/∂lse · p(v) + ∂d/∂z_k at the top-k ids      sparse teacher (from the k-sized math)
    ∂ce/∂z_v = p(v) − (1 − ε)·[v = label] − ε/V
meet in one dz per block, which feeds the hidden-state gradient (dz·Wᵀ) and the unembedding's
(hᵀ·dz, accumulated in fp32). The loss is one weighted sum kd_weight·KD + ce_weight·CE (KD and CE
also come back on their own), so the backward pass runs once for both terms.

The price is recomputation. The student's head runs 3 matmuls per token in the chunked path
(logits, dh, dW); here 4 (CE, sparse teacher) or 5 (dense teacher: pass 2), and a dense teacher's
head 3 instead of 1. Gradients equal `losses.fused_divergence`'s (tests, at fp32).
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from lantern_jax.distill import losses
from lantern_jax.models import attention

_F32 = jnp.float32
_NEG = -1e30  # a finite log 0 for masked vocabulary columns and empty running maxima
HEADS = ("auto", "chunked", "blocked")
BLOCK = 8192  # vocabulary columns per block: [rows, chunk, 8192] fp32 logits feed the MXU well


class Head(NamedTuple):
    """A dense teacher as final hidden states [B, T, D_t] and unembedding [D_t, V_t], V_t ≥ V
    (columns past the student's vocabulary are never read): its logits are made block by block."""
    hidden: jax.Array
    unembedding: jax.Array


def blocked(head: str) -> bool:
    """Whether `loss.lm_head` (auto | chunked | blocked) picks this module. auto does on TPU and GPU;
    on CPU the chunked path, which runs the head once, is the faster one."""
    if head not in HEADS:
        raise ValueError(f"lm_head {head!r} is not one of {HEADS}")
    return head == "blocked" or (head == "auto" and attention.platform() in ("tpu", "gpu"))


def lm_head_loss(hidden, unembedding, labels=None, mask=None, *, teacher=None, divergence="forward_kl",
                 params=None, temperature=1.0, estimator="renorm", label_smoothing=0.0, kd_weight=1.0,
                 ce_weight=1.0, num_valid=None, chunk_size=512, block_size=BLOCK):
    """(kd_weight·KD + ce_weight·CE, {"kd": KD, "ce": CE}) from hidden [B, T, D] and unembedding [D, V].

    teacher: None (CE only), a `Head`, dense logits [B, T, ≥V] or a `losses.TopK`; without labels
    there is no CE term. Masked means over positions normalised by `num_valid` (default mask.sum()),
    divergences and estimators as in `losses`; the teacher, temperature and weights get no gradient."""
    params = dict(params or {})
    if teacher is not None:
        losses._check(divergence, estimator, params)  # noqa: SLF001  (the same validation as the chunked path)
    B, T, _ = hidden.shape
    mask = jnp.ones((B, T), _F32) if mask is None else mask.astype(_F32)
    n = jnp.sum(mask) if num_valid is None else jnp.asarray(num_valid, _F32)
    weight = mask / jnp.where(n > 0, n, 1.0)
    kind = (None if teacher is None else "topk" if isinstance(teacher, losses.TopK)
            else "head" if isinstance(teacher, Head) else "logits")
    static = _Static(kind, divergence, tuple(sorted(params.items())), estimator, float(label_smoothing),
                     labels is not None, min(int(chunk_size), T), min(int(block_size), unembedding.shape[1]))
    teacher = jax.tree.map(lax.stop_gradient, teacher)
    scalars = lax.stop_gradient(jnp.stack([jnp.asarray(x, _F32) for x in (temperature, kd_weight, ce_weight)]))
    labels = jnp.zeros((B, T), jnp.int32) if labels is None else labels.astype(jnp.int32)
    loss, kd, ce = _loss(static, hidden, unembedding, teacher, labels, weight, scalars)
    return loss, {"kd": kd, "ce": ce}


class _Static(NamedTuple):
    teacher: str | None  # None | "topk" | "head" | "logits"
    divergence: str
    params: tuple
    estimator: str
    smoothing: float
    ce: bool
    chunk: int  # sequence positions per chunk
    block: int  # vocabulary columns per block


# --- slices -----------------------------------------------------------------------------------------

def _fold(step, carry, length, size):
    """carry = step(carry, start, keep) over ⌈length/size⌉ equal slices [start, start + size) in one
    scanned body; the last slice overlaps its predecessor and `keep` [size] marks what it adds."""
    def body(carry, i):
        start = jnp.minimum(i * size, length - size)
        return step(carry, start, start + jnp.arange(size) >= i * size), None

    return lax.scan(body, carry, jnp.arange(-(-length // size)))[0]


def _seq(x, start, size):
    return lax.dynamic_slice_in_dim(x, start, size, axis=1)


def _columns(w, start, size, dtype):
    return lax.dynamic_slice_in_dim(w, start, size, axis=1).astype(dtype)


def _logits(x, w, start, size):
    """x [B, c, D] @ w[:, start:start + size], operands in x's dtype, fp32 accumulation."""
    return jnp.einsum("bcd,dv->bcv", x, _columns(w, start, size, x.dtype), preferred_element_type=_F32)


class _Chunk(NamedTuple):
    """One sequence chunk's inputs."""
    x: jax.Array  # student hidden [B, c, D]
    y: jax.Array  # labels [B, c]
    t: jax.Array | None  # teacher hidden (Head) or logits, [B, c, ...]
    ids: jax.Array | None  # sparse teacher ids [B, c, k]
    logprobs: jax.Array | None


def _chunk(teacher, hidden, labels, start, size) -> _Chunk:
    t = ids = logprobs = None
    if isinstance(teacher, Head):
        t = _seq(teacher.hidden, start, size)
    elif isinstance(teacher, losses.TopK):
        ids, logprobs = _seq(teacher.ids, start, size), _seq(teacher.logprobs, start, size)
    elif teacher is not None:
        t = _seq(teacher, start, size)
    return _Chunk(_seq(hidden, start, size), _seq(labels, start, size), t, ids, logprobs)


def _teacher_logits(teacher, ch: _Chunk, start, size):
    if isinstance(teacher, Head):
        return _logits(ch.t.astype(ch.x.dtype), teacher.unembedding, start, size)
    return lax.dynamic_slice_in_dim(ch.t, start, size, axis=2).astype(_F32)


def _lse_update(m, s, z):
    """Running log-sum-exp (max m, scaled sum s) after one more block z [..., block]."""
    m_new = jnp.maximum(m, z.max(-1))
    return m_new, s * jnp.exp(m - m_new) + jnp.exp(z - m_new[..., None]).sum(-1)


def _in_block(ids, start, size, keep):
    """ids [...] among this block's new columns, and their offsets into the block."""
    first = start + jnp.argmax(keep)
    inside = (ids >= first) & (ids < start + size)
    return inside, jnp.where(inside, ids - start, 0)


def _gather(z, ids, start, size, keep):
    inside, offset = _in_block(ids, start, size, keep)
    return jnp.where(inside, jnp.take_along_axis(z, offset, -1), 0.0)


# --- per-token math ---------------------------------------------------------------------------------

def _token_fn(static):
    return functools.partial(losses.DIVERGENCES[static.divergence].token_fn, **dict(static.params))


def _sparse_kd(static, z_k, lse1, logprobs, tau):
    """KD against a top-k teacher from the student's logits at its ids and log-sum-exp (at T = 1),
    the same math as `losses._support_log_probs`."""
    lt = logprobs.astype(_F32)
    if static.estimator == "renorm":
        ls, lt = jax.nn.log_softmax(z_k / tau), jax.nn.log_softmax(lt / tau)
    else:
        ls = jax.nn.log_softmax(losses._with_tail(z_k - lse1[..., None]) / tau)  # noqa: SLF001
        lt = jax.nn.log_softmax(losses._with_tail(lt) / tau)  # noqa: SLF001
    return _token_fn(static)(ls, losses._teacher(lt))  # noqa: SLF001


def _dense_terms(static, z, zt, lset, lseT, tau, keep):
    """This block's log-probabilities (student, teacher) at temperature T, masked columns at log 0."""
    ls = jnp.where(keep, z / tau - lset[..., None], _NEG)
    lt = losses._teacher(jnp.where(keep, zt / tau - lseT[..., None], _NEG))  # noqa: SLF001
    return ls, lt


def _chunk_stats(static, w, teacher, ch: _Chunk, tau):
    """Per-token sums and residuals of one chunk: {"kd", "ce"} and what the backward pass needs."""
    V, size = w.shape[1], static.block
    dense = static.teacher in ("head", "logits")
    zero = jnp.zeros(ch.y.shape, _F32)
    acc = {"m1": zero + _NEG, "s1": zero, "mt": zero + _NEG, "st": zero, "zy": zero, "zsum": zero}
    if dense:
        acc.update(mT=zero + _NEG, sT=zero)
    if static.teacher == "topk":
        acc["zk"] = jnp.zeros(ch.ids.shape, _F32)

    def pass1(acc, start, keep):
        acc = dict(acc)
        z = jnp.where(keep, _logits(ch.x, w, start, size), _NEG)
        acc["m1"], acc["s1"] = _lse_update(acc["m1"], acc["s1"], z)
        acc["mt"], acc["st"] = _lse_update(acc["mt"], acc["st"], z / tau)
        acc["zy"] += _gather(z, ch.y[..., None], start, size, keep)[..., 0]
        acc["zsum"] += jnp.where(keep, z, 0.0).sum(-1)
        if dense:
            zt = jnp.where(keep, _teacher_logits(teacher, ch, start, size), _NEG)
            acc["mT"], acc["sT"] = _lse_update(acc["mT"], acc["sT"], zt / tau)
        if static.teacher == "topk":
            acc["zk"] += _gather(z, ch.ids, start, size, keep)
        return acc

    acc = _fold(pass1, acc, V, size)
    lse1 = acc["m1"] + jnp.log(acc["s1"])
    res = {"lse1": lse1, "lset": acc["mt"] + jnp.log(acc["st"])}
    out = {"kd": zero, "ce": lse1 - (1.0 - static.smoothing) * acc["zy"] - static.smoothing * acc["zsum"] / V}
    if dense:
        res["lseT"] = acc["mT"] + jnp.log(acc["sT"])
        fn = _token_fn(static)

        def pass2(sums, start, keep):
            z = _logits(ch.x, w, start, size)
            ls, lt = _dense_terms(static, z, _teacher_logits(teacher, ch, start, size), res["lset"], res["lseT"],
                                  tau, keep)
            value, vjp = jax.vjp(lambda ls: fn(ls, lt), ls)  # φ is per column: d_ls[v] = ∂φ_v/∂ls_v
            d_ls = vjp(jnp.ones_like(value))[0]
            return sums[0] + value, sums[1] + jnp.where(keep, d_ls, 0.0).sum(-1)

        out["kd"], res["S"] = _fold(pass2, (zero, zero), V, size)
    elif static.teacher == "topk":
        kd, vjp = jax.vjp(lambda zk, l1: _sparse_kd(static, zk, l1, ch.logprobs, tau), acc["zk"], lse1)
        res["d_zk"], res["d_lse"] = vjp(jnp.ones_like(kd))
        out["kd"] = kd
    return out, res


# --- the loss and its gradient ------------------------------------------------------------------------

def _residual_shapes(static, teacher, B, T):
    shapes = {"lse1": (B, T), "lset": (B, T)}
    if static.teacher in ("head", "logits"):
        shapes.update(lseT=(B, T), S=(B, T))
    if static.teacher == "topk":
        shapes.update(d_zk=(B, T, teacher.ids.shape[-1]), d_lse=(B, T))
    return {k: jnp.zeros(s, _F32) for k, s in shapes.items()}


def _forward(static, hidden, w, teacher, labels, weight, scalars):
    """((loss, kd, ce), per-token residuals [B, T, ...])."""
    tau, w_kd, w_ce = scalars[0], scalars[1], scalars[2]
    B, T, _ = hidden.shape
    c = static.chunk

    def step(carry, start, keep):
        (kd, ce), res = carry
        ch = _chunk(teacher, hidden, labels, start, c)
        out, r = _chunk_stats(static, w, teacher, ch, tau)
        wt = jnp.where(keep, _seq(weight, start, c), 0.0)
        res = {k: lax.dynamic_update_slice_in_dim(res[k], r[k], start, axis=1) for k in res}
        return (kd + jnp.sum(wt * out["kd"]), ce + jnp.sum(wt * out["ce"])), res

    init = ((jnp.zeros((), _F32), jnp.zeros((), _F32)), _residual_shapes(static, teacher, B, T))
    (kd, ce), res = _fold(step, init, T, c)
    ce = ce if static.ce else jnp.zeros((), _F32)
    return (w_kd * kd + w_ce * ce, kd, ce), res


def _backward(static, hidden, w, teacher, labels, weight, scalars, res, a_kd, a_ce):
    """(d hidden, d unembedding) for the cotangent a_kd·KD + a_ce·CE."""
    tau = scalars[0]
    B, T, _ = hidden.shape
    V, size, c = w.shape[1], static.block, static.chunk
    fn = _token_fn(static) if static.teacher in ("head", "logits") else None

    def step(carry, start, keep_t):
        d_hidden, d_w = carry
        ch = _chunk(teacher, hidden, labels, start, c)
        r = {k: _seq(v, start, c) for k, v in res.items()}
        wt = jnp.where(keep_t, _seq(weight, start, c), 0.0)[..., None]

        def block(carry, start, keep):
            d_x, d_w = carry
            z = jnp.where(keep, _logits(ch.x, w, start, size), _NEG)
            p1 = jnp.exp(z - r["lse1"][..., None])  # masked columns: 0
            dz = jnp.zeros_like(z)
            if static.ce:
                label = (start + jnp.arange(size) == ch.y[..., None]) & keep
                dz += a_ce * (p1 - (1.0 - static.smoothing) * label - jnp.where(keep, static.smoothing / V, 0.0))
            if fn is not None:
                ls, lt = _dense_terms(static, z, _teacher_logits(teacher, ch, start, size), r["lset"], r["lseT"],
                                      tau, keep)
                d_ls = jax.grad(lambda ls: fn(ls, lt).sum())(ls)
                dz += a_kd * jnp.where(keep, d_ls - jnp.exp(ls) * r["S"][..., None], 0.0) / tau
            if static.teacher == "topk":
                inside, offset = _in_block(ch.ids, start, size, keep)
                at_ids = jax.vmap(jax.vmap(lambda row, i, v: jnp.zeros_like(row).at[i].add(v)))(
                    z, offset, jnp.where(inside, r["d_zk"], 0.0))
                dz += a_kd * (r["d_lse"][..., None] * p1 + at_ids)
            dz = (dz * wt).astype(ch.x.dtype)
            d_x = d_x + jnp.einsum("bcv,dv->bcd", dz, _columns(w, start, size, ch.x.dtype),
                                   preferred_element_type=_F32)
            d_cols = jnp.einsum("bcd,bcv->dv", ch.x, dz, preferred_element_type=_F32)
            old = lax.dynamic_slice_in_dim(d_w, start, size, axis=1)
            return d_x, lax.dynamic_update_slice_in_dim(d_w, old + d_cols, start, axis=1)

        d_x, d_w = _fold(block, (jnp.zeros(ch.x.shape, _F32), d_w), V, size)
        old = _seq(d_hidden, start, c)  # add: the last chunk overlaps (with zero weight there)
        return lax.dynamic_update_slice_in_dim(d_hidden, old + d_x.astype(d_hidden.dtype), start, axis=1), d_w

    d_hidden, d_w = _fold(step, (jnp.zeros_like(hidden), jnp.zeros(w.shape, _F32)), T, c)
    return d_hidden, d_w.astype(w.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _loss(static, hidden, w, teacher, labels, weight, scalars):
    return _forward(static, hidden, w, teacher, labels, weight, scalars)[0]


def _loss_fwd(static, hidden, w, teacher, labels, weight, scalars):
    out, res = _forward(static, hidden, w, teacher, labels, weight, scalars)
    return out, (hidden, w, teacher, labels, weight, scalars, res)


def _loss_bwd(static, saved, g):
    hidden, w, teacher, labels, weight, scalars, res = saved
    g_loss, g_kd, g_ce = g
    a_kd = g_loss * scalars[1] + g_kd  # loss = w_kd·KD + w_ce·CE, and KD, CE themselves
    a_ce = g_loss * scalars[2] + g_ce
    d_hidden, d_w = _backward(static, hidden, w, teacher, labels, weight, scalars, res, a_kd, a_ce)
    return d_hidden, d_w, None, None, None, None  # the teacher, labels, weights: constants


_loss.defvjp(_loss_fwd, _loss_bwd)
