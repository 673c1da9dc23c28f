"""Alerts inside Home Assistant: fed by the simulated site, routed to real notify targets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_ON
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import issue_registry as ir
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.bitcoin_mining.alerts import (
    ACTION_ACKNOWLEDGE,
    EVENT_MOBILE_APP_ACTION,
    critical_issue_id,
    far_below_nameplate,
    miner_conditions,
)
from custom_components.bitcoin_mining.compat import vol
from custom_components.bitcoin_mining.const import (
    CONF_ALERT_REPEAT_S,
    CONF_ALERT_TARGETS_CRITICAL,
    CONF_ALERT_TARGETS_HIGH,
    CONF_FLEET_INTERVAL,
    CONF_GRID_INTERVAL,
    DOMAIN,
)
from custom_components.bitcoin_mining.fleet import FleetData, MinerView
from custom_components.bitcoin_mining.miningsite.miners.base import MinerIdentity, MinerStatus
from simulator import Site, SiteConfig
from tests.support.modbus_meter import MeterServer

from .conftest import SIMULATED_SITE, entry_for, set_supply, site_data, wait_for_state
from .notify_support import async_add_notify_entity, register_notify_service
from .test_blueprints import blueprint_outbox, targets as blueprint_targets, use_blueprint

ALERTS = "event.test_site_alerts"
ACTIVE = "sensor.test_site_active_alerts"
UNDER_FREQUENCY = "binary_sensor.test_site_grid_under_frequency"


@pytest.fixture
async def forty_two(loopback_network: None) -> AsyncIterator[Site]:
    """42 Whatsminers on loopback: 40 to take offline, 2 that stay."""
    config = {**SIMULATED_SITE, "miners": 42, "mix": "whatsminer=1"}
    async with Site(SiteConfig(**config)) as site:
        yield site


async def wait_until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait (real time) until `check` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def set_up(hass: HomeAssistant, entry: MockConfigEntry) -> MockConfigEntry:
    set_supply(hass, 300)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


async def unload(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    await hass.async_block_till_done()
    if entry.state is ConfigEntryState.LOADED:
        assert await hass.config_entries.async_unload(entry.entry_id)
        await hass.async_block_till_done()


async def two_polls(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Two fleet polls (a miner is offline once it missed two), and what follows them."""
    for _ in range(2):
        await entry.runtime_data.fleet.async_refresh()
    await hass.async_block_till_done()


def alerts_of(hass: HomeAssistant) -> list[dict[str, Any]]:
    state = hass.states.get(ACTIVE)
    assert state is not None
    alerts: list[dict[str, Any]] = state.attributes["alerts"]
    assert int(state.state) == len(alerts) + state.attributes["not_listed"]
    return alerts


async def test_the_miners_offline_blueprint_hears_the_real_alert(
    hass: HomeAssistant, forty_two: Site, tmp_path: Path
) -> None:
    """The grouped alert of the site's Alerts entity fires the blueprint once, naming them."""
    box = await blueprint_outbox(hass, tmp_path)
    entry = await set_up(hass, entry_for(forty_two, **{CONF_FLEET_INTERVAL: 3600}))
    await use_blueprint(
        hass, "miners_offline.yaml", {"alerts_entity": ALERTS, **blueprint_targets()}
    )
    failover = entry.runtime_data.failover
    await wait_until(lambda: failover.data.last_move is not None, "the backup pool pass", 30)
    assert forty_two.fleet is not None
    for miner in forty_two.miners[:12]:
        await forty_two.fleet.set_fault(miner, "offline", True)
    await two_polls(hass, entry)
    await two_polls(hass, entry)
    await wait_until(lambda: len(box.sms) == 1, "the blueprint's message")
    title, message = box.sms[0]
    assert title == "12 miners offline"
    # Ten of them named, the rest counted, then the alert's own message.
    named, _, rest = message.partition(" and 2 more. ")
    assert named.count(", ") == 9
    assert rest.startswith("Miner offline: 12 miners (")
    assert len(box.pushed) == 1
    await unload(hass, entry)


