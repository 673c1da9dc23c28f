"""One MicroBT container in Home Assistant: its poll, alarms and energy total."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from homeassistant.config_entries import ConfigSubentry
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.storage import Store
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator, UpdateFailed

from .const import (
    CONF_CONTAINER_HOST,
    CONF_CONTAINER_KIND,
    CONF_CONTAINER_MINERS,
    CONF_CONTAINER_PASSWORD,
    CONF_CONTAINER_PORT,
    CONF_CONTAINER_SOCKET_CUT,
    CONF_CONTAINER_SOCKETS_IN_ORDER,
    CONF_CONTAINER_USERNAME,
    CONF_CONTAINER_WARM_FRACTION,
    CONTAINER_INTERVAL_S,
    CONTAINER_TIMEOUT_S,
    DEFAULT_CONTAINER_SOCKET_CUT,
    DEFAULT_CONTAINER_WARM_FRACTION,
    DOMAIN,
    KIND_DETECT,
    LOGGER,
    SUBENTRY_CONTAINER,
)
from .container_flow import container_alarm_settings, container_miners
from .miningsite.addresses import MinerAddress
from .miningsite.allocation import GroupLimit
from .miningsite.containers import ContainerClient, ContainerKind, ContainerReading
from .miningsite.containers.alarms import (
    INLET_HOT,
    INLET_WARM,
    Alarm,
    AlarmSettings,
    AlarmSettingsError,
    AlarmState,
    Severity,
    alarm_inputs,
    evaluate,
)
from .miningsite.exceptions import ContainerAuthError, MiningSiteError
from .models import BitcoinMiningConfigEntry

# The power meters' energy register: hundredths of a kWh in 16 bits.
ENERGY_WRAP_KWH = 65536 / 100
SOCKETS_PER_PDU = 20
STORE_VERSION = 1
SAVE_DELAY_S = 30.0


def container_subentries(entry: BitcoinMiningConfigEntry) -> dict[str, ConfigSubentry]:
    """The site's containers by subentry id (2025.4 has no get_subentries_of_type)."""
    return {
        sub_id: sub
        for sub_id, sub in entry.subentries.items()
        if sub.subentry_type == SUBENTRY_CONTAINER
    }


def container_identifier(subentry_id: str) -> str:
    """The identifier of a container's device (its subentry: the address may change)."""
    return f"container_{subentry_id}"


def socket_of(index: int) -> tuple[int, int]:
    """The PDU and socket (both from 1) feeding the index-th miner of a container in order."""
    return index // SOCKETS_PER_PDU + 1, index % SOCKETS_PER_PDU + 1


def draw_beyond_miners_w(
    containers: Iterable[ContainerCoordinator], miner_power_w: Mapping[str, float]
) -> float:
    """What the containers draw besides their miners (pumps, fans, standby, losses).

    `miner_power_w` is each miner's measured draw by its address: the site already counts
    the miners, so only the rest of a container's metered power is added.
    """
    total = 0.0
    for container in containers:
        reading = container.data.reading if container.data else None
        if reading is None or reading.power_w is None:
            continue
        miners_w = sum(miner_power_w.get(str(miner), 0.0) for miner in container.miners)
        total += max(reading.power_w - miners_w, 0.0)
    return total


def critical_issue_id(subentry_id: str) -> str:
    """The repair issue of a container with a critical alarm."""
    return f"container_critical_{subentry_id}"


def energy_store(hass: HomeAssistant, entry_id: str, subentry_id: str) -> Store[dict[str, Any]]:
    """The store of a container's energy total (the one thing it keeps across restarts)."""
    return Store(hass, STORE_VERSION, f"{DOMAIN}.{entry_id}.container.{subentry_id}")


async def async_forget_container(
    hass: HomeAssistant,
    entry_id: str,
    subentry_id: str,
    store: Store[dict[str, Any]] | None = None,
) -> None:
    """Remove what a container left behind: its energy total and its repair issue.

    `store`: the container's own open store, if it has one (removing that very store also
    cancels a save it still has pending). Its device and entities belong to its subentry:
    Home Assistant removes those itself.
    """
    ir.async_delete_issue(hass, DOMAIN, critical_issue_id(subentry_id))
    await (store or energy_store(hass, entry_id, subentry_id)).async_remove()


