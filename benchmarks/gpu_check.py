"""GPU check: KD-step MFU with the fused kernels, each kernel against the path it replaces, LoRA SFT
throughput for a 7B-shaped teacher, and generation, on one accelerator.

Sections (--sections, in this order, each printed as it finishes):
  kd         The paper's last KD stage at its real shapes, random weights: a Qwen2.5-0.5B student
             trained by `train_step.make_steps` (the trainer's own jitted step: λ_sft·CE + λ_kd·T²·TVD) against an online Qwen2.5-1.5B
             teacher whose forward runs inside the same step, bf16 compute, fp32 master weights and
             AdamW moments, scanned layers with remat; at every --kd-shapes batch x length.
             Attention and LM head are `model.attention` / `loss.lm_head` (auto: cuDNN flash
             attention and the vocabulary-blocked head on GPU).
  attention  One attention layer of that student (14 query, 2 key/value heads of 64), forward +
             backward: the kernel against the xla path (fp32 [T, T] scores).
  loss       The LM head + TVD/CE loss of that student against the online teacher's head, forward +
             backward: vocabulary-blocked (distill/fused_loss.py) against sequence-chunked
             (distill/losses.py, teacher logits materialised), time and compiled temporary bytes.
  lora       Teacher SFT of a Qwen2.5-7B-shaped model with rank-16 LoRA on every projection (base
             frozen in bf16): tokens/s and MFU (4N per token for the frozen base, 6N for adapters).
  generate   Greedy KV-cache generation with the student (and transformers' `generate` when torch is
             there), tokens/s.

MFU counts model FLOPs only (`train_step.flops_per_token`): remat's recompute and the blocked head's
recomputed logits are not counted. Peak = the chip's dense bf16 rate (`train_step.PEAK_FLOPS`).

    bash benchmarks/gpu_check.sh                        # on the GPU machine (stops at GPU_CHECK_TIMEOUT)
    python benchmarks/gpu_check.py --tiny               # CPU smoke run of the same code
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
import ml_collections
import numpy as np
from flax import nnx

from lantern_jax import config as config_lib
from lantern_jax import lora
from lantern_jax import mesh as mesh_lib
from lantern_jax import train_step as train_step_lib
from lantern_jax.distill import fused_loss, losses
from lantern_jax.generate import SamplingConfig, generate_ids
from lantern_jax.memory_fit import ARCHITECTURES
from lantern_jax.models import attention as attention_lib
from lantern_jax.models import hf, hf_config
from lantern_jax.models import layers as L
from lantern_jax.models.decoder import DecoderConfig
from lantern_jax.models.kinds import build_model

STUDENT, TEACHER, T2 = "Qwen2.5-0.5B-Instruct", "Qwen2.5-1.5B-Instruct", "Qwen2.5-7B-Instruct"
TINY = {STUDENT: dict(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128),
        TEACHER: dict(hidden_size=96, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=192),
        T2: dict(hidden_size=128, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=256)}
SECTIONS = ("kd", "attention", "loss", "lora", "generate")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sections", default="kd,attention,loss,lora", help=f"comma list of {','.join(SECTIONS)}")
    p.add_argument("--kd-shapes", default="16x1024,8x2048", help="batch x length of each KD measurement")
    p.add_argument("--steps", type=int, default=8, help="timed steps per measurement (after 2 untimed)")
    p.add_argument("--divergence", default="tvd")
    p.add_argument("--remat", default="dots_no_batch")
    p.add_argument("--attention", default="auto", help="model.attention for kd / lora (auto: the platform's kernel)")
    p.add_argument("--lm-head", default="auto", help="loss.lm_head for kd / lora (auto: blocked on GPU)")
    p.add_argument("--lora-shape", default="4x2048", help="batch x length of the LoRA SFT step")
    p.add_argument("--gen-batches", default="1,16")
    p.add_argument("--prompt-len", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--no-hf", action="store_true", help="skip transformers' generate baseline")
    p.add_argument("--tiny", action="store_true",
                   help="small shapes and vocabulary on CPU; the kernels' wrappers run (cudnn through XLA, "
                        "blocked head) so the smoke run covers the GPU code path")
    p.add_argument("--json", default="", help="also write the figures here")
    args = p.parse_args(argv)
    if args.tiny:
        args.kd_shapes, args.lora_shape, args.steps = "2x64,1x128", "2x64", 2
        args.gen_batches, args.prompt_len, args.new_tokens = "1,2", 8, 8
        args.attention = "cudnn" if args.attention == "auto" else args.attention
        args.lm_head = "blocked" if args.lm_head == "auto" else args.lm_head
    return args


def shape(text: str) -> tuple[int, int]:
    b, t = text.split("x")
    return int(b), int(t)


def qwen_config(name: str, args, *, dtype: str, param_dtype: str, remat: str, attention: str = "auto") -> DecoderConfig:
    """The published architecture (HF config fields), or a small one of the same family (--tiny)."""
    _, cfg = hf_config.config_from_hf(ARCHITECTURES[name], kind="lm", dtype=dtype, param_dtype=param_dtype)
    cfg = dataclasses.replace(cfg, scan_layers=True, remat=remat, attention=attention)
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


def peak_flops() -> float:
    kind = jax.devices()[0].device_kind
    return next((v for k, v in train_step_lib.PEAK_FLOPS.items() if kind.startswith(k)), 0.0)


def random_batch(B: int, T: int, V: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, V, (B, T), dtype=np.int32)
    batch = {"input_ids": ids, "attention_mask": np.ones((B, T), np.int32),
             "labels": np.roll(ids, -1, axis=1), "loss_mask": np.ones((B, T), np.float32)}
    batch["loss_mask"][:, : T // 4] = 0  # the prompt part carries no loss, as in D_t
    return batch


def step_figures(cfg, mesh, model, teacher, B: int, T: int, steps: int) -> dict:
    """Compile + timed steps of the trainer's own jitted step on random data."""
    with jax.set_mesh(mesh):
        optimizer = train_step_lib.optimizer_for(model, cfg.optim, 1000)
        batch = {k: jax.device_put(v, mesh_lib.batch_sharding(mesh, v.ndim))
                 for k, v in random_batch(B, T, model.cfg.vocab_size).items()}
    train_step, _ = train_step_lib.make_steps(cfg)
    with jax.set_mesh(mesh):
        step = lambda i: train_step(model, optimizer, batch, jnp.asarray(i, jnp.int32), teacher)  # noqa: E731
        tic = time.perf_counter()
        first = jax.device_get(step(0))
        compile_s = time.perf_counter() - tic
        jax.block_until_ready(step(1))
        dt = statistics.median(timed(lambda: step(2)["loss"], steps))
        last = jax.device_get(step(3))
    fpt = train_step_lib.flops_per_token(model, T, training=True)
    if teacher is not None:
        fpt += train_step_lib.flops_per_token(teacher, T, training=False)
    peak = peak_flops()
    out = {"batch": B, "seq": T, "compile_s": compile_s, "step_s": dt, "tokens_per_s": B * T / dt,
           "flops_per_token": fpt, "tflops_per_s": fpt * B * T / dt / 1e12,
           "mfu": fpt * B * T / dt / peak / jax.device_count() if peak else float("nan"),
           "loss_first": float(first["loss"]), "loss_after": float(last["loss"])}
    if not all(np.isfinite([out["loss_first"], out["loss_after"]])):
        raise SystemExit(f"gpu_check: step loss is not finite: {out}")
    return out