async def test_forty_miners_offline_are_one_alert_and_one_notification(
    hass: HomeAssistant, forty_two: Site
) -> None:
    phone = register_notify_service(hass, "mobile_app_pixel")
    sms = await async_add_notify_entity(hass, "sms")
    entry = await set_up(
        hass,
        entry_for(
            forty_two,
            **{
                CONF_FLEET_INTERVAL: 3600,
                CONF_ALERT_TARGETS_HIGH: ["notify.mobile_app_pixel", "notify.sms"],
            },
        ),
    )
    assert forty_two.fleet is not None
    assert entry.runtime_data.fleet.data.total == 42
    assert alerts_of(hass) == []
    assert hass.states.get(ALERTS).state == "unknown"
    # The site's pool goes on every miner's list first: a miner that goes offline during
    # that pass is also a pool write not carried out (an alert of its own).
    failover = entry.runtime_data.failover
    await wait_until(lambda: failover.data.last_move is not None, "the backup pool pass", 30)
    assert failover.data.last_move.failures == {}

    for miner in forty_two.miners[:40]:
        await forty_two.fleet.set_fault(miner, "offline", True)
    await entry.runtime_data.fleet.async_refresh()
    await hass.async_block_till_done()
    # One missed poll is no alert yet.
    assert alerts_of(hass) == []
    await two_polls(hass, entry)

    (alert,) = alerts_of(hass)
    assert alert["kind"] == "miner_offline"
    assert alert["severity"] == "high"
    assert alert["subject_count"] == 40
    assert alert["message"].startswith("Miner offline: 40 miners (")
    event = hass.states.get(ALERTS)
    assert event.attributes["event_type"] == "started"
    assert event.attributes["alert_id"] == alert["alert_id"]
    assert len(event.attributes["subjects"]) == 40
    # One notification per target: the phone's push is time-sensitive, with its two actions.
    await wait_until(lambda: len(phone.calls) == 1 and len(sms.sent) == 1, "the notifications")
    (push,) = phone.calls
    assert push["title"] == "Test site: high"
    assert push["message"] == alert["message"]
    assert push["data"]["push"] == {"interruption-level": "time-sensitive"}
    assert push["data"]["tag"] == alert["alert_id"]
    assert [a["title"] for a in push["data"]["actions"]] == ["Acknowledge", "Silence 1 h"]
    assert sms.sent == [("Test site: high", alert["message"])]
    # No repair issue: nothing critical.
    assert ir.async_get(hass).async_get_issue(DOMAIN, critical_issue_id(entry.entry_id)) is None

    await forty_two.fleet.clear_faults()

    async def offline_alert_ended() -> bool:
        await entry.runtime_data.fleet.async_refresh()
        await hass.async_block_till_done()
        return all(a["kind"] != "miner_offline" for a in alerts_of(hass))

    # The simulated miners take a moment to listen again on a loaded machine.
    for _ in range(20):
        if await offline_alert_ended():
            break
    else:
        raise AssertionError(f"still offline: {alerts_of(hass)}")
    await wait_until(lambda: len(phone.calls) == 2, "the end's notification")
    assert phone.calls[1]["title"] == "Test site: resolved"
    assert phone.calls[1]["data"] == {"tag": alert["alert_id"], "group": push["data"]["group"]}
    await unload(hass, entry)


