"""The name tables: each HF tensor name <-> our parameter path(s), per family and model kind.

One entry may join several of our tensors into one HF tensor (ModernBERT's fused Wqkv and Wi),
split along HF's output rows. Linear weights are transposed between the two layouts (torch stores
[out, in]; our kernels are [in, out]). Scanned layer stacks address one layer by index.
"""
from __future__ import annotations

import dataclasses

from lantern_jax.models.decoder import DecoderConfig
from lantern_jax.models.errors import CheckpointError
from lantern_jax.models.kinds import Model, model_kind


@dataclasses.dataclass(frozen=True)
class Entry:
    """One HF tensor <-> one or more of our parameters (joined along HF's dim 0).

    `hf` is relative to the backbone (no "model." / "bert." prefix) unless `head` is set: task
    heads (lm_head, score, classifier) sit at the top level of every HF checkpoint.
    """
    hf: str
    ours: tuple[tuple[str, int | None], ...]  # (our path, layer index within a scanned stack)
    linear: bool  # HF [out, in] <-> our [in, out]
    head: bool = False


def backbone_prefix(model: Model) -> str:
    """Where HF puts the backbone in this architecture (what save_hf writes)."""
    kind = model_kind(model)
    b = model.cfg.backbone if kind == "classifier" else model.cfg
    if kind in ("encoder", "decoder"):
        return ""
    return "bert." if getattr(b, "family", None) == "bert" else "model."


def _layer_path(stack: str, i: int, suffix: str, scanned: bool) -> tuple[str, int | None]:
    return (f"{stack}.blocks.{suffix}", i) if scanned else (f"{stack}.blocks.{i}.{suffix}", None)


