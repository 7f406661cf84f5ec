"""The train loop: mesh equivalence, gradient accumulation, exact resume after SIGTERM and SIGKILL,
and clear config errors before anything compiles (two processes: tests/test_launch.py)."""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import pytest

import train_fixtures
from pipeline_fixtures import xla_flags
from lantern_jax import config as config_lib
from lantern_jax import train as train_lib
from lantern_jax import train_log
from lantern_jax.config import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return train_fixtures.build(str(tmp_path_factory.mktemp("train_data")))


def kd_config(data, **overrides):
    data_dir, tokenizer = data
    cfg = config_lib.load_config(os.path.join(ROOT, "configs/explainer_kd.py:local"))
    cfg.model.tokenizer = tokenizer
    cfg.model.init.update(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64)
    cfg.data.update(dir=data_dir, topk=4, max_length=192)
    cfg.train.update(steps=20, batch_size=8, log_every=1, eval_every=10, eval_batches=1,
                     checkpoint_every=4, export=False)
    cfg.optim.update(lr=3e-3, warmup_steps=2)
    config_lib.apply_overrides(cfg, [f"{k}={v}" for k, v in overrides.items()])
    return cfg


def losses_by_step(workdir):
    if not os.path.exists(os.path.join(workdir, "metrics.jsonl")):
        return {}
    return {r["step"]: r["loss"] for r in train_log.read_metrics(str(workdir)).get("train", [])}


@pytest.mark.skipif(jax.device_count() != 8, reason="needs the 8 fake devices of conftest")
@pytest.mark.slow
@pytest.mark.subprocess
def test_mesh_2x2x2_with_accumulation_gives_single_device_losses(data, tmp_path):
    one = kd_config(data, **{"mesh.data": 1})
    # 8 devices: (2, 2, 2) mesh, and the batch in 2 micro-batches of 4
    eight = kd_config(data, **{"optim.grad_accum": 2, "mesh.data": 2, "mesh.fsdp": 2, "mesh.tensor": 2})
    devices_before = jax.devices()
    a = train_lib.train(one, str(tmp_path / "one"), devices=devices_before[:1])
    b = train_lib.train(eight, str(tmp_path / "eight"))
    la, lb = losses_by_step(tmp_path / "one"), losses_by_step(tmp_path / "eight")
    assert sorted(la) == list(range(1, 21))
    for step in la:
        assert lb[step] == pytest.approx(la[step], rel=1e-4), step
    assert la[20] < la[1]  # and it learns
    assert b["eval"]["loss"] == pytest.approx(a["eval"]["loss"], rel=1e-4)


def run_cli(workdir, data, *extra, env=None, wait=True):
    data_dir, tokenizer = data
    cmd = [sys.executable, "-m", "lantern_jax.train", "--config", os.path.join(ROOT, "configs/explainer_kd.py:local"),
           "--workdir", str(workdir), f"--config.data.dir={data_dir}", f"--config.model.tokenizer={tokenizer}",
           "--config.model.init.hidden_size=32", "--config.model.init.num_layers=2",
           "--config.model.init.intermediate_size=64", "--config.data.topk=4", "--config.data.max_length=192",
           "--config.train.steps=16", "--config.train.batch_size=8", "--config.train.log_every=1",
           "--config.train.eval_every=100", "--config.train.checkpoint_every=4", "--config.train.export=False",
           "--config.optim.warmup_steps=2", *extra]
    env = {**os.environ, "XLA_FLAGS": xla_flags(1), **(env or {})}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if wait:
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out[-3000:]
        return out
    return proc


def wait_for_step(proc, workdir, step):
    """Until `workdir`'s metrics log reaches `step` (or the process ends, or 300 s pass)."""
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and max(losses_by_step(workdir), default=0) < step:
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.subprocess
def test_sigterm_then_sigkill_at_random_steps_then_resume_gives_identical_losses(data, tmp_path):
    reference = tmp_path / "reference"
    run_cli(reference, data, "--config.train.checkpoint_every=100")  # saves don't change losses
    expected = losses_by_step(reference)
    assert sorted(expected) == list(range(1, 17))

    # SIGTERM (a preempted VM): the current step is saved and the process exits 143, so a pipeline
    # stage or an ablation cell around it is not marked done; a rerun resumes there
    run = tmp_path / "run"
    proc = run_cli(run, data, wait=False)
    wait_for_step(proc, run, 5)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 143, out[-2000:]
    saved = int(out.split("preempted: saved step ")[1].split(",")[0])
    assert 5 <= saved < 13

    # SIGKILL somewhere after the resumed run's next step, with or without a save in flight: the
    # next rerun resumes from the newest committed checkpoint (Orbax commits by renaming its tmp dir)
    kill_after = saved + 1 + int(time.time()) % (13 - saved)
    proc = run_cli(run, data, wait=False)
    wait_for_step(proc, run, kill_after)
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=300)
    assert f"steps {saved}->16" in out, out[-2000:]
    assert kill_after <= max(losses_by_step(run)) < 16

    out = run_cli(run, data)
    assert any(f"steps {step}->16" in out for step in (saved, 8, 12)), out[-2000:]
    assert losses_by_step(run) == expected  # bitwise: same data position, same state, same programs


@pytest.mark.parametrize("override,message", [
    ("train.stepz=3", "unknown config key 'train.stepz'"),
    ("train.steps=abc", "config key 'train.steps': cannot parse 'abc' as int"),
    ("loss.divergence=kl2", "config key 'loss.divergence': 'kl2' is not one of"),
    ("mesh.tensor=3", "8 devices are not divisible by 3"),
    ("train.batch_size=6", "batch size 6 is not divisible by the data-parallel size 8"),
    ("data.name=d_seed_missing", "unknown dataset"),
])
def test_bad_config_fails_with_one_clear_line_before_compiling(data, tmp_path, override, message):
    with pytest.raises((ConfigError, ValueError)) as e:
        cfg = kd_config(data)
        config_lib.apply_overrides(cfg, [override])
        train_lib.validate(cfg)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "checkpoints").exists()


