"""The one error contract every entry point shares.

Bad input or damaged state that a user can fix (a config key, a data file, a checkpoint, a mesh
that does not fit) raises a `LanternError` whose message is one line naming the input and what is
wrong. Command-line entry points print it as `error: ...` and exit with `EXIT_USER_ERROR`, never a
traceback; anything else is a bug and keeps its traceback.
"""
EXIT_USER_ERROR = 2


class LanternError(ValueError):
    """Bad input or state: one line naming it."""
