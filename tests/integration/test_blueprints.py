"""Each blueprint in a real Home Assistant: an automation made from it, its trigger fired.

The notification it sends is asserted (a recording notify entity and a notify action).

Every blueprint is fired once by the real integration: the grid meter's under-frequency,
a simulated miner's temperature, the site's Alerts event entity (here: supply unknown;
grouped offline miners in test_alerts.py), a simulated container's smoke and pump fault
(test_container.py). The blueprints' own logic (which moments, severities and targets)
is also driven here through every case by setting the entities' states directly.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
import shutil
from typing import Any

from homeassistant.components.notify import NotifyEntity, NotifyEntityFeature
from homeassistant.const import STATE_OFF, STATE_ON
from homeassistant.core import HomeAssistant, ServiceCall
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.bitcoin_mining.const import EVENT_UPLINK_OUTAGE, EVENT_UPLINK_RESTORED
from simulator import Site
from tests.conftest import REPO_ROOT
from tests.support.modbus_meter import MeterServer
from tests.support.twilio_server import TwilioStandIn

from .conftest import entity_id, entry_for, miner_key, set_supply, wait_for_state
from .test_twilio import PHONES, add_sender

BLUEPRINTS = REPO_ROOT / "blueprints" / "automation" / "bitcoin_mining"
UNDER_FREQUENCY = "binary_sensor.test_site_grid_under_frequency"
FREQUENCY = "sensor.test_site_grid_frequency"
ALERTS = "event.test_site_alerts"
PHONE = "notify.mobile_app_operator"


class RecordingNotify(NotifyEntity):
    """A notify entity that keeps what it was asked to send."""

    _attr_supported_features = NotifyEntityFeature.TITLE

    def __init__(self, name: str) -> None:
        self._attr_name = name
        self._attr_unique_id = name
        self.sent: list[tuple[str | None, str]] = []

    async def async_send_message(self, message: str, title: str | None = None) -> None:
        self.sent.append((title, message))


class Outbox:
    """Where notifications land: a recording notify entity and a phone's notify action."""

    def __init__(self, entity: RecordingNotify) -> None:
        self.entity = entity
        self.pushed: list[dict[str, Any]] = []

    @property
    def sms(self) -> list[tuple[str | None, str]]:
        return self.entity.sent


@pytest.fixture
async def outbox(hass: HomeAssistant, tmp_path: Path) -> Outbox:
    """The blueprints in the config folder, automation and notify set up, the outbox ready."""
    return await blueprint_outbox(hass, tmp_path)


async def blueprint_outbox(hass: HomeAssistant, tmp_path: Path) -> Outbox:
    """The blueprints in the config folder, automation and notify set up, the outbox ready."""
    hass.config.config_dir = str(tmp_path)
    folder = tmp_path / "blueprints" / "automation" / "bitcoin_mining"
    folder.mkdir(parents=True)
    for path in BLUEPRINTS.glob("*.yaml"):
        shutil.copy(path, folder)
    assert await async_setup_component(hass, "notify", {})
    entity = RecordingNotify("Operator SMS")
    await hass.data["notify"].async_add_entities([entity])
    box = Outbox(entity)

    async def push(call: ServiceCall) -> None:
        box.pushed.append(dict(call.data))

    hass.services.async_register("notify", "mobile_app_operator", push)
    return box


async def use_blueprint(hass: HomeAssistant, name: str, inputs: dict[str, Any]) -> None:
    """Create an automation from a blueprint, with these inputs, and check it is on."""
    blueprint = {"path": f"bitcoin_mining/{name}", "input": inputs}
    config = {"automation": {"id": name, "use_blueprint": blueprint}}
    assert await async_setup_component(hass, "automation", config)
    await hass.async_block_till_done()
    [automation] = hass.states.async_entity_ids("automation")
    assert hass.states.get(automation).state == STATE_ON, f"{name} did not load"


def targets() -> dict[str, Any]:
    return {"notify_targets": ["notify.operator_sms"], "notify_actions": [PHONE]}


