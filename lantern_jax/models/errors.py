"""Errors raised while reading or writing checkpoints."""
from lantern_jax.errors import LanternError


class CheckpointError(LanternError):
    """A checkpoint file or tensor that can't be used. The message is one line naming it."""
