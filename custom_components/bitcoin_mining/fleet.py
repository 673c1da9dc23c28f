"""The fleet coordinator: every ASIC polled together, commands confirmed, cycles counted."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
import math
import time
from typing import Any

import aiohttp
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator

from .const import (
    COMMAND_CONCURRENCY,
    CONF_FLEET_INTERVAL,
    DEFAULT_FLEET_INTERVAL,
    DOMAIN,
    LOGGER,
    MINER_TIMEOUT_S,
    POLL_CONCURRENCY,
)
from .miningsite.addresses import MinerAddress
from .miningsite.allocation import AsicState
from .miningsite.exceptions import (
    DeviceAuthError,
    DeviceProtocolError,
    MiningSiteError,
    UnsupportedError,
)
from .miningsite.miners.base import (
    Credentials,
    Family,
    MinerEndpoint,
    MinerIdentity,
    MinerStatus,
    PoolConfig,
)
from .miningsite.miners.detect import detect_family
from .miningsite.miners.fleet import Action, Fleet, driver_for, fill_power
from .miningsite.miners.models import model_spec
from .miningsite.miners.pool_moves import PoolMoveOutcome
from .models import BitcoinMiningConfigEntry
from .storage import SiteStore

# Efficiency assumed for a miner of a model we do not know (S19-class), so it sorts mid-pack.
UNKNOWN_EFFICIENCY_J_PER_TH = 30.0
UNKNOWN_POWER_W = 3250.0
# Unreadable answers this many polls running mean the miner runs other firmware now.
UNREADABLE_POLLS = 3
# Listeners told per turn of the event loop (a slice takes a few milliseconds).
LISTENER_SLICE = 500
# Key of a miner that reports no MAC: its configured address.
ADDRESS_KEY_PREFIX = "address:"


@dataclass(frozen=True, slots=True)
class MinerView:
    """One ASIC as the last poll saw it (keyed by MAC)."""

    address: str
    identity: MinerIdentity
    status: MinerStatus | None
    error: str | None

    @property
    def online(self) -> bool:
        """Answered the last poll."""
        return self.status is not None

    @property
    def mining(self) -> bool | None:
        """Hashing (or ramping up), as the firmware reports it."""
        return None if self.status is None else self.status.mining


@dataclass(frozen=True, slots=True)
class FleetData:
    """The fleet after a poll."""

    miners: dict[str, MinerView]
    unidentified: tuple[str, ...]
    polled_at: float

    @property
    def hashrate_ths(self) -> float:
        """Fleet hashrate."""
        return sum(
            (v.status.hashrate_ths or 0.0) for v in self.miners.values() if v.status is not None
        )

    @property
    def power_w(self) -> float:
        """Fleet draw (measured where reported, else estimated), sleeping miners included."""
        return sum((v.status.power_w or 0.0) for v in self.miners.values() if v.status is not None)

    @property
    def running(self) -> int:
        """Miners hashing now."""
        return sum(1 for v in self.miners.values() if v.mining)

    @property
    def total(self) -> int:
        """Miners known to the site."""
        return len(self.miners)


def _read_back_alone(view: MinerView, mining: bool | None) -> MinerStatus | None:
    """The miner's status after a quick read-back: its last one, in the state read back."""
    if mining is None:
        return None
    last = view.status or MinerStatus(mining=mining)
    if mining == last.mining:
        return last
    if mining:
        # Waking: what it hashes and draws comes with the next poll.
        return replace(last, mining=True, hashrate_ths=None, power_w=None, power_estimated=False)
    return fill_power(
        replace(last, mining=False, hashrate_ths=0.0, power_w=None, power_estimated=False),
        view.identity.model,
    )


