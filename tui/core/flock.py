"""An exclusive lock between processes that gives up: a holder that is stuck must not hold the
waiter (and the app's exit behind it) for ever."""

from __future__ import annotations

import fcntl
import time

STEP = 0.05  # seconds between tries


def flock_within(fd: int, timeout: float) -> bool:
    """Take an exclusive flock on `fd`; False when another held it for all of `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(STEP)