async def test_a_dip_is_an_under_frequency_alert_and_the_shed_miners_raise_nothing(
    hass: HomeAssistant, forty_two: Site
) -> None:
    phone = register_notify_service(hass, "mobile_app_pixel")
    entry = await set_up(
        hass,
        entry_for(
            forty_two,
            **{
                CONF_FLEET_INTERVAL: 3600,
                CONF_ALERT_TARGETS_CRITICAL: ["notify.mobile_app_pixel"],
                CONF_ALERT_TARGETS_HIGH: ["notify.mobile_app_pixel"],
            },
        ),
    )
    assert forty_two.fleet is not None
    fleet = entry.runtime_data.fleet
    assert fleet.data.running == 42
    failover = entry.runtime_data.failover
    await wait_until(lambda: failover.data.last_move is not None, "the backup pool pass", 30)

    forty_two.state.grid.frequency_hz = 49.3
    await wait_for_state(hass, UNDER_FREQUENCY, STATE_ON)
    await wait_until(lambda: fleet.data.running == 0, "the shed")
    # The container cuts the shed miners' power: they stop answering.
    for miner in forty_two.miners:
        await forty_two.fleet.set_fault(miner, "offline", True)
    await two_polls(hass, entry)

    (alert,) = alerts_of(hass)
    assert alert["kind"] == "grid_under_frequency"
    assert alert["severity"] == "critical"
    assert alert["message"].startswith("Grid at 49.")
    issue = ir.async_get(hass).async_get_issue(DOMAIN, critical_issue_id(entry.entry_id))
    assert issue is not None
    assert issue.severity is ir.IssueSeverity.CRITICAL
    assert issue.translation_placeholders == {"site": "Test site", "alerts": alert["message"]}
    assert alert["message"].endswith("below 49.50 Hz: mining is shed")
    await wait_until(lambda: len(phone.calls) == 1, "the push")
    push = phone.calls[0]["data"]
    assert push["push"]["interruption-level"] == "critical"
    assert push["push"]["sound"]["critical"] == 1
    assert (push["channel"], push["priority"], push["ttl"]) == ("alarm_stream", "high", 0)

    # The grid recovers: the alert ends (the recovery), the repair issue goes.
    forty_two.state.grid.frequency_hz = 50.0
    await wait_until(
        lambda: not any(a["kind"] == "grid_under_frequency" for a in alerts_of(hass)), "recovery"
    )
    assert ir.async_get(hass).async_get_issue(DOMAIN, critical_issue_id(entry.entry_id)) is None
    await unload(hass, entry)


def site_on_meter(meter: MeterServer, pool_port: int, *targets: str) -> MockConfigEntry:
    """A site without miners whose critical alerts go to these targets, repeated every second."""
    return MockConfigEntry(
        domain=DOMAIN,
        title="Test site",
        unique_id="test_site",
        data=site_data(meter.host, meter.port, pool_port),
        options={
            CONF_GRID_INTERVAL: 0.25,
            CONF_ALERT_REPEAT_S: 1,
            CONF_ALERT_TARGETS_CRITICAL: list(targets or ["notify.mobile_app_pixel"]),
        },
    )


@pytest.fixture
def meter_entry(meter_server: MeterServer, pool_port: int) -> MockConfigEntry:
    """A site without miners whose critical alerts go to a phone, repeated every second."""
    return site_on_meter(meter_server, pool_port)


async def test_a_critical_alert_repeats_until_acknowledged_from_the_phone(
    hass: HomeAssistant, meter_server: MeterServer, meter_entry: MockConfigEntry
) -> None:
    phone = register_notify_service(hass, "mobile_app_pixel")
    entry = await set_up(hass, meter_entry)
    meter_server.set_frequency(49.3)
    await wait_until(lambda: len(phone.calls) >= 3, "two repeats", timeout=15)
    tags = {call["data"]["tag"] for call in phone.calls}
    (alert_id,) = tags
    assert hass.states.get(ALERTS).attributes["event_type"] == "repeated"

    acknowledge = phone.calls[0]["data"]["actions"][0]["action"]
    assert acknowledge.startswith(ACTION_ACKNOWLEDGE)
    hass.bus.async_fire(EVENT_MOBILE_APP_ACTION, {"action": acknowledge})
    await wait_until(lambda: alerts_of(hass)[0]["acknowledged"], "the acknowledgement")
    told = len(phone.calls)
    # Three repeat intervals without a repeat (a repeat would come within one).
    await asyncio.sleep(3.0)
    assert len(phone.calls) == told
    assert alerts_of(hass)[0]["alert_id"] == alert_id
    # Acknowledged twice is fine; an action of another site or of another kind is ignored.
    hass.bus.async_fire(EVENT_MOBILE_APP_ACTION, {"action": acknowledge})
    hass.bus.async_fire(EVENT_MOBILE_APP_ACTION, {"action": "BITCOIN_MINING_ACKNOWLEDGE::other::x"})
    hass.bus.async_fire(EVENT_MOBILE_APP_ACTION, {"action": f"SOMETHING::{entry.entry_id}::x"})
    await hass.async_block_till_done()
    meter_server.set_frequency(50.0)
    await wait_until(lambda: alerts_of(hass) == [], "the recovery")
    # The alert has ended: its button now names no alert, which is logged, not raised.
    hass.bus.async_fire(EVENT_MOBILE_APP_ACTION, {"action": acknowledge})
    await hass.async_block_till_done()
    await unload(hass, entry)