def kd_figures(args, mesh) -> dict:
    student = build(qwen_config(STUDENT, args, dtype="bfloat16", param_dtype="float32", remat=args.remat,
                                attention=args.attention), mesh, seed=0)
    teacher = build(qwen_config(TEACHER, args, dtype="bfloat16", param_dtype="bfloat16", remat="none",
                                attention=args.attention), mesh, seed=1)
    cfg = config_lib.train_config("explainer_kd")
    cfg.loss.update(divergence=args.divergence, chunk_size=512 if not args.tiny else 32, lm_head=args.lm_head)
    out = {"student_params": train_step_lib.param_count(student), "teacher_params": train_step_lib.param_count(teacher)}
    for text in args.kd_shapes.split(","):
        B, T = shape(text)
        out[text] = r = step_figures(cfg, mesh, student, teacher, B, T, args.steps)
        print(f"[gpu_check] KD step {text} (student {out['student_params'] / 1e6:.0f}M, online teacher "
              f"{out['teacher_params'] / 1e6:.0f}M, {args.divergence}, attention {args.attention}, head {args.lm_head}): "
              f"{r['step_s'] * 1e3:.1f} ms/step, {r['tokens_per_s']:,.0f} tokens/s, {r['tflops_per_s']:.0f} TFLOP/s, "
              f"MFU {r['mfu']:.1%} (compile {r['compile_s']:.0f} s; loss {r['loss_first']:.3f} -> {r['loss_after']:.3f})",
              flush=True)
    return out