def entries(model: Model) -> list[Entry]:
    """The full table for `model`: HF names (with the architecture's prefix) <-> our paths."""
    kind = model_kind(model)
    cfg = model.cfg
    b = cfg.backbone if kind == "classifier" else cfg
    ours_root = {"lm": "model", "decoder": "", "encoder": "", "classifier": "backbone"}[kind]
    out: list[Entry] = []

    def add(hf: str, ours: str | list[str], linear: bool = False, layer: int | None = None):
        paths = [ours] if isinstance(ours, str) else ours
        resolved = []
        for p in paths:
            if layer is None:
                resolved.append(((f"{ours_root}." if ours_root else "") + p, None))
            else:
                path, idx = _layer_path(f"{ours_root}.layers" if ours_root else "layers", layer, p,
                                        b.scan_layers)
                resolved.append((path, idx))
        out.append(Entry(hf, tuple(resolved), linear))

    def dense(hf: str, ours: str, bias: bool, layer=None):
        add(f"{hf}.weight", f"{ours}.kernel", True, layer)
        if bias:
            add(f"{hf}.bias", f"{ours}.bias", False, layer)

    if isinstance(b, DecoderConfig):
        add("embed_tokens.weight", "embed.embedding")
        add("norm.weight", "final_norm.scale")
        for i in range(b.num_layers):
            lp = f"layers.{i}."
            add(lp + "input_layernorm.weight", "attn_norm.scale", layer=i)
            add(lp + "post_attention_layernorm.weight", "mlp_norm.scale", layer=i)
            for n in "qkv":
                dense(f"{lp}self_attn.{n}_proj", f"attn.{n}", b.qkv_bias, i)
            dense(f"{lp}self_attn.o_proj", "attn.o", b.out_bias, i)
            for n in ("gate", "up", "down"):
                dense(f"{lp}mlp.{n}_proj", n, b.mlp_bias, i)
        if kind == "lm" and not b.tie_word_embeddings:
            out.append(Entry("lm_head.weight", (("lm_head.kernel", None),), True, head=True))
    elif b.family == "bert":
        e = "embeddings."
        add(e + "word_embeddings.weight", "embed.embedding")
        add(e + "position_embeddings.weight", "position_embed.embedding")
        add(e + "token_type_embeddings.weight", "type_embed.embedding")
        add(e + "LayerNorm.weight", "embed_norm.scale")
        add(e + "LayerNorm.bias", "embed_norm.bias")
        for i in range(b.num_layers):
            lp = f"encoder.layer.{i}."
            for hf_n, n in (("query", "q"), ("key", "k"), ("value", "v")):
                dense(f"{lp}attention.self.{hf_n}", f"attn.{n}", True, i)
            dense(lp + "attention.output.dense", "attn.o", True, i)
            add(lp + "attention.output.LayerNorm.weight", "attn_norm.scale", layer=i)
            add(lp + "attention.output.LayerNorm.bias", "attn_norm.bias", layer=i)
            dense(lp + "intermediate.dense", "up", True, i)
            dense(lp + "output.dense", "down", True, i)
            add(lp + "output.LayerNorm.weight", "mlp_norm.scale", layer=i)
            add(lp + "output.LayerNorm.bias", "mlp_norm.bias", layer=i)
        dense("pooler.dense", "pooler", True)
    else:  # modernbert
        nb = b.norm_bias
        add("embeddings.tok_embeddings.weight", "embed.embedding")
        add("embeddings.norm.weight", "embed_norm.scale")
        if nb:
            add("embeddings.norm.bias", "embed_norm.bias")
        for i in range(b.num_layers):
            lp = f"layers.{i}."
            norms = (["attn_norm"] if i > 0 else []) + ["mlp_norm"]
            for n in norms:
                add(f"{lp}{n}.weight", f"{n}.scale", layer=i)
                if nb:
                    add(f"{lp}{n}.bias", f"{n}.bias", layer=i)
            add(lp + "attn.Wqkv.weight", ["attn.q.kernel", "attn.k.kernel", "attn.v.kernel"], True, i)
            if b.attention_bias:
                add(lp + "attn.Wqkv.bias", ["attn.q.bias", "attn.k.bias", "attn.v.bias"], False, i)
            dense(lp + "attn.Wo", "attn.o", b.attention_bias, i)
            add(lp + "mlp.Wi.weight", ["up.kernel", "gate.kernel"], True, i)
            if b.mlp_bias:
                add(lp + "mlp.Wi.bias", ["up.bias", "gate.bias"], False, i)
            dense(lp + "mlp.Wo", "down", b.mlp_bias, i)
        add("final_norm.weight", "final_norm.scale")
        if nb:
            add("final_norm.bias", "final_norm.bias")
    if kind == "classifier":  # named as in the family's *ForSequenceClassification
        head = []
        if model.dense is not None:
            head += [("head.dense.weight", "dense.kernel", True)]
            head += [("head.dense.bias", "dense.bias", False)] if model.dense.bias is not None else []
        if model.head_norm is not None:
            head += [("head.norm.weight", "head_norm.scale", False)]
            head += [("head.norm.bias", "head_norm.bias", False)] if model.head_norm.bias is not None else []
        out_name = "score" if isinstance(b, DecoderConfig) else "classifier"
        head += [(f"{out_name}.weight", "out.kernel", True)]
        head += [(f"{out_name}.bias", "out.bias", False)] if model.out.bias is not None else []
        out.extend(Entry(h, ((o, None),), lin, head=True) for h, o, lin in head)
    return out


def is_head_tensor(e: Entry) -> bool:
    """Classifier head parameters (and BERT's pooler, which the head uses) may start random."""
    return e.head or all(p.startswith("backbone.pooler") for p, _ in e.ours)


def find_prefix(entries: list[Entry], names: list[str], source: str) -> str:
    """The backbone prefix this checkpoint uses: bare models have none, task models one."""
    probe = next(e.hf for e in entries if not e.head)
    have = set(names)
    for prefix in ("", "model.", "bert."):
        if prefix + probe in have:
            return prefix
    raise CheckpointError(f"{source}: missing tensor {probe!r} (also looked under model. / bert.)")
