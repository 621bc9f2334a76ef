"""Waiting on conditions in tests: poll until a condition holds; the timeout only bounds a failure.

Tests never sleep to let something happen and never judge by how long something took: they
wait until the thing they need is observably true (a counter moved, a message came, a thread
is waiting), and fail with what they waited for when it does not come.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 20.0


def wait_until(condition: Callable[[], T], what: str, timeout_s: float = DEFAULT_TIMEOUT_S,
               on_poll: Callable[[], None] | None = None, poll_s: float = 0.02) -> T:
    """condition()'s first true value; on_poll runs before each look (to publish, say).

    Fails with ``what`` when timeout_s passes first (the bound of a failure, never a measurement).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if on_poll is not None:
            on_poll()
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting until {what}")
        time.sleep(poll_s)