def test_remat_without_scan_warns_on_cpu(data, caplog):
    cfg = kd_config(data)
    cfg.model.update(remat="full", scan_layers=False)
    with caplog.at_level("WARNING", logger="lantern_jax.train"):
        train_lib.validate(cfg)
    assert "'full' saves no memory on CPU unless model.scan_layers=True" in caplog.text
    caplog.clear()
    cfg.model.scan_layers = True
    with caplog.at_level("WARNING", logger="lantern_jax.train"):
        train_lib.validate(cfg)
    assert "saves no memory" not in caplog.text


@pytest.mark.subprocess
def test_missing_dataset_dir_and_cli_exit_code(data, tmp_path):
    cfg = kd_config(data)
    cfg.data.dir = str(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="not found at"):
        train_lib.validate(cfg)
    proc = subprocess.run([sys.executable, "-m", "lantern_jax.train", "--config",
                           os.path.join(ROOT, "configs/explainer_kd.py:local"), "--workdir", str(tmp_path / "w"),
                           "--config.train.stepz=1"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "error: unknown config key 'train.stepz'"


@pytest.mark.slow
def test_stage_chain_mid_then_small_from_mid_online(data, tmp_path):
    cfg = config_lib.load_config(os.path.join(ROOT, "configs/explainer_chain.py:local"))
    data_dir, tokenizer = data
    cfg.model.tokenizer = tokenizer
    cfg.data.update(dir=data_dir, topk=4, max_length=128)
    cfg.train.update(steps=4, batch_size=8, log_every=2, eval_every=4, eval_batches=1, checkpoint_every=4)
    cfg.chain[0]["overrides"].update({"model.init.hidden_size": 32, "model.init.intermediate_size": 64})
    cfg.chain[1]["overrides"].update({"model.init.hidden_size": 16, "model.init.num_heads": 2,
                                       "model.init.num_kv_heads": 1, "model.init.intermediate_size": 32})
    out = train_lib.run(cfg, str(tmp_path), devices=jax.devices()[:1])
    assert set(out) == {"mid", "small"}
    mid, small = (json.loads((tmp_path / s / "export" / "config.json").read_text()) for s in ("mid", "small"))
    assert (mid["hidden_size"], small["hidden_size"]) == (32, 16)
    small_cfg = json.loads((tmp_path / "small" / "config.json").read_text())
    assert small_cfg["teacher"] == {"mode": "online", "source": f"hf:{tmp_path / 'mid' / 'export'}",
                                    "dtype": "float32"}
    assert out["small"]["train"]["kd"] > 0
    assert train_lib.run(cfg, str(tmp_path), devices=jax.devices()[:1]) == {}  # both done: skipped


def test_stage_chain_validates_every_stage_first(data, tmp_path):
    cfg = config_lib.load_config(os.path.join(ROOT, "configs/explainer_chain.py:local"))
    cfg.data.update(dir=data[0], topk=4)
    cfg.model.tokenizer = data[1]
    cfg.chain[1]["overrides"]["teacher.source"] = "stage:large"
    with pytest.raises(ConfigError, match="'stage:large' is not an earlier stage"):
        train_lib.run(cfg, str(tmp_path), devices=jax.devices()[:1])
    assert not (tmp_path / "mid").exists()


def test_unknown_config_variant_is_one_line(tmp_path):
    from lantern_jax import pipeline
    assert pipeline.main(["--config", os.path.join(ROOT, "configs/demo.py:nope"), "--workdir", str(tmp_path)]) == 2
    with pytest.raises(config_lib.ConfigError, match=r"demo.py:nope: unknown variant 'nope': default \| micro"):
        config_lib.load_config(os.path.join(ROOT, "configs/demo.py:nope"))


@pytest.mark.parametrize("override,message", [
    ("--config.classifier.optim.lr=-1", "error: classifier: config key 'optim.lr' must be positive"),
    ("--config.explainer.loss.divergence=kl", "error: explainer: config key 'loss.divergence'"),
])
def test_pipeline_checks_every_training_section_before_its_first_stage(tmp_path, capsys, override, message):
    from lantern_jax import pipeline
    workdir = tmp_path / "run"
    argv = ["--config", os.path.join(ROOT, "configs/demo.py:micro"), "--workdir", str(workdir), override]
    assert pipeline.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and "\n" not in err, err
    assert not (workdir / "data").exists()  # nothing ran


@pytest.mark.parametrize("preset", ["default", "micro", "accelerator"])
def test_every_demo_preset_passes_the_pipelines_config_check(tmp_path, preset):
    from lantern_jax import pipeline
    from lantern_jax.data.rundir import RunDir
    cfg = config_lib.load_config(os.path.join(ROOT, f"configs/demo.py:{preset}"))
    pipeline.check_config(cfg, RunDir(str(tmp_path)), pipeline.selected(cfg))
    assert cfg.preset == preset


def test_metrics_log_keeps_a_metric_with_no_value_as_null_and_out_of_tensorboard(tmp_path, caplog):
    log = train_log.MetricsLog(str(tmp_path))
    log.write(40, "curve", {"structure_validity": 0.0, "rougeL": float("nan")})
    log.close()
    assert train_log.read_metrics(str(tmp_path))["curve"] == [
        {"step": 40, "split": "curve", "structure_validity": 0.0, "rougeL": None}]
    assert "NaN or Inf" not in caplog.text  # tensorboardX's warning when handed one
