"""The site's alerts: the library's engine fed from the coordinators, routed to notify targets.

`AlertsController` turns what the grid, supply, uplink, fleet and balancer show into
conditions for `miningsite.alerts.AlertEngine`, steps it whenever one of them updates
(and on a timer, for repeats, one-off events that expire and silences that end), and
hands each notification to the *Alerts* event entity, the *Active alerts* sensor, the
notify targets the options route its severity to, and a repair issue while a critical
alert is open.

Container alarms (issue 15) come in through one hook:
`entry.runtime_data.alerts.container_alarm(container_id, alarm, active=..., severity=...,
description=...)` raises (or, with `active=False`, clears) a `container_alarm` alert about
`container:<container_id>`; alarms of the same name on several containers group into one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
import secrets
import time
from typing import TYPE_CHECKING, Any

from homeassistant.const import ATTR_ENTITY_ID
from homeassistant.core import CALLBACK_TYPE, Event, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.event import async_track_time_interval

from .compat import vol
from .const import (
    ALERT_SEVERITIES,
    CONF_ALERT_REPEAT_S,
    CONF_ALERT_TARGETS,
    DEFAULT_ALERT_REPEAT_S,
    DOMAIN,
    LOGGER,
)
from .entity import site_identifier
from .miningsite.alerts import (
    Alert,
    AlertEngine,
    AlertError,
    AlertKind,
    AlertSettings,
    Condition,
    Notification,
    Severity,
    Silence,
    SiteContext,
    Subject,
    UnknownAlertError,
)
from .miningsite.containers.alarms import Alarm as ContainerAlarm
from .miningsite.miners.models import model_spec
from .models import BitcoinMiningConfigEntry

if TYPE_CHECKING:
    from .balancer import LoadBalancer
    from .coordinator import GridCoordinator, SiteCoordinator
    from .failover import FailoverController
    from .fleet import FleetCoordinator, FleetData, MinerView

# A miner is offline once it has missed this many polls in a row (one lost reply is not).
MINER_OFFLINE_POLLS = 2
# Chip or board temperature at which a miner is too hot (firmware throttles near 95 °C).
MINER_OVER_TEMPERATURE_C = 90.0
# Hashing below this share of its model's nameplate for this many polls, once warmed up.
HASHRATE_LOW_FRACTION = 0.5
HASHRATE_LOW_POLLS = 3
HASHRATE_WARM_UP_S = 600
# Rejected and stale shares in % of all above which the pool is alerted.
SHARE_LOSS_ALERT_PERCENT = 5.0
# The timer that tells repeats, ends one-off events and ends silences (at most this often).
MAX_TICK_S = 10.0
# What the entities show of the alerts (their attributes are bounded, the alerts are not).
LISTED_ALERTS = 10
LISTED_SUBJECTS = 50
# Push actions of the companion app: `<action>::<entry id>::<alert id or kind>`.
ACTION_ACKNOWLEDGE = "BITCOIN_MINING_ACKNOWLEDGE"
ACTION_SILENCE = "BITCOIN_MINING_SILENCE_1H"
ACTION_SEPARATOR = "::"
SILENCE_FROM_PHONE = timedelta(hours=1)
EVENT_MOBILE_APP_ACTION = "mobile_app_notification_action"
# Notifications that reach the targets: an update (one more miner in a group) does not.
ROUTED = frozenset({"started", "repeated", "ended"})
MOBILE_APP_PREFIX = "mobile_app_"


def critical_issue_id(entry_id: str) -> str:
    """The repair issue shown while a critical alert of the site is open."""
    return f"critical_alert_{entry_id}"


def container_alarms_to_alerts(
    alerts: AlertsController, container: str
) -> Callable[[tuple[ContainerAlarm, ...], tuple[ContainerAlarm, ...]], None]:
    """A container's alarm listener that raises and clears its alarms as site alerts."""

    @callback
    def forward(raised: tuple[ContainerAlarm, ...], cleared: tuple[ContainerAlarm, ...]) -> None:
        for alarm in cleared:
            alerts.container_alarm(container, alarm.name, active=False)
        for alarm in raised:
            alerts.container_alarm(
                container,
                alarm.name,
                active=True,
                severity=alarm.severity.label,
                description=f"{container}: {alarm.description}",
            )

    return forward