def attention_figures(args) -> dict:
    """Forward + backward of one attention layer's core at each KD shape: kernel vs xla."""
    cfg = qwen_config(STUDENT, args, dtype="bfloat16", param_dtype="float32", remat="none")
    N, K, H = cfg.num_heads, cfg.num_kv_heads, cfg.dims_per_head
    kernel = "cudnn" if attention_lib.platform() == "gpu" or args.tiny else "splash"
    out = {}
    for text in args.kd_shapes.split(","):
        B, T = shape(text)
        rng = np.random.default_rng(0)
        q = jnp.asarray(rng.standard_normal((B, T, N, H)), jnp.bfloat16)
        k, v = (jnp.asarray(rng.standard_normal((B, T, K, H)), jnp.bfloat16) for _ in range(2))
        valid = jnp.ones((B, T), bool)
        mask = attention_lib.Mask(valid, causal=True)
        paths = {"xla": lambda q, k, v: L.dot_product_attention(q, k, v, L.dense_mask(mask)),
                 kernel: lambda q, k, v: attention_lib.attend(q, k, v, mask, kernel)}
        r = {}
        for name, fn in paths.items():
            grad = jax.jit(jax.value_and_grad(lambda q, k, v: jnp.sum(fn(q, k, v).astype(jnp.float32) ** 2),
                                              argnums=(0, 1, 2)))
            compiled = grad.lower(q, k, v).compile()
            jax.block_until_ready(compiled(q, k, v))
            r[name] = {"ms": 1e3 * statistics.median(timed(lambda: compiled(q, k, v), args.steps)),
                       "temp_bytes": compiled.memory_analysis().temp_size_in_bytes}
        r["speedup"] = r["xla"]["ms"] / r[kernel]["ms"]
        out[text] = r
        print(f"[gpu_check] attention fwd+bwd {text} ({N} heads, {K} kv heads, {H} dims, causal): xla "
              f"{r['xla']['ms']:.2f} ms ({r['xla']['temp_bytes'] / 2**20:,.0f} MiB temp), {kernel} "
              f"{r[kernel]['ms']:.2f} ms ({r[kernel]['temp_bytes'] / 2**20:,.0f} MiB temp): {r['speedup']:.2f}x",
              flush=True)
    return out


