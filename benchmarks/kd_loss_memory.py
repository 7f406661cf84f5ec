"""Peak memory and time of KD loss + gradient: fused/chunked vs naive, at SmolLM2-135M's shapes on CPU.

The student's logits come from its final hidden states [B, T, 576] times the unembedding [576, 49152]:
naive builds the [B, T, V] logits and differentiates through them; chunked
(`losses.fused_divergence(..., chunk_size=C)`) builds them one sequence chunk at a time. The teacher is
dense fp32 logits [B, T, V] (an online teacher) or a top-k (`--teacher topk`, offline D_t).

Each method runs once in its own subprocess and reports two memory figures, both *above its inputs*:
  - XLA's compiled buffer assignment for the jitted step: temporaries + outputs (exact, deterministic);
  - peak RSS growth during the execution (VmHWM reset after inputs and compile).
A third subprocess times `--reps` executions of each, alternating, so a busy machine slows both alike.
The parent checks the losses and gradients agree and prints the ratios last.

    .venv/bin/python benchmarks/kd_loss_memory.py            # B=4, T=1024, V=49152
    .venv/bin/python benchmarks/kd_loss_memory.py --small    # small shapes, a quick check
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

FULL = dict(batch=4, seq=1024, vocab=49152, hidden=576)
SMALL = dict(batch=2, seq=1024, vocab=4096, hidden=64)
MiB = 2**20
METHODS = ("naive", "chunked")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--small", action="store_true", help="small shapes for a quick check")
    p.add_argument("--chunk", type=int, default=64, help="sequence chunk size of the chunked method")
    p.add_argument("--divergence", default="forward_kl")
    p.add_argument("--teacher", choices=("dense", "topk"), default="dense")
    p.add_argument("--k", type=int, default=20, help="top-k of a sparse teacher")
    p.add_argument("--reps", type=int, default=3, help="timed executions of each method")
    p.add_argument("--worker", choices=(*METHODS, "timing"), help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def rss_kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field))


def make_inputs(args):
    import jax
    import jax.numpy as jnp

    from lantern_jax.distill import losses

    shape = SMALL if args.small else FULL
    b, t, v, d = shape["batch"], shape["seq"], shape["vocab"], shape["hidden"]
    keys = jax.random.split(jax.random.key(0), 4)
    hidden = jax.random.normal(keys[0], (b, t, d))
    unembedding = jax.random.normal(keys[1], (d, v)) / np.sqrt(d)
    teacher = 2.0 * jax.random.normal(keys[2], (b, t, v))
    mask = jax.random.bernoulli(keys[3], 0.9, (b, t))
    if args.teacher == "topk":
        logprobs, ids = jax.lax.top_k(jax.nn.log_softmax(teacher), args.k)
        teacher = losses.TopK(ids.astype(jnp.int32), logprobs)
    return jax.block_until_ready((hidden, unembedding, teacher, mask))


def compiled_step(args, method, inputs):
    import jax

    from lantern_jax.distill import losses

    chunk = None if method == "naive" else args.chunk
    loss = lambda h, w, teacher, mask: losses.fused_divergence(
        args.divergence, h, w, teacher, mask, 2.0, estimator="tail", chunk_size=chunk).kd  # tail: top-k only
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(*inputs).compile()


def memory_worker(args):
    """One method's memory above its inputs, and its loss and gradients for the parent to compare."""
    import jax

    inputs = make_inputs(args)
    step = compiled_step(args, args.worker, inputs)
    mem = step.memory_analysis()
    buffers = mem.temp_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes
    with open("/proc/self/clear_refs", "w") as f:  # reset the peak: inputs and compile are behind us
        f.write("5")
    base = rss_kib("VmRSS")
    value, grads = jax.block_until_ready(step(*inputs))
    peak = (rss_kib("VmHWM") - base) * 1024
    np.savez(os.path.join(args.out, f"{args.worker}.npz"), value=value, g_hidden=grads[0],
             g_unembedding=grads[1])
    with open(os.path.join(args.out, f"{args.worker}.json"), "w") as f:
        json.dump(dict(buffers=buffers, peak_rss=peak, loss=float(value)), f)


def timing_worker(args):
    """Both methods in one process, executions alternating, so a busy machine slows both alike."""
    import jax

    inputs = make_inputs(args)
    steps = {method: compiled_step(args, method, inputs) for method in METHODS}
    times = {method: [] for method in METHODS}
    for _ in range(args.reps):
        for method, step in steps.items():
            start = time.perf_counter()
            jax.block_until_ready(step(*inputs))
            times[method].append(time.perf_counter() - start)
    with open(os.path.join(args.out, "timing.json"), "w") as f:
        json.dump({method: float(np.median(t)) for method, t in times.items()}, f)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return timing_worker(args) if args.worker == "timing" else memory_worker(args)
    shape = SMALL if args.small else FULL
    teacher = f"top-{args.k}" if args.teacher == "topk" else "dense fp32"
    print(f"KD loss + gradient ({args.divergence}, {teacher} teacher), B={shape['batch']} T={shape['seq']}"
          f" V={shape['vocab']} D={shape['hidden']}, chunk {args.chunk}, CPU")
    env = dict(os.environ, JAX_PLATFORMS="cpu", MALLOC_MMAP_THRESHOLD_="65536")  # freed buffers leave RSS
    stats, grads = {}, {}
    with tempfile.TemporaryDirectory() as out:
        for worker in (*METHODS, "timing"):
            forwarded = sys.argv[1:] if argv is None else argv
            command = [sys.executable, __file__, *forwarded, "--worker", worker, "--out", out]
            subprocess.run(command, env=env, check=True)
        for method in METHODS:
            with open(os.path.join(out, f"{method}.json")) as f:
                stats[method] = json.load(f)
            grads[method] = dict(np.load(os.path.join(out, f"{method}.npz")))
        with open(os.path.join(out, "timing.json")) as f:
            for method, seconds in json.load(f).items():
                stats[method]["seconds"] = seconds

    print(f"{'method':8} {'loss':>10} {'XLA buffers MiB':>16} {'peak RSS +MiB':>14} {'s/step':>8}")
    for method, s in stats.items():
        print(f"{method:8} {s['loss']:10.5f} {s['buffers'] / MiB:16.1f} {s['peak_rss'] / MiB:14.1f}"
              f" {s['seconds']:8.2f}")
    for key in ("value", "g_hidden", "g_unembedding"):
        a, b = grads["chunked"][key], grads["naive"][key]
        err = np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)
        print(f"{key:14} max |chunked − naive| / max |naive| = {err:.1e}")
        assert err < 1e-5, f"{key} differs: {err:.1e}"
    ratio = lambda key: stats["chunked"][key] / stats["naive"][key]
    print(f"chunked/naive: memory {ratio('buffers'):.3f}x (XLA buffers), {ratio('peak_rss'):.3f}x (peak RSS), "
          f"time {ratio('seconds'):.2f}x")


if __name__ == "__main__":
    main()
