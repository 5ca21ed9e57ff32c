"""User-facing errors.

An :class:`ArchbenchError` carries a message meant for the person at the terminal: the CLI prints
it on one line and exits non-zero without a traceback. Anything else that escapes is a bug.
"""


class ArchbenchError(Exception):
    """A problem with the user's input or environment, explained in one line."""