def loss_figures(args) -> dict:
    """LM head + TVD/CE forward + backward from final hidden states: blocked vs chunked."""
    s_cfg = qwen_config(STUDENT, args, dtype="bfloat16", param_dtype="float32", remat="none")
    t_cfg = qwen_config(TEACHER, args, dtype="bfloat16", param_dtype="bfloat16", remat="none")
    V, chunk = s_cfg.vocab_size, (512 if not args.tiny else 32)
    out = {}
    for text in args.kd_shapes.split(","):
        B, T = shape(text)
        rng = np.random.default_rng(0)
        h = jnp.asarray(rng.standard_normal((B, T, s_cfg.hidden_size)), jnp.bfloat16)
        w = jnp.asarray(rng.standard_normal((s_cfg.hidden_size, V)) * 0.02, jnp.float32)
        th = jnp.asarray(rng.standard_normal((B, T, t_cfg.hidden_size)), jnp.bfloat16)
        tw = jnp.asarray(rng.standard_normal((t_cfg.hidden_size, t_cfg.vocab_size)) * 0.02, jnp.bfloat16)
        batch = random_batch(B, T, V)
        labels, mask = jnp.asarray(batch["labels"]), jnp.asarray(batch["loss_mask"])

        def blocked(h, w):
            return fused_loss.lm_head_loss(h, w, labels, mask, teacher=fused_loss.Head(th, tw),
                                           divergence=args.divergence, chunk_size=chunk)[0]

        def chunked(h, w):  # what objectives do on CPU: the teacher's logits whole, the student's by chunks
            t_logits = jnp.einsum("btd,dv->btv", th, tw)[..., :V]
            out = losses.fused_divergence(args.divergence, h, w, t_logits, mask, labels=labels, chunk_size=chunk)
            return out.kd + out.ce

        r = {}
        for name, fn in (("chunked", chunked), ("blocked", blocked)):
            compiled = jax.jit(jax.value_and_grad(fn, argnums=(0, 1))).lower(h, w).compile()
            value = float(jax.block_until_ready(compiled(h, w))[0])
            r[name] = {"ms": 1e3 * statistics.median(timed(lambda: compiled(h, w), args.steps)),
                       "temp_bytes": compiled.memory_analysis().temp_size_in_bytes, "loss": value}
        r["speedup"] = r["chunked"]["ms"] / r["blocked"]["ms"]
        r["memory_ratio"] = r["chunked"]["temp_bytes"] / max(r["blocked"]["temp_bytes"], 1)
        out[text] = r
        print(f"[gpu_check] LM head + {args.divergence}/CE loss fwd+bwd {text} (V={V}): chunked "
              f"{r['chunked']['ms']:.1f} ms, {r['chunked']['temp_bytes'] / 2**30:.2f} GiB temp; blocked "
              f"{r['blocked']['ms']:.1f} ms, {r['blocked']['temp_bytes'] / 2**30:.2f} GiB temp "
              f"({r['speedup']:.2f}x time, {r['memory_ratio']:.1f}x less memory; loss {r['chunked']['loss']:.4f} vs "
              f"{r['blocked']['loss']:.4f})", flush=True)
    return out


def lora_figures(args, mesh) -> dict:
    cfg7 = qwen_config(T2, args, dtype="bfloat16", param_dtype="bfloat16", remat="full", attention=args.attention)
    model = build(cfg7, mesh, seed=0)
    lcfg = ml_collections.ConfigDict({"rank": 16, "alpha": 32.0, "targets": lora.TARGETS})
    with jax.set_mesh(mesh):
        model = lora.apply(model, lcfg, seed=0)
    cfg = config_lib.train_config("teacher_sft")
    cfg.loss.lm_head = args.lm_head
    cfg.optim.update(lr=1e-4, weight_decay=0.0)
    B, T = shape(args.lora_shape)
    r = step_figures(cfg, mesh, model, None, B, T, args.steps)
    r["params"] = train_step_lib.param_count(model)
    r["adapter_params"] = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.LoRAParam)))
    print(f"[gpu_check] LoRA SFT {args.lora_shape} ({r['params'] / 1e9:.2f}B-parameter teacher, "
          f"{r['adapter_params'] / 1e6:.1f}M adapter parameters, rank 16): {r['step_s'] * 1e3:.0f} ms/step, "
          f"{r['tokens_per_s']:,.0f} tokens/s, MFU {r['mfu']:.1%} (compile {r['compile_s']:.0f} s; "
          f"loss {r['loss_first']:.3f} -> {r['loss_after']:.3f})", flush=True)
    return r


