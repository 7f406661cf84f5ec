"""Multi-stage explainer distillation (in-house teacher -> mid student -> small student), one command.

    python -m lantern_jax.train --config configs/explainer_chain.py:local --workdir runs/chain \
        --config.data.dir=runs/demo/data/tfds

Stage "mid" learns from the in-house teacher's stored top-k (D_t); stage "small" then learns from
the mid student online, its forward inside the small student's jitted step. Each stage trains in
<workdir>/<stage> and exports there; rerunning skips finished stages.

Variants: local (tiny, CPU) | qwen (7B teacher's D_t -> Qwen2.5-1.5B -> Qwen2.5-0.5B).
"""
from lantern_jax.config import train_config


def get_config(arg=None):
    arg = arg or "local"
    c = train_config("explainer_kd")
    if arg == "local":
        c.model.tokenizer = "runs/demo/tokenizer"
        c.data.max_length = 768
        c.train.update(steps=300, batch_size=8, eval_every=100, checkpoint_every=100)
        c.optim.update(lr=2e-3, warmup_steps=30)
        mid = {"model.init.hidden_size": 96, "model.init.num_layers": 3, "model.init.intermediate_size": 256}
        small = {"model.init.hidden_size": 48, "model.init.num_layers": 2, "model.init.intermediate_size": 128}
    elif arg == "qwen":
        c.model.update(dtype="bfloat16", scan_layers=True, remat="dots_no_batch")
        c.teacher.dtype = "bfloat16"
        c.mesh.update(data=-1, fsdp=8, tensor=1)
        c.data.max_length = 4096
        c.loss.update(divergence="tvd", chunk_size=512)
        c.train.update(steps=4000, batch_size=64, eval_every=500, checkpoint_every=250)
        c.optim.update(lr=2e-5, warmup_steps=200)
        mid = {"model.source": "hf:/path/to/Qwen2.5-1.5B-Instruct"}
        small = {"model.source": "hf:/path/to/Qwen2.5-0.5B-Instruct"}
    else:
        raise ValueError(f"unknown variant {arg!r}: local | qwen")
    c.chain = [
        {"name": "mid", "overrides": {**mid, "teacher.mode": "offline"}},
        {"name": "small", "overrides": {**small, "teacher.mode": "online", "teacher.source": "stage:mid"}},
    ]
    return c
