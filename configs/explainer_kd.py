"""Explainer KD: a decoder student trained with λ_sft·CE + λ_kd·T²·Σ_t d(teacher, student).

    python -m lantern_jax.train --config configs/explainer_kd.py:local --workdir runs/explainer \
        --config.data.dir=runs/demo/data/tfds --config.loss.divergence=tvd

The teacher is offline by default (its top-k per token, stored in D_t by the in-house teacher);
`--config.teacher.mode=online --config.teacher.source=hf:<dir>` runs the teacher's forward inside
the same jitted step instead (the teacher must share the student's tokenizer).

Variants:
  local        tiny decoder on the domain tokenizer (the embedded default)
  smollm2      SmolLM2-135M-Instruct student (real weights)
  qwen1.5b     Qwen2.5-1.5B student, online Qwen2.5-7B teacher (paper setting, stage 1 of 2)
  qwen0.5b     Qwen2.5-0.5B student, online 1.5B teacher (stage 2 of 2)
  Both take `@<slice>` for the layout of one slice of QWEN_SLICES (default v5p-32):
      python -m lantern_jax.memory_fit --config configs/explainer_kd.py:qwen0.5b@v5e-16
"""
from lantern_jax.config import train_config

# Layout per student and hardware slice (lantern_jax.memory_fit.TARGETS) for 64 x 4096-token
# sequences per step; tests/test_memory_fit.py checks each fits. The online teacher's forward and
# the chunked KD loss over a ~152k vocabulary decide the rows per device.
QWEN_SLICES = {
    "qwen1.5b": {
        "v5e-16": {"mesh.data": -1, "mesh.fsdp": 8, "mesh.tensor": 2, "optim.grad_accum": 4, "model.remat": "full"},
        "v5p-32": {"mesh.data": -1, "mesh.fsdp": 16, "mesh.tensor": 1, "optim.grad_accum": 1,
                   "model.remat": "dots_no_batch"},
        "8xH100": {"mesh.data": -1, "mesh.fsdp": 8, "mesh.tensor": 1, "optim.grad_accum": 2, "model.remat": "full"},
    },
    "qwen0.5b": {
        "v5e-16": {"mesh.data": -1, "mesh.fsdp": 16, "mesh.tensor": 1, "optim.grad_accum": 2, "model.remat": "full"},
        "v5p-32": {"mesh.data": -1, "mesh.fsdp": 8, "mesh.tensor": 1, "optim.grad_accum": 1,
                   "model.remat": "dots_no_batch"},
        "8xH100": {"mesh.data": -1, "mesh.fsdp": 8, "mesh.tensor": 1, "optim.grad_accum": 1, "model.remat": "full"},
    },
}


def get_config(arg=None):
    c = train_config("explainer_kd")
    arg, _, slice_name = (arg or "local").partition("@")
    if slice_name and arg not in QWEN_SLICES:
        raise ValueError(f"variant {arg!r} has no per-slice layouts (only {' | '.join(QWEN_SLICES)})")
    if arg == "local":
        c.model.tokenizer = "runs/demo/tokenizer"
        c.model.init.update(hidden_size=96, num_layers=3, num_heads=4, num_kv_heads=2,
                            intermediate_size=256)
        c.data.max_length = 768
        c.train.update(steps=300, batch_size=8, eval_every=100, checkpoint_every=100)
        c.optim.update(lr=2e-3, warmup_steps=30)
    elif arg == "smollm2":
        c.model.source = "smollm2"
        c.data.max_length = 1024
        c.train.update(steps=200, batch_size=4, eval_every=100, checkpoint_every=50)
        c.optim.update(lr=5e-5, warmup_steps=20)
    elif arg in ("qwen1.5b", "qwen0.5b"):
        student, teacher = (("1.5B", "7B") if arg == "qwen1.5b" else ("0.5B", "1.5B"))
        c.model.source = f"hf:/path/to/Qwen2.5-{student}-Instruct"
        c.teacher.update(mode="online", source=f"hf:/path/to/Qwen2.5-{teacher}-Instruct", dtype="bfloat16")
        c.model.update(dtype="bfloat16", scan_layers=True)
        c.data.max_length = 4096
        c.loss.update(divergence="tvd", chunk_size=512)
        c.train.update(steps=4000, batch_size=64, eval_every=500, checkpoint_every=250)
        c.optim.update(lr=2e-5, warmup_steps=200)
        layout = slice_name or "v5p-32"
        if layout not in QWEN_SLICES[arg]:
            raise ValueError(f"unknown slice {layout!r}: {' | '.join(QWEN_SLICES[arg])}")
        c.update_from_flattened_dict(QWEN_SLICES[arg][layout])
    else:
        raise ValueError(f"unknown variant {arg!r}: local | smollm2 | qwen1.5b[@slice] | qwen0.5b[@slice]")
    return c
