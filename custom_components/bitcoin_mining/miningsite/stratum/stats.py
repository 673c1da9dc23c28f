"""Share rate and hashrate over a sliding window, in per-second buckets (memory is bounded)."""

from __future__ import annotations

from collections import deque

from .shares import HASHES_PER_DIFF1

DEFAULT_HASHRATE_WINDOW = 600.0


class ShareWindow:
    """Accepted shares per second: count and summed difficulty, for the last `window` seconds."""

    def __init__(self, window: float = DEFAULT_HASHRATE_WINDOW, started: float = 0.0) -> None:
        """`started` is when counting began (a monotonic time): a young window is shorter."""
        if window < 60:
            raise ValueError("the window must be at least a minute")
        self._window = window
        self._started = started
        # [second, shares, summed difficulty], oldest first.
        self._buckets: deque[list[float]] = deque()

    def record(self, now: float, difficulty: float) -> None:
        """Count one accepted share worth `difficulty`."""
        second = float(int(now))
        if self._buckets and self._buckets[-1][0] == second:
            bucket = self._buckets[-1]
            bucket[1] += 1
            bucket[2] += difficulty
        else:
            self._buckets.append([second, 1.0, difficulty])
        self._expire(now)

    def _expire(self, now: float) -> None:
        while self._buckets and self._buckets[0][0] <= now - self._window:
            self._buckets.popleft()

    def per_minute(self, now: float) -> float:
        """Shares accepted during the last 60 seconds."""
        self._expire(now)
        return sum(b[1] for b in self._buckets if b[0] >= now - 60)

    def hashrate(self, now: float) -> float:
        """Hashes per second the accepted shares stand for, over the window (or since start)."""
        self._expire(now)
        span = min(self._window, now - self._started)
        if span <= 0:
            return 0.0
        return sum(b[2] for b in self._buckets) * HASHES_PER_DIFF1 / span