def alert_attributes(alert: Alert) -> dict[str, Any]:
    """An alert as entity attributes and service responses (subjects bounded)."""
    return {
        "alert_id": alert.id,
        "kind": alert.kind.value,
        "severity": alert.severity.value,
        "subject": str(alert.subject),
        "subjects": [str(s) for s in alert.subjects[:LISTED_SUBJECTS]],
        "subject_count": len(alert.subjects),
        "message": alert.message,
        "started": iso_time(alert.started_at),
        "acknowledged": alert.acknowledged,
    }


def iso_time(timestamp: float) -> str:
    """A time on the engine's clock (wall time) as ISO 8601."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


@dataclass(frozen=True, slots=True)
class Delivery:
    """The last notification that could not reach a target, and why."""

    target: str
    alert_id: str
    error: str
    at: str


class AlertsController:
    """Feeds one site's alert engine and tells what it says."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry: BitcoinMiningConfigEntry,
        grid: GridCoordinator,
        site: SiteCoordinator,
        fleet: FleetCoordinator,
        balancer: LoadBalancer,
        failover: FailoverController,
    ) -> None:
        """Read the routing and the repeat interval from the options; nothing runs yet."""
        self.hass = hass
        self.entry = entry
        self.grid = grid
        self.site = site
        self.fleet = fleet
        self.balancer = balancer
        self.failover = failover
        options = entry.options
        self.repeat_s = float(options.get(CONF_ALERT_REPEAT_S, DEFAULT_ALERT_REPEAT_S))
        self.routes: dict[Severity, tuple[str, ...]] = {
            Severity(severity): tuple(options.get(CONF_ALERT_TARGETS[severity]) or ())
            for severity in ALERT_SEVERITIES
        }
        # A fresh prefix per start: a phone's action from before a restart names no new alert.
        self.engine = AlertEngine(
            AlertSettings(repeat_interval_s=self.repeat_s), id_prefix=f"{secrets.token_hex(2)}-"
        )
        self._site_subject = Subject("site", site_identifier(entry))
        self._listeners: dict[object, Callable[[Notification | None], None]] = {}
        self._container_alarms: dict[tuple[str, str], Condition] = {}
        # Per MAC: polls in a row offline / hashing far below the nameplate.
        self._offline_polls: dict[str, int] = {}
        self._slow_polls: dict[str, int] = {}
        self._counted_poll: float | None = None
        # Miners the balancer stopped during the shed or curtailment under way.
        self._stopped: set[str] = set()
        self._seen_run: float | None = None
        self._seen_move: datetime | None = None
        self._now = 0.0
        self._step_pending = False
        # What the critical repair issue shows ("" while there is none).
        self._critical_issue = ""
        self._closed = False
        self._sending: set[asyncio.Task[None]] = set()
        self.last_failed_delivery: Delivery | None = None

    # -- life ---------------------------------------------------------------------

    def attach(self) -> None:
        """Follow the coordinators, tick for repeats, hear the phones' actions (until unload)."""
        entry = self.entry
        for coordinator, listener in (
            (self.grid, self._request_step),
            (self.site, self._request_step),
            (self.fleet, self._fleet_updated),
            (self.balancer, self._balancer_updated),
            (self.failover, self._failover_updated),
        ):
            entry.async_on_unload(coordinator.async_add_listener(listener))
        tick = min(max(self.repeat_s / 4, 0.5), MAX_TICK_S) if self.repeat_s else MAX_TICK_S
        entry.async_on_unload(
            async_track_time_interval(
                self.hass, self._tick, timedelta(seconds=tick), name=f"{DOMAIN} alerts"
            )
        )
        entry.async_on_unload(
            self.hass.bus.async_listen(EVENT_MOBILE_APP_ACTION, self._async_phone_action)
        )
        entry.async_on_unload(self._detach)
        self._fleet_updated()

    @callback
    def _detach(self) -> None:
        """The site unloads: its alerts go with it (a reload raises what still holds)."""
        self._closed = True
        ir.async_delete_issue(self.hass, DOMAIN, critical_issue_id(self.entry.entry_id))
        for task in self._sending:
            task.cancel()

    @callback
    def async_add_listener(self, update: Callable[[Notification | None], None]) -> CALLBACK_TYPE:
        """Hear every notification (None: the alerts changed without one, e.g. acknowledged)."""
        key = object()
        self._listeners[key] = update

        @callback
        def remove() -> None:
            self._listeners.pop(key, None)

        return remove

    # -- the hook for container alarms ------------------------------------------------------

    @callback
    def container_alarm(
        self,
        container_id: str,
        alarm: str,
        *,
        active: bool,
        severity: Severity | str = Severity.HIGH,
        description: str = "",
    ) -> None:
        """Raise (or clear) a container's alarm as a `container_alarm` alert."""
        key = (str(container_id), alarm)
        if not active:
            if self._container_alarms.pop(key, None) is not None:
                self._request_step()
            return
        try:
            level = Severity(severity)
        except ValueError as err:
            raise ValueError(f"unknown severity {severity!r}") from err
        self._container_alarms[key] = Condition(
            AlertKind.CONTAINER_ALARM,
            Subject("container", str(container_id)),
            description or f"Container {container_id}: {alarm}",
            level,
            alarm,
            label=f"container {container_id}",
        )
        self._request_step()

    # -- the operator ----------------------------------------------------------------------

    def acknowledge(self, alert_id: str) -> Alert:
        """Stop an alert's repeats; an id no open alert has is a translated error."""
        try:
            alert = self.engine.acknowledge(alert_id)
        except UnknownAlertError as err:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="unknown_alert",
                translation_placeholders={"alert_id": alert_id},
            ) from err
        self._tell(None)
        return alert

    def silence(self, duration: timedelta, kind: str | None) -> Silence:
        """Mute notifications (of a kind, or all) for a while."""
        try:
            silence = self.engine.silence(self._clock(), duration.total_seconds(), kind)
        except AlertError as err:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="invalid_silence",
                translation_placeholders={"error": str(err)},
            ) from err
        self._tell(None)
        return silence

    # -- steps --------------------------------------------------------------------------------

    def _clock(self) -> float:
        """Wall time that never goes back (the engine refuses that)."""
        self._now = max(time.time(), self._now)
        return self._now

    @callback
    def _request_step(self) -> None:
        """Step once on the next turn of the loop, however many coordinators update meanwhile."""
        if not self._step_pending:
            self._step_pending = True
            self.hass.loop.call_soon(self._step)

    @callback
    def _step(self) -> None:
        self._step_pending = False
        self._handle(self.engine.update(self._clock(), self._conditions(), self._context()))

    @callback
    def _tick(self, _now: datetime) -> None:
        self._handle(self.engine.tick(self._clock()))

    def _context(self) -> SiteContext:
        plan = self.balancer.data.last_plan
        grid = self.grid.data
        stage = (plan is not None and plan.frequency_stage is not None) or bool(
            grid and grid.under_frequency
        )
        return SiteContext(
            grid_stage=stage,
            curtailed=self.balancer.data.curtailed,
            uplink_down=self.failover.data.internet_up is False,
            stopped_miners=frozenset(self._stopped),
        )

    def _conditions(self) -> list[Condition]:
        """Everything wrong at the site now."""
        found: list[Condition] = []
        site = self._site_subject
        grid = self.grid.data
        if grid is not None and grid.under_frequency:
            found.append(
                Condition(
                    AlertKind.GRID_UNDER_FREQUENCY,
                    site,
                    f"Grid at {grid.reading.frequency_hz:.2f} Hz, below "
                    f"{self.grid.under_frequency_hz:.2f} Hz: mining is shed",
                )
            )
        supply = self.site.data.supply if self.site.data else None
        if supply is not None and supply.power_w is None:
            found.append(
                Condition(
                    AlertKind.SUPPLY_UNKNOWN,
                    site,
                    f"Supply power unknown ({supply.problem}): no miner is started",
                )
            )
        failover = self.failover.data
        if failover.internet_up is False:
            since = failover.outage_started.isoformat() if failover.outage_started else "now"
            found.append(
                Condition(
                    AlertKind.UPLINK_OUTAGE,
                    site,
                    f"Internet outage since {since}: the upstream pool gives no work",
                )
            )
        loss = failover.share_loss_percent
        if loss is not None and loss > SHARE_LOSS_ALERT_PERCENT:
            found.append(
                Condition(AlertKind.SHARE_LOSS_HIGH, site, f"Share loss {loss:.1f} % of shares")
            )
        found += self._miner_conditions()
        found += self._container_alarms.values()
        return found

    def _miner_conditions(self) -> list[Condition]:
        data: FleetData | None = self.fleet.data  # None until the first poll
        if data is None:
            return []
        return miner_conditions(data, self._offline_polls, self._slow_polls)

    @callback
    def _fleet_updated(self) -> None:
        """Count the polls a miner has been offline or slow (not command read-backs)."""
        data: FleetData | None = self.fleet.data
        if data is not None and data.polled_at != self._counted_poll:
            self._counted_poll = data.polled_at
            for mac, view in data.miners.items():
                offline = view.status is None
                self._offline_polls[mac] = self._offline_polls.get(mac, 0) + 1 if offline else 0
                slow = far_below_nameplate(view)
                self._slow_polls[mac] = self._slow_polls.get(mac, 0) + 1 if slow else 0
        self._request_step()

    @callback
    def _balancer_updated(self) -> None:
        """Remember the miners a shed stops; a run's failed commands are one-off alerts."""
        state = self.balancer.data
        plan = state.last_plan
        if plan is not None and (plan.frequency_stage is not None or plan.curtailed):
            if state.mode == "auto":
                # A stop that failed stopped nothing: that miner still raises its alerts.
                failed = {f.mac for f in state.failures if f.action == "stop"}
                self._stopped.update(action.asic_id for action in plan.stops)
                self._stopped -= failed
        else:
            self._stopped.clear()
        if state.last_run_at != self._seen_run:
            self._seen_run = state.last_run_at
            for failure in state.failures:
                self._report_failure(failure.mac, f"{failure.action}: {failure.error}")
        self._request_step()

    @callback
    def _failover_updated(self) -> None:
        """Miners that did not follow a pool move are one-off alerts too."""
        move = self.failover.data.last_move
        if move is not None and move.finished_at != self._seen_move:
            self._seen_move = move.finished_at
            for mac, why in move.failures.items():
                self._report_failure(mac, f"{move.kind.replace('_', ' ')}: {why}")
        self._request_step()

    def _report_failure(self, mac: str, what: str) -> None:
        view = self.fleet.data.miners.get(mac) if self.fleet.data else None
        label = f"{view.identity.model} at {view.address}" if view else mac
        condition = Condition(
            AlertKind.COMMAND_FAILED, Subject("miner", mac), f"{label}: {what}", label=label
        )
        self._handle(self.engine.report(self._clock(), condition))

    # -- telling ---------------------------------------------------------------------------------

    @callback
    def _handle(self, notifications: list[Notification]) -> None:
        if self._closed:
            # A step queued before the unload: the site and its entities are gone.
            return
        for note in notifications:
            self._tell(note)
            if note.type in ROUTED and not note.silenced:
                self._route(note)
        self._sync_issue()

    @callback
    def _tell(self, note: Notification | None) -> None:
        for listener in list(self._listeners.values()):
            listener(note)

    @callback
    def _sync_issue(self) -> None:
        critical = [a for a in self.engine.active() if a.severity is Severity.CRITICAL]
        issue_id = critical_issue_id(self.entry.entry_id)
        shown = "; ".join(a.message for a in critical[:LISTED_ALERTS])
        if critical and shown != self._critical_issue:
            ir.async_create_issue(
                self.hass,
                DOMAIN,
                issue_id,
                is_fixable=False,
                is_persistent=False,
                severity=ir.IssueSeverity.CRITICAL,
                translation_key="critical_alert",
                translation_placeholders={"site": self.entry.title, "alerts": shown},
            )
            self._critical_issue = shown
        elif not critical and self._critical_issue:
            ir.async_delete_issue(self.hass, DOMAIN, issue_id)
            self._critical_issue = ""

    @callback
    def _route(self, note: Notification) -> None:
        targets = self.routes.get(note.alert.severity, ())
        if not targets:
            return
        task = self.entry.async_create_background_task(
            self.hass, self._async_deliver(note, targets), f"{DOMAIN} alert {note.alert.id}"
        )
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _async_deliver(self, note: Notification, targets: tuple[str, ...]) -> None:
        """Send to every target; one that fails is logged and shown, the others still get it."""
        for target in targets:
            try:
                await self._async_send(target, note)
            except (HomeAssistantError, vol.Invalid) as err:
                LOGGER.warning("Alert %s not delivered to %s: %s", note.alert.id, target, err)
                self.last_failed_delivery = Delivery(
                    target, note.alert.id, str(err), datetime.now(UTC).isoformat()
                )
                self._tell(None)

    async def _async_send(self, target: str, note: Notification) -> None:
        alert = note.alert
        title = f"{self.entry.title}: {alert.severity.value}"
        if note.type == "ended":
            title = f"{self.entry.title}: resolved"
        message = alert.message
        name = target.partition(".")[2]
        if self.hass.states.get(target) is not None:
            # A notify entity (Twilio SMS, …): message and title only.
            await self.hass.services.async_call(
                "notify",
                "send_message",
                {ATTR_ENTITY_ID: target, "message": message, "title": title},
                blocking=True,
            )
            return
        if not self.hass.services.has_service("notify", name):
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="notify_target_missing",
                translation_placeholders={"target": target},
            )
        service_data: dict[str, Any] = {"message": message, "title": title}
        if name.startswith(MOBILE_APP_PREFIX):
            service_data["data"] = self._push_data(note)
        await self.hass.services.async_call("notify", name, service_data, blocking=True)

    def _push_data(self, note: Notification) -> dict[str, Any]:
        """The companion app's options: urgent alerts break through, with actions to answer."""
        alert = note.alert
        data: dict[str, Any] = {"tag": alert.id, "group": f"{DOMAIN}_{self.entry.entry_id}"}
        if note.type == "ended":
            return data
        entry_id = self.entry.entry_id
        data["actions"] = [
            {
                "action": ACTION_SEPARATOR.join((ACTION_ACKNOWLEDGE, entry_id, alert.id)),
                "title": "Acknowledge",
            },
            {
                "action": ACTION_SEPARATOR.join((ACTION_SILENCE, entry_id, alert.kind.value)),
                "title": "Silence 1 h",
            },
        ]
        if alert.severity is Severity.CRITICAL:
            # iOS: a critical alert (sounds through do-not-disturb); Android: the alarm stream.
            data["push"] = {
                "interruption-level": "critical",
                "sound": {"name": "default", "critical": 1, "volume": 1.0},
            }
            data.update(ttl=0, priority="high", channel="alarm_stream")
        elif alert.severity is Severity.HIGH:
            data["push"] = {"interruption-level": "time-sensitive"}
            data.update(ttl=0, priority="high")
        return data

    async def _async_phone_action(self, event: Event) -> None:
        """A push action tapped on a phone: the matching action is called, as by hand."""
        parts = str(event.data.get("action") or "").split(ACTION_SEPARATOR)
        if len(parts) != 3 or parts[1] != self.entry.entry_id:
            return
        action, entry_id, value = parts
        data: dict[str, Any]
        if action == ACTION_ACKNOWLEDGE:
            service, data = "acknowledge_alert", {"alert_id": value}
        elif action == ACTION_SILENCE:
            service = "silence_alerts"
            data = {"duration": SILENCE_FROM_PHONE, "kind": value}
        else:
            return
        try:
            await self.hass.services.async_call(
                DOMAIN, service, {"config_entry_id": entry_id, **data}, blocking=True
            )
        except HomeAssistantError as err:
            # The alert ended meanwhile, say: nothing to do, but not unheard of.
            LOGGER.info("Action %s from a phone not carried out: %s", action, err)

    # -- what the entities show ------------------------------------------------------

    def attributes(self) -> dict[str, Any]:
        """The open alerts (the first few, most severe first) and the running silences."""
        active = self.engine.active()
        now = self._clock()
        failed = self.last_failed_delivery
        return {
            "alerts": [alert_attributes(a) for a in active[:LISTED_ALERTS]],
            "not_listed": max(len(active) - LISTED_ALERTS, 0),
            "silences": [
                {"kind": s.kind.value if s.kind else None, "until": iso_time(s.until)}
                for s in self.engine.silences(now)
            ],
            "last_failed_delivery": None
            if failed is None
            else {"target": failed.target, "alert_id": failed.alert_id, "error": failed.error},
        }


