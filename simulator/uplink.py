"""The site's uplink: up, or one of the outage modes the control API sets.

- `up`: the upstream pool answers, internet pools (host names) are alive;
- `refuse`: connects get RST, open sessions are reset (the old `{"up": false}`);
- `blackhole`: nothing answers and open sessions go silent: how a Starlink or 4G
  outage looks;
- `degraded`: the internet is up but every pool message is late (`latency_ms` ±
  `jitter_ms`), and a `loss` share of them waits a TCP retransmission more;
- `flap`: `down_s` in `down_mode` (blackhole or refuse), `up_s` up, over and over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import contextlib
from dataclasses import asdict, dataclass
import math
from typing import Any, cast

from .pool import Degradation, Reachability, StratumPool
from .state import SiteState

MODES = ("up", "refuse", "blackhole", "degraded", "flap")
DOWN_MODES = ("refuse", "blackhole")


@dataclass(frozen=True, slots=True)
class UplinkSettings:
    """An outage mode and its parameters."""

    mode: str = "up"
    latency_ms: float = 300.0
    jitter_ms: float = 100.0
    loss: float = 0.02
    down_s: float = 2.0
    up_s: float = 5.0
    down_mode: str = "blackhole"


def _number(body: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f'"{key}" must be a number')
    if not low <= value <= high:
        raise ValueError(f'"{key}" must be between {low:g} and {high:g}')
    return float(value)


def parse_uplink(body: dict[str, Any]) -> UplinkSettings:
    """Settings from a control request (`mode` and its parameters); ValueError naming the field."""
    mode = body.get("mode")
    if mode not in MODES:
        raise ValueError(f'"mode" must be one of {", ".join(MODES)}')
    down_mode = body.get("down_mode", "blackhole")
    if down_mode not in DOWN_MODES:
        raise ValueError(f'"down_mode" must be one of {", ".join(DOWN_MODES)}')
    defaults = UplinkSettings()
    return UplinkSettings(
        mode=mode,
        latency_ms=_number(body, "latency_ms", defaults.latency_ms, 0, 60_000),
        jitter_ms=_number(body, "jitter_ms", defaults.jitter_ms, 0, 60_000),
        loss=_number(body, "loss", defaults.loss, 0, 1),
        down_s=_number(body, "down_s", defaults.down_s, 0.05, 86_400),
        up_s=_number(body, "up_s", defaults.up_s, 0.05, 86_400),
        down_mode=down_mode,
    )


class Uplink:
    """Applies the outage mode to the upstream pool and to the site's internet flag."""

    def __init__(self, state: SiteState, on_change: Callable[[bool], None]) -> None:
        """`on_change(up)` hears every up/down transition (the miners' pool liveness)."""
        self.state = state
        self.pool: StratumPool | None = None
        self.settings = UplinkSettings()
        self._on_change = on_change
        # Times the uplink went down (a flap counts each down phase).
        self.downs = 0
        self._flapper: asyncio.Task[None] | None = None

    async def set(self, settings: UplinkSettings) -> None:
        """Switch to a mode now (a running flap stops)."""
        await self._stop_flap()
        self.settings = settings
        if settings.mode == "flap":
            self._flapper = asyncio.create_task(self._flap(settings))
            return
        await self._apply(cast("Reachability", settings.mode))

    async def _apply(self, mode: Reachability) -> None:
        up = mode in ("up", "degraded")
        if not up and self.state.internet_up:
            self.downs += 1
        self.state.internet_up = up
        self._on_change(up)
        if self.pool is not None:
            s = self.settings
            await self.pool.set_reachability(mode, Degradation(s.latency_ms, s.jitter_ms, s.loss))

    async def _flap(self, settings: UplinkSettings) -> None:
        down = cast("Reachability", settings.down_mode)
        while True:
            await self._apply(down)
            await asyncio.sleep(settings.down_s)
            await self._apply("up")
            await asyncio.sleep(settings.up_s)

    async def _stop_flap(self) -> None:
        if self._flapper is not None:
            self._flapper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flapper
            self._flapper = None

    async def close(self) -> None:
        """Stop flapping."""
        await self._stop_flap()

    def snapshot(self) -> dict[str, Any]:
        """The mode and its parameters (only the ones that mode uses)."""
        settings = asdict(self.settings)
        keep = {
            "degraded": ("latency_ms", "jitter_ms", "loss"),
            "flap": ("down_s", "up_s", "down_mode"),
        }.get(self.settings.mode, ())
        return {"mode": self.settings.mode} | {key: settings[key] for key in keep}
