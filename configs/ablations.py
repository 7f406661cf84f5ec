"""The paper's ablations on the embedded pipeline, one command:

    python -m lantern_jax.ablations --config configs/ablations.py --workdir runs/ablations
    python -m lantern_jax.ablations --config configs/ablations.py:micro --workdir /tmp/abl   # 1 seed
    ... --config.cells=divergence,classifier/hard_only   # groups and / or group/cell

`base` is configs/demo.py (its micro variant for `:micro`): its data, teacher, seed, inhouse and d_t
stages run once into <workdir>/base; every cell then trains only the student it varies, from
`base.explainer` / `base.classifier` (so `--config.base.explainer.train.steps=...` sets the
per-cell budget), for `seeds` seeds, and is evaluated on the base's test split.

Budget (default, 3 seeds, 2 shared CPU cores), from step times measured on this machine at the
default sizes: explainer (hidden 96, length 1280, batch 8) 1.9-2.2 s/step, chain mid and online
small 2.5 s/step each; MiniLM classifier 6.6 s/step at batch 16 x 320 tokens, 13.9 s at 512 tokens
(compression off), both measured under load (~2.5 s at batch 16 x 320 on a quieter machine);
decoder classifier 0.3 s/step; ~25-40 s per run of compile, export and scoring. The 12 distinct runs
(5 divergences, of which tvd also stands for data+kd and single-stage; no_kd; the chain; MiniLM mean
(= soft = compression on), cls, hard only, uncompressed; the decoder) cost per seed ~30 x (6 x 2.1 +
2 x 2.5) s explainer + 40 x (3 x 2.5 + 5.5 + 0.3) s classifier + 12 x 35 s overhead + 7 x ~15 s
generation ~ 26 min on a quiet machine; 3 seeds ~ 80 min, plus the base stages (~9-14 min): about
90 minutes. Not run in full yet; all 16 cells at the test's 2-step sizes took 5 min here.
"""
import os

import ml_collections

from lantern_jax import config as config_lib

HERE = os.path.dirname(os.path.abspath(__file__))
BASE_STAGES = "data,teacher,seed,inhouse,d_t"


def get_config(arg=None):
    arg = config_lib.variant(arg, ("default", "micro"))
    micro = arg == "micro"
    c = ml_collections.ConfigDict()
    c.cells = "all"  # comma-separated groups (divergence, kd, stages, classifier, compression) or group/cell
    c.seeds = 1 if micro else 3
    c.base = config_lib.load_config(os.path.join(HERE, f"demo.py:{arg}"))
    c.base.stages = BASE_STAGES

    # Per-cell student budget: short runs, many of them; every cell of a group gets the same one.
    c.base.explainer.train.update(steps=20 if micro else 30, log_every=10, eval_every=30,
                                  checkpoint_every=30, eval_batches=2)
    c.base.explainer.optim.warmup_steps = 5 if micro else 10
    # The head starts fitted on frozen features (model.probe_examples), so 20 steps at batch 16
    # fine-tune from above chance; with a random head MiniLM needed ~40+ to leave it.
    c.base.classifier.model.probe_examples = 128
    c.base.classifier.train.update(steps=12 if micro else 20, batch_size=8 if micro else 16, log_every=10,
                                   eval_every=20, checkpoint_every=20, eval_batches=2)
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
