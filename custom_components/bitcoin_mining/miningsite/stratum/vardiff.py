"""Per-connection variable difficulty towards a target share rate."""

from __future__ import annotations

from dataclasses import dataclass
import math

# A quiet spell lowers the difficulty at most this much per retarget (a miner that
# paused for a minute should not come back to a difficulty a hundred times too low).
MAX_DROP = 4.0


def _nice(difficulty: float) -> float:
    """Four significant digits: set_difficulty lines stay short and readable."""
    return float(f"{difficulty:.4g}")


@dataclass(frozen=True, slots=True)
class VardiffConfig:
    """Target share rate and difficulty bounds; start is also the difficulty before vardiff."""

    shares_per_minute: float = 20.0
    start_difficulty: float = 16384.0
    min_difficulty: float = 1024.0
    max_difficulty: float = 2.0**40
    # Retarget once this many shares came in, or this long after the last retarget.
    retarget_shares: int = 24
    retarget_seconds: float = 90.0
    # Changes smaller than this fraction are not worth a set_difficulty and a clean job.
    tolerance: float = 0.25

    def __post_init__(self) -> None:
        """Refuse settings vardiff cannot work with."""
        for name in ("shares_per_minute", "min_difficulty", "retarget_seconds"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number")
        if not (
            math.isfinite(self.max_difficulty)
            and self.min_difficulty <= self.start_difficulty <= self.max_difficulty
        ):
            raise ValueError("difficulties must satisfy min <= start <= max")
        if self.retarget_shares < 1:
            raise ValueError("retarget_shares must be at least 1")
        if not 0 <= self.tolerance < 1:
            raise ValueError("tolerance must be between 0 and 1")

    def clamp(self, difficulty: float) -> float:
        """The difficulty within the configured bounds."""
        return min(max(difficulty, self.min_difficulty), self.max_difficulty)


class Vardiff:
    """One connection's difficulty: counts its shares and retargets from their rate."""

    def __init__(self, config: VardiffConfig, now: float) -> None:
        """Start at the configured difficulty; `now` is a monotonic time."""
        self._config = config
        self.difficulty = config.start_difficulty
        self._since = now
        self._shares = 0

    def suggest(self, difficulty: float, now: float) -> float:
        """Adopt a miner's suggestion (within bounds) and measure afresh from it."""
        self.difficulty = self._config.clamp(_nice(difficulty))
        self._since, self._shares = now, 0
        return self.difficulty

    def record_share(self, now: float) -> float | None:
        """Count an accepted share; a new difficulty when enough shares call for one."""
        self._shares += 1
        if self._shares >= self._config.retarget_shares:
            return self._retarget(now)
        return None

    def tick(self, now: float) -> float | None:
        """Retarget on time alone (a miner too slow for its difficulty sends few shares)."""
        if now - self._since >= self._config.retarget_seconds:
            return self._retarget(now)
        return None

    def _retarget(self, now: float) -> float | None:
        elapsed = max(now - self._since, 1e-3)
        rate = self._shares / elapsed * 60
        ideal = self.difficulty * rate / self._config.shares_per_minute
        ideal = self._config.clamp(max(ideal, self.difficulty / MAX_DROP))
        self._since, self._shares = now, 0
        if abs(ideal / self.difficulty - 1) <= self._config.tolerance:
            return None
        self.difficulty = self._config.clamp(_nice(ideal))
        return self.difficulty
