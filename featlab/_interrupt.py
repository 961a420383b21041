"""Stop long runs at a step boundary on SIGINT / SIGTERM, so they can checkpoint first.

A signal that lands in the middle of an optimizer step would leave the model, optimizer and
schedule out of step with each other; a checkpoint written then could not resume
bit-identically. So, inside `stop_on_signals()`, the first SIGINT or SIGTERM only records
the request; training loops poll `stop_requested()` once per step, write their checkpoint and
raise `featlab.errors.Interrupted`. A second SIGINT raises KeyboardInterrupt at once (for a
loop that is stuck).

Outside `stop_on_signals()` (a notebook, a library call) nothing changes: Ctrl-C raises
KeyboardInterrupt as usual.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_requested: str | None = None


def stop_requested() -> str | None:
    """The name of the signal that asked the run to stop ("SIGINT"), or None."""
    return _requested


def request_stop(name: str = "SIGINT") -> None:
    """Ask the running loop to stop at its next step boundary (what a signal does)."""
    global _requested
    _requested = name


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGINT / SIGTERM request a stop instead of killing the process.

    Only the main thread can own signal handlers; elsewhere the block changes nothing.
    """
    global _requested
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if _requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: the user wants out now
        request_stop(name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    _requested = None
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _requested = None
