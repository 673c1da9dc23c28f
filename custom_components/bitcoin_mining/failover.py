"""Internet failover: the local Stratum pool, the uplink watch, switch-over and switch-back.

Everything here is level-triggered: after every handshake probe and every fleet poll
the controller compares what is (the uplink's verdict, each miner's active pool) with
what should be, and starts at most one move at a time. So a restart, a miner that came
back late, or miners the firmware moved by itself are all handled the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
import time
from typing import TYPE_CHECKING, Any, Literal

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator
from homeassistant.util import dt as dt_util, slugify

from .balancer import MODES, Mode
from .const import (
    CONF_FAILBACK_BATCH,
    CONF_FAILBACK_HOLD_S,
    CONF_LOCAL_POOL_ADDRESS,
    CONF_LOCAL_POOL_BIND,
    CONF_LOCAL_POOL_MIN_DIFFICULTY,
    CONF_LOCAL_POOL_MODE,
    CONF_LOCAL_POOL_PORT,
    CONF_OUTAGE_FAILURES,
    CONF_OUTAGE_WINDOW_S,
    CONF_POOL_HOST,
    CONF_POOL_PORT,
    DEFAULT_FAILBACK_BATCH,
    DEFAULT_FAILBACK_HOLD_S,
    DEFAULT_LOCAL_POOL_MIN_DIFFICULTY,
    DEFAULT_LOCAL_POOL_PORT,
    DEFAULT_OUTAGE_FAILURES,
    DEFAULT_OUTAGE_WINDOW_S,
    DOMAIN,
    EVENT_UPLINK_OUTAGE,
    EVENT_UPLINK_RESTORED,
    HANDSHAKE_INTERVAL_S,
    HANDSHAKE_TIMEOUT_S,
    LOGGER,
    POOL_MODE_BACKUP,
    POOL_MODE_PROXY,
    POOL_MODE_PROXY_SHARED,
    SHARE_LOSS_WINDOW_S,
)
from .miningsite.exceptions import LocalPoolError, PoolPortInUseError
from .miningsite.miners.base import MinerStatus, PoolConfig
from .miningsite.miners.pool_moves import PoolMoveOutcome, same_pool_url
from .miningsite.network import local_address_towards
from .miningsite.stratum import (
    LocalPool,
    PoolConfig as LocalPoolConfig,
    PoolStats,
    ProxyConfig,
    ProxyStats,
    StratumProxy,
    VardiffConfig,
)
from .miningsite.uplink import (
    HandshakeResult,
    OutageDetector,
    ShareCounters,
    ShareLossWindow,
    probe_stratum,
)
from .models import BitcoinMiningConfigEntry
from .storage import SiteStore

if TYPE_CHECKING:
    from .fleet import FleetCoordinator, FleetData, MinerView

FailoverState = Literal["normal", "outage", "failed_over", "failing_back"]
FAILOVER_STATES: tuple[FailoverState, ...] = ("normal", "outage", "failed_over", "failing_back")
MoveKind = Literal["switch_over", "switch_back", "backup_pool", "proxy_first"]
# The worker name the probe authorizes with when no miner shows the operator's.
PROBE_FALLBACK_USER = "bitcoin_mining"


def local_pool_issue_id(entry_id: str) -> str:
    """The repair issue of a site whose local pool cannot listen."""
    return f"local_pool_cannot_listen_{entry_id}"


@dataclass(frozen=True, slots=True)
class MoveReport:
    """What the last pool move did: how many miners it asked, and which did not follow."""

    kind: MoveKind
    finished_at: datetime
    asked: int
    # MAC → why the miner is not where it was asked to be.
    failures: dict[str, str]
    elapsed_s: float


@dataclass(frozen=True, slots=True)
class FailoverData:
    """The uplink's verdict, the local pool and where the miners hash."""

    mode: Mode
    state: FailoverState
    internet_up: bool | None
    outage_started: datetime | None
    outage_s: float | None
    last_outage_s: float | None
    handshake: HandshakeResult | None
    share_loss_percent: float | None
    share_loss_by_pool: dict[str, float | None]
    pool: PoolStats | None
    pool_error: str | None
    pool_url: str | None
    miners_on_local_pool: int
    last_move: MoveReport | None = None
    # MAC → why the local pool is not on that miner's list (reported, not retried).
    backup_missing: dict[str, str] = field(default_factory=dict)
    # Proxy mode: the relay's figures (pool is None then).
    proxy: ProxyStats | None = None


