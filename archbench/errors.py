"""User-facing errors.

An :class:`ArchbenchError` carries a message meant for the person at the terminal: the CLI prints
it on one line and exits non-zero without a traceback. Anything else that escapes is a bug.
"""


class ArchbenchError(Exception):
    """A problem with the user's input or environment, explained in one line."""


def describe_error(error: BaseException) -> str:
    """``Type: first line of the message``: a recorded failure stays one readable line.

    Exporter and runtime errors can append whole IR graphs; a figure recorded as ``null`` keeps
    only the part a person needs.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
