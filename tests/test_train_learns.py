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
from pipeline_fixtures import run_module

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

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
    spec = os.path.join(ROOT, "configs/explainer_kd.py:local")
    overrides = [f"--config.{key}={value}" for key, value in {
        "model.tokenizer": tok_dir, "model.init.hidden_size": 64, "model.init.num_layers": 2,
        "model.init.num_heads": 4, "model.init.num_kv_heads": 2, "model.init.intermediate_size": 192,
        "data.dir": data_dir, "data.topk": 4, "data.max_length": 320, "train.steps": 200,
        "train.batch_size": 8, "train.log_every": 10, "train.eval_every": 200, "train.eval_batches": 1,
        "train.checkpoint_every": 200, "optim.lr": 3e-3, "optim.warmup_steps": 10}.items()]
    cfg = config_lib.load_config(spec, overrides)
    tokenizer = hf.load_tokenizer(tok_dir)
    dev = list(datasets.read_dataset("d_t", data_dir, "dev"))

    untrained, _ = sources.build(cfg.model, train_lib.validate(cfg, jax.devices()[:1]), seed=0, kind="lm")
    before = parse_rate(untrained, tokenizer, dev)

    # 200 real steps, so the CLI trains them in an XLA-optimised process on one device (this one
    # compiles unoptimised: pipeline_fixtures.xla_flags)
    workdir = tmp_path / "run"
    run_module("lantern_jax.train", "--config", spec, "--workdir", str(workdir), *overrides, optimize=True)
    metrics = train_log.read_metrics(str(workdir))
    first, last = metrics["train"][0]["loss"], metrics["eval"][-1]["loss"]
    assert last < 0.3 * first, (first, last)
    after = parse_rate(hf.load_hf(workdir / "export"), tokenizer, dev)
    assert before == 0.0 and after >= 0.25, (before, after)