async def wait_for(hass: HomeAssistant, condition: Any, timeout: float = 10.0) -> None:
    """Wait (real time: the grid loop runs on the event loop's clock) for a condition."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out"
        await hass.async_block_till_done()
        await asyncio.sleep(0.05)


async def test_under_frequency_shed_and_recovery(
    hass: HomeAssistant, outbox: Outbox, loaded_entry: MockConfigEntry, meter_server: MeterServer
) -> None:
    await use_blueprint(
        hass,
        "grid_under_frequency_shed.yaml",
        {"under_frequency_sensor": UNDER_FREQUENCY, "frequency_sensor": FREQUENCY} | targets(),
    )
    meter_server.set_frequency(49.3)
    await wait_for_state(hass, UNDER_FREQUENCY, STATE_ON)
    await wait_for(hass, lambda: len(outbox.sms) == 1)
    title, message = outbox.sms[0]
    assert title == "Grid under-frequency"
    assert message == "Grid frequency 49.3 Hz: mining load is shed."
    assert [(p["title"], p["message"]) for p in outbox.pushed] == [(title, message)]
    meter_server.set_frequency(50.0)
    await wait_for_state(hass, UNDER_FREQUENCY, STATE_OFF)
    await wait_for(hass, lambda: len(outbox.sms) == 2)
    title, message = outbox.sms[1]
    assert title == "Grid recovered"
    assert message.startswith("Grid frequency 50.0 Hz after ")
    assert message.endswith(" min: mining is restored in batches.")
    assert len(outbox.pushed) == 2


async def test_uplink_outage_and_failback_with_its_duration(
    hass: HomeAssistant, outbox: Outbox
) -> None:
    """Every case of its logic; a real outage and failback fire it in test_failover.py."""
    await use_blueprint(hass, "uplink_outage_failback.yaml", {"site": "site-1"} | targets())
    outage = {"site": "Test site", "started": "2026-12-07T02:00:00+00:00", "error": "timeout"}
    hass.bus.async_fire(EVENT_UPLINK_OUTAGE, outage | {"entry_id": "another", "mode": "auto"})
    await hass.async_block_till_done()
    assert outbox.sms == []
    hass.bus.async_fire(EVENT_UPLINK_OUTAGE, outage | {"entry_id": "site-1", "mode": "auto"})
    await hass.async_block_till_done()
    assert outbox.sms == [
        (
            "Uplink outage at Test site",
            "The upstream pool gives no work (timeout). Miners move to the local pool.",
        )
    ]
    back = outage | {"entry_id": "site-1", "mode": "auto", "duration_s": 150.0}
    hass.bus.async_fire(EVENT_UPLINK_RESTORED, back)
    await hass.async_block_till_done()
    assert outbox.sms[1] == (
        "Uplink back at Test site",
        "The upstream pool gives work again after 2.5 min of outage."
        " Miners go back in batches after the hold time.",
    )
    assert [p["title"] for p in outbox.pushed] == [t for t, _ in outbox.sms]


async def test_miner_over_temperature(hass: HomeAssistant, outbox: Outbox, simulated: Site) -> None:
    """A real simulated miner heats up (its site's ambient rises) past the limit."""
    entry = entry_for(simulated)
    set_supply(hass, 300)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    miner = simulated.miners[0]
    sensor = entity_id(hass, "sensor", miner_key(miner), "temperature")
    now_c = float(hass.states.get(sensor).state)
    limit = int(now_c) + 2
    await use_blueprint(
        hass,
        "miner_over_temperature.yaml",
        {"temperature_sensors": [sensor], "limit": limit, "for_time": {"seconds": 0}} | targets(),
    )
    # Chips follow the ambient with a one-minute lag: a big step crosses the limit in seconds.
    simulated.state.ambient_c += 300
    fleet = entry.runtime_data.fleet

    async def refreshed() -> bool:
        await fleet.async_refresh()
        return bool(outbox.sms)

    for _ in range(100):
        if await refreshed():
            break
        await asyncio.sleep(0.1)
    [(title, message)] = outbox.sms
    assert title == "Miner over temperature"
    assert message.endswith(f"°C above the limit of {limit} °C.")
    assert float(message.split(": ")[1].split(" ")[0]) > limit
    assert len(outbox.pushed) == 1
    assert await hass.config_entries.async_unload(entry.entry_id)


def set_alert(hass: HomeAssistant, event_type: str, **attributes: Any) -> None:
    """The Alerts event entity's state, as the integration writes it (every case of the logic)."""
    now = hass.states.get(ALERTS)
    moment = "2026-12-07T03:00:00.000+00:00" if now is None else now.state + "1"
    hass.states.async_set(
        ALERTS,
        moment,
        {"event_type": event_type, "event_types": ["started", "updated", "ended", "repeated"]}
        | attributes,
    )


def alert(kind: str, severity: str, **more: Any) -> dict[str, Any]:
    return {
        "alert_id": f"{kind}-1",
        "kind": kind,
        "severity": severity,
        "subject": "site:test_site",
        "subjects": [],
        "message": f"{kind} at Test site",
    } | more


async def test_miners_offline_grouped(hass: HomeAssistant, outbox: Outbox) -> None:
    set_alert(hass, "ended", **alert("miner_offline", "high"))
    await use_blueprint(hass, "miners_offline.yaml", {"alerts_entity": ALERTS} | targets())
    miners = [f"miner-{n:02d}" for n in range(1, 13)]
    hass.states.async_set(ALERTS, "unavailable", {})
    await hass.async_block_till_done()
    set_alert(hass, "started", **alert("uplink_outage", "high"))
    await hass.async_block_till_done()
    assert outbox.sms == []
    set_alert(
        hass,
        "started",
        **alert("miner_offline", "high", subjects=miners, message="12 miners stopped answering."),
    )
    await hass.async_block_till_done()
    assert outbox.sms == [
        (
            "12 miners offline",
            ", ".join(miners[:10]) + " and 2 more. 12 miners stopped answering.",
        )
    ]
    set_alert(hass, "ended", **alert("miner_offline", "high", subjects=miners))
    await hass.async_block_till_done()
    assert len(outbox.sms) == 1
    set_alert(hass, "started", **alert("miner_offline", "high", subject="miner-40", subjects=[]))
    await hass.async_block_till_done()
    assert outbox.sms[-1][0] == "1 miner offline"
    assert len(outbox.pushed) == 2


async def test_alerts_at_or_above_a_severity(hass: HomeAssistant, outbox: Outbox) -> None:
    set_alert(hass, "ended", **alert("supply_unknown", "warning"))
    await use_blueprint(
        hass,
        "alerts_by_severity.yaml",
        {"alerts_entity": ALERTS, "min_severity": "high"} | targets(),
    )
    for event_type, kind, severity in [
        ("started", "supply_unknown", "medium"),  # below the severity
        ("started", "supply_unknown", "warning"),
        ("started", "container_alarm", "critical"),  # sent
        ("updated", "container_alarm", "critical"),  # not a chosen moment
        ("repeated", "container_alarm", "critical"),  # sent
        ("started", "uplink_outage", "high"),  # sent
        ("ended", "uplink_outage", "high"),
        ("started", "miner_offline", "bogus"),  # an unknown severity is not sent
    ]:
        set_alert(hass, event_type, **alert(kind, severity))
        await hass.async_block_till_done()
    assert outbox.sms == [
        ("CRITICAL: container alarm", "container_alarm at Test site"),
        ("CRITICAL: container alarm", "container_alarm at Test site"),
        ("HIGH: uplink outage", "uplink_outage at Test site"),
    ]
    assert len(outbox.pushed) == 3


async def test_alerts_by_severity_hears_the_real_alerts_entity(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, tmp_path: Path
) -> None:
    """The site's own Alerts event entity fires the blueprint: supply unknown is high."""
    box = await blueprint_outbox(hass, tmp_path)
    await use_blueprint(
        hass,
        "alerts_by_severity.yaml",
        {"alerts_entity": ALERTS, "min_severity": "high"} | targets(),
    )
    set_supply(hass, "unavailable")
    await loaded_entry.runtime_data.site.async_refresh()
    await wait_for(hass, lambda: len(box.sms) == 1)
    assert box.sms == [("HIGH: supply unknown", box.sms[0][1])]
    assert "Supply" in box.sms[0][1]
    assert len(box.pushed) == 1
    # Its end is not a moment the blueprint tells.
    set_supply(hass, 300)
    await loaded_entry.runtime_data.site.async_refresh()
    await wait_for(hass, lambda: hass.states.get(ALERTS).attributes["event_type"] == "ended")
    assert len(box.sms) == 1


async def test_container_smoke_water_pump_go_out_by_sms(
    hass: HomeAssistant,
    outbox: Outbox,
    loaded_entry: MockConfigEntry,
    twilio: TwilioStandIn,
) -> None:
    """Critical container alarms: an SMS by the real Twilio entity (to the stand-in), a push.

    The binary sensors' states are set (the real container: test_container.py).
    """
    sms_entity = await add_sender(hass, loaded_entry, twilio, recipients=PHONES[0])
    sensors = {
        "smoke": "binary_sensor.container_0_smoke",
        "moisture": "binary_sensor.container_0_water_ingress",
        "problem": "binary_sensor.container_1_coolant_pump",
    }
    names = {"smoke": "Container 0 Smoke", "moisture": "Container 0 Water ingress"}
    names["problem"] = "Container 1 Coolant pump"
    for device_class, sensor in sensors.items():
        attributes = {"device_class": device_class, "friendly_name": names[device_class]}
        hass.states.async_set(sensor, STATE_OFF, attributes)
    await use_blueprint(
        hass,
        "container_safety.yaml",
        {
            "smoke_sensors": [sensors["smoke"]],
            "water_sensors": [sensors["moisture"]],
            "pump_sensors": [sensors["problem"]],
            "sms_targets": [sms_entity, "notify.operator_sms"],
            "notify_actions": [PHONE],
        },
    )
    for device_class, sensor in sensors.items():
        attributes = {"device_class": device_class, "friendly_name": names[device_class]}
        hass.states.async_set(sensor, STATE_ON, attributes)
        await hass.async_block_till_done()
    bodies = [m.body for m in twilio.messages]
    assert [b.split(" detected by ")[0] for b in bodies] == [
        "CRITICAL: Smoke: Smoke",
        "CRITICAL: Water: Water",
        "CRITICAL: Coolant pump failure: Coolant pump failure",
    ]
    assert "Container 0 Smoke at " in bodies[0]
    assert [m.to for m in twilio.messages] == [PHONES[0]] * 3
    assert len(outbox.sms) == 3
    assert outbox.pushed[0]["data"]["push"]["interruption-level"] == "critical"
    assert len(outbox.pushed) == 3
    # Unknown -> on (a restart) is not an alarm going off.
    hass.states.async_set(sensors["smoke"], "unknown", {"device_class": "smoke"})
    hass.states.async_set(sensors["smoke"], STATE_ON, {"device_class": "smoke"})
    await hass.async_block_till_done()
    assert len(twilio.messages) == 3