class FailoverController(DataUpdateCoordinator[FailoverData]):
    """Watches the uplink with Stratum handshakes and moves the miners between pools."""

    config_entry: BitcoinMiningConfigEntry

    def __init__(
        self,
        hass: HomeAssistant,
        entry: BitcoinMiningConfigEntry,
        fleet: FleetCoordinator,
        store: SiteStore,
    ) -> None:
        """Read the options; nothing listens or probes until start()."""
        super().__init__(
            hass, LOGGER, config_entry=entry, name=f"{entry.title} failover", update_interval=None
        )
        options = entry.options
        self.fleet = fleet
        self.store = store
        self.upstream = (str(entry.data[CONF_POOL_HOST]), int(entry.data[CONF_POOL_PORT]))
        self.bind = str(options.get(CONF_LOCAL_POOL_BIND) or "").strip() or None
        self.port = int(options.get(CONF_LOCAL_POOL_PORT, DEFAULT_LOCAL_POOL_PORT))
        self.advertised = str(options.get(CONF_LOCAL_POOL_ADDRESS) or "").strip() or None
        self.detector = OutageDetector(
            int(options.get(CONF_OUTAGE_FAILURES, DEFAULT_OUTAGE_FAILURES)),
            float(options.get(CONF_OUTAGE_WINDOW_S, DEFAULT_OUTAGE_WINDOW_S)),
        )
        self.hold_s = float(options.get(CONF_FAILBACK_HOLD_S, DEFAULT_FAILBACK_HOLD_S))
        self.batch = int(options.get(CONF_FAILBACK_BATCH, DEFAULT_FAILBACK_BATCH))
        # Attributes, not constants, so tests can run the watch faster.
        self.probe_interval_s = HANDSHAKE_INTERVAL_S
        self.probe_timeout_s = HANDSHAKE_TIMEOUT_S
        minimum = float(
            options.get(CONF_LOCAL_POOL_MIN_DIFFICULTY, DEFAULT_LOCAL_POOL_MIN_DIFFICULTY)
        )
        start = max(VardiffConfig().start_difficulty, minimum)
        local = LocalPoolConfig(
            vardiff=VardiffConfig(min_difficulty=minimum, start_difficulty=start)
        )
        self.pool_mode: str = options.get(CONF_LOCAL_POOL_MODE, POOL_MODE_BACKUP)
        self.proxy_mode = self.pool_mode in (POOL_MODE_PROXY, POOL_MODE_PROXY_SHARED)
        self.pool: LocalPool | StratumProxy = (
            StratumProxy(
                ProxyConfig(
                    upstream_host=self.upstream[0],
                    upstream_port=self.upstream[1],
                    batch_size=self.batch,
                    aggregate=self.pool_mode == POOL_MODE_PROXY_SHARED,
                    local=local,
                )
            )
            if self.proxy_mode
            else LocalPool(local)
        )
        self.share_loss = ShareLossWindow(SHARE_LOSS_WINDOW_S)
        self._moving: asyncio.Task[None] | None = None
        # Miners that refused the last move of each kind, keyed by MAC: not asked again
        # until the situation changes (a new outage, a new pool list).
        self._refused_switch: set[str] = set()
        self._refused_back: set[str] = set()
        # The pool list each miner had when its backup pool was last seen to or written
        # (fine or refused): looked at again only when the list changes.
        self._lists_checked: dict[str, tuple[tuple[str, str], ...]] = {}
        self._stopped = False
        self._outage_started: datetime | None = None
        # Every URL this site has put on the miners as its backup: one left behind by a
        # change of port or address is ours to replace, not an operator's pool.
        written = store.failover.get("backup_urls")
        self._written: list[str] = (
            [url for url in written if isinstance(url, str)] if isinstance(written, list) else []
        )
        saved = store.failover.get("mode")
        self.data = FailoverData(
            mode=saved if saved in MODES else "auto",
            state="normal",
            internet_up=None,
            outage_started=None,
            outage_s=None,
            last_outage_s=None,
            handshake=None,
            share_loss_percent=None,
            share_loss_by_pool={},
            pool=None,
            pool_error=None,
            pool_url=None,
            miners_on_local_pool=0,
        )

    async def _async_update_data(self) -> FailoverData:
        """Nothing to fetch: the watch loop and the fleet polls bring the news."""
        return self.data

    # -- lifecycle -------------------------------------------------------------

    async def async_start(self) -> None:
        """Start the local pool (a taken port is a repair issue), the watch and the moves."""
        entry = self.config_entry
        issue_id = local_pool_issue_id(entry.entry_id)
        error: str | None = None
        try:
            await self.pool.start(self.bind, self.port)
        except PoolPortInUseError as err:
            error = str(err)
            self._raise_pool_issue("local_pool_port_in_use", err)
        except LocalPoolError as err:
            error = str(err)
            self._raise_pool_issue("local_pool_cannot_listen", err)
        else:
            ir.async_delete_issue(self.hass, DOMAIN, issue_id)
        if error is not None:
            LOGGER.error("%s: %s; failover to the local pool is not possible", entry.title, error)
        self.data = replace(self.data, pool_error=error, pool_url=self._pool_url())
        # The first verdict comes with the setup (within the probe's timeout), so the
        # Internet sensor is never unknown while the site runs.
        self._observe(await self._probe())
        self._follow_fleet()
        entry.async_on_unload(self.fleet.async_add_listener(self._follow_fleet))
        entry.async_create_background_task(
            self.hass, self._async_watch_uplink(), f"{DOMAIN} uplink watch {entry.title}"
        )

    async def async_stop(self) -> None:
        """Stop moving miners and close the local pool (the miners' firmware takes over)."""
        self._stopped = True
        if self._moving is not None:
            self._moving.cancel()
        await self.pool.stop()

    def _raise_pool_issue(self, key: str, err: LocalPoolError) -> None:
        host = err.host if isinstance(err, PoolPortInUseError) else self.bind
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            local_pool_issue_id(self.config_entry.entry_id),
            is_fixable=False,
            severity=ir.IssueSeverity.ERROR,
            translation_key=key,
            translation_placeholders={
                "site": self.config_entry.title,
                "address": host or "all interfaces",
                "port": str(self.port),
                "error": str(err),
            },
        )

    def _pool_url(self) -> str | None:
        """The URL the miners are given for the local pool (None while it cannot listen)."""
        if not self.pool.running or self.pool.port is None:
            return None
        host = self.advertised or self.bind
        if host is None or host in ("0.0.0.0", "::"):  # noqa: S104 - a wildcard, not a bind
            host = self._address_seen_by_miners()
        if host is None:
            return None
        if ":" in host:
            host = f"[{host}]"
        return f"stratum+tcp://{host}:{self.pool.port}"

    def _address_seen_by_miners(self) -> str | None:
        """Home Assistant's address on the route to the first miner with an IP address."""
        for key in self.fleet.fleet.keys:
            address = local_address_towards(self.fleet.fleet.driver(key).endpoint.host)
            if address is not None:
                return address
        return None

    # -- the uplink watch ---------------------------------------------------------

    async def _async_watch_uplink(self) -> None:
        """A Stratum handshake with the upstream pool every few seconds, start to start."""
        loop = self.hass.loop
        started = loop.time()
        while True:
            await asyncio.sleep(max(self.probe_interval_s - (loop.time() - started), 0.05))
            started = loop.time()
            self._observe(await self._probe())

    async def _probe(self) -> HandshakeResult:
        return await probe_stratum(*self.upstream, self._probe_user(), timeout=self.probe_timeout_s)

    def _probe_user(self) -> str:
        """The worker name the operator's miners use upstream (pools refuse strangers)."""
        data = self.fleet.data
        for view in data.miners.values() if data else ():
            for pool in sorted(view.status.pools if view.status else (), key=_priority):
                if pool.user and not self._is_ours(pool.url):
                    return pool.user
        return PROBE_FALLBACK_USER

    @callback
    def _observe(self, result: HandshakeResult) -> None:
        """Count one probe; announce an outage and its end; move miners if they must."""
        detector = self.detector
        was_down = detector.down
        detector.observe(result.ok, result.checked_at_monotonic)
        now = time.monotonic()
        if detector.down and not was_down:
            # Confirmed now; it began with the first failure that counted.
            started = dt_util.utcnow() - timedelta(seconds=detector.outage_s(now) or 0.0)
            self._outage_started = started
            # A new outage: every miner is asked again, and asked back again after it.
            self._refused_switch.clear()
            self._refused_back.clear()
            LOGGER.warning(
                "%s: the upstream pool gives no work (%s): internet outage",
                self.config_entry.title,
                result.error,
            )
            self.hass.bus.async_fire(
                EVENT_UPLINK_OUTAGE,
                {
                    "entry_id": self.config_entry.entry_id,
                    "site": self.config_entry.title,
                    "started": started.isoformat(),
                    "error": result.error,
                    "mode": self.data.mode,
                },
            )
        elif was_down and not detector.down:
            duration = round(detector.last_outage_s or 0.0, 1)
            LOGGER.warning(
                "%s: the upstream pool gives work again after %s s",
                self.config_entry.title,
                duration,
            )
            self.hass.bus.async_fire(
                EVENT_UPLINK_RESTORED,
                {
                    "entry_id": self.config_entry.entry_id,
                    "site": self.config_entry.title,
                    "started": self._outage_started.isoformat() if self._outage_started else None,
                    "duration_s": duration,
                    "mode": self.data.mode,
                },
            )
            self._outage_started = None
        self._publish(handshake=result)
        self._act()

    # -- the fleet ---------------------------------------------------------------

    @callback
    def _follow_fleet(self) -> None:
        """After a fleet poll: share loss, miners on the local pool, and what to move."""
        data: FleetData | None = self.fleet.data  # None until the first poll
        if data is None:
            return
        counters: dict[tuple[str, str], ShareCounters] = {}
        for mac, view in data.miners.items():
            for pool in view.status.pools if view.status else ():
                if pool.accepted is not None and pool.rejected is not None:
                    counters[(mac, pool.url)] = ShareCounters(pool.accepted, pool.rejected)
        try:
            self.share_loss.observe(time.monotonic(), counters)
        except ValueError as err:
            LOGGER.debug("Share counters not counted: %s", err)
        if self.data.pool_url is None and self.pool.running:
            # The route to the miners is known once they are.
            self.data = replace(self.data, pool_url=self._pool_url())
        self._publish()
        self._act()

    def _on_local(self, status: MinerStatus | None) -> bool:
        """Hashing on the local pool (a sleeping miner hashes nowhere; backup-pool mode)."""
        active = status.active_pool if status and status.mining else None
        return active is not None and self._is_local(active.url)

    def _on_local_count(self, proxy: ProxyStats | None) -> int:
        """Miners hashing on local work: by the proxy's count, or by their active pool."""
        if isinstance(self.pool, StratumProxy):
            return proxy.on_local if proxy is not None else 0
        fleet = self.fleet.data
        return sum(1 for v in fleet.miners.values() if self._on_local(v.status)) if fleet else 0

    def _is_local(self, url: str) -> bool:
        local = self.data.pool_url
        return local is not None and same_pool_url(url, local)

    def _is_ours(self, url: str) -> bool:
        """The local pool now, or a former backup of this site's: no operator's pool."""
        return self._is_local(url) or any(same_pool_url(url, u) for u in self._written)

    # -- what the entities show ------------------------------------------------------

    @callback
    def _publish(self, handshake: HandshakeResult | None = None) -> None:
        """Recompute the figures and tell the entities."""
        now = time.monotonic()
        detector = self.detector
        data = self.data
        handshake = handshake or data.handshake
        proxy = (
            self.pool.stats() if isinstance(self.pool, StratumProxy) and self.pool.running else None
        )
        on_local = self._on_local_count(proxy)
        loss = {url: self.share_loss.loss_percent(now, url) for url in self.share_loss.pools(now)}
        share_loss = self.share_loss.loss_percent(now) if proxy is None else _exact_loss(proxy)
        self.async_set_updated_data(
            replace(
                data,
                state=self._state(on_local),
                internet_up=None if handshake is None else not detector.down,
                outage_started=self._outage_started,
                outage_s=detector.outage_s(now),
                last_outage_s=detector.last_outage_s,
                handshake=handshake,
                share_loss_percent=share_loss,
                share_loss_by_pool=loss,
                pool=self.pool.stats()
                if isinstance(self.pool, LocalPool) and self.pool.running
                else None,
                proxy=proxy,
                miners_on_local_pool=on_local,
            )
        )

    def _state(self, on_local: int) -> FailoverState:
        if self.detector.down:
            return "failed_over" if on_local else "outage"
        return "failing_back" if on_local else "normal"

    # -- moving miners -------------------------------------------------------------

    @callback
    def _act(self) -> None:
        """Start the one move the situation calls for, if any (auto mode only)."""
        if self._stopped:
            return
        if isinstance(self.pool, StratumProxy) and self.pool.running:
            # In every mode (advisory or off set during an outage must not leave the relay
            # on local work for good), and not held up by a list pass under way.
            self._tell_proxy(self.pool)
        if self.data.mode != "auto" or self._moving is not None or self.data.pool_url is None:
            return
        fleet: FleetData | None = self.fleet.data
        if fleet is None:
            return
        online = {mac: v for mac, v in fleet.miners.items() if v.status is not None}
        if isinstance(self.pool, StratumProxy):
            self._proxy_first_where_missing(online)
            return
        if self.detector.down:
            # Miners asleep are left alone: a miner woken during the outage is moved
            # by the poll that shows it hashing.
            stay = [
                mac
                for mac, v in online.items()
                if v.mining and not self._on_local(v.status) and mac not in self._refused_switch
            ]
            if stay:
                self._start_move(self._async_switch_over(stay))
            return
        now = time.monotonic()
        away = [mac for mac, v in online.items() if self._on_local(v.status)]
        if away:
            back = [mac for mac in away if mac not in self._refused_back]
            if back and self.detector.healthy_for(now) >= self.hold_s:
                self._start_move(self._async_switch_back(back))
            # Nothing is rewritten while miners hash on the local pool: a reordered list
            # would send them back all at once.
            return
        unchecked = [
            mac
            for mac, view in online.items()
            if self._lists_checked.get(mac) != _pool_list(view.status)
        ]
        if unchecked:
            self._start_move(self._async_add_backup(unchecked))

    def _tell_proxy(self, proxy: StratumProxy) -> None:
        """Proxy mode: the miners stay put; the proxy hears the uplink's verdict."""
        if self.detector.down:
            if proxy.upstream_healthy:
                error = self.data.handshake.error if self.data.handshake else None
                proxy.upstream_down(error or "the upstream pool gives no work")
        elif (
            not proxy.upstream_healthy
            and self.detector.healthy_for(time.monotonic()) >= self.hold_s
        ):
            # Back in batches, each miner on a fresh upstream connection with its job.
            proxy.upstream_up()

    def _proxy_first_where_missing(self, online: Mapping[str, MinerView]) -> None:
        """The proxy first on every miner's list (no list is written during an outage)."""
        if self.detector.down:
            return
        unchecked = [
            mac
            for mac, view in online.items()
            if self._lists_checked.get(mac) != _pool_list(view.status)
        ]
        if unchecked:
            self._start_move(self._async_proxy_first(unchecked))

    def _start_move(self, move: Coroutine[Any, Any, None]) -> None:
        self._moving = self.config_entry.async_create_background_task(
            self.hass, move, f"{DOMAIN} pool move {self.config_entry.title}"
        )
        self._moving.add_done_callback(self._moved)

    @callback
    def _moved(self, task: asyncio.Task[None]) -> None:
        self._moving = None
        if task.cancelled():
            return
        if (err := task.exception()) is not None:
            LOGGER.error("%s: a pool move failed: %s", self.config_entry.title, err, exc_info=err)
        # What changed meanwhile (a fleet poll, the uplink) may call for the next move.
        self._act()

    async def _async_switch_over(self, macs: list[str]) -> None:
        """Every miner to the local pool at once, each confirmed by read-back."""
        local = self.data.pool_url
        assert local is not None
        started = time.monotonic()
        outcomes = await self.fleet.async_switch_pools(dict.fromkeys(macs, local))
        failures = self._report("switch_over", outcomes, started)
        self._refused_switch.update(failures)

    async def _async_switch_back(self, macs: list[str]) -> None:
        """The miners back to their own first pool, a batch at a time, each confirmed."""
        started = time.monotonic()
        outcomes: dict[str, PoolMoveOutcome | str] = {}
        for batch in _batches(macs, self.batch):
            if self.detector.down:
                break  # out again: the switch-over takes them where they must be
            targets = {}
            for mac in batch:
                target = self._own_pool(mac)
                if target is None:
                    outcomes[mac] = "lists no pool of its own to go back to"
                else:
                    targets[mac] = target
            outcomes |= await self.fleet.async_switch_pools(targets)
        self._refused_back.update(self._report("switch_back", outcomes, started))

    def _own_pool(self, mac: str) -> str | None:
        view = self.fleet.data.miners.get(mac)
        pools = sorted(view.status.pools, key=_priority) if view and view.status else []
        return next((p.url for p in pools if not self._is_ours(p.url)), None)

    async def _async_add_backup(self, macs: list[str]) -> None:
        """Make sure the local pool is last on every miner's list (only changes are written)."""
        local = self.data.pool_url
        assert local is not None
        backup = PoolConfig(local, slugify(self.config_entry.title) or PROBE_FALLBACK_USER)

        async def batch(statuses: dict[str, MinerStatus]) -> dict[str, PoolMoveOutcome]:
            return await self.fleet.async_ensure_backup_pool(backup, statuses)

        await self._async_list_pass("backup_pool", macs, local, batch)

    async def _async_proxy_first(self, macs: list[str]) -> None:
        """Make sure the proxy is first on every miner's list, and that each works on it."""
        proxy_url = self.data.pool_url
        assert proxy_url is not None

        async def batch(statuses: dict[str, MinerStatus]) -> dict[str, PoolMoveOutcome]:
            written = await self.fleet.async_ensure_proxy_first(proxy_url, statuses)
            # A new first pool is not always taken at once (cgminer keeps a working
            # pool until the new one is tested): each written miner is switched to it.
            moved = [mac for mac, outcome in written.items() if outcome.confirmed]
            if moved:
                written |= await self.fleet.async_switch_pools(dict.fromkeys(moved, proxy_url))
            return written

        await self._async_list_pass("proxy_first", macs, proxy_url, batch)

    async def _async_list_pass(
        self,
        kind: MoveKind,
        macs: list[str],
        url: str,
        write: Callable[[dict[str, MinerStatus]], Awaitable[dict[str, PoolMoveOutcome]]],
    ) -> None:
        """Write the site's pool into these miners' lists a batch at a time, then report."""
        self._remember(url)
        former = [known for known in self._written if not same_pool_url(known, url)]
        data = self.fleet.data
        # The planned lists leave out a former URL of the site's, so the write replaces it.
        statuses = {
            mac: _without(view.status, former)
            for mac in macs
            if (view := data.miners.get(mac)) and view.status
        }
        started = time.monotonic()
        outcomes: dict[str, PoolMoveOutcome] = {}
        for batch in _batches(list(statuses), self.batch):
            if self.detector.down:
                break  # an outage came: the other lists wait until it is over
            # A batch at a time, like the switch-back: some firmware (stock Antminer)
            # restarts its miner process to take a new list, and a whole fleet pausing
            # at once is a load step the grid feels.
            outcomes |= await write({mac: statuses[mac] for mac in batch})
            for mac in batch:
                # Once per pool list: a refusal is reported, not retried; a fine list
                # needs nothing.
                self._lists_checked[mac] = _pool_list(statuses[mac])
        for mac, outcome in outcomes.items():
            if outcome.confirmed and outcome.status is not None:
                self._lists_checked[mac] = _pool_list(outcome.status)
        if not outcomes:
            return
        # Once at the end: every publish writes every miner's states.
        self.fleet.publish_soon()
        failures = self._report(kind, outcomes, started)
        missing = {mac: why for mac, why in self.data.backup_missing.items() if mac not in outcomes}
        self.data = replace(self.data, backup_missing=missing | failures)

    def _remember(self, url: str) -> None:
        """Keep a URL of the site's own pool (saved before it is written to any miner)."""
        if not any(same_pool_url(url, known) for known in self._written):
            # Remembered before it is written: a restart in between still knows it is ours.
            self._written.append(url)
            self._save()

    def _report(
        self, kind: MoveKind, outcomes: Mapping[str, PoolMoveOutcome | str], started: float
    ) -> dict[str, str]:
        """Log and show what a move did; the MACs that did not follow, with why."""
        failures: dict[str, str] = {}
        for mac, outcome in outcomes.items():
            if isinstance(outcome, str):
                failures[mac] = outcome
            elif not outcome.confirmed:
                failures[mac] = str(outcome.error or outcome.result.value)
        elapsed = round(time.monotonic() - started, 2)
        if failures:
            LOGGER.warning(
                "%s: %s: %d of %d miners did not follow: %s",
                self.config_entry.title,
                kind.replace("_", " "),
                len(failures),
                len(outcomes),
                "; ".join(f"{mac}: {why}" for mac, why in list(failures.items())[:3]),
            )
        else:
            LOGGER.info(
                "%s: %s: %d miners in %s s",
                self.config_entry.title,
                kind.replace("_", " "),
                len(outcomes),
                elapsed,
            )
        report = MoveReport(kind, dt_util.utcnow(), len(outcomes), failures, elapsed)
        self.data = replace(self.data, last_move=report)
        self._publish()
        return failures

    # -- the operator's choice ---------------------------------------------------------

    def _save(self) -> None:
        self.store.failover = {"mode": self.data.mode, "backup_urls": list(self._written)}
        self.store.async_schedule_save()

    async def async_set_mode(self, mode: Mode) -> None:
        """Auto moves miners, advisory only announces, off leaves the pools alone (saved)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.data = replace(self.data, mode=mode)
        self._save()
        if mode != "auto" and (moving := self._moving) is not None:
            # The operator takes over: no miner is asked anything more.
            moving.cancel()
            await asyncio.gather(moving, return_exceptions=True)
        self._publish()
        self._act()


def _exact_loss(proxy: ProxyStats) -> float | None:
    """Shares the upstream did not take, of all sent to it (since the proxy started), in %."""
    counts = proxy.totals
    lost = counts.upstream_rejected + counts.upstream_stale + counts.upstream_lost
    sent = counts.upstream_accepted + lost
    return round(100 * lost / sent, 3) if sent else None


def _without(status: MinerStatus, urls: Iterable[str]) -> MinerStatus:
    """The status without the pools at these URLs (this site's former backups)."""
    former = list(urls)
    pools = tuple(p for p in status.pools if not any(same_pool_url(p.url, u) for u in former))
    return status if len(pools) == len(status.pools) else replace(status, pools=pools)


def _priority(pool: object) -> int:
    return int(getattr(pool, "priority", 0))


def _pool_list(status: MinerStatus | None) -> tuple[tuple[str, str], ...]:
    """A miner's pool list as compared between polls (URL and user, by priority)."""
    pools = sorted(status.pools, key=_priority) if status else []
    return tuple((pool.url, pool.user) for pool in pools)


def _batches(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), max(size, 1)):
        yield items[start : start + size]
