"""Holding Ctrl-C and SIGTERM back while a file and the bookkeeping that describes it change together."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def interrupts_deferred(signals: tuple[signal.Signals, ...] = INTERRUPTS) -> Iterator[None]:
    """Run the block with ``signals`` held back, then deliver each one that arrived, once, in arrival order.

    The handlers that were installed before the block (Python's ``KeyboardInterrupt`` for SIGINT, the editing
    loop's for SIGTERM, or the defaults) handle them after it, exactly as if the signal had come then. Outside the
    main thread (where handlers cannot be installed) the block runs unprotected.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum, frame):
        if signum not in received:
            received.append(signum)

    previous = {sig: signal.signal(sig, hold) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in received:
            signal.raise_signal(signum)
