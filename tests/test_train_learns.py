"""A tiny explainer learns by KD: eval loss falls and greedy outputs become parseable Assessments."""
import os

import jax
import pytest

import train_fixtures
from lantern_jax import config as config_lib
from lantern_jax import train as train_lib
from lantern_jax import train_log
from lantern_jax.data import datasets
from lantern_jax.data import input_pipeline as pipe
from lantern_jax.generate import SamplingConfig, generate_ids
from lantern_jax.models import hf, sources
from lantern_jax.teacher.parse import TeacherOutputError, parse_assessment

pytestmark = [pytest.mark.slow]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_rate(model, tokenizer, records) -> float:
    prompts = [pipe.prompt_ids(tokenizer, pipe.as_messages(r["prompt"])) for r in records]
    outs = generate_ids(model, prompts, [tokenizer.eos_token_id], SamplingConfig(max_new_tokens=160))
    ok = 0
    for tokens, *_ in outs:
        try:
            parse_assessment(tokenizer.decode(tokens, skip_special_tokens=True))
            ok += 1
        except TeacherOutputError:
            pass
    return ok / len(outs)


def test_tiny_explainer_kd_learns(tmp_path):
    data_dir, tok_dir = train_fixtures.build(str(tmp_path / "d"), n_train=96, n_dev=8, vocab=1024,
                                             max_requirements=2)
    cfg = config_lib.load_config(os.path.join(ROOT, "configs/explainer_kd.py:local"))
    cfg.model.tokenizer = tok_dir
    cfg.model.init.update(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=192)
    cfg.data.update(dir=data_dir, topk=4, max_length=320)
    cfg.train.update(steps=200, batch_size=8, log_every=10, eval_every=200, eval_batches=1,
                     checkpoint_every=200)
    cfg.optim.update(lr=3e-3, warmup_steps=10)
    tokenizer = hf.load_tokenizer(tok_dir)
    dev = list(datasets.read_dataset("d_t", data_dir, "dev"))

    init_cfg = config_lib.load_config(os.path.join(ROOT, "configs/explainer_kd.py:local"))
    init_cfg.model.update(tokenizer=tok_dir)
    init_cfg.model.init.update(cfg.model.init.to_dict())
    untrained, _ = sources.build(init_cfg.model, train_lib.validate(cfg, jax.devices()[:1]),
                                         seed=0, kind="lm")
    before = parse_rate(untrained, tokenizer, dev)

    out = train_lib.train(cfg, str(tmp_path / "run"), devices=jax.devices()[:1])
    first = train_log.read_metrics(str(tmp_path / "run"))["train"][0]["loss"]
    assert out["eval"]["loss"] < 0.3 * first, (first, out["eval"])
    after = parse_rate(hf.load_hf(tmp_path / "run" / "export"), tokenizer, dev)
    assert before == 0.0 and after >= 0.25, (before, after)
