"""Stops a run at its first non-finite loss or gradient norm, without a host sync per step.

Each step's metrics are folded on device into "the first step where any term was not finite, and
which terms"; the host reads that only where it would read anyway (log steps) and before every
checkpoint save. Before a save the weights themselves are checked too (one reduction over them,
only then): an update can overflow even when every gradient is finite. A save happens only after
both checks pass, so the newest checkpoint always holds finite weights.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp

from lantern_jax.errors import LanternError


class NonFiniteError(LanternError):
    """A run that diverged; one line with the step and the terms (every CLI reports it in one line,
    exit status 2: the usual cause is the config, e.g. too high a learning rate)."""


@jax.jit
def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


@jax.jit
def _fold(state, step: jax.Array, terms: tuple[jax.Array, ...]):
    first, bad_terms, seen = state
    values = jnp.stack([jnp.asarray(t, jnp.float32) for t in terms])
    bad = ~jnp.isfinite(values)
    new = (first < 0) & jnp.any(bad)
    return jnp.where(new, step, first), jnp.where(new, bad, bad_terms), jnp.where(new, values, seen)


class FiniteGuard:
    """`note(step, metrics)` after each step; `check(latest_checkpoint)` raises NonFiniteError."""

    def __init__(self):
        self._names: tuple[str, ...] | None = None
        self._state = None

    def note(self, step: int, metrics: Mapping[str, jax.Array]) -> None:
        if self._names is None:
            self._names = tuple(sorted(k for k, v in metrics.items() if jnp.issubdtype(v.dtype, jnp.floating)))
            n = len(self._names)
            self._state = (jnp.asarray(-1, jnp.int32), jnp.zeros(n, bool), jnp.zeros(n, jnp.float32))
        self._state = _fold(self._state, jnp.asarray(step, jnp.int32), tuple(metrics[k] for k in self._names))

    def check(self, latest_checkpoint: int | None, *, step: int | None = None, weights=None) -> None:
        """Raises NonFiniteError if a noted step was not finite, or (given `weights`, the state about to
        be saved at `step`) if the weights are not."""
        kept = (f"checkpoint step {latest_checkpoint} (finite) is the latest" if latest_checkpoint
                else "no checkpoint was saved")
        advice = "lower optim.lr or check the data"
        if self._state is not None:
            first, bad_terms, values = jax.device_get(self._state)
            if first >= 0:
                terms = ", ".join(f"{n}={_show(v)}" for n, bad, v in zip(self._names, bad_terms, values) if bad)
                raise NonFiniteError(f"step {int(first)}: non-finite {terms}; training stopped and {kept} ({advice})")
        if weights is not None and not bool(_all_finite(weights)):
            raise NonFiniteError(f"step {step}: the weights are not finite after the update (loss and gradient "
                                 f"norm were); training stopped and {kept} ({advice})")


def _show(x: float) -> str:
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
