"""The embedded default: the whole LANTERN pipeline offline on a laptop CPU (`make demo`).

    python -m lantern_jax.pipeline --config configs/demo.py --workdir runs/demo
    python -m lantern_jax.pipeline --config configs/demo.py:micro --workdir /tmp/micro   # CI size

Real taxonomy data -> simulated black-box teacher behind a real OpenAI-compatible server ->
quality gates -> tiny in-house teacher -> D_t with top-k -> tiny explainer student (KD) and fit
classifier (KD) -> evaluation report. Sizes are chosen so the default run takes minutes.
"""
import ml_collections

from lantern_jax.config import train_config


def get_config(arg=None):
    arg = arg or "default"
    if arg not in ("default", "micro"):
        raise ValueError(f"unknown variant {arg!r}: default | micro")
    micro = arg == "micro"
    c = ml_collections.ConfigDict()
    c.stages = "all"
    c.seed = 0
    c.data = ml_collections.ConfigDict({
        "n_pairs": 400 if micro else 1200,
        "fractions": {"train": 0.7, "dev": 0.1, "test": 0.1, "heldout_occupation": 0.05,
                      "heldout_company": 0.05}})
    c.teacher = ml_collections.ConfigDict({
        "n_seed": 120 if micro else 500,  # pairs the black-box teacher labels for D_seed
        "concurrency": 16, "top_logprobs": 5,
        # the simulated teacher's realistic mistakes, for the gates to catch
        "error_rates": {"malformed_json": 0.03, "truncation": 0.02, "refusal": 0.01,
                        "disagreement": 0.03, "fabricated_evidence": 0.03, "wrong_verdict": 0.03},
        "fault_rates": {"429": 0.02, "500": 0.02}})
    c.review = ml_collections.ConfigDict({"decisions": ""})  # a reviewed file from seed/review.csv
    c.tokenizer = ml_collections.ConfigDict({"vocab_size": 1024 if micro else 4096})
    c.d_t = ml_collections.ConfigDict({
        "n_train": 32 if micro else 840, "n_dev": 8 if micro else 60, "topk": 8,
        "batch_size": 32, "max_new_tokens": 64 if micro else 640})
    c.evaluate = ml_collections.ConfigDict({
        "n_per_split": 40 if micro else 60,  # pairs per split for the classifier and references
        "n_explain": 4 if micro else 60,  # of those, how many the explainer generates for
        "max_new_tokens": 64 if micro else 640})

    length = 512 if micro else 1536
    c.inhouse = train_config("teacher_sft")
    c.inhouse.model.init.update(hidden_size=64 if micro else 192, num_layers=2 if micro else 4,
                                num_heads=4, num_kv_heads=2, intermediate_size=128 if micro else 512,
                                max_position_embeddings=2048)
    c.inhouse.data.max_length = length
    c.inhouse.train.update(steps=20 if micro else 400, batch_size=8, log_every=10, eval_every=100,
                           checkpoint_every=100)
    c.inhouse.optim.update(lr=3e-3, warmup_steps=10 if micro else 40)

    c.explainer = train_config("explainer_kd")
    c.explainer.model.init.update(hidden_size=48 if micro else 128, num_layers=2 if micro else 3,
                                  num_heads=4, num_kv_heads=2, intermediate_size=96 if micro else 384,
                                  max_position_embeddings=2048)
    c.explainer.data.update(max_length=length, topk=8)
    c.explainer.loss.update(divergence="tvd", chunk_size=128)
    c.explainer.train.update(steps=20 if micro else 400, batch_size=8, log_every=10, eval_every=100,
                             checkpoint_every=100)
    c.explainer.optim.update(lr=3e-3, warmup_steps=10 if micro else 40)

    c.classifier = train_config("classifier_kd")
    c.classifier.model.init.update(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128,
                                   max_position_embeddings=1024)
    c.classifier.data.max_length = 256 if micro else 1024
    c.classifier.train.update(steps=40 if micro else 300, batch_size=16, log_every=10, eval_every=100,
                              checkpoint_every=100)
    c.classifier.optim.update(lr=2e-3, warmup_steps=10 if micro else 30)
    return c
