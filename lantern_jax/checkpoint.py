"""Orbax checkpoints: model + optimizer state + the grain iterator, saved together, asynchronously.

Restoring goes through the abstract (sharded) state of freshly built objects, so a checkpoint
written on one mesh restores onto another. SIGTERM (a preempted VM) makes `preempted()` true;
the train loop then saves at once and exits. The grain iterator state is one file per process,
so it restores only with the same process count (the model reshards freely).

A checkpoint that doesn't restore (a truncated file, an emptied iterator state) is not fatal:
`restore_latest` falls back to the newest step that does, says which it skipped and why, and
moves the damaged steps aside (`<step>.damaged`), so nothing is deleted and Orbax saves those
steps again as the run passes them.
"""
from __future__ import annotations

import logging
import signal
import sys
import threading

import grain
import jax
import orbax.checkpoint as ocp
from flax import nnx
from jax.experimental import multihost_utils

from lantern_jax import storage

log = logging.getLogger("lantern_jax.checkpoint")


class CheckpointRestoreError(storage.WorkdirError):
    """No checkpoint in the workdir restores; one line with each step's reason."""


class Checkpointer:
    def __init__(self, workdir: str, *, every: int, keep: int = 3, async_save: bool = True):
        self.directory = storage.remote(workdir) / "checkpoints"  # gs:// stays a URL
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

    def due(self, step: int) -> bool:
        """Whether `save(step)` will write a checkpoint (before a forced save at the end)."""
        return self.manager.should_save(step)

    def preempted(self, step: int) -> bool:
        """A SIGTERM here, or a preemption notice reached by every host (TPU maintenance)."""
        return self._sigterm.is_set() or self.manager.reached_preemption(step)

    def save(self, step: int, model, optimizer, data_iter, *, force: bool = False) -> bool:
        if step in self.manager.all_steps():  # written already: a SIGTERM right after a periodic save
            return False
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

    def restore_latest(self, model, optimizer, data_iter) -> int:
        """Restores the newest checkpoint that restores and returns its step (0: none saved yet).
        Newer steps that fail are skipped, each with a warning naming the step and the reason."""
        failed: list[tuple[int, str]] = []
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                self.restore(step, model, optimizer, data_iter)
            except Exception as e:  # Orbax / tensorstore / grain raise many types for damaged files
                _quiet_abandoned_reads()
                reason = _reason(e)
                log.warning("checkpoint step %d can't be restored (%s); trying an earlier one", step, reason)
                failed.append((step, reason))
                continue
            if failed:
                self._set_aside([s for s, _ in failed], step)
            return step
        if failed:
            raise CheckpointRestoreError(f"no checkpoint in {self.directory} restores: " +
                                         "; ".join(f"step {s}: {r}" for s, r in failed))
        return 0

    def _set_aside(self, steps: list[int], resumed: int) -> None:
        """Renames damaged steps out of Orbax's view; every process then sees the same steps."""
        multihost_utils.sync_global_devices("lantern_checkpoint_restored")  # all are done reading them
        if jax.process_index() == 0:
            for step in steps:
                target = self.directory / f"{step}.damaged"
                n = 1
                while target.exists():
                    target, n = self.directory / f"{step}.damaged.{n}", n + 1
                (self.directory / str(step)).rename(target)
                log.warning("checkpoint step %d moved to %s; resuming from step %d", step, target, resumed)
        multihost_utils.sync_global_devices("lantern_checkpoint_set_aside")
        self.manager.reload()

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def _reason(e: Exception) -> str:
    """One short line: tensorstore's messages run to kilobytes (the spec of every open driver), and
    the cause is at the end of the first sentence."""
    text = (str(e).strip().splitlines() or [""])[0].split(" [tensorstore_spec")[0]
    if len(text) > 160:
        text = f"{text[:60]} ... {text[-90:]}"
    return f"{type(e).__name__}: {text}"


def _quiet_abandoned_reads() -> None:
    """A failed restore leaves tensorstore reads in flight; as they finish they try to wake the event
    loop Orbax already closed, and Python prints each 'Event loop is closed' as an unraisable
    exception: a screenful of tracebacks about reads nobody waits for. Only those are dropped."""
    previous = sys.unraisablehook
    if getattr(previous, "lantern_quiet", False):
        return

    def hook(unraisable):
        if (unraisable.object is None and unraisable.exc_type is RuntimeError
                and str(unraisable.exc_value) == "Event loop is closed"):
            return
        previous(unraisable)

    hook.lantern_quiet = True
    sys.unraisablehook = hook
