"""Ctrl-C between points: SIGINT sets a flag that the runner checks after each point.

A ``KeyboardInterrupt`` raised wherever the signal lands can land inside XLA's
compiler or one of its Python callbacks (a garbage-collection hook), where it was
swallowed ("Exception ignored", the run went on and exited 0) or left the process
in a state that crashed. Deferring it to a point boundary avoids both.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

_MESSAGE = (
    "gradflow: stopping after the current point (finished points are kept); "
    "press Ctrl-C again to stop at once"
)


class StopRequest:
    """Whether Ctrl-C was pressed; ``second`` says what a second press does."""

    def __init__(self, second: str) -> None:
        self.requested = False
        self.second = second

    def handle(self, signum, frame) -> None:
        if not self.requested:
            self.requested = True
            print(_MESSAGE, file=sys.stderr, flush=True)
            return
        if self.second == "exit":
            # Die of SIGINT (status 130 to the shell) without unwinding through
            # whatever native code is running; the files on disk are whole
            # (atomic writes) and the next run removes any temporary file.
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        raise KeyboardInterrupt


_active: StopRequest | None = None


@contextlib.contextmanager
def deferred_interrupt(second: str = "raise") -> Iterator[StopRequest]:
    """Within the block, Ctrl-C only sets ``requested``; a second one stops at once.

    Args:
        second: what a second Ctrl-C does: ``"raise"`` (``KeyboardInterrupt``,
            Python's usual behaviour) or ``"exit"`` (the process dies of SIGINT,
            for the command line).

    Nested blocks share the outermost one's request. Outside the main thread,
    or where SIGINT is ignored (a background job), nothing changes.
    """
    global _active
    if _active is not None:
        yield _active
        return
    request = StopRequest(second)
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    ):
        yield request
        return
    previous = signal.signal(signal.SIGINT, request.handle)
    _active = request
    try:
        yield request
    finally:
        _active = None
        signal.signal(signal.SIGINT, previous)