class EnergyTotal:
    """The meters' wrapping 16-bit energy registers as one total that never goes backwards."""

    def __init__(self, total_kwh: float = 0.0, last: list[float | None] | None = None) -> None:
        """Start from a stored total and the registers it last saw."""
        self.total_kwh = total_kwh
        self.last: list[float | None] = list(last or [])

    def add(self, registers: list[float | None]) -> bool:
        """Count what each meter's register advanced (its wrap included); whether it changed."""
        if len(self.last) < len(registers):
            self.last += [None] * (len(registers) - len(self.last))
        changed = False
        for index, value in enumerate(registers):
            if value is None:
                continue
            before = self.last[index]
            self.last[index] = value
            changed = True
            if before is None:
                continue  # first sight: a baseline, not consumption
            delta = (value - before) % ENERGY_WRAP_KWH
            # More than half the register between two polls is a reset or a step back
            # (nothing draws 327 kWh in a poll): a new baseline, never a negative count.
            if delta < ENERGY_WRAP_KWH / 2:
                self.total_kwh += delta
        return changed

    def as_dict(self) -> dict[str, Any]:
        """What the store keeps."""
        return {"total_kwh": self.total_kwh, "last": self.last}


@dataclass(frozen=True, slots=True)
class ContainerData:
    """The latest read of one container, its alarms and its energy total."""

    reading: ContainerReading | None
    alarms: AlarmState
    raised: tuple[Alarm, ...]
    cleared: tuple[Alarm, ...]
    energy_kwh: float | None