def generation_figures(args, model) -> dict:
    rng = np.random.default_rng(1)
    V = model.cfg.vocab_size
    out = {}
    sampling = SamplingConfig(max_new_tokens=args.new_tokens)
    for b in map(int, args.gen_batches.split(",")):
        prompts = [rng.integers(0, V, args.prompt_len).tolist() for _ in range(b)]
        run = lambda: generate_ids(model, prompts, [], sampling)  # noqa: E731
        tic = time.perf_counter()
        first = run()
        compile_s = time.perf_counter() - tic
        dt = statistics.median(timed(run, 3))
        out[f"batch{b}"] = {"tokens_per_s": b * args.new_tokens / dt, "seconds": dt,
                            "compile_s": compile_s, "tokens": [r[0].tolist() for r in first]}
        print(f"[gpu_check] generate batch{b}: {b * args.new_tokens / dt:,.0f} tokens/s "
              f"({args.prompt_len} prompt + {args.new_tokens} new, compile {compile_s:.0f} s)", flush=True)
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
        # Random weights give near-uniform logits: bf16 near-ties flip later argmaxes, so only the
        # first generated token is a fair check here (tests/test_smollm2.py checks whole
        # greedy sequences on real weights).
        same = [a[0] == c[0] for a, c in zip(ours[f"batch{b}"]["tokens"], first[:, args.prompt_len:].tolist())]
        out[f"batch{b}"] = r = {"tokens_per_s": b * args.new_tokens / dt, "seconds": dt,
                                "first_token_agreement": float(np.mean(same))}
        print(f"[gpu_check] transformers generate batch{b}: {r['tokens_per_s']:,.0f} tokens/s; ours/theirs "
              f"{ours[f'batch{b}']['tokens_per_s'] / r['tokens_per_s']:.2f}x; first-token agreement "
              f"{r['first_token_agreement']:.0%}", flush=True)
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    sections = args.sections.split(",")
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        print(f"error: --sections: unknown {unknown}; sections: {','.join(SECTIONS)}", file=sys.stderr)
        return 2
    dev = jax.devices()[0]
    print(f"[gpu_check] {dev.device_kind} x{jax.device_count()} jax {jax.__version__} "
          f"flax {__import__('flax').__version__} platform={dev.platform}", flush=True)
    mesh = mesh_lib.make_mesh({"data": -1, "fsdp": 1, "tensor": 1})
    figures = {"device": dev.device_kind, "args": vars(args)}
    if "kd" in sections:
        figures["kd_step"] = kd_figures(args, mesh)
    if "attention" in sections:
        figures["attention"] = attention_figures(args)
    if "loss" in sections:
        figures["lm_head_loss"] = loss_figures(args)
    if "lora" in sections:
        figures["lora_sft"] = lora_figures(args, mesh)
    if "generate" in sections:
        # Generation serves the trained student: bf16 weights, unscanned layers so that each
        # layer's KV cache is updated in place.
        gen_cfg = qwen_config(STUDENT, args, dtype="bfloat16", param_dtype="bfloat16", remat="none")
        gen_model = build(dataclasses.replace(gen_cfg, scan_layers=False), mesh, seed=0)
        figures["generate"] = generation_figures(args, gen_model)
        if not args.no_hf:
            try:
                figures["generate_hf"] = hf_generation_figures(args, gen_model, figures["generate"])
            except ImportError as e:
                print(f"[gpu_check] transformers baseline skipped: {e}")
        for v in figures["generate"].values():
            v.pop("tokens")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
