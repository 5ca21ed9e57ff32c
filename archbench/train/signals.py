"""Ctrl-C and SIGTERM as a request to stop cleanly between training steps."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


class StopRequest:
    """Turns SIGINT/SIGTERM into a flag the loop checks between batches; a second one is abrupt."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequest]:
        previous = {}

        def handler(signum, frame):
            if self.signal_name is not None:
                raise KeyboardInterrupt
            self.signal_name = signal.Signals(signum).name

        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
                previous[signum] = signal.signal(signum, handler)
        try:
            yield self
        finally:
            for signum, old in previous.items():
                signal.signal(signum, old)

    def __bool__(self) -> bool:
        return self.signal_name is not None