def miner_conditions(
    data: FleetData, offline_polls: Mapping[str, int], slow_polls: Mapping[str, int]
) -> list[Condition]:
    """What is wrong with the miners: offline, too hot, hashing far below their model."""
    found: list[Condition] = []
    for mac, view in data.miners.items():
        subject = Subject("miner", mac)
        label = f"{view.identity.model} at {view.address}"
        status = view.status
        if offline_polls.get(mac, 0) >= MINER_OFFLINE_POLLS:
            found.append(
                Condition(
                    AlertKind.MINER_OFFLINE,
                    subject,
                    f"{label} does not answer ({view.error})",
                    label=label,
                )
            )
        if status is None:
            continue
        hottest = max((status.temperature_c or 0.0, *status.board_temperatures_c))
        if hottest >= MINER_OVER_TEMPERATURE_C:
            found.append(
                Condition(
                    AlertKind.MINER_OVER_TEMPERATURE,
                    subject,
                    f"{label} at {hottest:.0f} °C",
                    label=label,
                )
            )
        if slow_polls.get(mac, 0) >= HASHRATE_LOW_POLLS:
            found.append(
                Condition(
                    AlertKind.MINER_HASHRATE_LOW,
                    subject,
                    f"{label} hashes {status.hashrate_ths or 0:.1f} TH/s, "
                    f"far below its {_nameplate(view) or 0:.0f} TH/s",
                    label=label,
                )
            )
    return found


def _nameplate(view: MinerView) -> float | None:
    status = view.status
    if status is not None and status.nominal_hashrate_ths:
        return status.nominal_hashrate_ths
    spec = model_spec(view.identity.model)
    return spec.hashrate_ths if spec else None


def far_below_nameplate(view: MinerView) -> bool:
    """Hashing, warmed up, and far below what its model gives."""
    status = view.status
    if status is None or not status.mining or status.hashrate_ths is None:
        return False
    if status.uptime_s is not None and status.uptime_s < HASHRATE_WARM_UP_S:
        return False
    nameplate = _nameplate(view)
    return nameplate is not None and status.hashrate_ths < HASHRATE_LOW_FRACTION * nameplate
