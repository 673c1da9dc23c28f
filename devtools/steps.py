"""Steps of a dev tool: the error a failed step raises, polling until something holds, checks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
import time


class StepError(Exception):
    """A step did not go as expected; the message says which."""


async def poll_until[T](
    check: Callable[[], Awaitable[T | None]], timeout: float, what: str, interval: float = 0.05
) -> T:
    """The first truthy result of check(), asked every interval; StepError after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if result := await check():
            return result
        if time.monotonic() >= deadline:
            raise StepError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)


async def seconds_until(
    check: Callable[[], Awaitable[object]], timeout: float, interval: float = 0.05
) -> float | None:
    """Seconds until check() is truthy (a measured delay), or None after the timeout."""
    started = time.monotonic()
    try:
        await poll_until(check, timeout, "a measured change", interval)
    except StepError:
        return None
    return time.monotonic() - started


class Check:
    """Counts failures and prints one line per check."""

    def __init__(self) -> None:
        """No failures yet."""
        self.failures = 0

    def __call__(self, ok: bool, what: str) -> None:
        """Record and print one check."""
        self.failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {what}", flush=True)  # noqa: T201 - the report