async def test_a_silence_holds_notifications_back_until_it_ends(
    hass: HomeAssistant, meter_server: MeterServer, meter_entry: MockConfigEntry
) -> None:
    phone = register_notify_service(hass, "mobile_app_pixel")
    entry = await set_up(hass, meter_entry)
    response = await hass.services.async_call(
        DOMAIN, "silence_alerts", {"duration": {"seconds": 2}}, blocking=True, return_response=True
    )
    assert response is not None
    assert (response["kind"], response["config_entry_id"]) == (None, entry.entry_id)
    (running,) = hass.states.get(ACTIVE).attributes["silences"]
    assert running == {"kind": None, "until": response["until"]}
    meter_server.set_frequency(49.3)
    await wait_until(lambda: len(alerts_of(hass)) == 1, "the alert")
    # Raised and shown, not pushed.
    state = hass.states.get(ALERTS)
    assert (state.attributes["event_type"], state.attributes["silenced"]) == ("started", True)
    assert phone.calls == []
    # Once the silence ends, the alert still open is pushed.
    await wait_until(lambda: len(phone.calls) == 1, "the push after the silence", timeout=6)
    state = hass.states.get(ALERTS)
    assert (state.attributes["event_type"], state.attributes["silenced"]) == ("repeated", False)
    assert hass.states.get(ACTIVE).attributes["silences"] == []

    # Silence 1 h from the phone: that kind only; its end is recorded, not pushed.
    silence = phone.calls[0]["data"]["actions"][1]["action"]
    hass.bus.async_fire(EVENT_MOBILE_APP_ACTION, {"action": silence})
    await wait_until(lambda: bool(hass.states.get(ACTIVE).attributes["silences"]), "the silence")
    (running,) = hass.states.get(ACTIVE).attributes["silences"]
    assert running["kind"] == "grid_under_frequency"
    told = len(phone.calls)
    meter_server.set_frequency(50.0)
    await wait_until(lambda: alerts_of(hass) == [], "the recovery")
    state = hass.states.get(ALERTS)
    assert (state.attributes["event_type"], state.attributes["silenced"]) == ("ended", True)
    assert len(phone.calls) == told
    await unload(hass, entry)


async def test_every_bad_alert_action_is_refused(
    hass: HomeAssistant, meter_entry: MockConfigEntry
) -> None:
    entry = await set_up(hass, meter_entry)

    async def refused(service: str, data: dict[str, Any]) -> ServiceValidationError:
        with pytest.raises(ServiceValidationError) as caught:
            await hass.services.async_call(DOMAIN, service, data, blocking=True)
        assert caught.value.translation_domain == DOMAIN
        return caught.value

    error = await refused("acknowledge_alert", {"alert_id": "nope-1"})
    assert error.translation_key == "unknown_alert"
    assert error.translation_placeholders == {"alert_id": "nope-1"}
    error = await refused("acknowledge_alert", {"alert_id": "   "})
    assert error.translation_key == "empty_alert_id"
    error = await refused("acknowledge_alert", {"alert_id": "x", "config_entry_id": "nope"})
    assert error.translation_key == "site_not_found"
    for duration in ({"seconds": 0}, {"minutes": -5}, {"days": 8}):
        error = await refused("silence_alerts", {"duration": duration})
        assert error.translation_key == "invalid_silence_duration"
    # What is no duration at all, or no kind of alert, the schema refuses.
    for data in (
        {"duration": ""},
        {"duration": "soon"},
        {},
        {"duration": {"hours": 1}, "kind": "smoke"},
    ):
        with pytest.raises((vol.Invalid, ServiceValidationError)):
            await hass.services.async_call(DOMAIN, "silence_alerts", data, blocking=True)
    with pytest.raises((vol.Invalid, ServiceValidationError)):
        await hass.services.async_call(DOMAIN, "acknowledge_alert", {}, blocking=True)
    assert hass.states.get(ACTIVE).attributes["silences"] == []
    await unload(hass, entry)


