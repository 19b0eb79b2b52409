"""The one exception for a user's mistake: the command line prints its message (exit code 2, no traceback);
anything else raised inside the package is a bug and keeps its traceback."""


class UsageError(ValueError):
    """A mistake the user can fix (a name, an argument, a missing folder or file); the message says what to do.

    A ValueError, so that library callers who catch ValueError for bad input keep working."""
