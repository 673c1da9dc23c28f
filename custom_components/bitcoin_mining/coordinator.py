"""Coordinators: the fast grid loop and the site poll (supply, network, fleet)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
import math
import time

from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator, UpdateFailed
from homeassistant.util import dt as dt_util

from .const import (
    CONF_FLEET_INTERVAL,
    CONF_GRID_INTERVAL,
    CONF_MARGIN_KW,
    CONF_NOMINAL_FREQUENCY,
    CONF_OVERHEAD_KW,
    CONF_SUPPLY_STALE_S,
    CONF_UNDER_FREQUENCY,
    DEFAULT_FLEET_INTERVAL,
    DEFAULT_GRID_INTERVAL,
    DEFAULT_MARGIN_KW,
    DEFAULT_OVERHEAD_KW,
    DEFAULT_SUPPLY_STALE_S,
    DOMAIN,
    IMPLAUSIBLE_READINGS_FOR_REPAIR,
    LOGGER,
    PROBE_TIMEOUT_S,
    default_under_frequency,
)
from .miningsite.allocation import FrequencySample
from .miningsite.exceptions import DeviceConnectionError, DeviceProtocolError
from .miningsite.meter import GridMeter, GridReading, validate_frequency
from .miningsite.network import ProbeResult, ProbeTarget, internet_up, probe_all
from .models import BitcoinMiningConfigEntry
from .supply import SupplyReading, SupplySensors

# Samples kept for the allocation core's frequency history (a minute at 0.1 s).
FREQUENCY_HISTORY = 600
# The meter is read several times a second; its entities (and the recorder behind them)
# hear of it at most this often, an under-frequency change or a failure at once.
PUBLISH_EVERY_S = 1.0


def implausible_issue_id(entry_id: str) -> str:
    """The repair issue of a site whose meter keeps decoding nonsense."""
    return f"implausible_frequency_{entry_id}"


@dataclass(frozen=True, slots=True)
class GridData:
    """The latest plausible meter reading and what it means for the site."""

    reading: GridReading
    under_frequency: bool


class GridCoordinator(DataUpdateCoordinator[GridData]):
    """Reads the grid meter on a fast cadence of its own (sub-second capable).

    Home Assistant's scheduler rounds to whole seconds, so this coordinator runs
    its own loop and only uses the coordinator for state, listeners and logging.
    Its listeners are told at most once a second (PUBLISH_EVERY_S), except when the
    under-frequency state or the update's success changes: those go out at once.
    """

    config_entry: BitcoinMiningConfigEntry

    def __init__(
        self, hass: HomeAssistant, entry: BitcoinMiningConfigEntry, meter: GridMeter
    ) -> None:
        """Set up the grid loop for one site."""
        super().__init__(
            hass, LOGGER, config_entry=entry, name=f"{entry.title} grid", update_interval=None
        )
        self.meter = meter
        self.nominal_hz = float(entry.data[CONF_NOMINAL_FREQUENCY])
        self.interval = float(entry.options.get(CONF_GRID_INTERVAL, DEFAULT_GRID_INTERVAL))
        self.under_frequency_hz = float(
            entry.options.get(CONF_UNDER_FREQUENCY, default_under_frequency(self.nominal_hz))
        )
        # Plausible samples on the monotonic clock, for the allocation core.
        self.samples: deque[FrequencySample] = deque(maxlen=FREQUENCY_HISTORY)
        self._implausible_in_a_row = 0
        # An issue raised before a reload (a reconfigure that fixed the register, say)
        # goes with the first plausible reading.
        self._issue_may_be_open = True
        # What the listeners last heard: when, and whether under frequency / successful.
        self._published: tuple[float, bool, bool] | None = None
        self.publish_every_s = PUBLISH_EVERY_S

    @callback
    def async_update_listeners(self) -> None:
        """Tell the listeners, unless they heard the same news less than a second ago."""
        now = time.monotonic()
        under = bool(self.data and self.data.under_frequency)
        published = self._published
        if (
            published is not None
            and now - published[0] < self.publish_every_s
            and published[1:] == (under, self.last_update_success)
        ):
            return
        self._published = (now, under, self.last_update_success)
        super().async_update_listeners()

    def start(self) -> None:
        """Poll the meter until the entry unloads."""
        self.config_entry.async_create_background_task(
            self.hass, self._async_poll_forever(), f"{DOMAIN} grid loop {self.config_entry.title}"
        )

    async def _async_poll_forever(self) -> None:
        """Refresh every interval, measured from start to start."""
        loop = self.hass.loop
        while True:
            started = loop.time()
            await self.async_refresh()
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # pymodbus (3.11) turns a cancelled request into an I/O error and the
                # coordinator logs it as a failed update: the unload must still end the loop.
                raise asyncio.CancelledError
            await asyncio.sleep(max(self.interval - (loop.time() - started), 0.01))

    async def _async_update_data(self) -> GridData:
        """Read the meter; confirm a low sample at once with a second read."""
        reading = await self._async_read_plausible()
        low = reading.frequency_hz < self.under_frequency_hz
        if low and not (self.data and self.data.under_frequency):
            # One low sample may be noise: re-read now rather than wait a poll,
            # so a real dip is confirmed within milliseconds.
            reading = await self._async_read_plausible()
            low = reading.frequency_hz < self.under_frequency_hz
        return GridData(reading=reading, under_frequency=low)

    async def _async_read_plausible(self) -> GridReading:
        """One meter read that decodes to a plausible frequency, recorded in the history."""
        try:
            reading = await self.meter.read()
        except DeviceConnectionError as err:
            raise UpdateFailed(
                translation_domain=DOMAIN,
                translation_key="meter_unreachable",
                translation_placeholders={"error": str(err)},
            ) from err
        except DeviceProtocolError as err:
            self._note_implausible(str(err))
            raise UpdateFailed(
                translation_domain=DOMAIN,
                translation_key="meter_unreadable",
                translation_placeholders={"error": str(err)},
            ) from err
        try:
            validate_frequency(reading.frequency_hz, self.nominal_hz)
        except DeviceProtocolError as err:
            shown = (
                f"{reading.frequency_hz}" if math.isfinite(reading.frequency_hz) else "not a number"
            )
            self._note_implausible(shown)
            raise UpdateFailed(
                translation_domain=DOMAIN,
                translation_key="implausible_frequency",
                translation_placeholders={"value": shown},
            ) from err
        if self._issue_may_be_open:
            ir.async_delete_issue(self.hass, DOMAIN, self._issue_id)
            self._issue_may_be_open = False
        self._implausible_in_a_row = 0
        self.samples.append(FrequencySample(reading.read_at_monotonic, reading.frequency_hz))
        return reading

    @property
    def _issue_id(self) -> str:
        return implausible_issue_id(self.config_entry.entry_id)

    def _note_implausible(self, value: str) -> None:
        """Raise a repair issue once nonsense readings persist."""
        self._implausible_in_a_row += 1
        if self._implausible_in_a_row == IMPLAUSIBLE_READINGS_FOR_REPAIR:
            self._issue_may_be_open = True
            ir.async_create_issue(
                self.hass,
                DOMAIN,
                self._issue_id,
                is_fixable=False,
                severity=ir.IssueSeverity.ERROR,
                translation_key="implausible_frequency",
                translation_placeholders={"site": self.config_entry.title, "value": value},
            )


@dataclass(frozen=True, slots=True)
class SiteData:
    """Supply, available power and network health of a site."""

    supply: SupplyReading
    available_power_w: float | None
    probes: dict[str, ProbeResult]
    internet_up: bool | None
    site_power_w: float
    # What the containers draw besides their miners (cooling, standby, losses); None without
    # containers or while one of them is unread (its energy is then not guessed).
    containers_overhead_w: float | None = None
    # When the poll was taken (UTC timestamp): the time of a sample that only polls change.
    polled_at: float = 0.0


class SiteCoordinator(DataUpdateCoordinator[SiteData]):
    """Polls the supply sensors and network probes every few seconds."""

    config_entry: BitcoinMiningConfigEntry

    def __init__(
        self,
        hass: HomeAssistant,
        entry: BitcoinMiningConfigEntry,
        supply: SupplySensors,
        probes: tuple[ProbeTarget, ...],
        fleet_power_w: Callable[[], float],
        containers_overhead_w: Callable[[], float | None] = lambda: None,
    ) -> None:
        """Set up the site poll."""
        interval = float(entry.options.get(CONF_FLEET_INTERVAL, DEFAULT_FLEET_INTERVAL))
        super().__init__(
            hass,
            LOGGER,
            config_entry=entry,
            name=f"{entry.title} site",
            update_interval=timedelta(seconds=interval),
        )
        self.supply = supply
        self.probe_targets = probes
        self.overhead_w = float(entry.options.get(CONF_OVERHEAD_KW, DEFAULT_OVERHEAD_KW)) * 1000
        self.margin_w = float(entry.options.get(CONF_MARGIN_KW, DEFAULT_MARGIN_KW)) * 1000
        self.supply_stale_s = float(entry.options.get(CONF_SUPPLY_STALE_S, DEFAULT_SUPPLY_STALE_S))
        self._last_supply_problem: str | None = None
        # What the miners draw now: the site's draw is the overhead plus this.
        self.fleet_power_w = fleet_power_w
        self.containers_overhead_w = containers_overhead_w

    def _read_supply(self) -> tuple[SupplyReading, float | None]:
        """The supply and the power left for mining; a new problem is logged once."""
        supply = self.supply.read(self.hass, self.supply_stale_s)
        if supply.problem != self._last_supply_problem:
            if supply.problem:
                LOGGER.warning(
                    "Supply power unknown (%s): no miner will be started", supply.problem
                )
            elif self._last_supply_problem:
                LOGGER.info("Supply power readable again")
            self._last_supply_problem = supply.problem
        if supply.power_w is None:
            return supply, None
        return supply, max(supply.power_w - self.overhead_w - self.margin_w, 0.0)

    @callback
    def async_supply_changed(self, event: Event[EventStateChangedData]) -> None:
        """Follow a supply sensor at once instead of waiting for the next poll.

        Subscribed after the first refresh, so there is always data to update.
        """
        supply, available = self._read_supply()
        if supply != self.data.supply:
            self.async_set_updated_data(
                replace(self.data, supply=supply, available_power_w=available)
            )

    async def _async_update_data(self) -> SiteData:
        """Read the supply and probe the network, never failing as a whole."""
        supply, available = self._read_supply()
        results = await probe_all(self.probe_targets, PROBE_TIMEOUT_S) if self.probe_targets else []
        probes = {result.target.name: result for result in results}
        return SiteData(
            supply=supply,
            available_power_w=available,
            probes=probes,
            internet_up=internet_up(results) if results else None,
            site_power_w=self.overhead_w + self.fleet_power_w(),
            containers_overhead_w=self.containers_overhead_w(),
            polled_at=dt_util.utcnow().timestamp(),
        )
