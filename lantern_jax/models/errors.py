"""Errors raised while reading or writing checkpoints."""


class CheckpointError(ValueError):
    """A checkpoint file or tensor that can't be used. The message is one line naming it."""