class ContainerCoordinator(DataUpdateCoordinator[ContainerData]):
    """Polls one container; a failed or odd read never crashes the poll (unknown instead)."""

    config_entry: BitcoinMiningConfigEntry

    def __init__(
        self,
        hass: HomeAssistant,
        entry: BitcoinMiningConfigEntry,
        subentry: ConfigSubentry,
        client: ContainerClient | None = None,
        settings: AlarmSettings | None = None,
    ) -> None:
        """Set up the poll of one container subentry."""
        super().__init__(
            hass,
            LOGGER,
            config_entry=entry,
            name=f"{entry.title} {subentry.title}",
            # Every second: a critical alarm must stop the container's miners within 2 s.
            update_interval=timedelta(seconds=CONTAINER_INTERVAL_S),
            # Unchanged reads write no states (the recorder would store each second).
            always_update=False,
        )
        data = subentry.data
        self.subentry = subentry
        self.subentry_id = subentry.subentry_id
        kind = data.get(CONF_CONTAINER_KIND, KIND_DETECT)
        self.client = client or ContainerClient(
            data[CONF_CONTAINER_HOST],
            int(data[CONF_CONTAINER_PORT]),
            kind=None if kind == KIND_DETECT else ContainerKind(kind),
            username=str(data.get(CONF_CONTAINER_USERNAME) or ""),
            password=str(data.get(CONF_CONTAINER_PASSWORD) or ""),
            timeout=CONTAINER_TIMEOUT_S,
        )
        self.miners: list[MinerAddress] = container_miners(
            str(data.get(CONF_CONTAINER_MINERS) or "")
        )
        in_order = bool(data.get(CONF_CONTAINER_SOCKETS_IN_ORDER, True))
        # (pdu, socket) -> the miner it feeds.
        self.sockets: dict[tuple[int, int], MinerAddress] = (
            {socket_of(index): miner for index, miner in enumerate(self.miners)} if in_order else {}
        )
        self.warm_fraction = float(
            data.get(CONF_CONTAINER_WARM_FRACTION, DEFAULT_CONTAINER_WARM_FRACTION)
        )
        self.socket_cut = bool(data.get(CONF_CONTAINER_SOCKET_CUT, DEFAULT_CONTAINER_SOCKET_CUT))
        self.alarm_settings = settings or self._settings(subentry)
        self._alarms = AlarmState()
        self._energy = EnergyTotal()
        self._store = energy_store(hass, entry.entry_id, self.subentry_id)
        self._last_problem: str | None = None
        self._alarm_listeners: list[Callable[[tuple[Alarm, ...], tuple[Alarm, ...]], None]] = []

    async def async_restore(self) -> None:
        """Load the energy total kept across restarts (before the first poll).

        Not `_async_setup`: Home Assistant runs that only from the first refresh that
        fails the setup, and a container that does not answer must not hold the site back.
        """
        stored = await self._store.async_load()
        if stored:
            self._energy = EnergyTotal(float(stored.get("total_kwh", 0.0)), stored.get("last"))

    @staticmethod
    def _settings(subentry: ConfigSubentry) -> AlarmSettings:
        """The subentry's alarm settings; the defaults (and an error logged) if they are damaged."""
        try:
            return container_alarm_settings(subentry.data)
        except AlarmSettingsError as err:
            LOGGER.error(
                "%s: the stored alarm settings cannot be used (%s: %s); the defaults apply "
                "until the container's Alarms step is saved again",
                subentry.title, err.field, err,
            )  # fmt: skip
            return AlarmSettings()

    async def async_shutdown(self) -> None:
        """Save the energy total (or forget it, if the container left the site), disconnect."""
        await super().async_shutdown()
        if self.subentry_id in self.config_entry.subentries:
            await self._store.async_save(self._energy.as_dict())
        else:
            await async_forget_container(
                self.hass, self.config_entry.entry_id, self.subentry_id, self._store
            )
        await self.client.close()

    @property
    def alarms(self) -> AlarmState:
        """The active alarms (kept through a failed poll: unknown is not a recovery)."""
        return self._alarms

    def group_limit(self, macs: frozenset[str], power_w: float) -> GroupLimit | None:
        """The cap on this container's miners (`power_w` when all run), or None for none."""
        if not macs:
            return None
        active = self._alarms.active
        if self._alarms.emergency:
            return GroupLimit(macs, 0.0, "container_emergency")
        if INLET_HOT in active:
            return GroupLimit(macs, 0.0, "container_hot")
        if INLET_WARM in active:
            return GroupLimit(macs, power_w * self.warm_fraction, "container_warm")
        return None

    async def async_cut_sockets(self, addresses: set[str]) -> list[str]:
        """Cut the sockets that feed these miners (by address); the addresses cut."""
        cut: list[str] = []
        for (pdu, socket), miner in sorted(self.sockets.items()):
            if str(miner) not in addresses:
                continue
            try:
                await self.client.set_socket(pdu, socket, False)
            except MiningSiteError as err:
                LOGGER.error(
                    "%s: cutting PDU %d socket %d (%s) failed: %s",
                    self.subentry.title, pdu, socket, miner, err,
                )  # fmt: skip
                continue
            LOGGER.warning(
                "%s: %s did not confirm its emergency stop: PDU %d socket %d cut",
                self.subentry.title, miner, pdu, socket,
            )  # fmt: skip
            cut.append(str(miner))
        return cut

    @callback
    def async_add_alarm_listener(
        self, listener: Callable[[tuple[Alarm, ...], tuple[Alarm, ...]], None]
    ) -> Callable[[], None]:
        """Call `listener(raised, cleared)` after every poll that changed the alarms."""
        self._alarm_listeners.append(listener)
        return lambda: self._alarm_listeners.remove(listener)

    async def _async_update_data(self) -> ContainerData:
        """Read the container; alarms and energy follow what is known."""
        try:
            reading = await self.client.read()
        except ContainerAuthError as err:
            self._problem(f"login refused: {err}")
            raise UpdateFailed(
                translation_domain=DOMAIN,
                translation_key="container_login_refused",
                translation_placeholders={"container": self.subentry.title},
            ) from err
        except MiningSiteError as err:
            self._problem(str(err))
            self._update_alarms(None)
            raise UpdateFailed(
                translation_domain=DOMAIN,
                translation_key="container_unreachable",
                translation_placeholders={"container": self.subentry.title, "error": str(err)},
            ) from err
        if self._last_problem is not None:
            LOGGER.info("%s answers again", self.subentry.title)
            self._last_problem = None
        for unit, why in reading.unit_errors.items():
            LOGGER.debug("%s: %s unknown (%s)", self.subentry.title, unit, why)
        raised, cleared = self._update_alarms(reading)
        registers = [meter.energy_kwh if meter else None for meter in reading.meters]
        if self._energy.add(registers):
            self._store.async_delay_save(self._energy.as_dict, SAVE_DELAY_S)
        known = any(value is not None for value in self._energy.last)
        return ContainerData(
            reading=reading,
            alarms=self._alarms,
            raised=raised,
            cleared=cleared,
            energy_kwh=self._energy.total_kwh if known else None,
        )

    def _problem(self, problem: str) -> None:
        """Log a container's problem once, not on every poll."""
        if problem != self._last_problem:
            LOGGER.warning("%s cannot be read: %s", self.subentry.title, problem)
            self._last_problem = problem

    def _update_alarms(
        self, reading: ContainerReading | None
    ) -> tuple[tuple[Alarm, ...], tuple[Alarm, ...]]:
        """Evaluate the alarms, tell the listeners, keep the repair issue in step."""
        self._alarms, raised, cleared = evaluate(
            self._alarms, alarm_inputs(reading), self.alarm_settings
        )
        if raised or cleared:
            for listener in list(self._alarm_listeners):
                listener(raised, cleared)
            self._sync_issue()
        return raised, cleared

    def _sync_issue(self) -> None:
        """A repair issue while a critical alarm is active."""
        issue_id = critical_issue_id(self.subentry_id)
        critical = sorted(
            a.name for a in self._alarms.active.values() if a.severity is Severity.CRITICAL
        )
        if not critical:
            ir.async_delete_issue(self.hass, DOMAIN, issue_id)
            return
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            issue_id,
            is_fixable=False,
            severity=ir.IssueSeverity.CRITICAL,
            translation_key="container_critical_alarm",
            translation_placeholders={
                "container": self.subentry.title,
                "alarms": ", ".join(critical),
            },
        )