async def test_a_target_that_went_away_is_logged_and_shown(
    hass: HomeAssistant,
    meter_server: MeterServer,
    pool_port: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    phone = register_notify_service(hass, "mobile_app_pixel")
    entry = await set_up(
        hass,
        site_on_meter(meter_server, pool_port, "notify.mobile_app_gone", "notify.mobile_app_pixel"),
    )
    meter_server.set_frequency(49.3)
    # The target that is gone does not keep the other from hearing of it.
    await wait_until(lambda: len(phone.calls) == 1, "the push")
    await wait_until(
        lambda: hass.states.get(ACTIVE).attributes["last_failed_delivery"] is not None,
        "the failed delivery",
    )
    failed = hass.states.get(ACTIVE).attributes["last_failed_delivery"]
    assert failed["target"] == "notify.mobile_app_gone"
    assert "notify.mobile_app_gone does not exist" in failed["error"]
    assert "not delivered to notify.mobile_app_gone" in caplog.text
    meter_server.set_frequency(50.0)
    await unload(hass, entry)


async def test_container_alarms_come_in_through_the_hook(
    hass: HomeAssistant, meter_entry: MockConfigEntry
) -> None:
    phone = register_notify_service(hass, "mobile_app_pixel")
    entry = await set_up(hass, meter_entry)
    alerts = entry.runtime_data.alerts
    for container in ("0", "1"):
        alerts.container_alarm(
            container,
            "smoke",
            active=True,
            severity="critical",
            description=f"Smoke in {container}",
        )
    await hass.async_block_till_done()
    (alert,) = alerts_of(hass)
    assert (alert["kind"], alert["severity"], alert["subject_count"]) == (
        "container_alarm",
        "critical",
        2,
    )
    assert alert["message"] == "Container alarm: 2 containers (container 0, container 1)"
    assert ir.async_get(hass).async_get_issue(DOMAIN, critical_issue_id(entry.entry_id))
    await wait_until(lambda: len(phone.calls) == 1, "the push")
    with pytest.raises(ValueError, match="unknown severity 'dire'"):
        alerts.container_alarm("0", "water", active=True, severity="dire")
    alerts.container_alarm("0", "smoke", active=False)
    alerts.container_alarm("1", "smoke", active=False)
    alerts.container_alarm("1", "never raised", active=False)
    await hass.async_block_till_done()
    assert alerts_of(hass) == []
    assert ir.async_get(hass).async_get_issue(DOMAIN, critical_issue_id(entry.entry_id)) is None
    await unload(hass, entry)
    # A hook called after the unload raises nothing any more.
    alerts.container_alarm("0", "smoke", active=True, severity="critical")
    await hass.async_block_till_done()
    assert ir.async_get(hass).async_get_issue(DOMAIN, critical_issue_id(entry.entry_id)) is None


def view(mac: str, status: MinerStatus | None, model: str = "Whatsminer M50S") -> MinerView:
    identity = MinerIdentity("whatsminer", model, "1.0", mac)
    return MinerView(f"10.0.0.{mac[-1]}", identity, status, None if status else "refused")


def test_miners_too_hot_or_far_below_their_model_are_conditions() -> None:
    warm = MinerStatus(mining=True, hashrate_ths=120.0, temperature_c=70.0, uptime_s=3600)
    views = {
        "m1": view("m1", warm),
        # A hot board counts, not only the chips' figure.
        "m2": view("m2", replace(warm, board_temperatures_c=(71.0, 91.5))),
        # M50S: 126 TH/s nameplate; under half of it once warmed up.
        "m3": view("m3", replace(warm, hashrate_ths=50.0)),
        # Warming up (10 min), asleep, or of a model nobody knows: not slow.
        "m4": view("m4", replace(warm, hashrate_ths=50.0, uptime_s=30)),
        "m5": view("m5", replace(warm, mining=False, hashrate_ths=0.0)),
        "m6": view("m6", replace(warm, hashrate_ths=1.0), model="Mystery X1"),
        # Its own nominal figure wins over the table's (126 TH/s would make 50 slow).
        "m7": view("m7", replace(warm, hashrate_ths=50.0, nominal_hashrate_ths=90.0)),
        "m8": view("m8", None),
    }
    assert [mac for mac, v in views.items() if far_below_nameplate(v)] == ["m3"]
    data = FleetData(miners=views, unidentified=(), polled_at=0.0)
    found = miner_conditions(data, {"m8": 2, "m1": 1}, {"m3": 3, "m7": 2})
    assert [(c.kind.value, c.subject.id) for c in found] == [
        ("miner_over_temperature", "m2"),
        ("miner_hashrate_low", "m3"),
        ("miner_offline", "m8"),
    ]
    assert found[0].message == "Whatsminer M50S at 10.0.0.2 at 92 °C"
    assert (
        found[1].message == "Whatsminer M50S at 10.0.0.3 hashes 50.0 TH/s, far below its 126 TH/s"
    )
    assert found[2].message == "Whatsminer M50S at 10.0.0.8 does not answer (refused)"


async def test_supply_unknown_and_an_uplink_outage_are_alerts(
    hass: HomeAssistant, meter_server: MeterServer, closed_port: int
) -> None:
    phone = register_notify_service(hass, "mobile_app_pixel")
    entry = site_on_meter(meter_server, closed_port)
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="Test site",
        unique_id="test_site",
        data=entry.data,
        options={**entry.options, CONF_ALERT_TARGETS_HIGH: ["notify.mobile_app_pixel"]},
    )
    await set_up(hass, entry)
    failover = entry.runtime_data.failover
    failover.probe_interval_s = 0.2
    failover.probe_timeout_s = 0.5
    # Nothing listens where the pool should be: an outage once three handshakes failed.
    await wait_until(lambda: any(a["kind"] == "uplink_outage" for a in alerts_of(hass)), "outage")
    set_supply(hass, "unavailable")
    await wait_until(lambda: len(alerts_of(hass)) == 2, "supply unknown")
    kinds = {a["kind"]: a for a in alerts_of(hass)}
    assert kinds["supply_unknown"]["message"].startswith("Supply power unknown (")
    assert kinds["uplink_outage"]["message"].startswith("Internet outage since ")
    await wait_until(lambda: len(phone.calls) == 2, "the pushes")
    set_supply(hass, 300)
    await wait_until(lambda: len(alerts_of(hass)) == 1, "supply back")
    await unload(hass, entry)


async def test_commands_the_miners_did_not_carry_out_are_one_alert(
    hass: HomeAssistant, forty_two: Site
) -> None:
    entry = await set_up(hass, entry_for(forty_two, **{CONF_FLEET_INTERVAL: 3600}))
    assert forty_two.fleet is not None
    failover = entry.runtime_data.failover
    await wait_until(lambda: failover.data.last_move is not None, "the backup pool pass", 30)
    for miner in forty_two.miners[:3]:
        await forty_two.fleet.set_fault(miner, "garbage", True)
    with pytest.raises(HomeAssistantError):
        await hass.services.async_call(
            DOMAIN, "curtail", {"duration": {"minutes": 10}}, blocking=True
        )
    await hass.async_block_till_done()
    (alert,) = alerts_of(hass)
    assert (alert["kind"], alert["severity"], alert["subject_count"]) == (
        "command_failed",
        "medium",
        3,
    )
    assert alert["message"].startswith("Command not carried out: 3 miners (")
    await forty_two.fleet.clear_faults()
    await unload(hass, entry)
