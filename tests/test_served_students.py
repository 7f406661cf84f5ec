"""The session's micro run (tests/conftest.py) served as a user would serve it: its classifier and
explainer exports behind a real uvicorn server on loopback. /v1/fit must give the probabilities the
evaluation computed for the same pairs (serving reads the same text, `views.classifier_text`,
through its own bucketed, micro-batched path), and /v1/explain must answer every pair."""
import httpx
import numpy as np
import pytest

from lantern_jax import config as config_lib
from lantern_jax import inference, scoring
from lantern_jax.data import views
from lantern_jax.data.rundir import RunDir
from lantern_jax.models import sources
from lantern_jax.serve.app import create_app
from lantern_jax.serve.config import ServeConfig
from lantern_jax.serve.runner import serve_in_thread
from lantern_jax.serve.service import load_service

pytestmark = [pytest.mark.slow, pytest.mark.real_weights, pytest.mark.xdist_group("micro_run")]


def test_served_fit_equals_evaluation_and_explain_answers(micro_run):
    run = RunDir(str(micro_run[0]))
    cfg = config_lib.load_config("configs/demo.py:micro")
    pairs = run.pairs("test")[:6]
    max_length = cfg.classifier.data.max_length
    serve_cfg = ServeConfig(max_batch=8, max_gen_batch=2, max_pairs=8, classifier_max_length=max_length,
                            max_new_tokens=16, prompt_buckets=(2048,))
    service = load_service(serve_cfg, classifier=run.export("classifier"), explainer=run.export("explainer"),
                           warmup=False)
    with serve_in_thread(create_app(service)) as url:
        fit = httpx.post(url + "/v1/fit", json={"pairs": [p.to_dict() for p in pairs]}, timeout=300)
        explained = httpx.post(url + "/v1/explain", json={"pair": pairs[0].to_dict()}, timeout=300)
    assert fit.status_code == 200, fit.text
    served = np.array([[r["probabilities"][level] for level in ("low", "medium", "high")]
                       for r in fit.json()["results"]])

    model, tokenizer = sources.load(run.export("classifier"))
    logits, _ = inference.classify(model, tokenizer, [views.classifier_text(p) for p in pairs],
                                   max_length=max_length)
    np.testing.assert_allclose(served, scoring.softmax(logits), atol=1e-4)
    assert [r["pair_id"] for r in fit.json()["results"]] == [p.pair_id for p in pairs]
    assert explained.status_code == 200, explained.text
    answer = explained.json()
    assert answer["pair_id"] == pairs[0].pair_id and answer["raw_text"]
    assert (answer["assessment"] is None) == (answer["error"] is not None)  # parsed, or says why not
