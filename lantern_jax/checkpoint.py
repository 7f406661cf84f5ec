"""Orbax checkpoints: model + optimizer state + the grain iterator, saved together, asynchronously.

Restoring goes through the abstract (sharded) state of freshly built objects, so a checkpoint
written on one mesh restores onto another. SIGTERM (a preempted VM) makes `preempted()` true;
the train loop then saves at once and exits. The grain iterator state is one file per process,
so it restores only with the same process count (the model reshards freely).
"""
from __future__ import annotations

import signal
import threading

import grain
import jax
import orbax.checkpoint as ocp
from flax import nnx

from lantern_jax import workdir as workdir_lib


class Checkpointer:
    def __init__(self, workdir: str, *, every: int, keep: int = 3, async_save: bool = True):
        self.directory = workdir_lib.remote(workdir) / "checkpoints"  # gs:// stays a URL
        self.every = every
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, save_interval_steps=every,
                                                 enable_async_checkpointing=async_save,
                                                 create=True))
        self._sigterm = threading.Event()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self._sigterm.set())

    @staticmethod
    def state(model: nnx.Module, optimizer: nnx.Optimizer) -> nnx.State:
        """What the optimizer trains (LoRA: the adapters, not the frozen base) and its state."""
        return nnx.state((model, optimizer), nnx.Any(optimizer.wrt, nnx.OptState))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def preempted(self, step: int) -> bool:
        """A SIGTERM here, or a preemption notice reached by every host (TPU maintenance)."""
        return self._sigterm.is_set() or self.manager.reached_preemption(step)

    def save(self, step: int, model, optimizer, data_iter, *, force: bool = False) -> bool:
        args = ocp.args.Composite(state=ocp.args.StandardSave(self.state(model, optimizer)),
                                  data_iter=grain.checkpoint.CheckpointSave(data_iter))
        return self.manager.save(step, args=args, force=force)

    def restore(self, step: int, model, optimizer, data_iter) -> None:
        """Loads checkpoint `step` into `model`, `optimizer` and `data_iter` in place, each
        array straight onto the sharding the live objects already have."""
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
            self.state(model, optimizer))
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract),
            data_iter=grain.checkpoint.CheckpointRestore(data_iter)))
        nnx.update((model, optimizer), restored["state"])

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