class FleetCoordinator(DataUpdateCoordinator[FleetData]):
    """Polls every miner concurrently; one slow or broken miner never holds up the rest.

    Miners are keyed by their configured address in the library's fan-out and by
    their MAC everywhere else (devices, cycles, locks): an IP may change hands.
    """

    config_entry: BitcoinMiningConfigEntry

    def __init__(
        self,
        hass: HomeAssistant,
        entry: BitcoinMiningConfigEntry,
        miners: Sequence[tuple[MinerAddress, Family | None]],
        credentials: Credentials,
        session: aiohttp.ClientSession,
        store: SiteStore,
    ) -> None:
        """Describe the fleet; nothing is contacted until the first refresh."""
        interval = float(entry.options.get(CONF_FLEET_INTERVAL, DEFAULT_FLEET_INTERVAL))
        super().__init__(
            hass,
            LOGGER,
            config_entry=entry,
            name=f"{entry.title} fleet",
            update_interval=timedelta(seconds=interval),
        )
        self.addresses = [str(address) for address, _ in miners]
        self.endpoints = {
            str(address): MinerEndpoint(address.host, address.port) for address, _ in miners
        }
        self.credentials = credentials
        self.session = session
        self.store = store
        self.families: dict[str, Family] = {
            str(address): family for address, family in miners if family is not None
        }
        for address in self.addresses:
            if address not in self.families and (known := store.identities.get(address)):
                self.families[address] = known.family
        self.fleet = Fleet(
            concurrency=POLL_CONCURRENCY,
            command_concurrency=COMMAND_CONCURRENCY,
            timeout=MINER_TIMEOUT_S,
        )
        # The power and hashrate a miner last showed while hashing: what starting it costs.
        self.running_power_w: dict[str, float] = {}
        self.running_hashrate_ths: dict[str, float] = {}
        self._last_errors: dict[str, str] = {}
        # Polls in a row on which a miner answered in a way its driver cannot read.
        self._unreadable: dict[str, int] = {}
        self.explicit = {str(address) for address, family in miners if family is not None}
        # When a command last read each miner back (monotonic): a poll under way by then
        # may hold an older reading of it, which must not undo the confirmed state.
        self._read_back_at: dict[str, float] = {}
        self._preparing: asyncio.Task[None] | None = None
        self._publish_pending = False
        # Our own ordered copy of the listeners, to tell them in slices (see below).
        self._listeners_in_order: dict[object, CALLBACK_TYPE] = {}
        self._telling: asyncio.Task[None] | None = None

    @callback
    def async_add_listener(
        self, update_callback: CALLBACK_TYPE, context: Any = None
    ) -> Callable[[], None]:
        """Listen for data updates (told in slices by async_update_listeners)."""
        remove = super().async_add_listener(update_callback, context)
        key = object()
        self._listeners_in_order[key] = update_callback

        @callback
        def remove_listener() -> None:
            self._listeners_in_order.pop(key, None)
            remove()

        return remove_listener

    @callback
    def async_update_listeners(self) -> None:
        """Tell the listeners, LISTENER_SLICE at a time with the event loop free in between.

        A fleet update reaches some thirty entities a miner, thousands in all: told in one
        go they would hold the loop for a large fraction of a second, and a shed for a
        frequency dip that comes meanwhile would wait for them.
        """
        if self._telling is not None:
            # The rest of an older update: the listeners read the newest data anyway.
            self._telling.cancel()
            self._telling = None
        listeners = list(self._listeners_in_order.items())
        self._tell(listeners[:LISTENER_SLICE])
        if len(listeners) > LISTENER_SLICE:
            self._telling = self.config_entry.async_create_task(
                self.hass,
                self._async_tell_in_slices(listeners[LISTENER_SLICE:]),
                f"{DOMAIN} fleet update {self.config_entry.title}",
            )

    async def _async_tell_in_slices(self, listeners: list[tuple[object, CALLBACK_TYPE]]) -> None:
        for start in range(0, len(listeners), LISTENER_SLICE):
            await asyncio.sleep(0)
            self._tell(listeners[start : start + LISTENER_SLICE])
        self._telling = None

    def _tell(self, listeners: list[tuple[object, CALLBACK_TYPE]]) -> None:
        for key, update_callback in listeners:
            if key not in self._listeners_in_order:
                continue  # removed meanwhile (its entity went away)
            try:
                update_callback()
            except Exception:  # noqa: BLE001 - one entity's bug must not keep the others stale
                LOGGER.exception("Unexpected error updating a listener of %s", self.name)

    def measured_power_w(self) -> float:
        """What the fleet draws by the latest poll (0 before the first)."""
        return self.data.power_w if self.data else 0.0

    async def async_shutdown(self) -> None:
        """Close the drivers (sessions and tokens held on miners) when the site unloads."""
        await super().async_shutdown()
        await self.fleet.close()

    def _add_drivers(self) -> None:
        """Give every miner whose family is known a driver in the fan-out."""
        members = set(self.fleet.keys)
        for address in self.addresses:
            if address not in members and (family := self.families.get(address)):
                self.fleet.add(
                    address,
                    driver_for(
                        family,
                        self.endpoints[address],
                        self.credentials,
                        self.session,
                        MINER_TIMEOUT_S,
                    ),
                )

    async def _async_detect(self, addresses: Iterable[str]) -> None:
        """Find the family of auto-detected miners that answer (the rest try again next poll)."""

        async def one(address: str) -> None:
            try:
                family = await detect_family(self.endpoints[address], self.session, MINER_TIMEOUT_S)
            except MiningSiteError as err:
                self._note_error(address, f"family not detected: {err}")
                return
            self.families[address] = family

        await asyncio.gather(*(one(a) for a in addresses))

    async def _async_identify(self) -> None:
        """Identify new members and those whose readings named another MAC."""
        report = await self.fleet.identify_all()
        for address, error in report.errors.items():
            if address not in self.store.identities:
                self._note_error(address, f"not identified: {error}")
        for address, change in report.changed.items():
            LOGGER.warning(
                "Miner at %s is another machine now (%s, was %s)",
                address,
                change.seen_mac,
                change.previous.mac,
            )
            ir.async_create_issue(
                self.hass,
                DOMAIN,
                f"miner_replaced_{change.previous.mac}",
                is_fixable=False,
                severity=ir.IssueSeverity.WARNING,
                translation_key="miner_replaced",
                translation_placeholders={
                    "address": address,
                    "old": change.previous.mac,
                    "new": change.seen_mac,
                },
            )
        for address, identity in report.identified.items():
            self._set_identity(address, identity)

    def _set_identity(self, address: str, identity: MinerIdentity) -> None:
        if not identity.mac:
            # Firmware without a MAC (plain CGMiner): its address is all that names it.
            identity = replace(identity, mac=f"{ADDRESS_KEY_PREFIX}{address}")
        for other, known in list(self.store.identities.items()):
            if other != address and known.mac == identity.mac:
                # The miner moved to another address: the old one no longer holds it.
                del self.store.identities[other]
        if self.store.identities.get(address) != identity:
            self.store.identities[address] = identity
            self.store.async_schedule_save()

    async def _async_track_unreadable(
        self, results: dict[str, MinerStatus | MiningSiteError]
    ) -> None:
        """A miner that keeps answering in another protocol runs other firmware now.

        A detected family is detected again; a family the operator named gets a repair
        issue, since only the operator can say what the miner is.
        """
        for address, result in results.items():
            if not isinstance(result, DeviceProtocolError | UnsupportedError):
                if self._unreadable.pop(address, 0) >= UNREADABLE_POLLS:
                    ir.async_delete_issue(self.hass, DOMAIN, f"wrong_family_{address}")
                continue
            count = self._unreadable[address] = self._unreadable.get(address, 0) + 1
            if count != UNREADABLE_POLLS:
                continue
            family = self.families.get(address)
            if address in self.explicit:
                ir.async_create_issue(
                    self.hass,
                    DOMAIN,
                    f"wrong_family_{address}",
                    is_fixable=False,
                    severity=ir.IssueSeverity.WARNING,
                    translation_key="wrong_family",
                    translation_placeholders={
                        "address": address,
                        "family": str(family),
                        "error": str(result),
                    },
                )
            else:
                LOGGER.warning(
                    "Miner %s no longer reads as %s: detecting it again", address, family
                )
                self.families.pop(address, None)
                self._unreadable.pop(address, None)
                await self.fleet.remove(address)

    def _note_error(self, address: str, error: str) -> None:
        """Log a miner's problem once, not on every poll."""
        if self._last_errors.get(address) != error:
            LOGGER.info("Miner %s: %s", address, error)
            self._last_errors[address] = error

    async def _async_update_data(self) -> FleetData:
        """Poll every miner; never fail as a whole."""
        if undetected := [a for a in self.addresses if a not in self.families]:
            await self._async_detect(undetected)
        self._add_drivers()
        known = self.fleet.identities
        if any(a not in known for a in self.fleet.keys) or self.fleet.suspect_keys:
            await self._async_identify()
        started = time.monotonic()
        results = await self.fleet.poll()
        self._prepare_writes([a for a, r in results.items() if not isinstance(r, MiningSiteError)])
        await self._async_track_unreadable(results)
        return self._fleet_data(results, started)

    def _prepare_writes(self, addresses: list[str]) -> None:
        """Get the write paths of the miners that answered ready (sessions, tokens, confs).

        So that the first shed after a start is as quick as any other. Only the setup
        waits for it (async_writes_prepared): a shed that comes first finds cold drivers,
        which prepare themselves as they always did, and a driver that fails here only
        prepares at its next write.
        """
        if self._preparing is None or self._preparing.done():
            self._preparing = self.config_entry.async_create_background_task(
                self.hass,
                self._async_prepare_writes(addresses),
                f"{DOMAIN} prepare writes {self.config_entry.title}",
            )

    async def _async_prepare_writes(self, addresses: list[str]) -> None:
        for address, err in (await self.fleet.prepare_writes(addresses)).items():
            # The write itself, if one comes, fails or succeeds with its own error.
            LOGGER.debug("Miner %s: writes not prepared ahead: %s", address, err)

    def _fleet_data(
        self, results: dict[str, MinerStatus | MiningSiteError], started: float
    ) -> FleetData:
        now = time.time()
        previous = self.data.miners if self.data else {}
        miners: dict[str, MinerView] = {}
        changed = False
        suspects = self.fleet.suspect_keys
        for address in self.addresses:
            identity = self.store.identities.get(address)
            if identity is None:
                continue
            result = results.get(address)
            status = result if isinstance(result, MinerStatus) else None
            error = str(result) if isinstance(result, MiningSiteError) else None
            if error:
                self._note_error(address, error)
            elif self._last_errors.pop(address, None) is not None:
                LOGGER.info("Miner %s answers again", address)
            if status is not None and address not in suspects:
                known = previous.get(identity.mac)
                if (
                    self._read_back_at.get(address, -math.inf) > started
                    and known is not None
                    and known.status is not None
                ):
                    # A command read this miner back while the poll was under way: the
                    # poll's reading may predate the command; counting it would undo the
                    # confirmed state and count the same stop (or start) twice.
                    status = known.status
                else:
                    changed |= self.store.cycles.observe(identity.mac, status.mining, now)
                    self._remember_running(identity.mac, status)
            elif address in suspects:
                # Another machine answers here: its readings are not this miner's.
                status, error = None, "another miner answers at this address"
            miners[identity.mac] = MinerView(address, identity, status, error)
        if changed:
            self.store.async_schedule_save()
        unidentified = tuple(a for a in self.addresses if a not in self.store.identities)
        return FleetData(miners=miners, unidentified=unidentified, polled_at=now)

    def _remember_running(self, mac: str, status: MinerStatus) -> None:
        if status.mining and status.power_w and status.hashrate_ths:
            # Ramping miners draw and hash less than they will: keep the highest seen.
            self.running_power_w[mac] = max(self.running_power_w.get(mac, 0.0), status.power_w)
            self.running_hashrate_ths[mac] = max(
                self.running_hashrate_ths.get(mac, 0.0), status.hashrate_ths
            )

    async def async_command(
        self, macs: Sequence[str], action: Action, *, quick: bool = False
    ) -> dict[str, str | None]:
        """Stop or start miners, confirmed by read-back; per MAC the error, or None when done.

        `quick` confirms with the mining state alone where the firmware can read it in
        one small request (a shed in a hurry): the miner's other readings are then its
        last ones, with the hashrate and draw of the state it was put in, until the poll.
        """
        data = self.data
        members = set(self.fleet.keys)
        errors: dict[str, str | None] = {}
        targets: dict[str, MinerView] = {}
        for mac in macs:
            view = data.miners.get(mac)
            if view is None or view.address not in members:
                errors[mac] = "not a miner of this site"
            else:
                targets[view.address] = view
        outcomes = (
            await self.fleet.command(list(targets), action, quick_readback=quick) if targets else {}
        )
        now = time.time()
        miners = dict(data.miners)
        changed = False
        auth_refused = False
        for address, outcome in outcomes.items():
            view = targets[address]
            mac = view.identity.mac
            if outcome.confirmed:
                errors[mac] = None
            else:
                errors[mac] = str(
                    outcome.error or f"still {'sleeping' if action == 'start' else 'mining'}"
                )
                auth_refused |= isinstance(outcome.error, DeviceAuthError)
            status = outcome.status or _read_back_alone(view, outcome.mining)
            if status is not None:
                self._read_back_at[address] = time.monotonic()
                changed |= self.store.cycles.observe(mac, status.mining, now)
                miners[mac] = MinerView(address, view.identity, status, None)
        if changed:
            self.store.async_schedule_save()
        if auth_refused:
            # The miners' login changed: ask the operator for the new one.
            self.config_entry.async_start_reauth(self.hass)
        self.data = FleetData(
            miners=miners, unidentified=data.unidentified, polled_at=data.polled_at
        )
        # The entities (some thirty a miner) hear of it on the next turn of the loop: the
        # caller, a shed, records what was confirmed first, not after thousands of writes.
        self.publish_soon()
        return errors

    async def async_switch_pools(self, targets: Mapping[str, str]) -> dict[str, PoolMoveOutcome]:
        """Move miners (by MAC) to a pool URL each, all at once, each confirmed by read-back."""
        by_address = self._addresses(targets)
        outcomes = await self.fleet.switch_to_pool(
            {address: targets[mac] for address, mac in by_address.items()}
        )
        return self._take_read_backs(by_address, outcomes)

    async def async_ensure_backup_pool(
        self, backup: PoolConfig, statuses: Mapping[str, MinerStatus]
    ) -> dict[str, PoolMoveOutcome]:
        """Put `backup` last on these miners' pool lists (by MAC); only those that lack it."""
        by_address = self._addresses(statuses)
        outcomes = await self.fleet.ensure_backup_pool(
            backup, {address: statuses[mac] for address, mac in by_address.items()}
        )
        # The failover's pass goes batch by batch and publishes once at its end: every
        # publish writes thousands of states, and a shed meanwhile would wait for them.
        return self._take_read_backs(by_address, outcomes, publish=False)

    async def async_ensure_proxy_first(
        self, proxy_url: str, statuses: Mapping[str, MinerStatus]
    ) -> dict[str, PoolMoveOutcome]:
        """Put the site's proxy first on these miners' lists (by MAC); only those lacking it.

        Like the backup pass: read-backs held at once, published by the caller at its end.
        """
        by_address = self._addresses(statuses)
        outcomes = await self.fleet.ensure_proxy_first(
            proxy_url, {address: statuses[mac] for address, mac in by_address.items()}
        )
        return self._take_read_backs(by_address, outcomes, publish=False)

    def _addresses(self, macs: Iterable[str]) -> dict[str, str]:
        """Fleet address → MAC of the miners still in the fleet."""
        members = set(self.fleet.keys)
        return {
            view.address: mac
            for mac in macs
            if (view := self.data.miners.get(mac)) is not None and view.address in members
        }

    def _take_read_backs(
        self,
        by_address: Mapping[str, str],
        outcomes: Mapping[str, PoolMoveOutcome],
        *,
        publish: bool = True,
    ) -> dict[str, PoolMoveOutcome]:
        """Show the pools the moves read back at once (the next poll is seconds away).

        Only the pools: the rest of a reading taken during a move may be older than a
        stop or start confirmed meanwhile, and must not undo it.
        """
        miners = dict(self.data.miners)
        for address, outcome in outcomes.items():
            mac = by_address[address]
            view = miners.get(mac)
            if view is not None and view.status is not None and outcome.status is not None:
                status = replace(view.status, pools=outcome.status.pools)
                miners[mac] = replace(view, status=status)
        self.data = replace(self.data, miners=miners)
        if publish:
            self.publish_soon()
        return {by_address[address]: outcome for address, outcome in outcomes.items()}

    @callback
    def publish_soon(self) -> None:
        """Tell the listeners on the next turn of the loop (once, however often asked)."""
        if not self._publish_pending:
            self._publish_pending = True
            self.hass.loop.call_soon(self._async_publish)

    @callback
    def _async_publish(self) -> None:
        """Tell the listeners of the data now held (a poll may have replaced it meanwhile)."""
        self._publish_pending = False
        self.async_set_updated_data(self.data)

    async def async_writes_prepared(self, within: float) -> None:
        """Wait, at most `within` seconds, for the write paths the first poll is preparing.

        The site reports loaded only then, so that a shed right after a start is as quick
        as any other; a miner slower than that prepares itself at its first write.
        """
        if self._preparing is not None and not self._preparing.done():
            await asyncio.wait({self._preparing}, timeout=within)

    def running_draw_w(self) -> float:
        """What the miners that run draw, as the allocation counts it."""
        return sum(a.power_w for a in self.asic_states() if a.running)

    def asic_states(self) -> tuple[AsicState, ...]:
        """The fleet as the allocation core sees it."""
        data: FleetData | None = self.data  # None until the first poll
        if data is None:
            return ()
        states = []
        for mac, view in data.miners.items():
            status = view.status
            record = self.store.cycles.get(mac)
            spec = model_spec(view.identity.model)
            power = self.running_power_w.get(mac) or (spec.power_w if spec else UNKNOWN_POWER_W)
            hashrate = self.running_hashrate_ths.get(mac) or (
                spec.hashrate_ths if spec else power / UNKNOWN_EFFICIENCY_J_PER_TH
            )
            states.append(
                AsicState(
                    id=mac,
                    online=status is not None,
                    # Unreachable: as last confirmed. A miner that stops answering mostly
                    # keeps hashing, and its draw must not be handed to others.
                    mining=status.mining if status is not None else record.mining is True,
                    power_w=power,
                    efficiency_j_per_th=power / hashrate,
                    cycles=record.cycles,
                    last_on=record.last_on,
                    last_off=record.last_off,
                    lock=self.store.locks.get(mac, "none"),
                    power_estimated=bool(status and status.power_estimated),
                    temperature_c=status.temperature_c if status else None,
                )
            )
        return tuple(states)
