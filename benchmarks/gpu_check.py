"""GPU check: the explainer KD step's tokens/s and MFU, and generation tokens/s, on one accelerator.

The paper's last stage at its real shapes, random weights (no checkpoint needed): a Qwen2.5-0.5B
student trained by `train_step.make_steps` (the trainer's own jitted step: λ_sft·CE + λ_kd·T²·TVD with
the student's logits built in sequence chunks) against an online Qwen2.5-1.5B teacher whose forward
runs inside the same step under stop_gradient. bf16 compute, fp32 master weights and AdamW moments,
scanned layers with remat. Then greedy KV-cache generation with the student, and (when torch +
transformers are there, as on the lent GPU machines) transformers' `generate` on the same weights.

MFU counts model FLOPs only (`train_step.flops_per_token`): 6N per token for the student (forward +
backward) plus 2N for the teacher's forward, plus attention's T-dependent matmuls; remat's recompute
is not counted. Peak = the chip's dense bf16 rate (train_step.PEAK_FLOPS).

    bash benchmarks/gpu_check.sh                      # on the GPU machine (stops at GPU_CHECK_TIMEOUT)
    python benchmarks/gpu_check.py --tiny             # CPU smoke run of the same code
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lantern_jax import config as config_lib
from lantern_jax import mesh as mesh_lib
from lantern_jax import train_step
from lantern_jax.generate import SamplingConfig, generate_ids
from lantern_jax.memory_fit import ARCHITECTURES
from lantern_jax.models import hf, hf_config
from lantern_jax.models.kinds import build_model
from lantern_jax.models.decoder import DecoderConfig

STUDENT, TEACHER = "Qwen2.5-0.5B-Instruct", "Qwen2.5-1.5B-Instruct"  # memory_fit.ARCHITECTURES
TINY = {STUDENT: dict(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128),
        TEACHER: dict(hidden_size=96, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=192)}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--steps", type=int, default=10, help="timed KD steps (after 2 untimed)")
    p.add_argument("--divergence", default="tvd")
    p.add_argument("--remat", default="dots_no_batch")
    p.add_argument("--gen-batches", default="1,16")
    p.add_argument("--prompt-len", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--no-hf", action="store_true", help="skip transformers' generate baseline")
    p.add_argument("--tiny", action="store_true", help="small shapes and vocab: a CPU smoke run")
    p.add_argument("--json", default="", help="also write the figures here")
    return p.parse_args(argv)


def qwen_config(name: str, args, *, dtype: str, param_dtype: str, remat: str) -> DecoderConfig:
    """The published architecture (HF config fields), or a small one of the same family (--tiny)."""
    _, cfg = hf_config.config_from_hf(ARCHITECTURES[name], kind="lm", dtype=dtype, param_dtype=param_dtype)
    cfg = dataclasses.replace(cfg, scan_layers=True, remat=remat)
    return dataclasses.replace(cfg, vocab_size=512, eos_token_id=None, **TINY[name]) if args.tiny else cfg


def build(cfg: DecoderConfig, mesh, seed: int):
    with jax.set_mesh(mesh):
        return nnx.jit(lambda: build_model("lm", cfg, seed=seed))()


def timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - tic)
    return times


def kd_step_figures(args, mesh, student, teacher) -> dict:
    cfg = config_lib.train_config("explainer_kd")
    cfg.loss.update(divergence=args.divergence, chunk_size=512 if not args.tiny else 64)
    cfg.data.max_length = args.seq
    with jax.set_mesh(mesh):
        optimizer = train_step.optimizer_for(student, cfg.optim, 1000)
    kd_step, _ = train_step.make_steps(cfg)

    rng = np.random.default_rng(0)
    B, T, V = args.batch, args.seq, student.cfg.vocab_size
    ids = rng.integers(0, V, (B, T), dtype=np.int32)
    batch = {"input_ids": ids, "attention_mask": np.ones((B, T), np.int32),
             "labels": np.roll(ids, -1, axis=1), "loss_mask": np.ones((B, T), np.int32)}
    batch["loss_mask"][:, : T // 4] = 0  # the prompt part carries no loss, as in D_t
    with jax.set_mesh(mesh):
        batch = {k: jax.device_put(v, mesh_lib.batch_sharding(mesh, v.ndim)) for k, v in batch.items()}
        step = lambda i: kd_step(student, optimizer, batch, jnp.asarray(i, jnp.int32), teacher)
        tic = time.perf_counter()
        first = jax.device_get(step(0))
        compile_s = time.perf_counter() - tic
        jax.block_until_ready(step(1))
        times = timed(lambda: step(2)["loss"], args.steps)
        last = jax.device_get(step(3))
    dt = statistics.median(times)
    fpt = (train_step.flops_per_token(student, T, training=True)
           + train_step.flops_per_token(teacher, T, training=False))
    kind = jax.devices()[0].device_kind
    peak = next((v for k, v in train_step.PEAK_FLOPS.items() if kind.startswith(k)), 0.0)
    out = {"student_params": train_step.param_count(student), "teacher_params": train_step.param_count(teacher),
           "batch": B, "seq": T, "compile_s": compile_s, "step_s": dt, "tokens_per_s": B * T / dt,
           "flops_per_token": fpt, "tflops_per_s": fpt * B * T / dt / 1e12,
           "mfu": fpt * B * T / dt / peak / jax.device_count() if peak else float("nan"),
           "loss_first": float(first["loss"]), "loss_after": float(last["loss"])}
    if not all(np.isfinite([out["loss_first"], out["loss_after"]])):
        raise SystemExit(f"gpu_check: KD step loss is not finite: {out}")
    return out


def generation_figures(args, model) -> dict:
    rng = np.random.default_rng(1)
    V = model.cfg.vocab_size
    out = {}
    sampling = SamplingConfig(max_new_tokens=args.new_tokens)
    for b in map(int, args.gen_batches.split(",")):
        prompts = [rng.integers(0, V, args.prompt_len).tolist() for _ in range(b)]
        run = lambda: generate_ids(model, prompts, [], sampling)
        tic = time.perf_counter()
        first = run()
        compile_s = time.perf_counter() - tic
        dt = statistics.median(timed(run, 3))
        out[f"batch{b}"] = {"tokens_per_s": b * args.new_tokens / dt, "seconds": dt,
                            "compile_s": compile_s, "tokens": [r[0].tolist() for r in first]}
    return out


def hf_generation_figures(args, model, ours: dict) -> dict:
    """transformers' generate on the same weights (saved with save_hf), greedy, no stop token."""
    import torch  # noqa: PLC0415
    import transformers  # noqa: PLC0415

    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory() as d:
        hf.save_hf(model, d)
        ref = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.bfloat16).to(device).eval()
    rng = np.random.default_rng(1)
    V, out = model.cfg.vocab_size, {}
    for b in map(int, args.gen_batches.split(",")):
        prompts = torch.tensor(np.stack([rng.integers(0, V, args.prompt_len) for _ in range(b)]), device=device)
        kw = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False,
                  eos_token_id=None, pad_token_id=0)

        def run():
            with torch.inference_mode():
                r = ref.generate(prompts, attention_mask=torch.ones_like(prompts), **kw)
            if device == "cuda":
                torch.cuda.synchronize()
            return r

        first = run()
        times = []
        for _ in range(3):
            tic = time.perf_counter()
            run()
            times.append(time.perf_counter() - tic)
        dt = statistics.median(times)
        theirs = first[:, args.prompt_len:].tolist()
        mine = ours[f"batch{b}"]["tokens"]
        # Random weights give near-uniform logits: bf16 near-ties flip later argmaxes, so only the
        # first generated token is a fair check here (tests/test_generate_hf.py checks whole
        # greedy sequences on real weights).
        same = [a[0] == c[0] for a, c in zip(mine, theirs)]
        out[f"batch{b}"] = {"tokens_per_s": b * args.new_tokens / dt, "seconds": dt,
                            "first_token_agreement": float(np.mean(same))}
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    dev = jax.devices()[0]
    print(f"[gpu_check] {dev.device_kind} x{jax.device_count()} jax {jax.__version__} "
          f"flax {__import__('flax').__version__} platform={dev.platform}", flush=True)
    mesh = mesh_lib.make_mesh({"data": -1, "fsdp": 1, "tensor": 1})
    student = build(qwen_config(STUDENT, args, dtype="bfloat16", param_dtype="float32",
                                remat=args.remat), mesh, seed=0)
    teacher = build(qwen_config(TEACHER, args, dtype="bfloat16", param_dtype="bfloat16",
                                remat="none"), mesh, seed=1)
    figures = {"device": dev.device_kind, "kd_step": kd_step_figures(args, mesh, student, teacher)}
    kd = figures["kd_step"]
    print(f"[gpu_check] KD step (student {kd['student_params'] / 1e6:.0f}M, online teacher "
          f"{kd['teacher_params'] / 1e6:.0f}M, batch {kd['batch']}x{kd['seq']}, {args.divergence}): "
          f"{kd['step_s'] * 1e3:.1f} ms/step, {kd['tokens_per_s']:,.0f} tokens/s, "
          f"{kd['tflops_per_s']:.0f} TFLOP/s, MFU {kd['mfu']:.1%} (compile {kd['compile_s']:.0f} s; "
          f"loss {kd['loss_first']:.3f} -> {kd['loss_after']:.3f})", flush=True)
    del teacher

    # Generation serves the trained student: bf16 weights, unscanned layers so that each layer's
    # KV cache is updated in place.
    gen_cfg = qwen_config(STUDENT, args, dtype="bfloat16", param_dtype="bfloat16", remat="none")
    gen_model = build(dataclasses.replace(gen_cfg, scan_layers=False), mesh, seed=0)
    figures["generate"] = generation_figures(args, gen_model)
    for k, v in figures["generate"].items():
        print(f"[gpu_check] generate {k}: {v['tokens_per_s']:,.0f} tokens/s "
              f"({args.prompt_len} prompt + {args.new_tokens} new, compile {v['compile_s']:.0f} s)", flush=True)
    if not args.no_hf:
        try:
            figures["generate_hf"] = hf_generation_figures(args, gen_model, figures["generate"])
        except ImportError as e:
            print(f"[gpu_check] transformers baseline skipped: {e}")
        for k, v in figures.get("generate_hf", {}).items():
            ratio = figures["generate"][k]["tokens_per_s"] / v["tokens_per_s"]
            print(f"[gpu_check] transformers generate {k}: {v['tokens_per_s']:,.0f} tokens/s; "
                  f"ours/theirs {ratio:.2f}x; first-token agreement {v['first_token_agreement']:.0%}", flush=True)
    for v in figures["generate"].values():
        v.pop("tokens")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
