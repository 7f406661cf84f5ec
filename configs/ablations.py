"""The paper's ablations on the embedded pipeline, one command:

    python -m lantern_jax.ablations --config configs/ablations.py --workdir runs/ablations
    python -m lantern_jax.ablations --config configs/ablations.py:micro --workdir /tmp/abl   # 1 seed
    ... --config.cells=divergence,classifier/hard_only   # groups and / or group/cell

`base` is configs/demo.py (its micro variant for `:micro`): its data, teacher, seed, inhouse and d_t
stages run once into <workdir>/base; every cell then trains only the student it varies, from
`base.explainer` / `base.classifier` (so `--config.base.explainer.train.steps=...` sets the
per-cell budget), for `seeds` seeds, and is evaluated on the base's test split. Per-cell budgets
are small so that the whole grid, three seeds included, runs on a laptop CPU; the table it wrote
and the time per cell are in docs/benchmarks.md (Ablations).
"""
import os

import ml_collections

from lantern_jax import config as config_lib

HERE = os.path.dirname(os.path.abspath(__file__))
BASE_STAGES = "data,blackbox,seed,inhouse,d_t"


def get_config(arg=None):
    arg = config_lib.variant(arg, ("default", "micro"))
    micro = arg == "micro"
    c = ml_collections.ConfigDict()
    c.cells = "all"  # comma-separated groups (divergence, kd, stages, classifier, compression) or group/cell
    c.seeds = 1 if micro else 3
    c.divergences = "forward_kl,reverse_kl,jsd,skew_kl,tvd"  # the divergence group's cells (losses.DIVERGENCES)
    c.base = config_lib.load_config(os.path.join(HERE, f"demo.py:{arg}"))
    c.base.stages = BASE_STAGES
    # The base budgets the table in docs/benchmarks.md was measured with, pinned here so that
    # trimming the demo's own time budget doesn't silently change the ablation base.
    c.base.inhouse.train.steps = 20 if micro else 70
    c.base.explainer.model.update(source="init", keep_layers=())  # every cell's student from random init
    c.base.d_t.n_train = 32 if micro else 96

    # Per-cell student budget: short runs, many of them; every cell of a group gets the same one.
    c.base.explainer.train.update(steps=20 if micro else 30, log_every=10, eval_every=30,
                                  checkpoint_every=30, eval_batches=2)
    c.base.explainer.optim.warmup_steps = 5 if micro else 10
    # The head starts fitted on frozen features (model.probe_examples), so 12 steps at batch 16
    # fine-tune from above chance; with a random head MiniLM needs several times as many to leave
    # it (docs/benchmarks.md, classifier head init).
    c.base.classifier.model.probe_examples = 128
    c.base.classifier.train.update(steps=12, batch_size=8 if micro else 16, log_every=6,
                                   eval_every=12, checkpoint_every=12, eval_batches=2)
    c.base.classifier.optim.warmup_steps = 4 if micro else 8
    c.base.evaluate.update(n_per_split=40 if micro else 60, n_explain=4 if micro else 16,
                           max_new_tokens=64 if micro else 96)

    # Two-stage cell: the mid student between the in-house teacher and the small explainer
    # (twice the small one's width and one more layer, as in configs/explainer_chain.py:local).
    small = c.base.explainer.model.init
    c.chain_mid = ml_collections.ConfigDict({
        "hidden_size": 2 * small.hidden_size, "num_layers": small.num_layers + 1,
        "intermediate_size": 2 * small.intermediate_size})
    # Decoder classifier cell: a tiny decoder on the domain tokenizer with last-token pooling
    # (configs/classifier_kd.py:decoder), trained from scratch, hence the larger learning rate.
    c.decoder_classifier = ml_collections.ConfigDict({
        "hidden_size": 64, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 128,
        "lr": 1e-3})
    # Compression off: the full posting no longer fits 320 tokens; give it MiniLM's whole window.
    c.uncompressed_max_length = 512
    return c
